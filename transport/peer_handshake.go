package transport

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
)

// Handshake tags: the first byte of every peer connection. Values are part
// of the wire format; ONLY ADD. They are chosen so that neither is a TLS
// record type (0x14-0x17) nor printable ASCII, so a client speaking HTTP or
// TLS to PEER_PORT by mistake is rejected on its first byte.
const (
	peerTagRaft byte = 0x01 // hashicorp/raft NetworkTransport stream
	peerTagRPC  byte = 0x02 // peer RPC: HTTP/1.1
	// peerAuthFlag is or-ed into the tag when the dialer authenticates
	// with the cluster secret (0x81, 0x82: still neither ASCII nor TLS).
	peerAuthFlag byte = 0x80
)

// Cluster-secret authentication (PeerConfig.ClusterSecret), right after
// the tag and address, mutual, in one round trip; the secret never
// travels:
//
//	dialer → acceptor: nonceD (32 random bytes)
//	acceptor → dialer: nonceA (32 random bytes), HMAC-SHA256(secret, "acceptor" transcript)
//	dialer → acceptor: HMAC-SHA256(secret, "dialer" transcript)
//
// The transcript is the role label, the tag, the advertised address, both
// nonces and, over TLS, 32 bytes of the TLS session's exported keying
// material (so a proof cannot be relayed into another TLS session). Fresh
// nonces on both sides make every proof single-use; the role labels stop
// an acceptor's proof from being reflected as a dialer's.
const (
	peerNonceLen = 32
	peerMACLen   = sha256.Size
	// MinClusterSecretLen is the shortest accepted ClusterSecret.
	MinClusterSecretLen = 16
)

// ErrPeerAuth is wrapped by dials whose peer does not prove knowledge of
// the cluster secret (or refuses ours).
var ErrPeerAuth = errors.New("transport: peer authentication (cluster secret) failed")

// maxPeerAddrLen bounds the advertised address in a handshake (a DNS name
// is at most 253 bytes; add brackets, colon and port with room to spare).
const maxPeerAddrLen = 300

var errBadHandshake = errors.New("transport: bad peer handshake")

// appendPeerHandshake appends a handshake: tag, uvarint len(addr), addr.
func appendPeerHandshake(b []byte, tag byte, addr string) []byte {
	b = append(b, tag)
	b = binary.AppendUvarint(b, uint64(len(addr)))
	return append(b, addr...)
}

// readPeerHandshake reads exactly one handshake from r (never more bytes
// than it consumes, so the protocol's first bytes stay in r). It rejects an
// unknown tag, an address length outside 1..maxPeerAddrLen and an address
// that is not host:port, and a non-minimal length encoding (so a handshake
// has exactly one encoding).
func readPeerHandshake(r io.Reader) (tag byte, addr string, err error) {
	br := byteReader{r: r}
	tag, err = br.ReadByte()
	if err != nil {
		return 0, "", fmt.Errorf("%w: reading tag: %w", errBadHandshake, err)
	}
	if base := tag &^ peerAuthFlag; base != peerTagRaft && base != peerTagRPC {
		return 0, "", fmt.Errorf("%w: unknown tag 0x%02x", errBadHandshake, tag)
	}
	n, err := binary.ReadUvarint(&br)
	if err != nil {
		return 0, "", fmt.Errorf("%w: reading address length: %w", errBadHandshake, err)
	}
	if br.n-1 != len(binary.AppendUvarint(nil, n)) {
		return 0, "", fmt.Errorf("%w: non-minimal address length encoding", errBadHandshake)
	}
	if n == 0 || n > maxPeerAddrLen {
		return 0, "", fmt.Errorf("%w: address length %d outside 1..%d", errBadHandshake, n, maxPeerAddrLen)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		return 0, "", fmt.Errorf("%w: reading address: %w", errBadHandshake, err)
	}
	addr = string(buf)
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return 0, "", fmt.Errorf("%w: address %q is not host:port", errBadHandshake, addr)
	}
	return tag, addr, nil
}

// byteReader reads single bytes without buffering ahead, counting them.
type byteReader struct {
	r   io.Reader
	n   int
	buf [1]byte
}

func (b *byteReader) ReadByte() (byte, error) {
	if _, err := io.ReadFull(b.r, b.buf[:]); err != nil {
		return 0, err
	}
	b.n++
	return b.buf[0], nil
}

// peerMAC computes a proof of the cluster secret over the handshake
// transcript.
func peerMAC(secret []byte, role string, tag byte, addr string, nonceD, nonceA, binding []byte) []byte {
	h := hmac.New(sha256.New, secret)
	h.Write([]byte("streamhouse peer auth v1 " + role))
	h.Write([]byte{0, tag})
	h.Write(binary.AppendUvarint(nil, uint64(len(addr))))
	h.Write([]byte(addr))
	h.Write(nonceD)
	h.Write(nonceA)
	h.Write(binding)
	return h.Sum(nil)
}

// channelBinding returns keying material exported from the TLS session
// under conn (nil without TLS): both ends derive the same bytes.
func channelBinding(conn net.Conn) []byte {
	tc, ok := conn.(*tls.Conn)
	if !ok {
		return nil
	}
	cs := tc.ConnectionState()
	b, err := cs.ExportKeyingMaterial("EXPORTER-streamhouse-peer-auth", nil, 32)
	if err != nil {
		return nil
	}
	return b
}

func newNonce() []byte {
	b := make([]byte, peerNonceLen)
	_, _ = rand.Read(b)
	return b
}

// authenticateDialer runs the dialer's side after it wrote the handshake
// (tag with peerAuthFlag, address, nonceD).
func authenticateDialer(conn net.Conn, secret []byte, tag byte, addr string, nonceD []byte) error {
	buf := make([]byte, peerNonceLen+peerMACLen)
	if _, err := io.ReadFull(conn, buf); err != nil {
		return fmt.Errorf("%w: the peer closed the connection instead of answering the challenge (it has no CLUSTER_SECRET, a different one, or refused this agent): %w", ErrPeerAuth, err)
	}
	nonceA, macA := buf[:peerNonceLen], buf[peerNonceLen:]
	binding := channelBinding(conn)
	if !hmac.Equal(macA, peerMAC(secret, "acceptor", tag, addr, nonceD, nonceA, binding)) {
		return fmt.Errorf("%w: the peer's proof is wrong: its CLUSTER_SECRET differs from this agent's", ErrPeerAuth)
	}
	if _, err := conn.Write(peerMAC(secret, "dialer", tag, addr, nonceD, nonceA, binding)); err != nil {
		return err
	}
	return nil
}

// authenticateAcceptor runs the acceptor's side after it read the
// handshake (tag without peerAuthFlag, the claimed address).
func authenticateAcceptor(conn net.Conn, secret []byte, tag byte, addr string) error {
	nonceD := make([]byte, peerNonceLen)
	if _, err := io.ReadFull(conn, nonceD); err != nil {
		return fmt.Errorf("%w: reading the dialer's nonce: %w", ErrPeerAuth, err)
	}
	nonceA := newNonce()
	binding := channelBinding(conn)
	out := append(append([]byte(nil), nonceA...), peerMAC(secret, "acceptor", tag, addr, nonceD, nonceA, binding)...)
	if _, err := conn.Write(out); err != nil {
		return fmt.Errorf("%w: answering the challenge: %w", ErrPeerAuth, err)
	}
	macD := make([]byte, peerMACLen)
	if _, err := io.ReadFull(conn, macD); err != nil {
		return fmt.Errorf("%w: the dialer sent no proof (its CLUSTER_SECRET differs): %w", ErrPeerAuth, err)
	}
	if !hmac.Equal(macD, peerMAC(secret, "dialer", tag, addr, nonceD, nonceA, binding)) {
		return fmt.Errorf("%w: the dialer's proof is wrong (its CLUSTER_SECRET differs)", ErrPeerAuth)
	}
	return nil
}
