package kafka

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamhouse/streamhouse/transport"
)

// Config wires a Server to the agent.
type Config struct {
	// NodeID is this agent's node ID (its broker ID is looked up in Cluster).
	NodeID  string
	Cluster Cluster
	Topics  Topics
	Fetcher Fetcher
	// Admin creates, deletes and alters topics (partition.Admin).
	Admin TopicAdmin

	// Auth checks SASL/PLAIN passwords against the API keys and authorizes
	// every request by the key's scope and topics; nil = no API keys:
	// SASL accepts anything and everything is allowed.
	Auth *transport.Authenticator
	// Quotas are the per-key quotas (KEY_*_PER_SEC); nil: none.
	Quotas *transport.Quotas
	// AutoCreateTopics lets Metadata create the unknown topics it is asked
	// for (KAFKA_AUTO_CREATE_TOPICS) with DefaultPartitions partitions
	// (KAFKA_DEFAULT_PARTITIONS, default 1); the key must be allowed to
	// create them.
	AutoCreateTopics  bool
	DefaultPartitions int32
	// MaxRecordBytes is the agent's MAX_RECORD_BYTES: what
	// max.message.bytes is when a topic does not set it.
	MaxRecordBytes int64
	// Producer, Idempotent and Offsets serve Produce, InitProducerId and
	// ListOffsets; nil: the API is not advertised.
	Producer   Producer
	Idempotent IdempotentProducer
	Offsets    Offsets
	// Coordinator and Groups serve the consumer-group APIs (membership,
	// and committed offsets); either nil: they are not advertised.
	Coordinator transport.GroupCoordinator
	Groups      GroupOffsets

	// TLSConfig, when set, makes the listener TLS-only.
	TLSConfig *tls.Config
	// MaxRequestBytes bounds one request frame; a larger size prefix closes
	// the connection before anything is allocated. Default 100 MiB
	// (Kafka's socket.request.max.bytes).
	MaxRequestBytes int32
	// PreAuthTimeout is how long a connection may stay unauthenticated
	// while API keys are on (default 10 s).
	PreAuthTimeout time.Duration
	// MaxConnections bounds open connections; further ones are closed at
	// once (default 10,000).
	MaxConnections int
	// IdleTimeout closes a connection that sends nothing for this long.
	// Default 10 minutes (Kafka's connections.max.idle.ms).
	IdleTimeout time.Duration
	// Connections counts open connections (streamhouse_active_connections);
	// nil: not counted.
	Connections prometheus.Gauge
	Logger      *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.MaxRequestBytes <= 0 {
		c.MaxRequestBytes = 100 << 20
	}
	if c.PreAuthTimeout <= 0 {
		c.PreAuthTimeout = 10 * time.Second
	}
	if c.MaxConnections <= 0 {
		c.MaxConnections = 10000
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 10 * time.Minute
	}
	if c.DefaultPartitions <= 0 {
		c.DefaultPartitions = 1
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Server is the Kafka listener of one agent.
type Server struct {
	cfg      Config
	handlers map[int16]handler
	wraps    seqWraps // Kafka sequence wraps per producer session (initproducer.go)

	mu     sync.Mutex
	lns    []net.Listener
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
	ctx    context.Context
	cancel context.CancelFunc
}

// NewServer returns a Server; Serve starts it.
func NewServer(cfg Config) *Server {
	s := &Server{cfg: cfg.withDefaults(), conns: map[net.Conn]struct{}{}}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.handlers = s.dispatchTable()
	return s
}

// ErrServerClosed is returned by Serve after Close.
var ErrServerClosed = errors.New("kafka: server closed")

// Serve accepts connections on ln until Close; it always returns a non-nil
// error (ErrServerClosed after Close).
func (s *Server) Serve(ln net.Listener) error {
	if s.cfg.TLSConfig != nil {
		ln = tls.NewListener(ln, s.cfg.TLSConfig)
	}
	if !s.track(ln) {
		_ = ln.Close()
		return ErrServerClosed
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.isClosed() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		switch s.trackConn(c) {
		case connClosed:
			_ = c.Close()
			return ErrServerClosed
		case connRefused:
			_ = c.Close()
			continue
		}
		go s.serveConn(c)
	}
}

func (s *Server) track(ln net.Listener) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.lns = append(s.lns, ln)
	return true
}

// What trackConn decided about a new connection.
const (
	connServe = iota
	connRefused
	connClosed
)

func (s *Server) trackConn(c net.Conn) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return connClosed
	}
	if len(s.conns) >= s.cfg.MaxConnections {
		s.cfg.Logger.Warn("kafka connection refused: MaxConnections reached", "remote", c.RemoteAddr().String(), "max", s.cfg.MaxConnections)
		return connRefused
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return connServe
}

func (s *Server) untrackConn(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.wg.Done()
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Close stops accepting, ends long-polls, closes every connection and waits
// for their goroutines to finish.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.wg.Wait()
		return nil
	}
	s.closed = true
	for _, ln := range s.lns {
		_ = ln.Close()
	}
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	return nil
}
