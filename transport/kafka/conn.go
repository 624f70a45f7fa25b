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
	c := &Conn{s: s, nc: nc}
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
	_ = c.nc.SetReadDeadline(time.Now().Add(c.s.cfg.IdleTimeout))
	frame, err := readFrame(br, c.s.cfg.MaxRequestBytes)
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
	return writeResponse(bw, hdr, resp)
}

// readFrame reads one size-prefixed request; a size beyond max is refused
// before anything is allocated.
func readFrame(r *bufio.Reader, max int32) ([]byte, error) {
	var size [4]byte
	if _, err := io.ReadFull(r, size[:]); err != nil {
		return nil, err
	}
	n := int32(binary.BigEndian.Uint32(size[:]))
	if n < 8 || n > max {
		return nil, fmt.Errorf("%w: request size %d outside [8, %d]", errProtocol, n, max)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, err
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

// writeResponse writes resp framed with hdr's correlation ID. ApiVersions
// responses always use header v0 (no tagged fields), so that a client can
// read them before it knows the broker's versions.
func writeResponse(bw *bufio.Writer, hdr requestHeader, resp kmsg.Response) error {
	buf := make([]byte, 8, 256)
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
