package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/streamhouse/streamhouse/fsm"
)

// peerRelay is an attacker without the cluster secret that relays peer
// handshakes: every connection made to its listener (by an agent that takes
// it for the attacker's own peer port) is relayed byte for byte to the
// victim's peer port until the dialer sends its first HTTP request; the relay
// swaps that request for its own and records what the victim answers.
type peerRelay struct {
	ln      net.Listener
	victim  string
	request []byte

	mu       sync.Mutex
	attempts []relayAttempt
	wg       sync.WaitGroup
}

// relayAttempt is the outcome of one relayed connection.
type relayAttempt struct {
	answer      string // the victim's HTTP answer to the swapped-in request, "" if none
	victimBytes int    // how many bytes the victim sent in all
	err         error  // why the relay ended without an answer
}

func startPeerRelay(t *testing.T, victim string, request []byte) *peerRelay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &peerRelay{ln: ln, victim: victim, request: request}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			r.wg.Add(1)
			go func() { defer r.wg.Done(); r.record(r.relay(c)) }()
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); r.wg.Wait() })
	return r
}

func (r *peerRelay) addr() string { return r.ln.Addr().String() }

func (r *peerRelay) record(a relayAttempt) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.attempts = append(r.attempts, a)
}

func (r *peerRelay) results() []relayAttempt {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]relayAttempt(nil), r.attempts...)
}

// relay runs one relayed connection: d is the agent that dialed the
// attacker, v the connection to the victim.
func (r *peerRelay) relay(d net.Conn) relayAttempt {
	defer d.Close()
	deadline := time.Now().Add(15 * time.Second)
	_ = d.SetDeadline(deadline)
	v, err := net.DialTimeout("tcp", r.victim, 5*time.Second)
	if err != nil {
		return relayAttempt{err: err}
	}
	defer v.Close()
	_ = v.SetDeadline(deadline)

	var fromV bytes.Buffer // everything the victim sends
	vDone := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.MultiWriter(ignoreErrors{d}, &lockedWriter{w: &fromV, mu: &r.mu}), v)
		_ = d.Close() // like any proxy: the victim hung up, so does the dialer's side
		vDone <- err
	}()

	// Forward the dialer's handshake bytes until its HTTP request starts.
	var fromD []byte
	buf := make([]byte, 4096)
	for {
		n, err := d.Read(buf)
		fromD = append(fromD, buf[:n]...)
		if i := httpRequestStart(fromD); i >= 0 {
			if _, err := v.Write(fromD[:i]); err != nil {
				return relayAttempt{err: err}
			}
			break
		}
		if err != nil {
			_ = v.Close()
			<-vDone
			n := r.lenOf(&fromV)
			return relayAttempt{victimBytes: n, err: fmt.Errorf("the dialer ended the handshake (%w); the victim sent %d bytes", err, n)}
		}
		// Forward all but a tail that may begin the request line.
		if send := len(fromD) - partialRequestStart(fromD); send > 0 {
			if _, err := v.Write(fromD[:send]); err != nil {
				return relayAttempt{err: err}
			}
			fromD = fromD[send:]
		}
	}
	// The handshake passed both ways: speak for the dialer.
	_ = d.Close()
	if _, err := v.Write(r.request); err != nil {
		return relayAttempt{err: err}
	}
	err = <-vDone
	r.mu.Lock()
	got := fromV.String()
	r.mu.Unlock()
	if i := strings.Index(got, "HTTP/1.1 "); i >= 0 {
		return relayAttempt{answer: got[i:]}
	}
	return relayAttempt{err: fmt.Errorf("the victim closed without answering: %v", err)}
}

func (r *peerRelay) lenOf(b *bytes.Buffer) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return b.Len()
}

var peerRequestLines = []string{"GET /peer/", "POST /peer/"}

// httpRequestStart finds the start of a peer RPC request line in b, or -1.
func httpRequestStart(b []byte) int {
	for _, m := range peerRequestLines {
		if i := bytes.Index(b, []byte(m)); i >= 0 {
			return i
		}
	}
	return -1
}

// partialRequestStart is the length of the longest tail of b that is a
// proper prefix of a peer RPC request line.
func partialRequestStart(b []byte) int {
	longest := 0
	for _, m := range peerRequestLines {
		for n := min(len(b), len(m)-1); n > longest; n-- {
			if bytes.HasSuffix(b, []byte(m[:n])) {
				longest = n
				break
			}
		}
	}
	return longest
}

// ignoreErrors keeps copying to the victim's buffer after d is closed.
type ignoreErrors struct{ w io.Writer }

func (i ignoreErrors) Write(p []byte) (int, error) {
	_, _ = i.w.Write(p)
	return len(p), nil
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// gossipMeta is a memberlist delegate that only publishes node metadata.
type gossipMeta []byte

func (m gossipMeta) NodeMeta(int) []byte               { return m }
func (gossipMeta) NotifyMsg([]byte)                    {}
func (gossipMeta) GetBroadcasts(int, int) [][]byte     { return nil }
func (gossipMeta) LocalState(bool) []byte              { return nil }
func (gossipMeta) MergeRemoteState(buf []byte, _ bool) {}

// joinGossipAs joins the gossip at join as node id, advertising peer as its
// peer port (no gossip key: the recommended configuration without a PKI
// leaves gossip open; the peer port is what must hold).
func joinGossipAs(t *testing.T, id, peer, join string) {
	t.Helper()
	mc := memberlist.DefaultLocalConfig()
	mc.Name, mc.BindAddr, mc.BindPort, mc.AdvertisePort = id, "127.0.0.1", 0, 0
	// It claims the current feature level (anyone can), so the leader does
	// not hold it back as an older agent and dials it.
	mc.Delegate = gossipMeta(fmt.Sprintf(`{"v":1,"id":%q,"p":%q,"i":"relay-incarnation","f":%d}`, id, peer, fsm.FeatureLevel))
	mc.LogOutput = io.Discard
	ml, err := memberlist.Create(mc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ml.Shutdown() })
	if _, err := ml.Join([]string{join}); err != nil {
		t.Fatal(err)
	}
}

// TestPeerHandshakeRelayRefused: an agent process protected by
// CLUSTER_SECRET alone (no TLS, no gossip key) leads a one-agent cluster.
// An attacker without the secret joins gossip advertising its own peer
// port; when the leader dials it to check it, the attacker relays the
// leader's handshake to the leader's own peer port, passes the proofs back
// and forth and then sends POST /peer/v1/apply with a CreateTopic. The
// leader must refuse the relayed handshake, so no topic appears.
func TestPeerHandshakeRelayRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test; run without -short")
	}
	a := newSoloAgent(t, "victim", t.TempDir(), "CLUSTER_SECRET=the cluster's shared secret", "LOG_LEVEL=warn")
	p := a.start(t)
	defer func() { p.kill(t) }()

	cmd := fsm.Encode(&fsm.CreateTopic{Name: "relayed", Partitions: 1, Leaders: []string{"victim"}, Timestamp: time.Now().UnixMilli()})
	req := fmt.Appendf(nil, "POST /peer/v1/apply HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", len(cmd))
	relay := startPeerRelay(t, "127.0.0.1:"+strconv.Itoa(a.peerPort), append(req, cmd...))
	joinGossipAs(t, "mallory", relay.addr(), "127.0.0.1:"+strconv.Itoa(a.gossipPort))

	waitFor(t, 60*time.Second, "the leader dials the attacker's advertised peer port", func() bool {
		return len(relay.results()) > 0
	})
	for i, a := range relay.results() {
		if a.answer != "" {
			t.Fatalf("relay %d: the leader accepted a relayed handshake and answered the attacker's apply:\n%s", i, a.answer)
		}
		if a.victimBytes != 0 {
			t.Errorf("relay %d: the victim answered a handshake meant for another agent with %d bytes (a proof)", i, a.victimBytes)
		}
		t.Logf("relay %d refused: %v", i, a.err)
	}
	if code := call(t, "GET", p.base+"/api/v1/topics/relayed", nil, nil); code != 404 {
		t.Fatalf("GET the attacker's topic = %d, want 404", code)
	}
}
