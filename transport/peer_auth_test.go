package transport

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
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
	if err := raftEcho(a.m, b.addr(), "raft with the secret"); err != nil {
		t.Fatal(err)
	}
	if err := rpcEcho(b.m, a.addr(), "rpc with the secret"); err != nil {
		t.Fatal(err)
	}
	code, body, err := rpcDo(a.m, http.MethodGet, b.addr(), "/peer/v1/whoami", "")
	if err != nil || code != 200 || body != a.addr() {
		t.Fatalf("whoami: %d %q %v", code, body, err)
	}

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
	_, _ = c.Write(append(appendPeerHandshake(nil, peerTagRaft|peerAuthFlag, "127.0.0.1:1"), make([]byte, peerNonceLen)...))
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
		_, _ = conn.Write(appendPeerHandshake(nil, peerTagRPC, "127.0.0.1:1"))
		waitClosed(t, conn, "client without a certificate")
		conn.Close()
	}
}
