package transport

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"go.uber.org/goleak"

	"github.com/streamhouse/streamhouse/transport/transporttest"
)

// peerWait is the deadline for anything a peer test polls for.
const peerWait = 10 * time.Second

// startPeerMux starts a PeerMux on 127.0.0.1:0 and closes it at cleanup.
func startPeerMux(t *testing.T, f *Faults, mod ...func(*PeerConfig)) *PeerMux {
	t.Helper()
	cfg := PeerConfig{BindAddr: "127.0.0.1:0", Faults: f}
	for _, fn := range mod {
		fn(&cfg)
	}
	m := NewPeerMux(cfg)
	if err := m.Start(context.Background()); err != nil {
		t.Fatalf("start peer mux: %v", err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("close peer mux %s: %v", m.Addr(), err)
		}
	})
	return m
}

// peerNode is a started PeerMux whose Raft layer echoes every byte back and
// whose RPC handler serves GET /peer/v1/whoami (the caller's address) and
// POST /peer/v1/echo (the body, counted in rpcCalls).
type peerNode struct {
	m        *PeerMux
	received atomic.Int64 // bytes the Raft echo read
	rpcCalls atomic.Int64 // POST /peer/v1/echo handled (whether or not answered)
}

func (n *peerNode) addr() string { return n.m.Addr() }

func startPeerNode(t *testing.T, f *Faults, mod ...func(*PeerConfig)) *peerNode {
	t.Helper()
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait) // runs after the mux's Close (cleanups run last-in first-out)
	n := &peerNode{m: startPeerMux(t, f, mod...)}
	n.m.HandleRPC(n.rpcHandler())
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := n.m.RaftLayer().Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				buf := make([]byte, 4096)
				for {
					k, err := c.Read(buf)
					if k > 0 {
						n.received.Add(int64(k))
						if _, werr := c.Write(buf[:k]); werr != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return n
}

func (n *peerNode) rpcHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /peer/v1/whoami", func(w http.ResponseWriter, r *http.Request) {
		caller, ok := PeerCaller(r.Context())
		if !ok {
			http.Error(w, "no caller", http.StatusInternalServerError)
			return
		}
		_, _ = io.WriteString(w, caller)
	})
	mux.HandleFunc("POST /peer/v1/echo", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		n.rpcCalls.Add(1)
		_, _ = w.Write(body)
	})
	return mux
}

// raftEcho dials to's Raft layer from m, sends msg and expects it back.
func raftEcho(m *PeerMux, to, msg string) error {
	c, err := m.RaftLayer().Dial(raft.ServerAddress(to), peerWait)
	if err != nil {
		return err
	}
	defer c.Close()
	return echoOn(c, msg)
}

func echoOn(c net.Conn, msg string) error {
	_ = c.SetDeadline(time.Now().Add(peerWait))
	if _, err := io.WriteString(c, msg); err != nil {
		return err
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		return err
	}
	if string(got) != msg {
		return fmt.Errorf("echo: got %q, want %q", got, msg)
	}
	return nil
}

// rpcDo sends one request with m's RPC client and returns status and body.
func rpcDo(m *PeerMux, method, to, path, body string) (int, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), peerWait)
	defer cancel()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+to+path, rd)
	if err != nil {
		return 0, "", err
	}
	resp, err := m.RPCClient().Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// rpcEcho POSTs msg to to's echo route and expects it back.
func rpcEcho(m *PeerMux, to, msg string) error {
	code, body, err := rpcDo(m, http.MethodPost, to, "/peer/v1/echo", msg)
	if err != nil {
		return err
	}
	if code != http.StatusOK || body != msg {
		return fmt.Errorf("echo RPC: %d %q, want 200 %q", code, body, msg)
	}
	return nil
}

// acceptWithin accepts one connection on l or fails the test.
func acceptWithin(t *testing.T, l net.Listener) net.Conn {
	t.Helper()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := l.Accept()
		ch <- res{c, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("accept: %v", r.err)
		}
		return r.c
	case <-time.After(peerWait):
		t.Fatalf("no connection accepted within %v", peerWait)
		return nil
	}
}

// waitClosed fails unless reading c ends in an error other than a timeout
// (the other side, or a fault, closed it) within peerWait.
func waitClosed(t *testing.T, c net.Conn, what string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(peerWait))
	buf := make([]byte, 64)
	for {
		_, err := c.Read(buf)
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("%s: connection still open after %v", what, peerWait)
		}
		return
	}
}

// verifyNoPeerLeaks checks, at the end of the test (after every other
// cleanup), that the test left no goroutine behind.
func verifyNoPeerLeaks(t *testing.T) {
	opt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, opt) })
}

func TestPeerRaftLayerRoundTrip(t *testing.T) {
	verifyNoPeerLeaks(t)
	ms := []*PeerMux{startPeerMux(t, nil), startPeerMux(t, nil), startPeerMux(t, nil)}
	for i, from := range ms {
		to := ms[(i+1)%len(ms)]
		if got := to.RaftLayer().Addr().String(); got != to.Addr() {
			t.Fatalf("RaftLayer().Addr() = %q, want the advertised %q", got, to.Addr())
		}
		c, err := from.RaftLayer().Dial(raft.ServerAddress(to.Addr()), peerWait)
		if err != nil {
			t.Fatalf("dial %s -> %s: %v", from.Addr(), to.Addr(), err)
		}
		s := acceptWithin(t, to.RaftLayer())
		_ = c.SetDeadline(time.Now().Add(peerWait))
		_ = s.SetDeadline(time.Now().Add(peerWait))
		ping := []byte("append-entries " + from.Addr())
		if _, err := c.Write(ping); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(ping))
		if _, err := io.ReadFull(s, got); err != nil || !bytes.Equal(got, ping) {
			t.Fatalf("acceptor read %q, %v; want %q", got, err, ping)
		}
		pong := []byte("response " + to.Addr())
		if _, err := s.Write(pong); err != nil {
			t.Fatal(err)
		}
		got = make([]byte, len(pong))
		if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, pong) {
			t.Fatalf("dialer read %q, %v; want %q", got, err, pong)
		}
		_ = c.Close()
		waitClosed(t, s, "accepted side after the dialer closed")
		_ = s.Close()
	}
}

func TestPeerRPCRoundTrip(t *testing.T) {
	verifyNoPeerLeaks(t)
	a, b := startPeerNode(t, nil), startPeerNode(t, nil)
	// c installs its handler only after Start, and answers 503 until then.
	c := &peerNode{m: startPeerMux(t, nil)}
	code, _, err := rpcDo(a.m, http.MethodGet, c.addr(), "/peer/v1/whoami", "")
	if err != nil || code != http.StatusServiceUnavailable {
		t.Fatalf("RPC before HandleRPC: %d, %v; want 503", code, err)
	}
	c.m.HandleRPC(c.rpcHandler())

	nodes := []*peerNode{a, b, c}
	for _, from := range nodes {
		for _, to := range nodes {
			code, body, err := rpcDo(from.m, http.MethodGet, to.addr(), "/peer/v1/whoami", "")
			if err != nil || code != http.StatusOK || body != from.addr() {
				t.Fatalf("GET whoami %s -> %s: %d %q %v; want 200 %q", from.addr(), to.addr(), code, body, err, from.addr())
			}
			if err := rpcEcho(from.m, to.addr(), "payload from "+from.addr()); err != nil {
				t.Fatalf("POST %s -> %s: %v", from.addr(), to.addr(), err)
			}
		}
	}
	if got := b.rpcCalls.Load(); got != 3 {
		t.Fatalf("b handled %d echo RPCs, want 3", got)
	}
	if c1, c2 := a.m.RPCClient(), a.m.RPCClient(); c1 != c2 {
		t.Fatal("RPCClient returns a new client per call")
	}
}

func TestPeerRaftAndRPCShareThePort(t *testing.T) {
	verifyNoPeerLeaks(t)
	a, b, c := startPeerNode(t, nil), startPeerNode(t, nil), startPeerNode(t, nil)
	const rounds = 20
	errs := make(chan error, 4*rounds)
	var wg sync.WaitGroup
	for _, from := range []*peerNode{a, c} {
		wg.Add(2)
		go func() {
			defer wg.Done()
			// One long-lived Raft stream, as NetworkTransport keeps them.
			conn, err := from.m.RaftLayer().Dial(raft.ServerAddress(b.addr()), peerWait)
			if err != nil {
				errs <- err
				return
			}
			defer conn.Close()
			for i := range rounds {
				if err := echoOn(conn, fmt.Sprintf("raft %s #%d", from.addr(), i)); err != nil {
					errs <- fmt.Errorf("raft: %w", err)
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			for i := range rounds {
				if err := rpcEcho(from.m, b.addr(), fmt.Sprintf("rpc %s #%d", from.addr(), i)); err != nil {
					errs <- fmt.Errorf("rpc: %w", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := b.rpcCalls.Load(); got != 2*rounds {
		t.Fatalf("b handled %d RPCs, want %d", got, 2*rounds)
	}
}

func TestPeerGarbageHandshakes(t *testing.T) {
	verifyNoPeerLeaks(t)
	// A short handshake deadline so the silent client is cut off quickly.
	n := startPeerNode(t, nil, func(c *PeerConfig) { c.DialTimeout = 200 * time.Millisecond })
	peer := startPeerNode(t, nil)
	hs := func(tag byte, addr string) []byte { return appendPeerHandshake(nil, peerHello{tag: tag, from: addr}) }
	cases := []struct {
		name      string
		send      []byte
		closeSend bool // half-close after sending (a truncated handshake)
	}{
		{"unknown tag", []byte{0xff, 3, 'a', ':', '1'}, false},
		{"HTTP on the peer port", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), false},
		{"TLS client hello on a plain port", []byte{0x16, 0x03, 0x01, 0x00, 0x05}, false},
		{"length overflows uvarint", append([]byte{peerTagRaft}, bytes.Repeat([]byte{0xff}, 11)...), false},
		{"oversize address", append([]byte{peerTagRPC}, 0x80, 0x80, 0x04), false},
		{"empty address", []byte{peerTagRaft, 0}, false},
		{"address is not host:port", hs(peerTagRaft, "no-port-here"), false},
		{"truncated address", hs(peerTagRaft, "127.0.0.1:9")[:5], true},
		{"tag only", []byte{peerTagRPC}, true},
		{"nothing at all", nil, true},
		{"silent client", nil, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", n.addr())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if len(tc.send) > 0 {
				if _, err := c.Write(tc.send); err != nil {
					t.Fatal(err)
				}
			}
			if tc.closeSend {
				_ = c.(*net.TCPConn).CloseWrite()
			}
			waitClosed(t, c, "server side of a bad handshake")
		})
	}
	// The mux still serves both protocols.
	if err := raftEcho(peer.m, n.addr(), "still alive"); err != nil {
		t.Fatalf("raft after garbage: %v", err)
	}
	if err := rpcEcho(peer.m, n.addr(), "still alive"); err != nil {
		t.Fatalf("rpc after garbage: %v", err)
	}
	if n.received.Load() != int64(len("still alive")) {
		t.Fatalf("raft layer received %d bytes, want only the valid stream's", n.received.Load())
	}
}

func TestPeerCloseIdempotentAndFinal(t *testing.T) {
	verifyNoPeerLeaks(t)
	peer := startPeerNode(t, nil)
	m := NewPeerMux(PeerConfig{BindAddr: "127.0.0.1:0"})
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	m.HandleRPC(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }))
	addr := m.Addr()

	// Live connections in both directions: an inbound Raft stream, an
	// outbound Raft stream, an outbound RPC keep-alive connection and an
	// inbound one (idle after its request).
	in, err := peer.m.RaftLayer().Dial(raft.ServerAddress(addr), peerWait)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	inAccepted := acceptWithin(t, m.RaftLayer())
	out, err := m.RaftLayer().Dial(raft.ServerAddress(peer.addr()), peerWait)
	if err != nil {
		t.Fatal(err)
	}
	if err := echoOn(out, "x"); err != nil {
		t.Fatal(err)
	}
	if err := rpcEcho(m, peer.addr(), "y"); err != nil {
		t.Fatal(err)
	}
	if code, body, err := rpcDo(peer.m, http.MethodGet, addr, "/peer/v1/anything", ""); err != nil || code != 200 || body != "ok" {
		t.Fatalf("RPC to m: %d %q %v", code, body, err)
	}

	for i := range 3 {
		if err := m.Close(); err != nil {
			t.Fatalf("Close #%d: %v", i+1, err)
		}
	}
	waitClosed(t, in, "inbound raft stream (peer side) after Close")
	waitClosed(t, out, "outbound raft stream after Close")
	_ = inAccepted.Close()
	if _, err := m.RaftLayer().Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close: %v, want net.ErrClosed", err)
	}
	_, err = m.RaftLayer().Dial(raft.ServerAddress(peer.addr()), peerWait)
	var op *net.OpError
	if !errors.Is(err, ErrPeerMuxClosed) || !errors.As(err, &op) || op.Op != "dial" {
		t.Fatalf("Dial after Close: %v, want a dial OpError wrapping ErrPeerMuxClosed", err)
	}
	if err := rpcEcho(m, peer.addr(), "z"); !errors.Is(err, ErrPeerMuxClosed) {
		t.Fatalf("RPC after Close: %v, want ErrPeerMuxClosed", err)
	}
	if err := m.Start(context.Background()); err == nil {
		t.Fatal("Start after Close succeeded")
	}
	if err := raftEcho(peer.m, addr, "x"); err == nil {
		t.Fatal("a closed mux still serves raft")
	}

	// Never started: Close is fine, twice.
	idle := NewPeerMux(PeerConfig{BindAddr: "127.0.0.1:0"})
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := idle.RaftLayer().Dial("127.0.0.1:1", time.Second); !errors.Is(err, ErrPeerMuxClosed) {
		t.Fatalf("Dial on a never-started mux: %v", err)
	}
}

func TestPeerRaftLayerCloseLeavesRPC(t *testing.T) {
	verifyNoPeerLeaks(t)
	a, b := startPeerNode(t, nil), startPeerNode(t, nil)
	// NetworkTransport.Close closes the stream layer: RPC keeps working.
	if err := b.m.RaftLayer().Close(); err != nil {
		t.Fatal(err)
	}
	if err := rpcEcho(a.m, b.addr(), "rpc survives"); err != nil {
		t.Fatal(err)
	}
	if err := raftEcho(a.m, b.addr(), "refused"); err == nil {
		t.Fatal("raft traffic reached a closed raft layer")
	}
}

func TestPeerStartErrors(t *testing.T) {
	verifyNoPeerLeaks(t)
	m := startPeerMux(t, nil)
	taken := NewPeerMux(PeerConfig{BindAddr: m.Addr()})
	if err := taken.Start(context.Background()); err == nil {
		t.Fatal("Start on a port in use succeeded")
	}
	_ = taken.Close()

	wild := NewPeerMux(PeerConfig{BindAddr: "0.0.0.0:0"})
	if err := wild.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "AdvertiseAddr") {
		t.Fatalf("wildcard bind without AdvertiseAddr: %v", err)
	}
	_ = wild.Close()

	adv := NewPeerMux(PeerConfig{BindAddr: "127.0.0.1:0", AdvertiseAddr: "agent-1.peers:7000"})
	if adv.Addr() != "agent-1.peers:7000" {
		t.Fatalf("Addr before Start = %q", adv.Addr())
	}
	if err := adv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if adv.Addr() != "agent-1.peers:7000" || adv.RaftLayer().Addr().String() != "agent-1.peers:7000" {
		t.Fatalf("Addr after Start = %q", adv.Addr())
	}
	if err := adv.Start(context.Background()); err == nil {
		t.Fatal("second Start succeeded")
	}
	_ = adv.Close()

	noCert := NewPeerMux(PeerConfig{BindAddr: "127.0.0.1:0", TLS: &tls.Config{}})
	if err := noCert.Start(context.Background()); err == nil {
		t.Fatal("TLS without a certificate started")
	}
	_ = noCert.Close()
}

// testPeerTLS returns a config for mutual TLS with one certificate for
// 127.0.0.1 from a test CA that every agent uses as server and client.
func testPeerTLS(t *testing.T) *tls.Config {
	t.Helper()
	ca := transporttest.NewCA(t, "streamhouse test CA")
	cert := ca.Issue(t, "streamhouse test agent")
	return &tls.Config{
		Certificates: []tls.Certificate{cert.TLS},
		RootCAs:      ca.Pool(),
		ClientCAs:    ca.Pool(),
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS13,
	}
}

// wantPeersTalk fails unless a and b exchange Raft traffic and RPCs (what
// says how they are configured).
func wantPeersTalk(t *testing.T, a, b *peerNode, what string) {
	t.Helper()
	if err := raftEcho(a.m, b.addr(), "raft "+what); err != nil {
		t.Fatal(err)
	}
	if err := rpcEcho(b.m, a.addr(), "rpc "+what); err != nil {
		t.Fatal(err)
	}
	code, body, err := rpcDo(a.m, http.MethodGet, b.addr(), "/peer/v1/whoami", "")
	if err != nil || code != 200 || body != a.addr() {
		t.Fatalf("whoami %s: %d %q %v", what, code, body, err)
	}
}

func TestPeerTLS(t *testing.T) {
	verifyNoPeerLeaks(t)
	cfg := testPeerTLS(t)
	withTLS := func(c *PeerConfig) { c.TLS = cfg }
	a, b := startPeerNode(t, nil, withTLS), startPeerNode(t, nil, withTLS)
	wantPeersTalk(t, a, b, "over TLS")
	// A plain-TCP agent cannot talk to a TLS one.
	plain := startPeerNode(t, nil)
	if err := raftEcho(plain.m, a.addr(), "plain"); err == nil {
		t.Fatal("plain raft stream accepted by a TLS mux")
	}
	if err := raftEcho(a.m, plain.addr(), "tls"); err == nil {
		t.Fatal("TLS dial to a plain mux succeeded")
	}
}

func FuzzPeerHandshake(f *testing.F) {
	f.Add(appendPeerHandshake(nil, peerHello{tag: peerTagRaft, from: "127.0.0.1:7000"}))
	f.Add(appendPeerHandshake(nil, peerHello{tag: peerTagRPC, from: "[::1]:7000"}))
	f.Add(append(appendPeerHandshake(nil, peerHello{tag: peerTagRPC, from: "agent-2:7000"}), "POST / HTTP/1.1\r\n"...))
	f.Add(appendPeerHandshake(nil, peerHello{tag: peerTagRaft, auth: peerAuthLegacy, from: "a:1"}))
	f.Add(appendPeerHandshake(nil, peerHello{tag: peerTagRPC, auth: peerAuthProof, from: "a:1", to: "b:2"}))
	f.Add([]byte{0xff})
	f.Add([]byte{peerTagRaft, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Add([]byte{})
	cluster := func(h peerHello) []byte { return appendPeerCluster(appendPeerHandshake(nil, h), h) }
	f.Add(cluster(peerHello{tag: peerTagRaftCluster, from: "a:1", cluster: "0123456789abcdef"}))
	f.Add(cluster(peerHello{tag: peerTagRaftCluster, from: "a:1"}))
	f.Add(append(appendPeerHandshake(nil, peerHello{tag: peerTagRaftCluster, from: "a:1"}), 0x80, 0x00))
	f.Add(append(appendPeerHandshake(nil, peerHello{tag: peerTagRaftCluster, from: "a:1"}), 65))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		h, err := readPeerHandshake(r)
		if err == nil {
			err = readPeerCluster(r, &h)
		}
		if err != nil {
			if !errors.Is(err, errBadHandshake) {
				t.Fatalf("error %v does not wrap errBadHandshake", err)
			}
			return
		}
		if h.tag != peerTagRaft && h.tag != peerTagRPC && h.tag != peerTagRaftCluster {
			t.Fatalf("accepted tag 0x%02x", h.tag)
		}
		if (h.auth == peerAuthProof) != (h.to != "") {
			t.Fatalf("dialed address %q with auth %d", h.to, h.auth)
		}
		if h.cluster != "" && (h.tag != peerTagRaftCluster || len(h.cluster) > maxPeerClusterLen) {
			t.Fatalf("cluster %q with tag 0x%02x", h.cluster, h.tag)
		}
		consumed := len(b) - r.Len()
		if want := appendPeerCluster(appendPeerHandshake(nil, h), h); !bytes.Equal(b[:consumed], want) {
			t.Fatalf("consumed %x, re-encoded %x", b[:consumed], want)
		}
	})
}

// TestPeerRaftConnectionsNameTheirCluster: with SetRaftCluster, a Raft
// dial to an agent of another cluster fails with ErrForeignCluster before
// any Raft byte flows (with and without a cluster secret); the same
// cluster, an agent without a cluster yet and a dialer without one are
// accepted, and a target gossip shows at an older release is dialed with
// the older handshake.
func TestPeerRaftConnectionsNameTheirCluster(t *testing.T) {
	for _, secret := range []bool{false, true} {
		t.Run(fmt.Sprintf("secret=%v", secret), func(t *testing.T) {
			var mods []func(*PeerConfig)
			if secret {
				mods = append(mods, func(c *PeerConfig) { c.ClusterSecret = []byte("0123456789abcdef0123") })
			}
			ids := map[*PeerMux]*atomic.Value{}
			node := func(id string) *peerNode {
				n := startPeerNode(t, nil, mods...)
				v := &atomic.Value{}
				v.Store(id)
				ids[n.m] = v
				n.m.SetRaftCluster(RaftCluster{ID: func() string { return v.Load().(string) }})
				return n
			}
			x1, x2, y := node("x"), node("x"), node("y")
			if err := raftEcho(x1.m, x2.addr(), "same cluster"); err != nil {
				t.Fatalf("same cluster: %v", err)
			}
			before := y.received.Load()
			err := raftEcho(x1.m, y.addr(), "foreign")
			if !errors.Is(err, ErrForeignCluster) {
				t.Fatalf("dial into another cluster: %v, want ErrForeignCluster", err)
			}
			var op *net.OpError
			if !errors.As(err, &op) || op.Op != "dial" {
				t.Fatalf("refusal is not a dial error: %#v", err)
			}
			if got := y.received.Load(); got != before {
				t.Fatalf("the foreign agent's raft layer read %d bytes", got-before)
			}
			if err := raftEcho(y.m, x1.addr(), "foreign"); !errors.Is(err, ErrForeignCluster) {
				t.Fatalf("dial the other way: %v, want ErrForeignCluster", err)
			}
			// Not admitted yet: names no cluster and accepts any.
			ids[y.m].Store("")
			if err := raftEcho(x1.m, y.addr(), "to no cluster"); err != nil {
				t.Fatalf("dial to an agent without a cluster: %v", err)
			}
			if err := raftEcho(y.m, x1.addr(), "from no cluster"); err != nil {
				t.Fatalf("dial from an agent without a cluster: %v", err)
			}
			// A connection opened while y had no cluster must not outlive
			// the check once y has one: y bootstraps or is admitted into
			// another group while the connection is pooled.
			in, err := x1.m.RaftLayer().Dial(raft.ServerAddress(y.addr()), peerWait)
			if err != nil {
				t.Fatal(err)
			}
			defer in.Close()
			out, err := y.m.RaftLayer().Dial(raft.ServerAddress(x1.addr()), peerWait)
			if err != nil {
				t.Fatal(err)
			}
			defer out.Close()
			if err := echoOn(in, "pooled in"); err != nil {
				t.Fatal(err)
			}
			if err := echoOn(out, "pooled out"); err != nil {
				t.Fatal(err)
			}
			ids[y.m].Store("y")
			before = y.received.Load()
			if err := echoOn(in, "after y named its cluster"); err == nil {
				t.Fatal("a connection accepted before y named its cluster still carries x's raft traffic")
			}
			if got := y.received.Load(); got != before {
				t.Fatalf("y's raft layer read %d bytes of x's traffic after naming its cluster", got-before)
			}
			if err := echoOn(out, "sent after y named its cluster"); !errors.Is(err, ErrForeignCluster) {
				t.Fatalf("a connection y dialed before naming its cluster: %v, want ErrForeignCluster", err)
			}
			// A target known to run an older release gets the older
			// handshake, which every acceptor still takes.
			x1.m.SetRaftCluster(RaftCluster{ID: func() string { return "x" }, Legacy: func(addr string) bool { return addr == y.addr() }})
			if err := raftEcho(x1.m, y.addr(), "legacy"); err != nil {
				t.Fatalf("older handshake: %v", err)
			}
		})
	}
}
