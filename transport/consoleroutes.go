package transport

import (
	"context"
	"net/http"
	"time"
)

// consoleRoutes registers the web console (cfg.Console, served at /ui/
// without authentication: the page itself holds no data, and every API
// call it makes carries the user's key) and the read-only endpoints it
// needs beyond the rest of the API.
func (s *HTTPServer) consoleRoutes() {
	s.handle("GET /api/v1/durability", OpRead, ScopeRead, s.handleDurability)
	s.handle("GET /api/v1/topics/{name}/storage", OpRead, ScopeRead, s.handlePartitionStorage)
	s.handle("GET /api/v1/metrics/history", OpRead, ScopeRead, s.handleMetricsHistory)
	if s.cfg.Console == nil {
		return
	}
	for _, p := range []string{"GET /ui/", "GET /ui", "GET /{$}"} {
		s.open[p] = true
	}
	s.mux.Handle("GET /ui/", s.cfg.Console)
	redirect := http.RedirectHandler("/ui/", http.StatusFound)
	s.mux.Handle("GET /ui", redirect)
	s.mux.Handle("GET /{$}", redirect)
}

// startHistory starts the metrics-history sampler; it stops when the
// server shuts down (s.stopping), and Shutdown waits for it.
func (s *HTTPServer) startHistory() {
	s.historyDone = make(chan struct{})
	go func() {
		defer close(s.historyDone)
		s.history.run(s.stopping, s.historyEvery)
	}()
}

// waitHistory waits for the sampler started by startHistory (if any).
func (s *HTTPServer) waitHistory(ctx context.Context) {
	if s.historyDone == nil {
		return
	}
	select {
	case <-s.historyDone:
	case <-ctx.Done():
	}
}

func historyEvery(d time.Duration) time.Duration {
	if d <= 0 {
		return historyInterval
	}
	return d
}
