package s3segtest

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
)

// FaultProxy is an HTTP reverse proxy in front of a real S3 server (MinIO)
// that fails chosen object reads: clients point their S3 endpoint at URL and
// every request goes on to the real server unless a rule fails it first.
// Only reads of objects (GET and HEAD of a key) are ever failed; listing,
// writes and deletes always pass. A failed read gets a 500 InternalError in
// S3's XML shape, or, every second failure, a connection closed without an
// answer, both of which S3 clients treat as transient.
type FaultProxy struct {
	URL string // "http://127.0.0.1:<port>"

	srv    *http.Server
	ln     net.Listener
	proxy  *httputil.ReverseProxy
	failed atomic.Int64

	mu     sync.Mutex
	firstN int            // fail the first firstN reads of every key
	reads  map[string]int // reads seen per key
	keys   map[string]bool
	share  float64 // fail this share of all other reads
	rng    *rand.Rand
}

// NewFaultProxy starts a proxy on 127.0.0.1 in front of target (an
// http://host:port endpoint). Close stops it.
func NewFaultProxy(target string) (*FaultProxy, error) {
	return NewFaultProxyOn("127.0.0.1", target)
}

// NewFaultProxyOn is NewFaultProxy listening on host (a free port).
func NewFaultProxyOn(host, target string) (*FaultProxy, error) {
	u, err := url.Parse(target)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("fault proxy: target %q is not an http://host:port URL", target)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return nil, fmt.Errorf("fault proxy: %w", err)
	}
	p := &FaultProxy{URL: "http://" + ln.Addr().String(), ln: ln, reads: map[string]int{}, keys: map[string]bool{},
		rng: rand.New(rand.NewPCG(1, 2))}
	p.proxy = httputil.NewSingleHostReverseProxy(u)
	// The proxy keeps the client's Host header, so the signature (which
	// covers it) stays valid.
	p.srv = &http.Server{Handler: http.HandlerFunc(p.serve)}
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

// Close stops the proxy.
func (p *FaultProxy) Close() error {
	if err := p.srv.Close(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// FailFirstReads makes the first n reads of every object key fail (0: off).
// Counting starts afresh.
func (p *FaultProxy) FailFirstReads(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.firstN, p.reads = n, map[string]int{}
}

// FailKey makes every read of key (as the client names it, without the
// bucket) fail until ClearKey.
func (p *FaultProxy) FailKey(key string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.keys[key] = true
}

// ClearKey ends FailKey.
func (p *FaultProxy) ClearKey(key string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.keys, key)
}

// FailShare fails the given share (0..1) of reads, drawn from a generator
// seeded with seed.
func (p *FaultProxy) FailShare(share float64, seed uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.share, p.rng = share, rand.New(rand.NewPCG(seed, 0x53))
}

// Failed is how many reads the proxy failed so far.
func (p *FaultProxy) Failed() int64 { return p.failed.Load() }

// objectKey returns the key of a path-style object request
// (/bucket/key...), or "" for bucket-level requests.
func objectKey(r *http.Request) string {
	path := strings.TrimPrefix(r.URL.Path, "/")
	_, key, ok := strings.Cut(path, "/")
	if !ok {
		return ""
	}
	return key
}

// shouldFail decides, under the lock, whether to fail this request.
func (p *FaultProxy) shouldFail(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	key := objectKey(r)
	if key == "" || r.URL.Query().Has("list-type") {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reads[key]++
	switch {
	case p.keys[key]:
	case p.reads[key] <= p.firstN:
	case p.share > 0 && p.rng.Float64() < p.share:
	default:
		return false
	}
	return true
}

func (p *FaultProxy) serve(w http.ResponseWriter, r *http.Request) {
	if !p.shouldFail(r) {
		p.proxy.ServeHTTP(w, r)
		return
	}
	n := p.failed.Add(1)
	if n%2 == 0 {
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				_ = conn.Close() // the connection drops without an answer
				return
			}
		}
	}
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(http.StatusInternalServerError)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code><Message>injected by the fault proxy</Message><Resource>%s</Resource></Error>`, r.URL.Path)
}
