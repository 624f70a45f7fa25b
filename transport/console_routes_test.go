package transport

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/streamhouse/streamhouse/transport/console"
)

// TestConsoleRoutes: the console's files are served without a key (the
// API calls it makes need one), / redirects to it, and with no console
// configured (CONSOLE_ENABLED=false) /ui/ is a 404.
func TestConsoleRoutes(t *testing.T) {
	f := newFakeAgent()
	_, key, err := NewAPIKey("k", ScopeRead, nil)
	if err != nil {
		t.Fatal(err)
	}
	auth := NewAuthenticator([]APIKey{key}, false)
	s := NewHTTPServer(HTTPConfig{Console: console.Handler(), Auth: auth}, f, f, f, f)
	for path, want := range map[string]int{
		"/ui/": http.StatusOK, "/ui/js/app.js": http.StatusOK, "/ui/?x=1": http.StatusOK,
		"/": http.StatusFound, "/ui": http.StatusFound, "/api/v1/durability": http.StatusUnauthorized,
	} {
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != want {
			t.Errorf("%s: %d, want %d", path, rec.Code, want)
		}
	}
	off := NewHTTPServer(HTTPConfig{}, f, f, f, f)
	rec := httptest.NewRecorder()
	off.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/ui/", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("console off: /ui/ %d", rec.Code)
	}
}
