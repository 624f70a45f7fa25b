package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults for HTTPConfig.
const (
	DefaultHTTPAddr        = ":8080"
	DefaultMaxRequestBytes = 32 << 20 // 32 MiB
)

// recordBodyOverhead is added to twice MaxRecordBytes when sizing the body
// limit, for the JSON around a single record.
const recordBodyOverhead = 64 << 10

// HTTPConfig configures the public REST server.
type HTTPConfig struct {
	// Addr is the listen address; "" means DefaultHTTPAddr. Use
	// "127.0.0.1:0" in tests and read the bound address from Addr().
	Addr string
	// MaxRecordBytes is the agent's record size limit. The REST server only
	// uses it to make sure one maximal record fits in a request body even
	// when base64-encoded: the body limit is
	// max(MaxRequestBytes, 2*MaxRecordBytes + 64 KiB) (0 = no effect). The record limit
	// itself is enforced by the Producer (fsm.ErrRecordTooLarge → 413
	// record_too_large).
	MaxRecordBytes int
	// MaxRequestBytes bounds request bodies (0 = DefaultMaxRequestBytes);
	// larger bodies get 413 request_too_large.
	MaxRequestBytes int64
	// Gatherer is served on GET /metrics; nil serves an empty registry.
	Gatherer prometheus.Gatherer
	// Registerer receives the server's own collectors; nil = unregistered.
	Registerer prometheus.Registerer
	// Errors is the shared streamhouse_errors_total{kind} counter (see
	// NewErrorsCounter); nil = not counted.
	Errors *prometheus.CounterVec
	// Connections is the shared streamhouse_active_connections gauge (see
	// NewActiveConnectionsGauge); nil = not counted.
	Connections prometheus.Gauge
	// TLSConfig enables HTTPS when non-nil; it must carry a certificate
	// (Certificates, GetCertificate or GetConfigForClient).
	TLSConfig *tls.Config
	// Cluster answers GET /api/v1/cluster; nil answers 404.
	Cluster ClusterInfo
	// Groups serves /api/v1/consumer-groups; nil answers 404.
	Groups Groups
	// Coordinator adds the members to group descriptions; optional.
	Coordinator GroupCoordinator
	// Offsets serves /api/v1/topics/{name}/partitions/{partition}/offsets;
	// nil answers 404.
	Offsets Offsets
	// Auth, when non-nil, requires an API key (Authorization: Bearer) on
	// every route but /health, /live, /ready and (unless the Authenticator
	// protects it) /metrics; nil = no authentication.
	Auth *Authenticator
	// Quotas, when non-nil, throttles each API key per its quotas (429
	// quota_exceeded); requests without a key are never throttled.
	Quotas *Quotas
	// Logger receives the server's logs (component=rest); nil discards.
	Logger *slog.Logger
	// Console serves the web console at /ui/ (transport/console); nil
	// serves none (CONSOLE_ENABLED=false).
	Console http.Handler
	// Durability serves /api/v1/durability and the partition storage
	// detail; nil answers 404.
	Durability Durability
	// LocalHealth adds the Postgres checkpoint to /api/v1/durability; nil:
	// shown as not configured.
	LocalHealth LocalHealth
	// PeerRPC reads other admitted agents' console state (durability,
	// metrics history) over the peer channel: PeerMux.RPCClient(). nil:
	// other agents are shown as not answering.
	PeerRPC *http.Client
	// HistoryInterval is the metrics-history sampling period (0 = 2 s).
	HistoryInterval time.Duration
}

// HTTPServer serves the public REST API. Create it with NewHTTPServer; it
// does nothing until Start.
type HTTPServer struct {
	cfg       HTTPConfig
	topics    Topics
	prod      Producer
	fetch     Fetcher
	ready     Readiness
	log       *slog.Logger
	metrics   RequestMetrics
	bodyLimit int64
	mux       *http.ServeMux
	open      map[string]bool // route patterns served without authentication
	handler   http.Handler
	srv       *http.Server

	history      *metricsHistory
	historyEvery time.Duration
	historyDone  chan struct{}
	peerCalls    chan struct{} // bounds peer reads in flight (peerread.go)

	// stopping is canceled when Shutdown begins, to end long-poll waits
	// early (in-flight produces are left to finish).
	stopping context.Context
	stop     context.CancelFunc

	mu       sync.Mutex
	ln       net.Listener
	started  bool
	closed   bool
	served   chan struct{} // closed when the serve goroutine returns
	shutOnce sync.Once
	shutErr  error
}

// NewHTTPServer builds the REST server. topics, prod, fetch and ready must
// be non-nil. It starts nothing.
func NewHTTPServer(cfg HTTPConfig, topics Topics, prod Producer, fetch Fetcher, ready Readiness) *HTTPServer {
	if topics == nil || prod == nil || fetch == nil || ready == nil {
		panic("transport: NewHTTPServer needs non-nil Topics, Producer, Fetcher and Readiness")
	}
	if cfg.Addr == "" {
		cfg.Addr = DefaultHTTPAddr
	}
	if cfg.MaxRequestBytes <= 0 {
		cfg.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if cfg.Gatherer == nil {
		cfg.Gatherer = prometheus.NewRegistry()
	}
	if cfg.Errors == nil {
		cfg.Errors = NewErrorsCounter(nil)
	}
	if cfg.Connections == nil {
		cfg.Connections = NewActiveConnectionsGauge(nil)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &HTTPServer{
		cfg: cfg, topics: topics, prod: prod, fetch: fetch, ready: ready,
		log:       logger.With("component", "rest"),
		metrics:   newHTTPMetrics(cfg.Registerer),
		bodyLimit: cfg.MaxRequestBytes,
		mux:       http.NewServeMux(),
		history:   newMetricsHistory(cfg.Gatherer), historyEvery: historyEvery(cfg.HistoryInterval),
		peerCalls: make(chan struct{}, maxPeerCalls),
	}
	if cfg.MaxRecordBytes > 0 {
		s.bodyLimit = max(s.bodyLimit, 2*int64(cfg.MaxRecordBytes)+recordBodyOverhead)
	}
	s.stopping, s.stop = context.WithCancel(context.Background())
	s.routes()
	s.handler = http.HandlerFunc(s.serveHTTP)
	s.srv = &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		ConnState:         s.connState,
	}
	if cfg.TLSConfig != nil {
		s.srv.TLSConfig = cfg.TLSConfig.Clone()
	}
	return s
}

func (s *HTTPServer) routes() {
	// Probes stay open whatever the auth settings: orchestrators call them
	// without credentials.
	s.open = map[string]bool{"GET /health": true, "GET /live": true, "GET /ready": true}
	s.mux.HandleFunc("GET /health", s.handleHealth)
	s.mux.HandleFunc("GET /live", s.handleHealth)
	s.mux.HandleFunc("GET /ready", s.handleReady)
	metrics := s.metricsHandler()
	if s.cfg.Auth.MetricsProtected() {
		s.handle("GET /metrics", OpRead, ScopeRead, metrics)
	} else {
		s.open["GET /metrics"] = true
		s.mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) { _ = metrics(w, r) })
	}

	// The scope is the least a key needs for the route; handlers check the
	// topics (docs/security.md has the table).
	s.handle("POST /api/v1/topics", OpWrite, ScopeAdmin, s.handleCreateTopic)
	s.handle("GET /api/v1/topics", OpRead, ScopeRead, s.handleListTopics)
	s.handle("GET /api/v1/topics/{name}", OpRead, ScopeRead, s.handleGetTopic)
	s.handle("DELETE /api/v1/topics/{name}", OpWrite, ScopeAdmin, s.handleDeleteTopic)
	s.handle("GET /api/v1/topics/{name}/partitions", OpRead, ScopeRead, s.handlePartitions)
	s.handle("GET /api/v1/topics/{name}/partitions/{partition}/offsets", OpRead, ScopeRead, s.handleOffsets)
	s.handle("POST /api/v1/topics/{name}/partitions", OpWrite, ScopeAdmin, s.handleCreatePartitions)
	s.handle("GET /api/v1/topics/{name}/config", OpRead, ScopeRead, s.handleGetTopicConfig)
	s.handle("PATCH /api/v1/topics/{name}/config", OpWrite, ScopeAdmin, s.handleAlterTopicConfig)
	s.handle("POST /api/v1/produce", OpWrite, ScopeWrite, s.handleProduce)
	s.handle("POST /api/v1/produce/batch", OpWrite, ScopeWrite, s.handleProduceBatch)
	s.handle("GET /api/v1/consume", OpRead, ScopeRead, s.handleConsume)
	s.handle("GET /api/v1/cluster", OpRead, ScopeRead, s.handleCluster)
	s.handle("GET /api/v1/consumer-groups", OpRead, ScopeRead, s.handleListGroups)
	s.handle("GET /api/v1/consumer-groups/{group}", OpRead, ScopeRead, s.handleDescribeGroup)
	s.handle("DELETE /api/v1/consumer-groups/{group}", OpWrite, ScopeWrite, s.handleDeleteGroup)
	s.handle("POST /api/v1/consumer-groups/{group}/commit", OpWrite, ScopeWrite, s.handleCommitOffsets)
	s.handle("POST /api/v1/consumer-groups/{group}/reset", OpWrite, ScopeWrite, s.handleResetGroup)
	s.consoleRoutes()
}

// handle registers an API handler whose errors become JSON error responses.
// The caller must hold at least scope (checked before fn runs).
func (s *HTTPServer) handle(pattern string, op Op, scope Scope, fn func(http.ResponseWriter, *http.Request) error) {
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		if op == OpWrite {
			defer s.recoverWrite(w, r)
		}
		if err := s.cfg.Auth.Authorize(r.Context(), scope); err != nil {
			s.fail(w, r, op, err)
			return
		}
		if err := fn(w, r); err != nil {
			s.fail(w, r, op, err)
		}
	})
}

// recoverWrite answers a panic in a write handler: it may have come after
// the write was proposed, so the client is told the outcome is unknown
// (invariant 5), not "internal". A half-written answer aborts the
// connection (serveHTTP's recover does that with the re-panic).
func (s *HTTPServer) recoverWrite(w http.ResponseWriter, r *http.Request) {
	p := recover()
	if p == nil {
		return
	}
	if sw, ok := w.(*statusWriter); p == http.ErrAbortHandler || !ok || sw.wrote {
		panic(p)
	}
	s.log.Error("panic in REST handler", "method", r.Method, "path", r.URL.Path,
		"panic", fmt.Sprint(p), "stack", string(debug.Stack()))
	s.fail(w, r, OpWrite, AfterProposal(fmt.Errorf("panic: %v", p)))
}

// authorize checks the caller's scope and topics (nil = allowed; auth
// disabled allows everything).
func (s *HTTPServer) authorize(r *http.Request, scope Scope, topics ...string) error {
	return s.cfg.Auth.Authorize(r.Context(), scope, topics...)
}

// authenticate resolves the request's bearer token to its key. Only called
// with auth enabled.
func (s *HTTPServer) authenticate(r *http.Request) (*Principal, error) {
	h := r.Header.Get("Authorization")
	token, ok := BearerToken(h)
	if !ok && strings.TrimSpace(h) != "" {
		return nil, fmt.Errorf("%w: the Authorization header must be \"Bearer\" followed by an API key", ErrUnauthenticated)
	}
	return s.cfg.Auth.Authenticate(token)
}

// Handler returns the complete handler chain (routing, JSON 404/405,
// panic recovery, request metrics), e.g. for httptest.
func (s *HTTPServer) Handler() http.Handler { return s.handler }

// Start listens on cfg.Addr and serves in the background. Listen errors
// (such as the port being in use) are returned. ctx bounds only the listen
// call; the server runs until Shutdown.
func (s *HTTPServer) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := startState("HTTP server", s.started, s.closed, "shut down"); err != nil {
		return err
	}
	if lacksCertificate(s.srv.TLSConfig) {
		return errors.New("transport: TLSConfig has no certificate")
	}
	ln, err := listenTCP(ctx, "REST", s.cfg.Addr)
	if err != nil {
		return err
	}
	s.ln, s.started = ln, true
	s.served = make(chan struct{})
	s.startHistory()
	tlsOn := s.srv.TLSConfig != nil
	go func() {
		defer close(s.served)
		var err error
		if tlsOn {
			err = s.srv.ServeTLS(ln, "", "")
		} else {
			err = s.srv.Serve(ln)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("REST server stopped serving", "addr", ln.Addr().String(), "err", err)
		}
	}()
	s.log.Info("REST API listening", "addr", ln.Addr().String(), "tls", tlsOn)
	return nil
}

// Addr returns the bound address once started (useful with port 0), else
// the configured one.
func (s *HTTPServer) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return s.ln.Addr().String()
	}
	return s.cfg.Addr
}

// Shutdown stops accepting connections, ends long-poll consumes (they get
// 503 unavailable), and waits for in-flight requests until ctx is done, after
// which remaining connections are closed and ctx's error is returned. It is
// idempotent: later calls wait for the first and return its result. A server
// that was never started just becomes unstartable.
func (s *HTTPServer) Shutdown(ctx context.Context) error {
	s.shutOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		started := s.started
		s.mu.Unlock()
		s.stop()
		if !started {
			return
		}
		err := s.srv.Shutdown(ctx)
		if err != nil {
			_ = s.srv.Close()
		}
		<-s.served
		s.waitHistory(ctx)
		s.shutErr = err
		s.log.Info("REST API stopped")
	})
	return s.shutErr
}

func (s *HTTPServer) connState(_ net.Conn, st http.ConnState) {
	switch st {
	case http.StateNew:
		s.cfg.Connections.Inc()
	case http.StateClosed, http.StateHijacked:
		s.cfg.Connections.Dec()
	}
}

// serveHTTP is the outermost handler: it picks the route label, answers
// unknown routes and wrong methods with JSON, recovers panics and records
// the request metrics.
func (s *HTTPServer) serveHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w}
	h, pattern := s.mux.Handler(r)
	route := pattern
	if route == "" {
		route = "unmatched" // bounded label for anything we do not serve
	}
	defer func() {
		p := recover()
		if p != nil && p != http.ErrAbortHandler {
			s.log.Error("panic in REST handler", "method", r.Method, "path", r.URL.Path, "route", route,
				"panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			if !sw.wrote {
				s.writeError(sw, &apiError{status: http.StatusInternalServerError, code: CodeInternal,
					msg: "internal error: the request handler failed; see the agent log"})
				p = nil
			} else {
				// The response is half written: abort the connection so the
				// client cannot mistake it for a complete one.
				p = http.ErrAbortHandler
			}
		}
		code := sw.code
		if !sw.wrote {
			code = http.StatusOK
		}
		s.metrics.Requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
		s.metrics.Duration.WithLabelValues(route).Observe(time.Since(start).Seconds())
		if p != nil {
			panic(p)
		}
	}()
	if pattern == "" {
		s.unmatched(sw, r, h)
		return
	}
	if s.cfg.Auth.Enabled() && !s.open[pattern] {
		p, err := s.authenticate(r)
		if err != nil {
			s.fail(sw, r, OpRead, err)
			return
		}
		r = r.WithContext(WithPrincipal(r.Context(), p))
	}
	if err := checkQuery(pattern, r.URL.RawQuery); err != nil {
		s.fail(sw, r, OpRead, err)
		return
	}
	s.mux.ServeHTTP(sw, r)
}

// unmatched answers a request no pattern serves. The mux's own answer (404,
// 405 with Allow, or a path-cleaning redirect) is captured and, for 404 and
// 405, replaced by a JSON error.
func (s *HTTPServer) unmatched(w http.ResponseWriter, r *http.Request, h http.Handler) {
	rec := &captureWriter{header: http.Header{}}
	h.ServeHTTP(rec, r)
	switch rec.code {
	case http.StatusMethodNotAllowed:
		allow := rec.header.Get("Allow")
		w.Header().Set("Allow", allow)
		s.writeError(w, &apiError{status: http.StatusMethodNotAllowed, code: CodeMethodNotAllowed,
			msg: fmt.Sprintf("method %s is not allowed on %s (allowed: %s)", r.Method, clip(r.URL.Path), allow)})
	case http.StatusNotFound, 0:
		s.writeError(w, &apiError{status: http.StatusNotFound, code: CodeNotFound,
			msg: fmt.Sprintf("no such endpoint: %s %s (see REST.md for the API)", r.Method, clip(r.URL.Path))})
	default:
		for k, v := range rec.header {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.code)
		_, _ = w.Write(rec.body)
	}
}

// statusWriter records the status code written through it.
type statusWriter struct {
	http.ResponseWriter
	code  int
	wrote bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote && code >= 200 {
		w.code, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.code, w.wrote = http.StatusOK, true
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush forwards to the underlying writer when it can flush.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		if !w.wrote {
			w.code, w.wrote = http.StatusOK, true
		}
		f.Flush()
	}
}

// captureWriter buffers a response in memory (used for the mux's small
// fallback answers only).
type captureWriter struct {
	header http.Header
	code   int
	body   []byte
}

func (c *captureWriter) Header() http.Header { return c.header }

func (c *captureWriter) WriteHeader(code int) {
	if c.code == 0 {
		c.code = code
	}
}

func (c *captureWriter) Write(b []byte) (int, error) {
	if c.code == 0 {
		c.code = http.StatusOK
	}
	c.body = append(c.body, b...)
	return len(b), nil
}
