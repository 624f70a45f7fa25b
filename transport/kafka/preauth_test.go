package kafka

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// closedByServer reports whether the server closes c (a read returns EOF or
// a reset) before the test's own bound.
func closedByServer(t *testing.T, c net.Conn) bool {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.ReadAll(c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return false
	}
	return true
}

func TestUnauthenticatedConnectionMaySendOnlySmallFrames(t *testing.T) {
	k := newKeyedEnv(t)
	c, err := net.Dial("tcp", k.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// A 1 MiB size prefix from a connection that has not authenticated.
	if _, err := c.Write(binary.BigEndian.AppendUint32(nil, 1<<20)); err != nil {
		t.Fatal(err)
	}
	if !closedByServer(t, c) {
		t.Fatal("a 1 MiB frame before authentication did not close the connection")
	}
}

func TestUnauthenticatedConnectionIsClosedAfterPreAuthTimeout(t *testing.T) {
	k := newKeyedEnv(t, func(c *Config) { c.PreAuthTimeout = 100 * time.Millisecond })
	c, err := net.Dial("tcp", k.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !closedByServer(t, c) {
		t.Fatal("an idle unauthenticated connection stayed open")
	}
}

func TestReadFrameAllocatesAsBytesArrive(t *testing.T) {
	// A 100 MiB size prefix followed by 10 bytes and the end of the stream.
	in := append(binary.BigEndian.AppendUint32(nil, 100<<20), make([]byte, 10)...)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if _, err := readFrame(bytes.NewReader(in), 200<<20); err == nil {
		t.Fatal("a truncated frame was read")
	}
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
		t.Fatalf("reading 14 bytes of a frame claiming 100 MiB allocated %d bytes", grew)
	}
	// A whole frame larger than one chunk still reads back intact.
	body := bytes.Repeat([]byte("abcdefgh"), 3*frameChunk/8+3)
	got, err := readFrame(bytes.NewReader(append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)), 1<<30)
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("read %d bytes (err %v), want %d", len(got), err, len(body))
	}
}

// request writes one request on c and reads its response body.
func request(t *testing.T, c net.Conn, r *bufio.Reader, req kmsg.Request, corr int32) []byte {
	t.Helper()
	var body []byte
	if req.IsFlexible() {
		body = append(body, 0) // the request header's empty tagged fields
	}
	body = req.AppendTo(body)
	if _, err := c.Write(frame(req.Key(), req.GetVersion(), corr, body)); err != nil {
		t.Fatal(err)
	}
	var size [4]byte
	if _, err := io.ReadFull(r, size[:]); err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	buf := make([]byte, binary.BigEndian.Uint32(size[:]))
	if _, err := io.ReadFull(r, buf); err != nil {
		t.Fatal(err)
	}
	return buf[4:] // after the correlation ID
}

func TestFailedSASLAuthenticationClosesTheConnection(t *testing.T) {
	k := newKeyedEnv(t)
	c, err := net.Dial("tcp", k.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	hs := kmsg.NewPtrSASLHandshakeRequest()
	hs.Version, hs.Mechanism = 1, "PLAIN"
	request(t, c, r, hs, 1)
	auth := kmsg.NewPtrSASLAuthenticateRequest()
	auth.Version, auth.SASLAuthBytes = 1, []byte("\x00admin\x00not-a-key")
	resp := kmsg.NewPtrSASLAuthenticateResponse()
	resp.Version = 1
	if err := resp.ReadFrom(request(t, c, r, auth, 2)); err != nil {
		t.Fatal(err)
	}
	if resp.ErrorCode != kerr.SaslAuthenticationFailed.Code {
		t.Fatalf("error code %d, want SASL_AUTHENTICATION_FAILED", resp.ErrorCode)
	}
	if !closedByServer(t, c) {
		t.Fatal("the connection stayed open after a failed authentication")
	}
}

func TestConnectionsBeyondMaxConnectionsAreClosed(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxConnections = 1 })
	first, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	// The first connection is served (ApiVersions answers) ...
	request(t, first, bufio.NewReader(first), kmsg.NewPtrApiVersionsRequest(), 1)
	second, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	// ... the second is closed at once.
	if !closedByServer(t, second) {
		t.Fatal("a connection beyond MaxConnections was served")
	}
}
