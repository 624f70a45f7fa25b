package grpcapi

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/streamhouse/streamhouse/transport"
	pb "github.com/streamhouse/streamhouse/transport/gen/streamhouse/v1"
	"github.com/streamhouse/streamhouse/transport/transporttest"
)

// allocatedBytes reads go_memstats_alloc_bytes_total from the agent's
// registry: every byte the process has allocated on the heap so far.
func allocatedBytes(t *testing.T, g prometheus.Gatherer) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "go_memstats_alloc_bytes_total" {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatal("go_memstats_alloc_bytes_total is not exported")
	return 0
}

// TestUnauthenticatedBurstIsRefusedBeforeItsBody sends 16 concurrent
// 32 MiB Produce calls without a token (and 16 more with a read-only key)
// and checks, from the registry's own Go memory metrics, that the server
// refused them without reading their bodies: all the calls together
// allocate less than one of their messages.
func TestUnauthenticatedBurstIsRefusedBeforeItsBody(t *testing.T) {
	tokRead, kRead, _ := transport.NewAPIKey("reader", transport.ScopeRead, nil)
	e := newEnv(t, func(c *Config) { c.Auth = transport.NewAuthenticator([]transport.APIKey{kRead}, false) })
	e.reg.MustRegister(collectors.NewGoCollector())
	const calls, msgBytes = 16, 32 << 20
	body, err := proto.Marshal(&pb.ProduceRequest{Topic: "orders", Records: []*pb.ProduceRecord{{Value: make([]byte, msgBytes-1024)}}})
	if err != nil {
		t.Fatal(err)
	}
	conns := make([]*grpc.ClientConn, 2*calls) // one each, as separate attackers would
	for i := range conns {
		conn, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.ForceCodecV2(transporttest.RawCodec{})))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conns[i] = conn
	}

	before := allocatedBytes(t, e.reg)
	var wg sync.WaitGroup
	errs := make([]error, 2*calls)
	for i := range errs {
		// A generous deadline: before the fix each call moved 32 MiB.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if i >= calls {
			ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tokRead)
		}
		wg.Go(func() {
			errs[i] = conns[i].Invoke(ctx, pb.StreamHouse_Produce_FullMethodName, &transporttest.RawMessage{B: body}, &transporttest.RawMessage{})
		})
	}
	wg.Wait()
	allocated := allocatedBytes(t, e.reg) - before
	for i, err := range errs {
		if i < calls {
			wantCode(t, err, codes.Unauthenticated, transport.CodeUnauthenticated)
		} else {
			wantCode(t, err, codes.PermissionDenied, transport.CodePermissionDenied)
		}
	}
	if allocated >= msgBytes {
		t.Fatalf("%d refused calls of %d MiB allocated %.0f MiB in the process: their bodies were read", 2*calls, msgBytes>>20, allocated/(1<<20))
	}
	for code, want := range map[string]float64{"Unauthenticated": calls, "PermissionDenied": calls} {
		if got := e.requests(t, pb.StreamHouse_Produce_FullMethodName, code); got != want {
			t.Errorf("streamhouse_grpc_requests_total{method=Produce,code=%s} = %v, want %v", code, got, want)
		}
	}
	if got := testutil.ToFloat64(e.errs.WithLabelValues(transport.CodeUnauthenticated)); got != calls {
		t.Errorf("streamhouse_errors_total{kind=unauthenticated} = %v, want %d", got, calls)
	}
}

// h2Conn is a raw HTTP/2 client connection: it sends what a well-behaved
// gRPC client would refuse to send.
type h2Conn struct {
	c  net.Conn
	fr *http2.Framer
}

func dialH2(t *testing.T, addr string) *h2Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second)) // bounds a hung read; not an assertion
	if _, err := c.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	h := &h2Conn{c: c, fr: http2.NewFramer(c, bufio.NewReader(c))}
	if err := h.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	return h
}

// serverSettings reads frames until the server's initial SETTINGS.
func (h *h2Conn) serverSettings(t *testing.T) map[http2.SettingID]uint32 {
	t.Helper()
	for {
		f, err := h.fr.ReadFrame()
		if err != nil {
			t.Fatalf("reading the server's SETTINGS: %v", err)
		}
		if sf, ok := f.(*http2.SettingsFrame); ok && !sf.IsAck() {
			out := map[http2.SettingID]uint32{}
			_ = sf.ForeachSetting(func(s http2.Setting) error { out[s.ID] = s.Val; return nil })
			return out
		}
	}
}

// request sends a gRPC request on stream 1: HEADERS (with extra header
// fields, split into CONTINUATION frames) and an empty message.
func (h *h2Conn) request(t *testing.T, method string, extra ...hpack.HeaderField) {
	t.Helper()
	h.headers(t, 1, method, extra...)
	_ = h.fr.WriteData(1, true, []byte{0, 0, 0, 0, 0})
}

// headers opens stream id with a gRPC request's HEADERS and sends nothing
// more.
func (h *h2Conn) headers(t *testing.T, id uint32, method string, extra ...hpack.HeaderField) {
	t.Helper()
	var blk bytes.Buffer
	enc := hpack.NewEncoder(&blk)
	fields := []hpack.HeaderField{
		{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "http"}, {Name: ":path", Value: method},
		{Name: ":authority", Value: "localhost"}, {Name: "content-type", Value: "application/grpc"}, {Name: "te", Value: "trailers"},
	}
	for _, f := range append(fields, extra...) {
		if err := enc.WriteField(f); err != nil {
			t.Fatal(err)
		}
	}
	b := blk.Bytes()
	const chunk = 16 << 10
	first := b[:min(chunk, len(b))]
	if err := h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: first, EndHeaders: len(b) <= chunk}); err != nil {
		t.Fatal(err)
	}
	for off := chunk; off < len(b); off += chunk {
		end := min(off+chunk, len(b))
		if err := h.fr.WriteContinuation(id, end == len(b), b[off:end]); err != nil {
			return // the server may close the connection while we write
		}
	}
}

// ping sends a PING and reads frames until its ACK.
func (h *h2Conn) ping(t *testing.T) {
	t.Helper()
	data := [8]byte{'s', 'h'}
	if err := h.fr.WritePing(false, data); err != nil {
		t.Fatal(err)
	}
	for {
		f, err := h.fr.ReadFrame()
		if err != nil {
			t.Fatalf("waiting for the PING ack: %v", err)
		}
		if p, ok := f.(*http2.PingFrame); ok && p.IsAck() && p.Data == data {
			return
		}
	}
}

// answered reports whether the server answered stream 1 with a gRPC
// status OK (true), or refused it: RST_STREAM, GOAWAY, a closed connection
// or a non-OK status (false).
func (h *h2Conn) answered(t *testing.T) bool {
	t.Helper()
	dec := hpack.NewDecoder(4096, nil)
	for {
		f, err := h.fr.ReadFrame()
		if err != nil {
			return false
		}
		switch f := f.(type) {
		case *http2.RSTStreamFrame, *http2.GoAwayFrame:
			return false
		case *http2.HeadersFrame:
			hfs, err := dec.DecodeFull(f.HeaderBlockFragment())
			if err != nil {
				t.Fatal(err)
			}
			for _, hf := range hfs {
				if hf.Name == "grpc-status" {
					return hf.Value == "0"
				}
			}
		}
	}
}

// TestLargeMetadataIsRefused: a request whose header list exceeds the
// advertised limit (a 10 MiB metadata value, sent by a client that ignores
// the limit) is refused even on the open health service, and the server
// advertises bounds on header lists and concurrent streams.
func TestLargeMetadataIsRefused(t *testing.T) {
	_, k, _ := transport.NewAPIKey("reader", transport.ScopeRead, nil)
	e := newEnv(t, func(c *Config) { c.Auth = transport.NewAuthenticator([]transport.APIKey{k}, false) })

	h := dialH2(t, e.addr)
	settings := h.serverSettings(t)
	if got := settings[http2.SettingMaxHeaderListSize]; got == 0 || got > MaxHeaderListBytes {
		t.Errorf("SETTINGS_MAX_HEADER_LIST_SIZE = %d, want 1..%d", got, MaxHeaderListBytes)
	}
	if got := settings[http2.SettingMaxConcurrentStreams]; got != DefaultMaxConcurrentStreams {
		t.Errorf("SETTINGS_MAX_CONCURRENT_STREAMS = %d, want %d", got, DefaultMaxConcurrentStreams)
	}
	h.request(t, "/grpc.health.v1.Health/Check", hpack.HeaderField{Name: "x-pad", Value: strings.Repeat("x", 10<<20)})
	if h.answered(t) {
		t.Fatal("a health check with 10 MiB of metadata was served")
	}

	// The same check with small metadata is served: the refusal was the size.
	h = dialH2(t, e.addr)
	h.request(t, "/grpc.health.v1.Health/Check", hpack.HeaderField{Name: "x-pad", Value: "small"})
	if !h.answered(t) {
		t.Fatal("a health check with small metadata was refused")
	}
}

// TestOpenCallsInFlightAreBounded: with API keys on, calls to the open
// health service that have not sent their request message hold one of
// MaxOpenCallsInFlight slots; beyond that an unauthenticated call is
// refused before its body is read. A Watch that received its request does
// not hold a slot, and the slots come back when the stalled calls end.
func TestOpenCallsInFlightAreBounded(t *testing.T) {
	_, k, _ := transport.NewAPIKey("reader", transport.ScopeRead, nil)
	e := newEnv(t, func(c *Config) { c.Auth = transport.NewAuthenticator([]transport.APIKey{k}, false) })
	health := healthpb.NewHealthClient(e.conn)
	for range MaxOpenCallsInFlight + 1 {
		w, err := health.Watch(ctxT(t), &healthpb.HealthCheckRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Recv(); err != nil {
			t.Fatalf("health Watch: %v", err)
		}
	}

	h := dialH2(t, e.addr)
	for i := range MaxOpenCallsInFlight {
		h.headers(t, uint32(2*i+1), healthpb.Health_Check_FullMethodName) // the body never comes
	}
	h.ping(t) // the server handles a connection's frames in order: the calls are admitted
	if _, err := health.Check(ctxT(t), &healthpb.HealthCheckRequest{}); status.Code(err) != codes.Unavailable {
		t.Fatalf("a health check while %d calls stall: %v, want Unavailable", MaxOpenCallsInFlight, err)
	}
	_ = h.c.Close()
	waitFor(t, 10*time.Second, "the slots to come back", func() bool {
		_, err := health.Check(ctxT(t), &healthpb.HealthCheckRequest{})
		return err == nil
	})
}
