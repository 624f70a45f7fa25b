package transport

import (
	"bytes"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
)

// ReadBody returns exactly the body whether or not its length is declared,
// refuses a body shorter than its declared length, and reads at most
// limit+1 bytes of a longer one (the caller's "too large").
func TestReadBody(t *testing.T) {
	body := strings.Repeat("x", 1000)
	tests := []struct {
		name     string
		declared int64 // -1: not declared (chunked)
		limit    int
		want     int
		fails    bool
	}{
		{"declared", 1000, 4096, 1000, false},
		{"not declared", -1, 4096, 1000, false},
		{"declared, over the limit", 1000, 10, 11, false},
		{"not declared, over the limit", -1, 10, 11, false},
		{"declared longer than sent", 2000, 4096, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/", io.NopCloser(strings.NewReader(body)))
			r.ContentLength = tc.declared
			got, err := ReadBody(r, tc.limit)
			if tc.fails {
				if err == nil {
					t.Fatalf("read %d bytes of a body declared %d bytes long, want an error", len(got), tc.declared)
				}
				return
			}
			if err != nil || len(got) != tc.want || !bytes.Equal(got, []byte(body[:tc.want])) {
				t.Fatalf("ReadBody = %d bytes, %v; want %d", len(got), err, tc.want)
			}
		})
	}
}
