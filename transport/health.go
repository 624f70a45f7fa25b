package transport

import "net/http"

type statusResponse struct {
	Status string `json:"status"`
	Reason string `json:"reason,omitempty"`
}

// handleHealth serves GET /health and GET /live: the process is up and
// serving HTTP. It never consults dependencies.
func (s *HTTPServer) handleHealth(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, statusResponse{Status: "ok"})
}

// handleReady serves GET /ready from the Readiness interface. A not-ready
// answer is a normal state report, not an error response: it does not
// increment streamhouse_errors_total.
func (s *HTTPServer) handleReady(w http.ResponseWriter, _ *http.Request) {
	ok, reason := s.ready.Ready()
	if ok {
		writeJSON(w, http.StatusOK, statusResponse{Status: "ready"})
		return
	}
	if reason == "" {
		reason = "not ready"
	}
	w.Header().Set("Retry-After", "1")
	writeJSON(w, http.StatusServiceUnavailable, statusResponse{Status: "not_ready", Reason: reason})
}
