package transport

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
)

// Handshake tags: the first byte of every peer connection. Values are part
// of the wire format; ONLY ADD. They are chosen so that none is a TLS
// record type (0x14-0x17) nor printable ASCII, so a client speaking HTTP or
// TLS to PEER_PORT by mistake is rejected on its first byte.
const (
	peerTagRaft        byte = 0x01 // hashicorp/raft NetworkTransport stream
	peerTagRPC         byte = 0x02 // peer RPC: HTTP/1.1
	peerTagRaftCluster byte = 0x03 // peerTagRaft, opened with the dialer's cluster ID (acknowledged)
	// peerAuthV1 was or-ed into the tag by agents that authenticated with
	// the version 1 challenge-response (0x81, 0x82), whose proofs did not
	// name the dialed agent. It is recognised only to refuse it clearly.
	peerAuthV1 byte = 0x80
	// peerAuthV2 is or-ed into the tag when the dialer authenticates with
	// the cluster secret (0xC1, 0xC2: still neither ASCII nor TLS); the
	// handshake then also names the address the dialer dialed.
	peerAuthV2   byte = 0xC0
	peerAuthMask      = peerAuthV2
)

// Authentication of a handshake (peerHello.auth).
const (
	peerAuthNone   = 0
	peerAuthLegacy = 1 // version 1, refused
	peerAuthProof  = 2 // version 2: peer_auth.go
)

// The acceptor's answer to a peerTagRaftCluster handshake.
const (
	peerClusterOK    byte = 0x00
	peerClusterOther byte = 0x01 // the dialer names another cluster; the connection is closed
)

// maxPeerClusterLen bounds the cluster ID in a handshake (this agent's
// are 16 hex digits).
const maxPeerClusterLen = 64

// maxPeerAddrLen bounds an address in a handshake (a DNS name is at most
// 253 bytes; add brackets, colon and port with room to spare).
const maxPeerAddrLen = 300

var errBadHandshake = errors.New("transport: bad peer handshake")

// peerHello is the handshake a dialer sends first on every connection.
type peerHello struct {
	tag     byte   // peerTagRaft, peerTagRPC or peerTagRaftCluster, without the auth bits
	auth    int    // peerAuthNone, peerAuthLegacy or peerAuthProof
	from    string // the dialer's advertised address
	to      string // the address the dialer dialed (peerAuthProof only)
	cluster string // the dialer's cluster ID (peerTagRaftCluster only; may be empty)
}

// appendPeerHandshake appends h's wire form without its cluster ID: tag
// (with its auth bits), uvarint len(from), from and, for peerAuthProof,
// uvarint len(to), to. appendPeerCluster follows it (after the
// challenge-response, with a cluster secret).
func appendPeerHandshake(b []byte, h peerHello) []byte {
	tag := h.tag
	switch h.auth {
	case peerAuthLegacy:
		tag |= peerAuthV1
	case peerAuthProof:
		tag |= peerAuthV2
	}
	b = appendPeerAddr(append(b, tag), h.from)
	if h.auth == peerAuthProof {
		b = appendPeerAddr(b, h.to)
	}
	return b
}

// appendPeerCluster appends the cluster ID of a peerTagRaftCluster
// handshake: uvarint len, then the ID.
func appendPeerCluster(b []byte, h peerHello) []byte {
	if h.tag != peerTagRaftCluster {
		return b
	}
	b = binary.AppendUvarint(b, uint64(len(h.cluster)))
	return append(b, h.cluster...)
}

// readPeerCluster reads the cluster ID of a peerTagRaftCluster handshake
// into h (nothing for other tags).
func readPeerCluster(r io.Reader, h *peerHello) error {
	if h.tag != peerTagRaftCluster {
		return nil
	}
	br := byteReader{r: r}
	n, err := binary.ReadUvarint(&br)
	if err != nil {
		return fmt.Errorf("%w: cluster ID length: %w", errBadHandshake, err)
	}
	if br.n != len(binary.AppendUvarint(nil, n)) {
		return fmt.Errorf("%w: cluster ID: non-minimal length encoding", errBadHandshake)
	}
	if n > maxPeerClusterLen {
		return fmt.Errorf("%w: cluster ID length %d over %d", errBadHandshake, n, maxPeerClusterLen)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		return fmt.Errorf("%w: cluster ID: %w", errBadHandshake, err)
	}
	h.cluster = string(buf)
	return nil
}

func appendPeerAddr(b []byte, addr string) []byte {
	b = binary.AppendUvarint(b, uint64(len(addr)))
	return append(b, addr...)
}

// readPeerHandshake reads exactly one handshake from r (never more bytes
// than it consumes, so the next bytes stay in r). It rejects an unknown
// tag, an address length outside 1..maxPeerAddrLen, an address that is not
// host:port and a non-minimal length encoding (so a handshake has exactly
// one encoding).
func readPeerHandshake(r io.Reader) (peerHello, error) {
	br := byteReader{r: r}
	tag, err := br.ReadByte()
	if err != nil {
		return peerHello{}, fmt.Errorf("%w: reading tag: %w", errBadHandshake, err)
	}
	h := peerHello{tag: tag &^ peerAuthMask}
	switch tag & peerAuthMask {
	case 0:
		h.auth = peerAuthNone
	case peerAuthV1:
		h.auth = peerAuthLegacy
	case peerAuthV2:
		h.auth = peerAuthProof
	default:
		return peerHello{}, fmt.Errorf("%w: unknown tag 0x%02x", errBadHandshake, tag)
	}
	if h.tag != peerTagRaft && h.tag != peerTagRPC && h.tag != peerTagRaftCluster {
		return peerHello{}, fmt.Errorf("%w: unknown tag 0x%02x", errBadHandshake, tag)
	}
	if h.from, err = readPeerAddr(&br); err != nil {
		return peerHello{}, fmt.Errorf("%w: dialer address: %w", errBadHandshake, err)
	}
	if h.auth == peerAuthProof {
		if h.to, err = readPeerAddr(&br); err != nil {
			return peerHello{}, fmt.Errorf("%w: dialed address: %w", errBadHandshake, err)
		}
	}
	return h, nil
}

// readPeerAddr reads one uvarint-length-prefixed host:port.
func readPeerAddr(br *byteReader) (string, error) {
	before := br.n
	n, err := binary.ReadUvarint(br)
	if err != nil {
		return "", fmt.Errorf("reading length: %w", err)
	}
	if br.n-before != len(binary.AppendUvarint(nil, n)) {
		return "", errors.New("non-minimal length encoding")
	}
	if n == 0 || n > maxPeerAddrLen {
		return "", fmt.Errorf("length %d outside 1..%d", n, maxPeerAddrLen)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(br.r, buf); err != nil {
		return "", fmt.Errorf("reading: %w", err)
	}
	addr := string(buf)
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return "", fmt.Errorf("%q is not host:port", addr)
	}
	return addr, nil
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
