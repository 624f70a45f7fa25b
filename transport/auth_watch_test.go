package transport

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestAPIKeysReloadFailsClosed: an edit of the keys file that revokes a key
// and breaks another line still revokes (valid lines apply, the broken one
// is refused), and a deleted keys file refuses every token.
func TestAPIKeysReloadFailsClosed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "api_keys")
	tokA, kA, _ := NewAPIKey("a", ScopeRead, nil)
	tokB, kB, _ := NewAPIKey("b", ScopeRead, nil)
	tokC, kC, _ := NewAPIKey("c", ScopeRead, nil)
	writeKeysFile(t, path, kA.Line(), kB.Line(), kC.Line())
	auth := NewAuthenticator([]APIKey{kA, kB, kC}, false)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	m := NewAPIKeyMetrics(prometheus.NewRegistry())
	go func() {
		defer close(done)
		WatchAPIKeys(ctx, APIKeysWatch{Path: path, Every: 10 * time.Millisecond, Auth: auth, Metrics: m, Logger: slog.New(slog.DiscardHandler)})
	}()
	defer func() { cancel(); <-done }()
	accepted := func(tok string) bool { _, err := auth.Authenticate(tok); return err == nil }

	// One edit: b revoked (its line removed), c's line broken by a typo.
	writeKeysFile(t, path, kA.Line(), strings.Replace(kC.Line(), ":read:", ":raed:", 1))
	waitFor(t, 5*time.Second, "the revocation of b applies although another line is broken", func() bool { return !accepted(tokB) })
	if !accepted(tokA) {
		t.Fatal("the valid line a was not applied")
	}
	if accepted(tokC) {
		t.Fatal("the broken line's key is still accepted")
	}
	if k, p := testutil.ToFloat64(m.keys), testutil.ToFloat64(m.problems); k != 1 || p != 1 {
		t.Fatalf("streamhouse_api_keys = %v, streamhouse_api_keys_file_problems = %v; want 1 and 1", k, p)
	}

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "a deleted keys file refuses every token", func() bool { return !accepted(tokA) })
	if k, p := testutil.ToFloat64(m.keys), testutil.ToFloat64(m.problems); k != 0 || p != 1 {
		t.Fatalf("after deletion: streamhouse_api_keys = %v, streamhouse_api_keys_file_problems = %v; want 0 and 1", k, p)
	}
	writeKeysFile(t, path, kA.Line())
	waitFor(t, 5*time.Second, "a restored keys file applies", func() bool { return accepted(tokA) && testutil.ToFloat64(m.problems) == 0 })
}

// writeKeysFile replaces the keys file atomically (write and rename), as an
// operator's tooling or a Kubernetes Secret does.
func writeKeysFile(t *testing.T, path string, lines ...string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
