package transport

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// Peer traffic: Raft and peer RPC share one TCP port (PEER_PORT). Every
// connection opens with a handshake (peer_handshake.go) that names the
// protocol and the dialer's advertised address; the PeerMux hands Raft
// connections to RaftLayer().Accept and RPC connections to an HTTP/1.1
// server. PEER.md describes the wire format and the fault hooks.

// DefaultPeerDialTimeout is PeerConfig.DialTimeout's default.
const DefaultPeerDialTimeout = 5 * time.Second

// PeerRPCPathPrefix prefixes every peer RPC route (for example
// PeerProducePath). The mux does not route by path: the handler given to
// HandleRPC does.
const PeerRPCPathPrefix = "/peer/v1/"

var (
	// ErrPeerBlocked is wrapped by dials and I/O refused by fault injection
	// (see Faults).
	ErrPeerBlocked = errors.New("transport: peer traffic blocked by fault injection")
	// ErrPeerMuxClosed is wrapped by dials on a PeerMux that is closed or
	// was never started.
	ErrPeerMuxClosed = errors.New("transport: peer mux not running")
	// ErrForeignCluster is wrapped by a Raft dial that the agent dialed
	// refused because it belongs to another cluster (SetRaftCluster).
	ErrForeignCluster = errors.New("transport: the agent dialed belongs to another raft cluster")
)

// RaftCluster names the Raft group of this agent's Raft connections
// (PEER.md, "Raft connections name their cluster").
type RaftCluster struct {
	// ID is this agent's cluster ID; "" (not admitted yet) names none and
	// accepts any.
	ID func() string
	// Legacy reports whether the agent at a peer address is known to
	// speak only the Raft handshake without a cluster ID (an older
	// release); nil: none is.
	Legacy func(addr string) bool
}

// PeerConfig configures a PeerMux.
type PeerConfig struct {
	// BindAddr is the host:port to listen on ("127.0.0.1:0" in tests).
	BindAddr string
	// AdvertiseAddr is the host:port peers dial, and the identity this
	// agent presents in every handshake; "" means the bound address (which
	// must then have a specific host, not 0.0.0.0 or ::).
	AdvertiseAddr string
	// Faults injects network faults for tests; nil = none.
	Faults *Faults
	// TLS, when non-nil, wraps every peer connection in TLS (before the
	// handshake, so the advertised address travels inside the channel).
	// The same config is used on both sides: it needs a certificate for
	// the server side, and RootCAs (or the system pool) to verify peers;
	// set ClientAuth/ClientCAs for mTLS. An empty ServerName is filled with
	// the host of the address being dialed.
	TLS *tls.Config
	// ClusterSecret, when set (at least MinClusterSecretLen bytes), makes
	// every connection prove knowledge of it in both directions before any
	// Raft or RPC byte flows (an HMAC challenge-response in the handshake;
	// the secret is never sent). Agents without it, or with another one,
	// can neither dial this mux nor be dialed by it. Every agent of a
	// cluster needs the same secret. The proofs name the address dialed:
	// peers must dial this mux at its advertised address exactly (Raft
	// server addresses and peer RPC URLs are), and a handshake relayed
	// here from a dial meant for another address is refused (peer_auth.go).
	ClusterSecret []byte
	// Logger receives the mux's logs (component=peer); nil discards.
	Logger *slog.Logger
	// DialTimeout bounds outgoing RPC dials (Raft dials use the timeout
	// Raft passes) and how long an inbound connection may take to present
	// its handshake. 0 = DefaultPeerDialTimeout.
	DialTimeout time.Duration
}

// PeerMux serves Raft and peer RPC on one TCP port and dials peers with the
// matching handshake. Create it with NewPeerMux; it does nothing until
// Start. All methods are safe for concurrent use.
//
// Lock order: PeerMux.mu and Faults.mu are never held together; connections
// are closed only after either lock is released.
type PeerMux struct {
	cfg    PeerConfig
	log    *slog.Logger
	faults *Faults

	ctx    context.Context // canceled by Close
	cancel context.CancelFunc

	auth     *peerAuth // nil without a cluster secret; set by Start
	raft     *raftLayer
	cluster  atomic.Pointer[RaftCluster] // nil: Raft dials name no cluster
	rpcLn    *connQueue
	rpcSrv   *http.Server
	handler  atomic.Pointer[http.Handler]
	clientTr *http.Transport
	client   *http.Client

	mu      sync.Mutex
	ln      net.Listener
	addr    string // advertised address, set by Start
	started bool
	closed  bool
	conns   map[*peerConn]struct{} // every live connection, both directions

	wg        sync.WaitGroup // accept loop and per-connection handshakes
	served    chan struct{}  // closed when the RPC server's Serve returns
	closeOnce sync.Once
	closeErr  error

	lastRejectLog atomic.Int64 // unix nanos of the last WARN about a bad handshake
}

// NewPeerMux builds a PeerMux. It starts nothing.
func NewPeerMux(cfg PeerConfig) *PeerMux {
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultPeerDialTimeout
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m := &PeerMux{
		cfg:    cfg,
		log:    logger.With("component", "peer"),
		faults: cfg.Faults,
		conns:  map[*peerConn]struct{}{},
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	m.raft = &raftLayer{m: m, q: newConnQueue(m)}
	m.rpcLn = newConnQueue(m)
	m.rpcSrv = &http.Server{
		Handler:           http.HandlerFunc(m.serveRPC),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(m.log.Handler(), slog.LevelWarn),
		ConnContext:       peerConnContext,
		// HTTP/1.1 only, even if a TLS config offers h2 via ALPN.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
	}
	m.clientTr = &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return m.dial(ctx, peerHello{tag: peerTagRPC}, addr, m.cfg.DialTimeout)
		},
		MaxIdleConnsPerHost: 32,
		IdleConnTimeout:     90 * time.Second,
		TLSNextProto:        map[string]func(string, *tls.Conn) http.RoundTripper{},
	}
	m.client = &http.Client{Transport: m.clientTr}
	return m
}

// Start listens on BindAddr (listen errors are returned) and accepts
// connections in the background until Close. ctx bounds only the listen
// call.
func (m *PeerMux) Start(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := startState("peer mux", m.started, m.closed, "closed"); err != nil {
		return err
	}
	if m.cfg.BindAddr == "" {
		return errors.New("transport: peer mux needs a BindAddr")
	}
	if lacksCertificate(m.cfg.TLS) {
		return errors.New("transport: peer TLS config has no certificate (every agent serves the peer port)")
	}
	if n := len(m.cfg.ClusterSecret); n > 0 && n < MinClusterSecretLen {
		return fmt.Errorf("transport: the cluster secret is %d bytes; use at least %d (e.g. openssl rand -base64 32)", n, MinClusterSecretLen)
	}
	ln, err := listenTCP(ctx, "peer", m.cfg.BindAddr)
	if err != nil {
		return err
	}
	addr := m.cfg.AdvertiseAddr
	if addr == "" {
		addr = ln.Addr().String()
		if ta, ok := ln.Addr().(*net.TCPAddr); ok && ta.IP.IsUnspecified() {
			_ = ln.Close()
			return fmt.Errorf("transport: peer mux bound to %s needs an AdvertiseAddr peers can dial", addr)
		}
	}
	if _, _, err := net.SplitHostPort(addr); err != nil || len(addr) > maxPeerAddrLen {
		_ = ln.Close()
		return fmt.Errorf("transport: bad peer advertise address %q", addr)
	}
	if len(m.cfg.ClusterSecret) > 0 {
		m.auth = &peerAuth{secret: m.cfg.ClusterSecret, self: addr, rand: rand.Reader}
	}
	m.ln, m.addr, m.started = ln, addr, true
	m.served = make(chan struct{})
	go func() {
		defer close(m.served)
		if err := m.rpcSrv.Serve(m.rpcLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.log.Error("peer RPC server stopped", "err", err)
		}
	}()
	m.wg.Add(1)
	go m.acceptLoop(ln)
	m.log.Info("peer port listening", "bind", ln.Addr().String(), "advertise", addr, "tls", m.cfg.TLS != nil,
		"cluster_secret", len(m.cfg.ClusterSecret) > 0)
	return nil
}

// Addr returns the advertised host:port: AdvertiseAddr if set, else the
// bound address once started ("" before Start when neither is known).
func (m *PeerMux) Addr() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.addr != "" {
		return m.addr
	}
	return m.cfg.AdvertiseAddr
}

// SetRaftCluster makes Raft dials name this agent's cluster and Raft
// accepts refuse another one (PEER.md).
func (m *PeerMux) SetRaftCluster(c RaftCluster) { m.cluster.Store(&c) }

// RaftLayer returns the raft.StreamLayer of this mux (always the same one).
// Accept yields only connections that arrived with the Raft tag; Dial
// connects with the Raft tag. Its Addr is the advertised address, so build
// the raft.NetworkTransport after Start. Closing the layer (which
// NetworkTransport.Close does) stops Raft traffic only; the mux and its RPC
// side keep running until PeerMux.Close. A closed layer cannot be reopened.
func (m *PeerMux) RaftLayer() raft.StreamLayer { return m.raft }

// HandleRPC installs the handler for peer RPC requests (it may be called
// before or after Start, and again to replace the handler; nil removes it).
// Without a handler, peer RPC requests get 503. Handlers can learn the caller's
// advertised address with PeerCaller.
func (m *PeerMux) HandleRPC(h http.Handler) {
	if h == nil {
		m.handler.Store(nil)
		return
	}
	m.handler.Store(&h)
}

// RPCClient returns the mux's HTTP client (always the same one): it dials
// peers through the mux with the RPC tag, so URLs look like
// http://<peer advertised host:port>/peer/v1/... (plain "http" even when
// PeerConfig.TLS is set: TLS is applied below HTTP). It has no overall
// timeout; bound requests with their context. Dial failures, including
// refusals by fault injection, are *net.OpError with Op "dial": the request
// was not sent.
func (m *PeerMux) RPCClient() *http.Client { return m.client }

// Close stops the listener, the Raft layer and the RPC server, closes every
// live peer connection (inbound and outbound) and waits for the mux's
// goroutines. It is idempotent; later calls return the first result.
func (m *PeerMux) Close() error {
	m.closeOnce.Do(func() {
		m.mu.Lock()
		m.closed = true
		ln, started := m.ln, m.started
		conns := make([]*peerConn, 0, len(m.conns))
		for c := range m.conns {
			conns = append(conns, c)
		}
		m.conns = nil
		m.mu.Unlock()

		m.cancel()
		var errs []error
		if ln != nil {
			if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
				errs = append(errs, err)
			}
		}
		_ = m.raft.Close()
		if started {
			if err := m.rpcSrv.Close(); err != nil {
				errs = append(errs, err)
			}
			<-m.served
		}
		_ = m.rpcLn.Close()
		for _, c := range conns {
			_ = c.Close()
		}
		m.clientTr.CloseIdleConnections()
		m.wg.Wait()
		m.closeErr = errors.Join(errs...)
		if started {
			m.log.Info("peer port closed")
		}
	})
	return m.closeErr
}

// localAddr returns the advertised address of a running mux.
func (m *PeerMux) localAddr() (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.started || m.closed {
		return "", ErrPeerMuxClosed
	}
	return m.addr, nil
}

// track registers a live connection; false if the mux is closed.
func (m *PeerMux) track(c *peerConn) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return false
	}
	m.conns[c] = struct{}{}
	return true
}

func (m *PeerMux) untrack(c *peerConn) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.conns, c)
}

// acceptLoop accepts raw connections and reads each one's handshake in its
// own goroutine.
func (m *PeerMux) acceptLoop(ln net.Listener) {
	defer m.wg.Done()
	var delay time.Duration
	for {
		raw, err := ln.Accept()
		if err != nil {
			if m.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			m.log.Warn("peer accept failed; retrying", "err", err, "backoff", delay)
			t := time.NewTimer(delay)
			select {
			case <-m.ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			continue
		}
		delay = 0
		pc := newPeerConn(raw, m, m.addr, "")
		if !m.track(pc) {
			_ = raw.Close()
			return
		}
		m.wg.Add(1)
		go m.serveConn(pc)
	}
}

// serveConn reads the handshake of an inbound connection (under a
// deadline), enforces faults and hands the connection to the Raft layer or
// the RPC server. Bad handshakes close the connection.
func (m *PeerMux) serveConn(pc *peerConn) {
	defer m.wg.Done()
	var conn net.Conn = pc
	_ = pc.SetDeadline(time.Now().Add(m.cfg.DialTimeout))
	if m.cfg.TLS != nil {
		tc := tls.Server(pc, m.cfg.TLS)
		if err := tc.HandshakeContext(m.ctx); err != nil {
			m.reject(pc, "TLS handshake failed", err)
			return
		}
		conn = tc
	}
	hello, err := readPeerHandshake(conn)
	if err != nil {
		m.reject(pc, "bad peer handshake", err)
		return
	}
	if err := m.authenticateInbound(conn, hello); err != nil {
		m.reject(pc, "peer refused", fmt.Errorf("claimed address %s: %w", hello.from, err))
		return
	}
	if err := readPeerCluster(conn, &hello); err != nil {
		m.reject(pc, "bad peer handshake", err)
		return
	}
	pc.remote = hello.from // set before attach publishes pc to the Faults registry
	if err := m.faults.attach(pc, hello.from, pc.local); err != nil {
		m.log.Debug("refused inbound peer connection", "from", hello.from, "err", err)
		_ = pc.Close()
		return
	}
	local := m.clusterID()
	if hello.tag == peerTagRaftCluster {
		if foreignRaftCluster(hello.cluster, local) {
			_, _ = conn.Write([]byte{peerClusterOther})
			m.reject(pc, "raft connection refused", fmt.Errorf("%s belongs to raft cluster %s, this agent to %s (two clusters share node IDs or addresses)", hello.from, hello.cluster, local))
			return
		}
		if _, err := conn.Write([]byte{peerClusterOK}); err != nil {
			_ = pc.Close()
			return
		}
	}
	_ = pc.SetDeadline(time.Time{})
	switch hello.tag {
	case peerTagRaftCluster:
		// Valid while this agent's cluster is the one it was accepted
		// under, or one the dialer's is not foreign to.
		m.raft.q.deliver(&clusterConn{Conn: conn, ok: func() bool {
			cur := m.clusterID()
			return cur == local || !foreignRaftCluster(hello.cluster, cur)
		}})
	case peerTagRaft:
		// An older dialer names no cluster: valid while this agent's is
		// the one it was accepted under.
		m.raft.q.deliver(&clusterConn{Conn: conn, ok: func() bool { return m.clusterID() == local }})
	case peerTagRPC:
		m.rpcLn.deliver(conn)
	}
}

// authenticateInbound enforces the cluster secret on an inbound
// handshake: both sides have one or neither has, the dialer speaks the
// current version, and the challenge-response succeeds.
func (m *PeerMux) authenticateInbound(conn net.Conn, h peerHello) error {
	switch {
	case m.auth != nil && h.auth == peerAuthNone:
		return fmt.Errorf("%w: the dialer did not authenticate (set the same CLUSTER_SECRET on every agent)", ErrPeerAuth)
	case m.auth == nil && h.auth != peerAuthNone:
		return fmt.Errorf("%w: the dialer authenticates with a cluster secret, this agent has none (set the same CLUSTER_SECRET on every agent)", ErrPeerAuth)
	case h.auth == peerAuthLegacy:
		return fmt.Errorf("%w: the dialer speaks the version 1 cluster-secret handshake of an older StreamHouse; upgrade every agent (no mixed-version cluster with CLUSTER_SECRET)", ErrPeerAuth)
	case m.auth == nil:
		return nil
	}
	binding, err := channelBinding(conn)
	if err != nil {
		return err
	}
	return m.auth.accept(conn, h, binding)
}

// foreignRaftCluster reports whether a Raft connection that names cluster
// theirs belongs to another cluster than ours ("" on either side: none
// named, not foreign).
func foreignRaftCluster(theirs, ours string) bool {
	return theirs != "" && ours != "" && theirs != ours
}

// errRaftClusterChanged fails the I/O of a Raft connection whose cluster
// check no longer holds (clusterConn).
var errRaftClusterChanged = fmt.Errorf("%w: this agent's cluster changed since the connection was opened", ErrForeignCluster)

// clusterConn is a Raft connection opened with a cluster ID (tag 0x03).
// The check made at the handshake must hold for the connection's whole
// life: an agent that had no cluster ID then (not admitted yet) may
// bootstrap or be admitted into another group while the connection is
// pooled. So every Read and Write first asks ok and fails the connection
// once it no longer holds — on the acceptor, this agent's cluster is the
// one it accepted the connection under, or one the dialer's is not
// foreign to; on the dialer, this agent still has the cluster it named —
// and the dialer's next dial faces the handshake's check again.
type clusterConn struct {
	net.Conn
	ok func() bool
}

func (c *clusterConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && !c.ok() {
		_ = c.Conn.Close()
		return 0, errRaftClusterChanged
	}
	return n, err
}

func (c *clusterConn) Write(p []byte) (int, error) {
	if !c.ok() {
		_ = c.Conn.Close()
		return 0, errRaftClusterChanged
	}
	return c.Conn.Write(p)
}

// clusterID is this agent's cluster ID for Raft connections ("": none).
func (m *PeerMux) clusterID() string {
	if c := m.cluster.Load(); c != nil && c.ID != nil {
		return c.ID()
	}
	return ""
}

// raftHello is the handshake of a Raft dial to target: with the cluster ID
// unless the agent there is known to speak only the older handshake.
func (m *PeerMux) raftHello(target string) peerHello {
	c := m.cluster.Load()
	if c == nil || (c.Legacy != nil && c.Legacy(target)) {
		return peerHello{tag: peerTagRaft}
	}
	return peerHello{tag: peerTagRaftCluster, cluster: m.clusterID()}
}

// reject closes a connection whose handshake failed. It logs at WARN at
// most every 10 s (misconfigured peers or scanners could flood the log),
// else at DEBUG.
func (m *PeerMux) reject(pc *peerConn, msg string, err error) {
	_ = pc.Close()
	if m.ctx.Err() != nil {
		return
	}
	level := slog.LevelDebug
	now := time.Now().UnixNano()
	if last := m.lastRejectLog.Load(); now-last > int64(10*time.Second) && m.lastRejectLog.CompareAndSwap(last, now) {
		level = slog.LevelWarn
	}
	m.log.Log(m.ctx, level, msg+"; connection closed", "remote", pc.RemoteAddr().String(), "err", err)
}

// dial connects to a peer's advertised address, enforcing faults, and
// writes the handshake. Every failure is a *net.OpError with Op "dial"
// (nothing was sent to the peer beyond the handshake).
func (m *PeerMux) dial(ctx context.Context, hello peerHello, target string, timeout time.Duration) (net.Conn, error) {
	local, err := m.localAddr()
	if err != nil {
		return nil, dialError(local, target, err)
	}
	if err := m.faults.check(local, target); err != nil {
		return nil, dialError(local, target, err)
	}
	if timeout <= 0 {
		timeout = m.cfg.DialTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	stop := context.AfterFunc(m.ctx, cancel) // Close aborts dials in flight
	defer stop()
	// A blackholed link answers no SYN: the dial hangs until it times out.
	if err := m.faults.waitHeld(ctx, local, target); err != nil {
		switch {
		case m.ctx.Err() != nil:
			err = ErrPeerMuxClosed
		case errors.Is(err, context.DeadlineExceeded):
			err = os.ErrDeadlineExceeded
		}
		return nil, dialError(local, target, err)
	}

	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", target)
	if err != nil {
		return nil, err // already a *net.OpError{Op: "dial"}
	}
	pc := newPeerConn(raw, m, local, target)
	if !m.track(pc) {
		_ = raw.Close()
		return nil, dialError(local, target, ErrPeerMuxClosed)
	}
	if err := m.faults.attach(pc, local, target); err != nil {
		_ = pc.Close()
		return nil, dialError(local, target, err)
	}
	var conn net.Conn = pc
	if dl, ok := ctx.Deadline(); ok {
		_ = pc.SetDeadline(dl)
	}
	if m.cfg.TLS != nil {
		cfg := m.cfg.TLS.Clone()
		if cfg.ServerName == "" {
			if host, _, err := net.SplitHostPort(target); err == nil {
				cfg.ServerName = host
			}
		}
		tc := tls.Client(pc, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = pc.Close()
			return nil, dialError(local, target, err)
		}
		conn = tc
	}
	if err := m.sendHandshake(conn, hello, local, target); err != nil {
		_ = pc.Close()
		return nil, dialError(local, target, err)
	}
	_ = pc.SetDeadline(time.Time{})
	if hello.tag == peerTagRaftCluster {
		named := hello.cluster
		return &clusterConn{Conn: conn, ok: func() bool { return m.clusterID() == named }}, nil
	}
	return conn, nil
}

// sendHandshake writes the handshake of a new outbound connection and,
// with a cluster secret, runs the dialer's side of the challenge-response
// for target, the address exactly as it was dialed; then, for a Raft
// connection naming its cluster, sends the cluster ID and reads the
// acceptor's answer.
func (m *PeerMux) sendHandshake(conn net.Conn, h peerHello, local, target string) error {
	h.from = local
	if m.auth == nil {
		if _, err := conn.Write(appendPeerCluster(appendPeerHandshake(nil, h), h)); err != nil {
			return err
		}
	} else {
		binding, err := channelBinding(conn)
		if err != nil {
			return err
		}
		if err := m.auth.dial(conn, h.tag, target, binding); err != nil {
			return err
		}
		if b := appendPeerCluster(nil, h); len(b) > 0 {
			if _, err := conn.Write(b); err != nil {
				return err
			}
		}
	}
	if h.tag != peerTagRaftCluster {
		return nil
	}
	var answer [1]byte
	if _, err := io.ReadFull(conn, answer[:]); err != nil {
		return fmt.Errorf("transport: %s closed the connection instead of answering the raft handshake (an agent of an older release, or it refused this one): %w", target, err)
	}
	if answer[0] != peerClusterOK {
		return fmt.Errorf("%w: %s refused this agent's cluster %q", ErrForeignCluster, target, h.cluster)
	}
	return nil
}

func dialError(local, target string, err error) error {
	op := &net.OpError{Op: "dial", Net: "tcp", Addr: peerAddr(target), Err: err}
	if local != "" {
		op.Source = peerAddr(local)
	}
	return op
}

// serveRPC is the RPC server's handler: it applies DropRPCResponses and
// calls the installed handler.
func (m *PeerMux) serveRPC(w http.ResponseWriter, r *http.Request) {
	hp := m.handler.Load()
	if hp == nil {
		http.Error(w, "peer RPC handler not installed", http.StatusServiceUnavailable)
		return
	}
	h := *hp
	caller, _ := PeerCaller(r.Context())
	if !m.faults.takeDrop(caller) {
		h.ServeHTTP(w, r)
		return
	}
	// Fault injection: process the request, then lose the response by
	// closing the connection before anything was written.
	h.ServeHTTP(&discardResponseWriter{header: http.Header{}}, r)
	m.log.Debug("fault injection: dropped peer RPC response", "caller", caller, "path", r.URL.Path)
	if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
		_ = conn.Close()
		return
	}
	panic(http.ErrAbortHandler) // the server closes the connection unanswered
}

// discardResponseWriter swallows a response (DropRPCResponses). It
// deliberately has no Unwrap, so a handler cannot flush or hijack the real
// connection through it.
type discardResponseWriter struct{ header http.Header }

func (d *discardResponseWriter) Header() http.Header         { return d.header }
func (d *discardResponseWriter) WriteHeader(int)             {}
func (d *discardResponseWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardResponseWriter) Flush()                      {}

type peerCallerKey struct{}

// PeerCaller returns the advertised address the calling agent presented in
// its handshake, for requests served through PeerMux.HandleRPC. It is a
// claim: with PeerConfig.ClusterSecret or mutual TLS it comes from an agent
// that proved it belongs to the cluster, but nothing ties it to one
// particular agent.
func PeerCaller(ctx context.Context) (string, bool) {
	s, ok := ctx.Value(peerCallerKey{}).(string)
	return s, ok && s != ""
}

// peerConnContext stores the caller's advertised address in the context of
// every request on an RPC connection.
func peerConnContext(ctx context.Context, c net.Conn) context.Context {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if pc, ok := c.(*peerConn); ok {
		return context.WithValue(ctx, peerCallerKey{}, pc.remote)
	}
	return ctx
}

// peerAddr is an advertised host:port as a net.Addr.
type peerAddr string

func (a peerAddr) Network() string { return "tcp" }
func (a peerAddr) String() string  { return string(a) }

// raftLayer is the raft.StreamLayer of a PeerMux.
type raftLayer struct {
	m *PeerMux
	q *connQueue
}

// Accept returns the next inbound Raft connection, or an error wrapping
// net.ErrClosed once the layer or the mux is closed.
func (l *raftLayer) Accept() (net.Conn, error) { return l.q.Accept() }

// Close stops Raft traffic on this mux (inbound Raft connections are
// refused from now on); it does not close the mux. Idempotent.
func (l *raftLayer) Close() error { return l.q.Close() }

// Addr is the mux's advertised address.
func (l *raftLayer) Addr() net.Addr { return peerAddr(l.m.Addr()) }

// Dial connects to a peer's Raft layer.
func (l *raftLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return l.m.dial(context.Background(), l.m.raftHello(string(address)), string(address), timeout)
}

// connQueue is a net.Listener fed by the mux: serveConn delivers
// connections that passed the handshake, Accept hands them out.
type connQueue struct {
	m     *PeerMux
	ch    chan net.Conn
	done  chan struct{}
	close sync.Once
}

func newConnQueue(m *PeerMux) *connQueue {
	return &connQueue{m: m, ch: make(chan net.Conn), done: make(chan struct{})}
}

// deliver blocks until the connection is accepted, or closes it when the
// queue or the mux closes first.
func (q *connQueue) deliver(c net.Conn) {
	select {
	case q.ch <- c:
	case <-q.done:
		_ = c.Close()
	case <-q.m.ctx.Done():
		_ = c.Close()
	}
}

func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case <-q.done:
		return nil, fmt.Errorf("transport: peer listener closed: %w", net.ErrClosed)
	case c := <-q.ch:
		select {
		case <-q.done: // closed while we were receiving: do not leak c
			_ = c.Close()
			return nil, fmt.Errorf("transport: peer listener closed: %w", net.ErrClosed)
		default:
		}
		return c, nil
	}
}

func (q *connQueue) Close() error {
	q.close.Do(func() { close(q.done) })
	return nil
}

func (q *connQueue) Addr() net.Addr { return peerAddr(q.m.Addr()) }
