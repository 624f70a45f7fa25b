package console

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func serve(path string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec
}

func TestServesEmbeddedFiles(t *testing.T) {
	rec := serve("/ui/")
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `<script type="module" src="js/app.js">`) {
		t.Fatalf("/ui/: %d %q", rec.Code, rec.Body.String())
	}
	if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("CSP %q", csp)
	}
	for _, p := range []string{"/ui/js/app.js", "/ui/js/api.js", "/ui/js/pages/durability.js", "/ui/js/chart.js"} {
		rec := serve(p)
		if rec.Code != http.StatusOK || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/javascript") {
			t.Errorf("%s: %d %q", p, rec.Code, rec.Header().Get("Content-Type"))
		}
	}
	if rec := serve("/ui/app.css"); rec.Code != http.StatusOK || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/css") {
		t.Errorf("app.css: %d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	for _, p := range []string{"/ui/js/", "/ui/nope.js", "/ui/../console.go"} {
		if rec := serve(p); rec.Code == http.StatusOK {
			t.Errorf("%s served: %q", p, rec.Body.String())
		}
	}
}
