package transport

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
)

// Cluster-secret authentication (PeerConfig.ClusterSecret), version 2:
// mutual, in one round trip after the handshake; the secret never travels.
//
//	dialer → acceptor: tag|0xC0, from (dialer's advertised address),
//	                   to (the address it dialed), nonceD (32 random bytes)
//	acceptor → dialer: nonceA (32 random bytes), HMAC(secret, "acceptor", transcript)
//	dialer → acceptor: HMAC(secret, "dialer", transcript)
//
// The transcript is the tag, from, to, both nonces and, over TLS, 32 bytes
// of the session's exported keying material. What each side checks:
//
//   - the acceptor answers only a handshake whose "to" is its own
//     advertised address: a proof is bound to the agent the dialer meant
//     to reach, so a dialer's handshake relayed (or reflected) to another
//     agent — or to the dialer itself — is refused before any proof is
//     given. A relay that rewrites "to" makes the acceptor's proof cover a
//     transcript the dialer did not send, and the dialer refuses it.
//   - both refuse their own identity and their own nonces coming back (an
//     inbound handshake from this agent's address, a nonce this agent
//     issued for a handshake still in flight): defence in depth against
//     reflection.
//   - over TLS the exporter binds the proofs to this TLS session, so they
//     cannot be relayed into another one.
//   - the dialer sends its proof only after verifying the acceptor's.
//
// Fresh nonces on both sides make every proof single-use; the role labels
// stop an acceptor's proof from being replayed as a dialer's.
const (
	peerNonceLen = 32
	peerMACLen   = sha256.Size
	// MinClusterSecretLen is the shortest accepted ClusterSecret.
	MinClusterSecretLen = 16

	roleAcceptor = "acceptor"
	roleDialer   = "dialer"
)

// ErrPeerAuth is wrapped by dials whose peer does not prove knowledge of
// the cluster secret (or refuses ours), and by refused inbound handshakes.
var ErrPeerAuth = errors.New("transport: peer authentication (cluster secret) failed")

// peerAuth runs the challenge-response of one PeerMux.
type peerAuth struct {
	secret []byte
	self   string    // this agent's advertised address
	rand   io.Reader // nonce source (crypto/rand.Reader; fixed in fuzz tests)
	nonces nonceSet  // nonces this agent issued, while their handshake runs
}

// peerTranscript is what both proofs cover.
type peerTranscript struct {
	tag            byte
	from, to       string
	nonceD, nonceA []byte
	binding        []byte // TLS exported keying material, nil without TLS
}

// mac is HMAC-SHA256(secret) over the role and every transcript field,
// each length-prefixed, so no two transcripts share an encoding.
func (t peerTranscript) mac(secret []byte, role string) []byte {
	h := hmac.New(sha256.New, secret)
	var b []byte
	b = append(b, "streamhouse peer auth v2"...)
	for _, f := range [][]byte{[]byte(role), {t.tag}, []byte(t.from), []byte(t.to), t.nonceD, t.nonceA, t.binding} {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	h.Write(b)
	return h.Sum(nil)
}

// sameAddr compares advertised addresses (host names are case-insensitive).
func sameAddr(a, b string) bool { return strings.EqualFold(a, b) }

func (a *peerAuth) newNonce() ([]byte, error) {
	b := make([]byte, peerNonceLen)
	if _, err := io.ReadFull(a.rand, b); err != nil {
		return nil, fmt.Errorf("%w: no randomness for a nonce: %w", ErrPeerAuth, err)
	}
	return b, nil
}

// dial runs the dialer's side on rw: it sends the handshake for tag and
// target (the address being dialed, exactly as the caller named it), then
// verifies the acceptor's proof and sends its own.
func (a *peerAuth) dial(rw io.ReadWriter, tag byte, target string, binding []byte) error {
	nonceD, err := a.newNonce()
	if err != nil {
		return err
	}
	defer a.nonces.issue(nonceD)()
	hello := appendPeerHandshake(nil, peerHello{tag: tag, auth: peerAuthProof, from: a.self, to: target})
	if _, err := rw.Write(append(hello, nonceD...)); err != nil {
		return err
	}
	buf := make([]byte, peerNonceLen+peerMACLen)
	if _, err := io.ReadFull(rw, buf); err != nil {
		return fmt.Errorf("%w: %s closed the connection instead of answering the challenge (it has no CLUSTER_SECRET or a different one, is not the agent advertised at that address, or refused this agent): %w", ErrPeerAuth, target, err)
	}
	nonceA, macA := buf[:peerNonceLen], buf[peerNonceLen:]
	if hmac.Equal(nonceA, nonceD) || a.nonces.has(nonceA) {
		return fmt.Errorf("%w: %s answered with a nonce this agent issued (a reflected handshake)", ErrPeerAuth, target)
	}
	t := peerTranscript{tag: tag, from: a.self, to: target, nonceD: nonceD, nonceA: nonceA, binding: binding}
	if !hmac.Equal(macA, t.mac(a.secret, roleAcceptor)) {
		return fmt.Errorf("%w: the proof of %s is wrong: its CLUSTER_SECRET differs, or the connection is relayed to another agent", ErrPeerAuth, target)
	}
	_, err = rw.Write(t.mac(a.secret, roleDialer))
	return err
}

// accept runs the acceptor's side on rw after readPeerHandshake returned
// h (with h.auth == peerAuthProof): it reads the dialer's nonce, answers
// the challenge and verifies the dialer's proof.
func (a *peerAuth) accept(rw io.ReadWriter, h peerHello, binding []byte) error {
	switch {
	case !sameAddr(h.to, a.self):
		return fmt.Errorf("%w: the dialer dialed %s, but this agent is %s (a relayed handshake, or a stale address for this agent)", ErrPeerAuth, h.to, a.self)
	case sameAddr(h.from, a.self):
		return fmt.Errorf("%w: the handshake claims to come from this agent's own address %s (a reflected handshake)", ErrPeerAuth, h.from)
	}
	nonceD := make([]byte, peerNonceLen)
	if _, err := io.ReadFull(rw, nonceD); err != nil {
		return fmt.Errorf("%w: reading the dialer's nonce: %w", ErrPeerAuth, err)
	}
	if a.nonces.has(nonceD) {
		return fmt.Errorf("%w: the dialer's nonce was issued by this agent (a reflected handshake)", ErrPeerAuth)
	}
	nonceA, err := a.newNonce()
	if err != nil {
		return err
	}
	defer a.nonces.issue(nonceA)()
	t := peerTranscript{tag: h.tag, from: h.from, to: h.to, nonceD: nonceD, nonceA: nonceA, binding: binding}
	if _, err := rw.Write(append(nonceA, t.mac(a.secret, roleAcceptor)...)); err != nil {
		return fmt.Errorf("%w: answering the challenge: %w", ErrPeerAuth, err)
	}
	macD := make([]byte, peerMACLen)
	if _, err := io.ReadFull(rw, macD); err != nil {
		return fmt.Errorf("%w: the dialer sent no proof (its CLUSTER_SECRET differs, or it did not mean to dial this agent): %w", ErrPeerAuth, err)
	}
	if !hmac.Equal(macD, t.mac(a.secret, roleDialer)) {
		return fmt.Errorf("%w: the dialer's proof is wrong (its CLUSTER_SECRET differs)", ErrPeerAuth)
	}
	return nil
}

// nonceSet holds the nonces of this agent's handshakes in flight.
type nonceSet struct {
	mu sync.Mutex
	m  map[string]struct{}
}

// issue records n and returns the function that forgets it.
func (s *nonceSet) issue(n []byte) func() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]struct{}{}
	}
	s.m[string(n)] = struct{}{}
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.m, string(n))
	}
}

func (s *nonceSet) has(n []byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.m[string(n)]
	return ok
}

// channelBinding returns keying material exported from the TLS session
// under conn (nil without TLS): both ends derive the same bytes. A TLS
// session that cannot export (TLS 1.2 without extended master secret) is
// an error, never a silent nil.
func channelBinding(conn net.Conn) ([]byte, error) {
	tc, ok := conn.(*tls.Conn)
	if !ok {
		return nil, nil
	}
	cs := tc.ConnectionState()
	b, err := cs.ExportKeyingMaterial("EXPORTER-streamhouse-peer-auth", nil, 32)
	if err != nil {
		return nil, fmt.Errorf("%w: no TLS channel binding: %w", ErrPeerAuth, err)
	}
	return b, nil
}
