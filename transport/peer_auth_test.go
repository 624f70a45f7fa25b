package transport

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/streamhouse/streamhouse/transport/transporttest"
)

// TestPeerClusterSecret: agents with the same secret talk (Raft and RPC,
// both directions, over plain TCP and over TLS); an agent with another
// secret or none can neither dial them nor be dialed, and nothing it sends
// reaches a handler.
func TestPeerClusterSecret(t *testing.T) {
	verifyNoPeerLeaks(t)
	secret := func(s string) func(*PeerConfig) {
		return func(c *PeerConfig) { c.ClusterSecret = []byte(s) }
	}
	const good = "correct horse battery staple"
	a, b := startPeerNode(t, nil, secret(good)), startPeerNode(t, nil, secret(good))
	wantPeersTalk(t, a, b, "with the secret")

	wrong := startPeerNode(t, nil, secret("another secret, also long"))
	none := startPeerNode(t, nil)
	recvA, callsA := a.received.Load(), a.rpcCalls.Load()
	for name, rogue := range map[string]*peerNode{"wrong secret": wrong, "no secret": none} {
		if err := raftEcho(rogue.m, a.addr(), "let me in"); err == nil {
			t.Errorf("%s: raft stream to a accepted", name)
		}
		if err := rpcEcho(rogue.m, a.addr(), "let me in"); err == nil {
			t.Errorf("%s: RPC to a served", name)
		}
		err := raftEcho(a.m, rogue.addr(), "hello?")
		var op *net.OpError
		if !errors.As(err, &op) || op.Op != "dial" || !errors.Is(err, ErrPeerAuth) {
			t.Errorf("%s: dial from a = %v, want a dial error wrapping ErrPeerAuth", name, err)
		}
		if _, _, err := rpcDo(a.m, http.MethodGet, rogue.addr(), "/peer/v1/whoami", ""); !errors.Is(err, ErrPeerAuth) {
			t.Errorf("%s: RPC from a = %v, want ErrPeerAuth", name, err)
		}
	}
	if wrong.received.Load() != 0 || none.received.Load() != 0 || wrong.rpcCalls.Load() != 0 || none.rpcCalls.Load() != 0 {
		t.Error("a rogue agent received peer traffic")
	}
	if a.received.Load() != recvA || a.rpcCalls.Load() != callsA {
		t.Error("traffic of a rogue agent reached a's handlers")
	}

	// A raw client replaying a handshake with a made-up proof is closed
	// without reaching the Raft layer.
	c, err := net.Dial("tcp", a.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = c.Write(append(appendPeerHandshake(nil, peerHello{tag: peerTagRaft, auth: peerAuthProof, from: "127.0.0.1:1", to: a.addr()}), make([]byte, peerNonceLen)...))
	_ = c.SetReadDeadline(time.Now().Add(peerWait))
	if _, err := io.ReadFull(c, make([]byte, peerNonceLen+peerMACLen)); err != nil {
		t.Fatalf("no challenge answer: %v", err)
	}
	_, _ = c.Write(make([]byte, peerMACLen))
	_, _ = c.Write([]byte("raft bytes"))
	waitClosed(t, c, "forged proof")
	if a.received.Load() != recvA {
		t.Error("bytes after a forged proof reached the Raft layer")
	}

	// With TLS too: the proofs are bound to the TLS session.
	cfg := testPeerTLS(t)
	both := func(c *PeerConfig) { c.TLS, c.ClusterSecret = cfg, []byte(good) }
	x, y := startPeerNode(t, nil, both), startPeerNode(t, nil, both)
	if err := raftEcho(x.m, y.addr(), "tls and secret"); err != nil {
		t.Fatal(err)
	}
	if err := rpcEcho(y.m, x.addr(), "tls and secret"); err != nil {
		t.Fatal(err)
	}

	short := NewPeerMux(PeerConfig{BindAddr: "127.0.0.1:0", ClusterSecret: []byte("short")})
	if err := short.Start(t.Context()); err == nil || !strings.Contains(err.Error(), "at least") {
		t.Errorf("a 5-byte secret: %v", err)
	}
	_ = short.Close()
}

// TestPeerMutualTLSClusterCA: agents with certificates from the cluster CA
// talk; an agent whose certificate comes from another CA is refused in both
// directions.
func TestPeerMutualTLSClusterCA(t *testing.T) {
	verifyNoPeerLeaks(t)
	dir := t.TempDir()
	ca := transporttest.NewCA(t, "cluster CA")
	other := transporttest.NewCA(t, "someone else's CA")
	mtls := func(issuer *transporttest.CA, name string) func(*PeerConfig) {
		f := issuer.Issue(t, name).Write(t, issuer, dir, name)
		cf, err := LoadCertFiles(f.Cert, f.Key, nil)
		if err != nil {
			t.Fatal(err)
		}
		pool, err := LoadCertPool(f.CA)
		if err != nil {
			t.Fatal(err)
		}
		cfg := PeerMTLSConfig(cf, pool)
		return func(c *PeerConfig) { c.TLS = cfg }
	}
	a, b := startPeerNode(t, nil, mtls(ca, "a")), startPeerNode(t, nil, mtls(ca, "b"))
	if err := raftEcho(a.m, b.addr(), "mtls raft"); err != nil {
		t.Fatal(err)
	}
	if err := rpcEcho(b.m, a.addr(), "mtls rpc"); err != nil {
		t.Fatal(err)
	}
	rogue := startPeerNode(t, nil, mtls(other, "rogue"))
	if err := raftEcho(rogue.m, a.addr(), "let me in"); err == nil {
		t.Error("raft stream from a certificate of another CA accepted")
	}
	if err := rpcEcho(rogue.m, a.addr(), "let me in"); err == nil {
		t.Error("RPC from a certificate of another CA served")
	}
	if err := raftEcho(a.m, rogue.addr(), "hello?"); err == nil || !strings.Contains(err.Error(), "not signed by the cluster CA") {
		t.Errorf("dial to a rogue: %v", err)
	}
	if a.rpcCalls.Load() != 1 || rogue.received.Load() != 0 || rogue.rpcCalls.Load() != 0 {
		t.Errorf("rogue traffic got through: a rpc calls %d, rogue received %d", a.rpcCalls.Load(), rogue.received.Load())
	}
	// A client without a certificate is refused too.
	conn, err := tls.Dial("tcp", a.addr(), &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}) //nolint:gosec // test
	if err == nil {
		_, _ = conn.Write(appendPeerHandshake(nil, peerHello{tag: peerTagRPC, from: "127.0.0.1:1"}))
		waitClosed(t, conn, "client without a certificate")
		conn.Close()
	}
}

// tcpRelay stands in for an attacker without the secret that agents take
// for an agent: it relays every connection to victim byte for byte, after
// passing the dialer's handshake through rewrite (nil = not parsed).
func tcpRelay(t *testing.T, victim string, rewrite func(peerHello) peerHello) (addr string, victimBytes *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { _ = ln.Close(); wg.Wait() })
	victimBytes = new(atomic.Int64)
	relay := func(d net.Conn) {
		defer d.Close()
		v, err := net.Dial("tcp", victim)
		if err != nil {
			return
		}
		defer v.Close()
		if rewrite != nil { // plain TCP only: TLS hides the handshake
			h, err := readPeerHandshake(d)
			if err != nil {
				return
			}
			if _, err := v.Write(appendPeerHandshake(nil, rewrite(h))); err != nil {
				return
			}
		}
		done := make(chan struct{})
		go func() {
			n, _ := io.Copy(d, v)
			victimBytes.Add(n)
			_ = d.Close()
			close(done)
		}()
		_, _ = io.Copy(v, d)
		_ = v.Close()
		<-done
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); relay(c) }()
		}
	}()
	return ln.Addr().String(), victimBytes
}

// TestPeerRelayedHandshakeRefused: agent a dials an address it takes for
// another agent; the attacker there relays the connection to agent b (or
// back to a). Every variant fails as a dial error wrapping ErrPeerAuth and
// nothing reaches a handler: b refuses a handshake naming another dialed
// address without answering the challenge, and a refuses a proof for an
// address it did not dial.
func TestPeerRelayedHandshakeRefused(t *testing.T) {
	verifyNoPeerLeaks(t)
	const good = "correct horse battery staple"
	for _, withTLS := range []bool{false, true} {
		mod := func(c *PeerConfig) { c.ClusterSecret = []byte(good) }
		if withTLS {
			cfg := testPeerTLS(t)
			mod = func(c *PeerConfig) { c.ClusterSecret, c.TLS = []byte(good), cfg }
		}
		a, b := startPeerNode(t, nil, mod), startPeerNode(t, nil, mod)
		if err := rpcEcho(a.m, b.addr(), "direct"); err != nil {
			t.Fatal(err)
		}
		callsA, callsB := a.rpcCalls.Load(), b.rpcCalls.Load()
		recvA, recvB := a.received.Load(), b.received.Load()
		toB := func(h peerHello) peerHello { h.to = b.addr(); return h }
		fromB := func(h peerHello) peerHello { h.from, h.to = b.addr(), b.addr(); return h }
		cases := []struct {
			name         string
			victim       string
			rewrite      func(peerHello) peerHello
			victimSilent bool // the victim must not answer the challenge
		}{
			{"relayed to another agent", b.addr(), nil, true},
			{"reflected to the dialer", a.addr(), nil, true},
			{"dialed address rewritten to the victim's", b.addr(), toB, false},
			{"both addresses rewritten to the victim's", b.addr(), fromB, true},
		}
		for _, tc := range cases {
			if withTLS && tc.rewrite != nil {
				continue
			}
			relay, victimBytes := tcpRelay(t, tc.victim, tc.rewrite)
			for _, dial := range []func() error{
				func() error { return raftEcho(a.m, relay, "via the relay") },
				func() error { return rpcEcho(a.m, relay, "via the relay") },
			} {
				err := dial()
				var op *net.OpError
				if !errors.As(err, &op) || op.Op != "dial" || !errors.Is(err, ErrPeerAuth) {
					t.Errorf("tls=%v %s: %v, want a dial error wrapping ErrPeerAuth", withTLS, tc.name, err)
				}
			}
			if tc.victimSilent && !withTLS && victimBytes.Load() != 0 {
				t.Errorf("tls=%v %s: the victim sent %d bytes (answered a challenge meant for another agent)", withTLS, tc.name, victimBytes.Load())
			}
		}
		if a.rpcCalls.Load() != callsA || b.rpcCalls.Load() != callsB || a.received.Load() != recvA || b.received.Load() != recvB {
			t.Errorf("tls=%v: relayed traffic reached a handler", withTLS)
		}
	}
}

// TestPeerOldAuthHandshakeRefused: a version 1 cluster-secret handshake
// (an older agent) is refused at once, whatever proof follows.
func TestPeerOldAuthHandshakeRefused(t *testing.T) {
	verifyNoPeerLeaks(t)
	a := startPeerNode(t, nil, func(c *PeerConfig) { c.ClusterSecret = []byte("correct horse battery staple") })
	c, err := net.Dial("tcp", a.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = c.Write(append(appendPeerHandshake(nil, peerHello{tag: peerTagRPC, auth: peerAuthLegacy, from: "127.0.0.1:1"}), make([]byte, peerNonceLen)...))
	waitClosed(t, c, "version 1 handshake")
}

// TestPeerAuthRefusesReflection: an acceptor refuses a handshake carrying
// a nonce it issued itself or its own address as the dialer's, and a
// dialer refuses its own nonce coming back as the acceptor's; none of them
// gives out a proof.
func TestPeerAuthRefusesReflection(t *testing.T) {
	a := &peerAuth{secret: fuzzSecret, self: fuzzSelf, rand: fixedRand(0xA5)}
	own := nonceOf(7)
	defer a.nonces.issue(own)()
	cases := []struct {
		name string
		h    peerHello
		in   []byte
	}{
		{"own nonce", peerHello{tag: peerTagRPC, auth: peerAuthProof, from: "10.0.0.2:7000", to: fuzzSelf}, own},
		{"own address as the dialer", peerHello{tag: peerTagRPC, auth: peerAuthProof, from: fuzzSelf, to: fuzzSelf}, nonceOf(8)},
		{"another agent's address as the dialed one", peerHello{tag: peerTagRPC, auth: peerAuthProof, from: "10.0.0.2:7000", to: "10.0.0.3:7000"}, nonceOf(8)},
	}
	for _, tc := range cases {
		conn := &scriptConn{in: bytes.NewReader(tc.in)}
		if err := a.accept(conn, tc.h, nil); !errors.Is(err, ErrPeerAuth) {
			t.Errorf("%s: %v, want ErrPeerAuth", tc.name, err)
		}
		if conn.out.Len() != 0 {
			t.Errorf("%s: answered %d bytes", tc.name, conn.out.Len())
		}
	}
	d := &peerAuth{secret: fuzzSecret, self: fuzzSelf, rand: fixedRand(0x5A)}
	tr := peerTranscript{tag: peerTagRaft, from: fuzzSelf, to: "10.0.0.2:7000", nonceD: nonceOf(0x5A), nonceA: nonceOf(0x5A)}
	conn := &scriptConn{in: bytes.NewReader(append(nonceOf(0x5A), tr.mac(fuzzSecret, roleAcceptor)...))}
	if err := d.dial(conn, peerTagRaft, "10.0.0.2:7000", nil); err == nil || !strings.Contains(err.Error(), "reflected") {
		t.Errorf("dialer given its own nonce back: %v", err)
	}
}
