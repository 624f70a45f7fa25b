package transport

import (
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
)

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
	if tag != peerTagRaft && tag != peerTagRPC {
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
