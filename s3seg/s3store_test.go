package s3seg_test

// Tests of S3Store against a real MinIO server process (s3segtest.StartMinIO).
// They never skip: without the MinIO binary they fail and say to run
// `make deps`.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/streamhouse/streamhouse/jepsen/testkit"
	"github.com/streamhouse/streamhouse/s3seg"
	"github.com/streamhouse/streamhouse/s3seg/s3segtest"
)

func TestS3StoreConformance(t *testing.T) {
	m := s3segtest.StartMinIO(t)
	s3segtest.RunObjectStoreSuite(t, func(t *testing.T) s3seg.ObjectStore {
		return m.NewStore(t, m.NewBucket(t)) // a fresh bucket per subtest
	})
}

func TestNewS3StoreConfigErrors(t *testing.T) {
	ok := s3seg.S3Config{Endpoint: "http://127.0.0.1:9000", Bucket: "b", AccessKeyID: "a", SecretAccessKey: "s"}
	for _, tc := range []struct {
		name string
		edit func(*s3seg.S3Config)
		want string
	}{
		{"no bucket", func(c *s3seg.S3Config) { c.Bucket = "" }, "S3_BUCKET"},
		{"bucket path", func(c *s3seg.S3Config) { c.Bucket = "b/dir" }, "prefix"},
		{"only access key", func(c *s3seg.S3Config) { c.SecretAccessKey = "" }, "AWS_SECRET_ACCESS_KEY"},
		{"only secret key", func(c *s3seg.S3Config) { c.AccessKeyID = "" }, "AWS_ACCESS_KEY_ID"},
		{"endpoint without scheme", func(c *s3seg.S3Config) { c.Endpoint = "minio:9000" }, "S3_ENDPOINT"},
		{"endpoint bad scheme", func(c *s3seg.S3Config) { c.Endpoint = "ftp://minio" }, "S3_ENDPOINT"},
		{"bad prefix", func(c *s3seg.S3Config) { c.Prefix = "a/../b" }, "prefix"},
	} {
		cfg := ok
		tc.edit(&cfg)
		if _, err := s3seg.NewS3Store(bg, cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error mentioning %q", tc.name, err, tc.want)
		}
	}
	// Nothing listens there, and NewS3Store must not care.
	s, err := s3seg.NewS3Store(bg, s3seg.S3Config{Endpoint: "http://127.0.0.1:1", Bucket: "b", Prefix: "/cluster-a"})
	if err != nil {
		t.Fatalf("NewS3Store contacted S3 or rejected a valid config: %v", err)
	}
	defer s.Close()
	if s.Prefix() != "cluster-a/" || s.Bucket() != "b" {
		t.Fatalf("Prefix() = %q, Bucket() = %q", s.Prefix(), s.Bucket())
	}
}

func TestS3StoreCheckErrors(t *testing.T) {
	m := s3segtest.StartMinIO(t)
	bucket := m.NewBucket(t)
	if err := m.NewStore(t, bucket).Check(bg); err != nil {
		t.Fatalf("Check of an existing bucket: %v", err)
	}

	t.Run("MissingBucket", func(t *testing.T) {
		err := m.NewStore(t, "no-such-bucket").Check(bg)
		t.Logf("Check: %v", err)
		if !errors.Is(err, s3seg.ErrBucketNotFound) || !strings.Contains(err.Error(), `"no-such-bucket"`) || !strings.Contains(err.Error(), "S3_BUCKET") {
			t.Fatalf("Check: %v; want ErrBucketNotFound naming the bucket and S3_BUCKET", err)
		}
		// Data operations on a missing bucket say so too.
		err = m.NewStore(t, "no-such-bucket").Put(bg, "k", []byte("x"))
		if !errors.Is(err, s3seg.ErrBucketNotFound) || !strings.Contains(err.Error(), "no-such-bucket") {
			t.Fatalf("Put: %v; want ErrBucketNotFound", err)
		}
	})

	t.Run("WrongSecretKey", func(t *testing.T) {
		cfg := m.Config(bucket)
		cfg.SecretAccessKey += "-wrong"
		s := s3segtest.NewS3Store(t, cfg)
		err := s.Check(bg)
		t.Logf("Check: %v", err)
		if !errors.Is(err, s3seg.ErrAccessDenied) || !strings.Contains(err.Error(), "credentials") || !strings.Contains(err.Error(), "AWS_SECRET_ACCESS_KEY") {
			t.Fatalf("Check: %v; want ErrAccessDenied mentioning the credentials and AWS_SECRET_ACCESS_KEY", err)
		}
		if err := s.Put(bg, "k", []byte("x")); !errors.Is(err, s3seg.ErrAccessDenied) {
			t.Fatalf("Put: %v; want ErrAccessDenied", err)
		}
		if _, err := s.Get(bg, "k"); !errors.Is(err, s3seg.ErrAccessDenied) {
			t.Fatalf("Get: %v; want ErrAccessDenied", err)
		}
	})

	t.Run("UnknownAccessKey", func(t *testing.T) {
		cfg := m.Config(bucket)
		cfg.AccessKeyID = "nobody"
		if err := s3segtest.NewS3Store(t, cfg).Check(bg); !errors.Is(err, s3seg.ErrAccessDenied) || !strings.Contains(err.Error(), "AWS_ACCESS_KEY_ID") {
			t.Fatalf("Check: %v; want ErrAccessDenied mentioning AWS_ACCESS_KEY_ID", err)
		}
	})

	t.Run("NothingListening", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		endpoint := "http://" + l.Addr().String()
		l.Close()
		cfg := m.Config(bucket)
		cfg.Endpoint = endpoint
		s := s3segtest.NewS3Store(t, cfg)
		err = s.Check(bg)
		t.Logf("Check: %v", err)
		if !errors.Is(err, s3seg.ErrUnreachable) || !strings.Contains(err.Error(), endpoint) || !strings.Contains(err.Error(), "S3_ENDPOINT") {
			t.Fatalf("Check: %v; want ErrUnreachable naming %s and S3_ENDPOINT", err, endpoint)
		}
		if _, err := s.Head(bg, "k"); !errors.Is(err, s3seg.ErrUnreachable) || !strings.Contains(err.Error(), endpoint) {
			t.Fatalf("Head: %v; want ErrUnreachable naming the endpoint", err)
		}
	})

	t.Run("CanceledContext", func(t *testing.T) {
		ctx, cancel := context.WithCancel(bg)
		cancel()
		if err := m.NewStore(t, bucket).Check(ctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("Check: %v; want context.Canceled", err)
		}
	})
}

func TestS3StorePrefix(t *testing.T) {
	m := s3segtest.StartMinIO(t)
	bucket := m.NewBucket(t)
	root := m.NewStore(t, bucket)
	cfgA, cfgB := m.Config(bucket), m.Config(bucket)
	cfgA.Prefix, cfgB.Prefix = "cluster-a", "cluster-b/"
	a, b := s3segtest.NewS3Store(t, cfgA), s3segtest.NewS3Store(t, cfgB)

	for _, k := range []string{"segments/1", "segments/2", "x"} {
		if err := a.Put(bg, k, []byte("a:"+k)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Put(bg, "segments/1", []byte("b")); err != nil {
		t.Fatalf("the same key under another prefix: %v", err)
	}
	if err := a.Put(bg, "x", nil); !errors.Is(err, s3seg.ErrExists) {
		t.Fatalf("overwrite under a prefix: %v", err)
	}
	list, err := a.List(bg, "")
	if err != nil || !slices.Equal(keysOf(list), []string{"segments/1", "segments/2", "x"}) {
		t.Fatalf("List under prefix = %q, %v", keysOf(list), err)
	}
	if list, err := a.List(bg, "seg"); err != nil || len(list) != 2 {
		t.Fatalf("List(seg) = %q, %v", keysOf(list), err)
	}
	if got, err := b.Get(bg, "segments/1"); err != nil || string(got) != "b" {
		t.Fatalf("b.Get = %q, %v", got, err)
	}
	if _, err := b.Get(bg, "x"); !errors.Is(err, s3seg.ErrNotFound) {
		t.Fatalf("another prefix's object visible: %v", err)
	}
	info, err := a.Head(bg, "segments/2")
	if err != nil || info.Key != "segments/2" || info.Size != int64(len("a:segments/2")) {
		t.Fatalf("Head = %+v, %v", info, err)
	}
	// The bucket holds the full names.
	all, err := root.List(bg, "")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"cluster-a/segments/1", "cluster-a/segments/2", "cluster-a/x", "cluster-b/segments/1"}
	if !slices.Equal(keysOf(all), want) {
		t.Fatalf("bucket contents = %q, want %q", keysOf(all), want)
	}
	// The key limit applies to prefix + key.
	// (Segments of 100 bytes: MinIO limits a path segment to 255 bytes.)
	long := strings.Repeat(strings.Repeat("k", 99)+"/", 10)
	long += strings.Repeat("k", s3seg.MaxKeyLength-len("cluster-a/")-len(long)+1)
	if err := a.Put(bg, long, nil); !errors.Is(err, s3seg.ErrInvalidKey) {
		t.Fatalf("prefix + key over %d bytes: %v, want ErrInvalidKey", s3seg.MaxKeyLength, err)
	}
	if err := a.Put(bg, long[:len(long)-1], []byte("x")); err != nil {
		t.Fatalf("prefix + key of exactly %d bytes: %v", s3seg.MaxKeyLength, err)
	}
}

func TestS3StoreListPaginates(t *testing.T) {
	m := s3segtest.StartMinIO(t)
	s := m.NewStore(t, m.NewBucket(t))
	s3seg.SetS3ListPageSize(s, 7)
	var want []string
	for i := range 30 {
		k := fmt.Sprintf("p/%03d", (i*17)%30)
		want = append(want, k)
		if err := s.Put(bg, k, []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Put(bg, "q", nil); err != nil {
		t.Fatal(err)
	}
	slices.Sort(want)
	list, err := s.List(bg, "p/")
	if err != nil || !slices.Equal(keysOf(list), want) {
		t.Fatalf("List over 5 pages = %q, %v; want %q", keysOf(list), err, want)
	}
	// Objects another tool wrote whose names are not valid keys (a
	// "directory" marker, a hidden file) are skipped.
	m.PutRaw(t, s.Bucket(), "p/dir/", nil)
	m.PutRaw(t, s.Bucket(), "p/.hidden", []byte("x"))
	list, err = s.List(bg, "p/")
	if err != nil || !slices.Equal(keysOf(list), want) {
		t.Fatalf("List with foreign objects = %q, %v; want %q", keysOf(list), err, want)
	}
}

func TestS3StoreGetRangeEdges(t *testing.T) {
	m := s3segtest.StartMinIO(t)
	s := m.NewStore(t, m.NewBucket(t))
	data := []byte("0123456789")
	if err := s.Put(bg, "ten", data); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(bg, "empty", nil); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		key    string
		off, n int64
		ok     bool
	}{
		{"ten", 0, 10, true}, {"ten", 9, 1, true}, {"ten", 3, 4, true},
		{"ten", 9, 2, false},  // runs past the end: S3 answers 206 with 1 byte
		{"ten", 0, 11, false}, // S3 answers 206 with the whole object
		{"ten", 10, 1, false}, // starts at the end: S3 answers 416
		{"ten", 1 << 40, 1, false},
		{"ten", 5, 1<<63 - 1, false}, // off+n overflows
		{"empty", 0, 1, false},
	} {
		got, err := s.GetRange(bg, tc.key, tc.off, tc.n)
		switch {
		case tc.ok && (err != nil || !bytes.Equal(got, data[tc.off:tc.off+tc.n])):
			t.Errorf("GetRange(%s, %d, %d) = %q, %v", tc.key, tc.off, tc.n, got, err)
		case !tc.ok && !errors.Is(err, s3seg.ErrInvalidRange):
			t.Errorf("GetRange(%s, %d, %d): %v, want ErrInvalidRange", tc.key, tc.off, tc.n, err)
		}
	}
}

// TestS3StoreOutage stops the server under a store: calls fail (bounded by
// the store's timeouts and attempts) with ErrUnreachable, and work again once
// the server is back on the same port with the same data.
func TestS3StoreOutage(t *testing.T) {
	m := s3segtest.StartMinIO(t)
	s := m.NewStore(t, m.NewBucket(t))
	if err := s.Put(bg, "before", []byte("kept")); err != nil {
		t.Fatal(err)
	}
	m.Stop(t)
	// A generous outer bound only so a hang fails instead of blocking the
	// run; the store's own timeouts end these calls much earlier.
	ctx, cancel := context.WithTimeout(bg, time.Minute)
	defer cancel()
	if err := s.Put(ctx, "during", []byte("x")); !errors.Is(err, s3seg.ErrUnreachable) {
		t.Fatalf("Put with the server down: %v, want ErrUnreachable", err)
	}
	if _, err := s.Get(ctx, "before"); !errors.Is(err, s3seg.ErrUnreachable) {
		t.Fatalf("Get with the server down: %v, want ErrUnreachable", err)
	}
	if err := s.Check(ctx); !errors.Is(err, s3seg.ErrUnreachable) {
		t.Fatalf("Check with the server down: %v, want ErrUnreachable", err)
	}
	m.Restart(t)
	if err := s.Check(bg); err != nil {
		t.Fatalf("Check after restart: %v", err)
	}
	if err := s.Put(bg, "after", []byte("new")); err != nil {
		t.Fatalf("Put after restart: %v", err)
	}
	for k, want := range map[string]string{"before": "kept", "after": "new"} {
		if got, err := s.Get(bg, k); err != nil || string(got) != want {
			t.Fatalf("Get(%s) after restart = %q, %v; want %q", k, got, err, want)
		}
	}
	if _, err := s.Get(bg, "during"); !errors.Is(err, s3seg.ErrNotFound) {
		t.Fatalf("the failed Put created an object: %v", err)
	}
}

// faultProxy is an HTTP reverse proxy in front of MinIO that counts requests
// and response body bytes and can break responses: the test's view of what
// went over the wire.
type faultProxy struct {
	t         *testing.T
	srv       *httptest.Server
	rp        *httputil.ReverseProxy
	transport *http.Transport

	mu           sync.Mutex
	requests     map[string]int // by method
	bodyBytes    int64          // response body bytes sent to the client
	dropPuts     int            // PUT responses to drop after MinIO handled the request
	truncateGets int            // GET responses to cut off after half the body
}

// proxiedBucket is a new bucket on MinIO and the configuration of a store
// that reaches it through a faultProxy.
func proxiedBucket(t *testing.T) (*faultProxy, s3seg.S3Config) {
	m := s3segtest.StartMinIO(t)
	p := newFaultProxy(t, m.Endpoint)
	cfg := m.Config(m.NewBucket(t))
	cfg.Endpoint = p.srv.URL
	return p, cfg
}

func newFaultProxy(t *testing.T, target string) *faultProxy {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{t: t, requests: map[string]int{}, transport: &http.Transport{}}
	// The Host header is kept (the client signed it), only the address
	// changes.
	p.rp = httputil.NewSingleHostReverseProxy(u)
	p.rp.Transport = p.transport
	p.srv = httptest.NewServer(p)
	t.Cleanup(func() {
		p.srv.Close()
		p.transport.CloseIdleConnections()
	})
	return p
}

func (p *faultProxy) take(n *int) bool {
	if *n > 0 {
		*n--
		return true
	}
	return false
}

func (p *faultProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	p.requests[r.Method]++
	drop := r.Method == http.MethodPut && p.take(&p.dropPuts)
	truncate := r.Method == http.MethodGet && p.take(&p.truncateGets)
	p.mu.Unlock()
	if !drop && !truncate {
		p.rp.ServeHTTP(&countingWriter{ResponseWriter: w, p: p}, r)
		return
	}
	rec := httptest.NewRecorder()
	p.rp.ServeHTTP(rec, r)
	if truncate {
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		body := rec.Body.Bytes()
		_, _ = w.Write(body[:len(body)/2])
		w.(http.Flusher).Flush()
	}
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		p.t.Errorf("proxy: hijack: %v", err)
		return
	}
	conn.Close()
}

func (p *faultProxy) count(method string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.requests[method]
}

func (p *faultProxy) bytesSent() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.bodyBytes
}

// countingWriter counts response body bytes before they are written, so the
// count is complete by the time the client has read the body.
type countingWriter struct {
	http.ResponseWriter
	p *faultProxy
}

func (w *countingWriter) Write(b []byte) (int, error) {
	w.p.mu.Lock()
	w.p.bodyBytes += int64(len(b))
	w.p.mu.Unlock()
	return w.ResponseWriter.Write(b)
}

func (w *countingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// TestS3StorePutRetryAfterLostResponse: the first PUT reaches MinIO but its
// response is lost, so the SDK retries, and the retry's If-None-Match: *
// fails because the first attempt landed. Put must report success, since
// the object holds exactly its data.
func TestS3StorePutRetryAfterLostResponse(t *testing.T) {
	p, cfg := proxiedBucket(t)
	s := s3segtest.NewS3Store(t, cfg)
	p.dropPuts = 1
	data := payloadBytes(10_000)
	if err := s.Put(bg, "landed", data); err != nil {
		t.Fatalf("Put whose first attempt landed: %v", err)
	}
	if n := p.count(http.MethodPut); n != 2 {
		t.Fatalf("%d PUTs went out, want 2 (one lost response, one retry)", n)
	}
	if got, err := s.Get(bg, "landed"); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Get: %d bytes, %v", len(got), err)
	}
	// A genuine second Put of the same key, with the same bytes, is still
	// refused: only a retried attempt is checked against the stored object.
	if err := s.Put(bg, "landed", data); !errors.Is(err, s3seg.ErrExists) {
		t.Fatalf("second Put: %v, want ErrExists", err)
	}
}

// TestS3StoreGetRetriesTruncatedBody: a response body cut off mid-transfer
// (after the SDK has returned) is fetched again.
func TestS3StoreGetRetriesTruncatedBody(t *testing.T) {
	p, cfg := proxiedBucket(t)
	s := s3segtest.NewS3Store(t, cfg)
	data := payloadBytes(100_000)
	if err := s.Put(bg, "obj", data); err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	p.truncateGets = 1
	p.mu.Unlock()
	got, err := s.GetRange(bg, "obj", 1000, 50_000)
	if err != nil || !bytes.Equal(got, data[1000:51_000]) {
		t.Fatalf("GetRange after a truncated response: %d bytes, %v", len(got), err)
	}
	if n := p.count(http.MethodGet); n != 2 {
		t.Fatalf("%d GETs, want 2", n)
	}
}

// TestS3StoreReaderCache reads blocks of a segment on MinIO through
// Instrumented(S3Store), a Cache and a Reader: each block costs exactly one
// ranged GET of exactly its bytes, and a cached block costs nothing.
func TestS3StoreReaderCache(t *testing.T) {
	p, cfg := proxiedBucket(t)
	reg := prometheus.NewRegistry()
	store := s3seg.Instrumented(s3segtest.NewS3Store(t, cfg), reg, "s3")

	var parts []s3seg.PartitionBatch
	for i := range 4 {
		parts = append(parts, batch(uint64(i), "orders", 7, int32(i), s3seg.Compression(i%3), 1000, 200, 100))
	}
	obj, footer := mustEncode(t, parts...)
	key := s3seg.ObjectKey("node-1", 5)
	if err := store.Put(bg, key, obj); err != nil {
		t.Fatal(err)
	}
	r := s3seg.NewReader(store, s3seg.NewCache(1<<20, reg, s3seg.RawSize))
	f, size, err := r.ReadFooter(bg, key)
	if err != nil || size != int64(len(obj)) || len(f.Entries) != 4 {
		t.Fatalf("ReadFooter: %d entries, size %d, %v", len(f.Entries), size, err)
	}

	e := footer.Entries[2]
	gets, sent := p.count(http.MethodGet), p.bytesSent()
	for round := range 3 {
		recs, err := r.ReadBlock(bg, key, e)
		if err != nil {
			t.Fatal(err)
		}
		if err := recordsEqual(recs, parts[2].Records); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
	}
	if got := p.count(http.MethodGet) - gets; got != 1 {
		t.Fatalf("%d GETs on the wire for one block read 3 times, want 1", got)
	}
	if got := p.bytesSent() - sent; got != e.Length {
		t.Fatalf("%d body bytes on the wire, want the block's %d", got, e.Length)
	}
	// The footer read was a Head and one ranged GET of the tail; the block
	// one more ranged GET of exactly e.Length bytes.
	const want = `
# HELP streamhouse_s3_bytes_total Object payload bytes transferred by operation and direction (upload or download).
# TYPE streamhouse_s3_bytes_total counter
streamhouse_s3_bytes_total{backend="s3",direction="download",operation="get"} 0
streamhouse_s3_bytes_total{backend="s3",direction="download",operation="get_range"} %d
streamhouse_s3_bytes_total{backend="s3",direction="upload",operation="put"} %d
`
	tail := min(int64(len(obj)), s3seg.DefaultFooterTail)
	exp := fmt.Sprintf(want, tail+e.Length, len(obj))
	if err := testutil.GatherAndCompare(reg, strings.NewReader(exp), "streamhouse_s3_bytes_total"); err != nil {
		t.Fatal(err)
	}
	if got := testkit.Metric(t, reg, "streamhouse_s3_requests_total", "operation", "get_range", "result", "ok"); got != 2 {
		t.Fatalf("get_range requests = %v, want 2 (footer tail, block)", got)
	}
	if got := testkit.Metric(t, reg, "streamhouse_segment_cache_hits_total"); got != 2 {
		t.Fatalf("cache hits = %v, want 2", got)
	}
}

func payloadBytes(n int) []byte {
	r := rng(uint64(n))
	return r.bytes(n)
}

func keysOf(infos []s3seg.ObjectInfo) []string {
	out := make([]string, len(infos))
	for i, in := range infos {
		out[i] = in.Key
	}
	return out
}

// TestS3StoreTimeoutOnHungServer: a server that accepts connections but never
// answers makes calls fail with ErrUnreachable once every attempt has hit
// RequestTimeout, instead of hanging.
func TestS3StoreTimeoutOnHungServer(t *testing.T) {
	hung := testkit.StartHungServer(t)
	endpoint := "http://" + hung.Addr
	s := s3segtest.NewS3Store(t, s3seg.S3Config{
		Endpoint: endpoint, Bucket: "b", PathStyle: true, AccessKeyID: "a", SecretAccessKey: "s",
		RequestTimeout: 200 * time.Millisecond, MaxAttempts: 2, MaxBackoff: 10 * time.Millisecond,
	})
	if err := s.Put(bg, "k", []byte("x")); !errors.Is(err, s3seg.ErrUnreachable) || !strings.Contains(err.Error(), endpoint) {
		t.Fatalf("Put: %v; want ErrUnreachable naming the endpoint", err)
	}
	if _, err := s.GetRange(bg, "k", 0, 1); !errors.Is(err, s3seg.ErrUnreachable) {
		t.Fatalf("GetRange: %v; want ErrUnreachable", err)
	}
	if err := s.Check(bg); !errors.Is(err, s3seg.ErrUnreachable) {
		t.Fatalf("Check: %v; want ErrUnreachable", err)
	}
	if n := hung.Conns(); n < 2+2+1 {
		t.Fatalf("%d connections for Put (2 attempts), GetRange (2) and Check (1); want at least 5", n)
	}
}
