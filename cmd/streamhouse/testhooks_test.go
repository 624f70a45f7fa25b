package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestOffsetClockFollowsItsFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "offset")
	c := &offsetClock{path: path, log: slog.New(slog.DiscardHandler)}
	near := func(want time.Duration) bool {
		got := time.Until(c.Now())
		return got > want-time.Minute && got < want+time.Minute
	}
	if !near(0) {
		t.Fatal("a missing file shifted the clock")
	}
	for _, tc := range []struct {
		content string
		want    time.Duration
	}{{"2h", 2 * time.Hour}, {"-26h\n", -26 * time.Hour}, {"not a duration", -26 * time.Hour}, {"", 0}} {
		if err := os.WriteFile(path, []byte(tc.content), 0o644); err != nil {
			t.Fatal(err)
		}
		c.readAt = time.Time{} // re-read now
		if !near(tc.want) {
			t.Fatalf("after writing %q the clock is off by %v, want %v", tc.content, time.Until(c.Now()), tc.want)
		}
	}
}
