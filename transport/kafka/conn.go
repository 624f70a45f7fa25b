package kafka

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// Conn is one client connection. Handlers may read its identity and
// record authentication state on it; only the connection's goroutine
// touches it.
type Conn struct {
	s  *Server
	nc net.Conn
	// ClientID is the client.id of the request being handled.
	ClientID string
	// Principal is the authenticated API key name ("" when none).
	Principal string
	sasl      saslState // sasl.go
	// accepted is when the connection was accepted (bounds the time an
	// unauthenticated connection may stay open).
	accepted time.Time
	// closeAfterResponse closes the connection once the response in
	// progress is written (a failed SASL authentication).
	closeAfterResponse bool
}

// Bounds on connections that have not authenticated while API keys are
// on: small frames (Kafka's sasl.server.max.receive.size is 512 KiB) and
// a short life, so that an attacker without a key can pin neither memory
// nor connections.
const preAuthMaxBytes = 512 << 10

// frameChunk is how much of a frame is allocated before its bytes arrive;
// the buffer grows as they do, so a size prefix alone pins no memory.
const frameChunk = 64 << 10

// preAuth reports whether the connection must still authenticate.
func (c *Conn) preAuth() bool { return c.s.cfg.Auth != nil && !c.sasl.authenticated }

// readLimits are the largest frame and the deadline for the next one.
func (c *Conn) readLimits() (int32, time.Time) {
	if c.preAuth() {
		return min(preAuthMaxBytes, c.s.cfg.MaxRequestBytes), c.accepted.Add(c.s.cfg.PreAuthTimeout)
	}
	return c.s.cfg.MaxRequestBytes, time.Now().Add(c.s.cfg.IdleTimeout)
}

// RemoteAddr is the client's address.
func (c *Conn) RemoteAddr() net.Addr { return c.nc.RemoteAddr() }

// requestHeader is the part of a request before its body.
type requestHeader struct {
	key           int16
	version       int16
	correlationID int32
	clientID      string
}

// errProtocol marks a request the broker cannot parse or does not
// support: the connection is closed, as Kafka brokers do.
var errProtocol = errors.New("kafka protocol error")

func (s *Server) serveConn(nc net.Conn) {
	defer s.untrackConn(nc)
	defer nc.Close()
	if g := s.cfg.Connections; g != nil {
		g.Inc()
		defer g.Dec()
	}
	c := &Conn{s: s, nc: nc, accepted: time.Now()}
	br := bufio.NewReaderSize(nc, 64<<10)
	bw := bufio.NewWriterSize(nc, 64<<10)
	for {
		if err := c.serveOne(br, bw); err != nil {
			if !errors.Is(err, io.EOF) && !s.isClosed() {
				s.cfg.Logger.Debug("kafka connection closed", "remote", nc.RemoteAddr().String(), "client_id", c.ClientID, "err", err)
			}
			return
		}
	}
}

// serveOne reads, handles and answers one request.
func (c *Conn) serveOne(br *bufio.Reader, bw *bufio.Writer) error {
	max, deadline := c.readLimits()
	_ = c.nc.SetReadDeadline(deadline)
	frame, err := readFrame(br, max)
	if err != nil {
		return err
	}
	_ = c.nc.SetReadDeadline(time.Time{})
	if c.sasl.raw {
		return c.serveRawSASL(frame, bw)
	}
	hdr, body, err := parseHeader(frame)
	if err != nil {
		return err
	}
	c.ClientID = hdr.clientID
	resp, err := c.s.handle(c.s.ctx, c, hdr, body)
	if err != nil || resp == nil {
		return err // nil, nil: no response (Produce with acks=0)
	}
	if err := writeAnswer(bw, c.nc, hdr, resp); err != nil {
		return err
	}
	if c.closeAfterResponse {
		return fmt.Errorf("%w: closed after a failed authentication", errProtocol)
	}
	return nil
}

// readFrame reads one size-prefixed request; a size beyond max is refused
// before anything is allocated, and the buffer grows only as bytes arrive
// (at most twice what was received).
func readFrame(r io.Reader, max int32) ([]byte, error) {
	var size [4]byte
	if _, err := io.ReadFull(r, size[:]); err != nil {
		return nil, err
	}
	n := int(int32(binary.BigEndian.Uint32(size[:])))
	if n < 8 || n > int(max) {
		return nil, fmt.Errorf("%w: request size %d outside [8, %d]", errProtocol, n, max)
	}
	buf := make([]byte, 0, min(n, frameChunk))
	for len(buf) < n {
		if len(buf) == cap(buf) {
			buf = append(make([]byte, 0, min(n, 2*cap(buf))), buf...)
		}
		k, err := io.ReadFull(r, buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+k]
		if err != nil {
			return nil, err
		}
	}
	return buf, nil
}

// parseHeader splits a frame into its header and body. The client ID is a
// nullable int16-length string in every header version; the flexible
// header's tagged fields are skipped by the caller once the API's
// flexibility is known.
func parseHeader(b []byte) (requestHeader, []byte, error) {
	var h requestHeader
	if len(b) < 10 {
		return h, nil, fmt.Errorf("%w: short request header", errProtocol)
	}
	h.key = int16(binary.BigEndian.Uint16(b[0:]))
	h.version = int16(binary.BigEndian.Uint16(b[2:]))
	h.correlationID = int32(binary.BigEndian.Uint32(b[4:]))
	n := int16(binary.BigEndian.Uint16(b[8:]))
	b = b[10:]
	if n > 0 {
		if int(n) > len(b) {
			return h, nil, fmt.Errorf("%w: client id longer than the request", errProtocol)
		}
		h.clientID, b = string(b[:n]), b[n:]
	}
	return h, b, nil
}

// skipTags skips a tagged-field section (flexible versions).
func skipTags(b []byte) ([]byte, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 {
		return nil, fmt.Errorf("%w: bad tagged fields", errProtocol)
	}
	b = b[k:]
	for range n {
		if _, k = binary.Uvarint(b); k <= 0 {
			return nil, fmt.Errorf("%w: bad tag", errProtocol)
		}
		b = b[k:]
		size, k := binary.Uvarint(b)
		if k <= 0 || uint64(len(b)-k) < size {
			return nil, fmt.Errorf("%w: bad tag size", errProtocol)
		}
		b = b[k+int(size):]
	}
	return b, nil
}

// writeAnswer writes resp to the connection w (through bw) and gives its
// pooled buffers back: a Fetch answer with large record sets as a vector
// (writeFetch) on a TCP connection, anything else as one frame.
func writeAnswer(bw *bufio.Writer, w io.Writer, hdr requestHeader, resp kmsg.Response) error {
	defer releaseResponse(resp)
	// Only on a plain TCP connection: TLS writes a vector piece by piece,
	// each length prefix its own record and system call.
	_, tcp := w.(*net.TCPConn)
	if f, ok := resp.(*kmsg.FetchResponse); ok && tcp && fetchRecordBytes(f) >= spliceMin {
		return writeFetch(bw, w, hdr, f)
	}
	return writeResponse(bw, hdr, resp)
}

// writeResponse writes resp framed with hdr's correlation ID. ApiVersions
// responses always use header v0 (no tagged fields), so that a client can
// read them before it knows the broker's versions. The frame is encoded
// into one buffer sized for it (responseSize), pooled when large.
func writeResponse(bw *bufio.Writer, hdr requestHeader, resp kmsg.Response) error {
	buf := getBuf(responseSize(resp))[:8]
	defer func() { putBuf(buf) }()
	binary.BigEndian.PutUint32(buf[4:], uint32(hdr.correlationID))
	if resp.IsFlexible() && hdr.key != (&kmsg.ApiVersionsRequest{}).Key() {
		buf = append(buf, 0)
	}
	buf = resp.AppendTo(buf)
	binary.BigEndian.PutUint32(buf[0:], uint32(len(buf)-4))
	if _, err := bw.Write(buf); err != nil {
		return err
	}
	return bw.Flush()
}
