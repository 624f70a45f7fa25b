package s3segtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/streamhouse/streamhouse/jepsen/proc"
	"github.com/streamhouse/streamhouse/s3seg"
)

const (
	// MinIOEnv names the environment variable that points at the MinIO
	// server binary; see MinIOBinary.
	MinIOEnv = "STREAMHOUSE_MINIO"
	// minioReadyTimeout bounds the wait for a starting server.
	minioReadyTimeout = 30 * time.Second
	// minioStopTimeout is how long Stop waits after SIGTERM before SIGKILL.
	minioStopTimeout = 10 * time.Second
)

// MinIO is a MinIO server process started for a test: a real S3-compatible
// server on 127.0.0.1 with its own data directory and random root
// credentials. MinIO (AGPL) only ever runs as a separate process; nothing
// imports it.
type MinIO struct {
	Endpoint  string // "http://127.0.0.1:<port>"
	AccessKey string // root user
	SecretKey string // root password
	Region    string
	Dir       string // data directory (kept across Restart)
	LogPath   string // the server's stdout and stderr

	bin         string
	addr        string // 127.0.0.1:<port>
	consoleAddr string
	certsDir    string

	mu sync.Mutex
	p  *proc.Proc // nil while stopped

	buckets   atomic.Int64
	clientMu  sync.Mutex
	client    *s3.Client
	transport *http.Transport
}

// MinIOBinary locates the MinIO server binary: $STREAMHOUSE_MINIO if set,
// else <module root>/.cache/bin/minio (the module root is found by walking
// up from the working directory to go.mod), else
// $HOME/.cache/streamhouse/bin/minio, else "minio" on PATH. The error tells
// the developer to run `make deps`, which builds and caches the binary.
func MinIOBinary() (string, error) {
	if p := os.Getenv(MinIOEnv); p != "" {
		if err := proc.CheckExecutable(p); err != nil {
			return "", fmt.Errorf("%s=%s: %w; run `make deps` to build MinIO, or point %s at a minio server binary", MinIOEnv, p, err, MinIOEnv)
		}
		return p, nil
	}
	var tried []string
	if root, err := moduleRoot(); err == nil {
		p := filepath.Join(root, ".cache", "bin", "minio")
		if proc.CheckExecutable(p) == nil {
			return p, nil
		}
		tried = append(tried, p)
	}
	if home, err := os.UserHomeDir(); err == nil {
		p := filepath.Join(home, ".cache", "streamhouse", "bin", "minio")
		if proc.CheckExecutable(p) == nil {
			return p, nil
		}
		tried = append(tried, p)
	}
	if p, err := exec.LookPath("minio"); err == nil {
		return p, nil
	}
	tried = append(tried, "minio on PATH")
	return "", fmt.Errorf("MinIO server binary not found (looked at %s): the S3 integration tests need it; run `make deps` to build it, or set %s to a minio server binary",
		strings.Join(tried, ", "), MinIOEnv)
}

// moduleRoot walks up from the working directory to the directory holding
// go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if fi, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil && fi.Mode().IsRegular() {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found")
		}
		dir = parent
	}
}

// MinIOConfig says where StartMinIOServer runs a server.
type MinIOConfig struct {
	Bin     string // the server binary; "" = MinIOBinary()
	Host    string // the address to bind; "" = 127.0.0.1
	Dir     string // data/ and certs/ go here
	LogPath string // the server's output; "" = Dir/minio.log
}

// StartMinIO starts a MinIO server on 127.0.0.1:<free port> with a fresh data
// directory and waits until it is ready. It fails the test (never skips) if
// the binary is missing or the server does not come up. The server is
// stopped by t.Cleanup; if the test failed, the tail of its log is printed
// first.
func StartMinIO(t testing.TB) *MinIO {
	t.Helper()
	m, err := StartMinIOServer(MinIOConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("MinIO %s log tail (%s):\n%s", m.Endpoint, m.LogPath, proc.LogTail(m.LogPath, 8<<10))
		}
		m.Close()
	})
	return m
}

// StartMinIOServer starts a MinIO server on cfg.Host:<free port> with random
// root credentials and waits until it is ready, for callers without a
// test (the jepsen harness). On error nothing is left running and the error
// carries the log tail. Close stops it.
func StartMinIOServer(cfg MinIOConfig) (*MinIO, error) {
	if cfg.Bin == "" {
		bin, err := MinIOBinary()
		if err != nil {
			return nil, err
		}
		cfg.Bin = bin
	}
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	if cfg.LogPath == "" {
		cfg.LogPath = filepath.Join(cfg.Dir, "minio.log")
	}
	m := &MinIO{
		AccessKey: "streamhouse-" + randomHex(6),
		SecretKey: randomHex(20),
		Region:    "us-east-1",
		Dir:       filepath.Join(cfg.Dir, "data"),
		LogPath:   cfg.LogPath,
		bin:       cfg.Bin,
		certsDir:  filepath.Join(cfg.Dir, "certs"),
	}
	for _, d := range []string{m.Dir, m.certsDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	if err := m.startOnFreePorts(cfg.Host); err != nil {
		m.closeClient()
		return nil, fmt.Errorf("starting MinIO: %w; log tail (%s):\n%s", err, m.LogPath, proc.LogTail(m.LogPath, 4<<10))
	}
	return m, nil
}

// startOnFreePorts starts the server on fresh ports of host. A free port
// can still be bound by someone else before MinIO binds it; it tries a few.
func (m *MinIO) startOnFreePorts(host string) error {
	const tries = 5
	for i := 1; ; i++ {
		var err error
		if m.addr, err = proc.FreeAddr(host); err != nil {
			return err
		}
		if m.consoleAddr, err = proc.FreeAddr(host); err != nil {
			return err
		}
		m.Endpoint = "http://" + m.addr
		err = m.Start()
		if err == nil || i == tries || !strings.Contains(proc.LogTail(m.LogPath, 4<<10), "already in use") {
			return err
		}
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Start starts the server (after Stop or Kill) on its address with its data
// directory and credentials, and waits until it is ready. Starting a
// running server does nothing. On error the process is gone.
func (m *MinIO) Start() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.p != nil {
		return nil
	}
	cmd := exec.Command(m.bin, "server", m.Dir,
		"--address", m.addr,
		"--console-address", m.consoleAddr,
		"--certs-dir", m.certsDir, // never pick up a developer's ~/.minio/certs (TLS)
		"--quiet", "--anonymous")
	cmd.Env = append(envWithoutMinIO(),
		"MINIO_ROOT_USER="+m.AccessKey,
		"MINIO_ROOT_PASSWORD="+m.SecretKey,
		"MINIO_REGION="+m.Region,
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
		"MINIO_CI_CD=on", // allow a data directory on the root file system
	)
	p, err := proc.Start(cmd, m.LogPath, "starting MinIO on "+m.addr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), minioReadyTimeout)
	defer cancel()
	if err := p.WaitReady(ctx, 25*time.Millisecond, m.ready); err != nil {
		p.Kill()
		return fmt.Errorf("MinIO at %s: %w", m.Endpoint, err)
	}
	m.p = p
	return nil
}

// envWithoutMinIO is the test process's environment without MINIO_*
// variables, which would change how the server starts.
func envWithoutMinIO() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MINIO_") {
			env = append(env, kv)
		}
	}
	return env
}

// ready is the readiness probe: first the readiness endpoint, then an
// authenticated ListBuckets, because /minio/health/ready answers 200 while
// the object layer is still initialising (S3 calls then get 503 for a
// moment, typically after a restart).
func (m *MinIO) ready(ctx context.Context) error {
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: time.Second}
	if err := proc.HTTPOK(client, m.Endpoint+"/minio/health/ready")(ctx); err != nil {
		return err
	}
	return m.listBuckets()
}

// Stop stops the server (SIGTERM, then SIGKILL after 10 s) and waits for the
// process to exit. The data directory and the port are kept for Restart.
// Stopping a stopped server does nothing.
func (m *MinIO) Stop(t testing.TB) {
	t.Helper()
	m.stop(syscall.SIGTERM)
}

// Kill stops the server at once (an outage, or cleanup); the data
// directory and the port are kept for Start.
func (m *MinIO) Kill() { m.stop(syscall.SIGKILL) }

func (m *MinIO) stop(sig syscall.Signal) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.p == nil {
		return
	}
	_ = m.p.Stop(sig, minioStopTimeout)
	m.p = nil
}

// Running reports whether the server process is up.
func (m *MinIO) Running() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.p != nil
}

// Close kills the server and drops the admin client's connections.
func (m *MinIO) Close() {
	m.Kill()
	m.closeClient()
}

// Restart stops the server if it runs and starts it again on the same port
// with the same data directory and credentials, then waits until it is
// ready.
func (m *MinIO) Restart(t testing.TB) {
	t.Helper()
	m.Stop(t)
	if err := m.Start(); err != nil {
		t.Fatalf("restarting MinIO on %s: %v (the log tail follows)", m.addr, err)
	}
}

// adminClient returns an SDK client with the root credentials, for test
// setup that the ObjectStore interface does not offer (creating buckets).
func (m *MinIO) adminClient() *s3.Client {
	m.clientMu.Lock()
	defer m.clientMu.Unlock()
	if m.client == nil {
		m.transport = &http.Transport{MaxIdleConnsPerHost: 16}
		m.client = s3.New(s3.Options{
			Region:       m.Region,
			BaseEndpoint: aws.String(m.Endpoint),
			UsePathStyle: true,
			Credentials:  credentials.NewStaticCredentialsProvider(m.AccessKey, m.SecretKey, ""),
			HTTPClient:   &http.Client{Transport: m.transport, Timeout: 10 * time.Second},
		})
	}
	return m.client
}

// listBuckets sends one ListBuckets request without retries and checks that
// the server has applied its configured region: MinIO answers S3 calls
// before its configuration subsystem has loaded, with an empty region, and a
// CreateBucket racing that load can read the region twice (empty, then
// m.Region) and fail with InvalidRegion. The answer carries
// x-amz-bucket-region only once the region is set.
func (m *MinIO) listBuckets() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	out, err := m.adminClient().ListBuckets(ctx, &s3.ListBucketsInput{}, func(o *s3.Options) { o.RetryMaxAttempts = 1 })
	if err != nil {
		return err
	}
	raw, ok := awsmiddleware.GetRawResponse(out.ResultMetadata).(*smithyhttp.Response)
	if !ok {
		return errors.New("ListBuckets: no raw HTTP response")
	}
	if got := raw.Header.Get("X-Amz-Bucket-Region"); got != m.Region {
		return fmt.Errorf("MinIO has not applied its region yet (x-amz-bucket-region %q, want %q)", got, m.Region)
	}
	return nil
}

func (m *MinIO) closeClient() {
	m.clientMu.Lock()
	defer m.clientMu.Unlock()
	if m.transport != nil {
		m.transport.CloseIdleConnections()
	}
}

// CreateBucket creates a bucket, failing the test on error.
func (m *MinIO) CreateBucket(t testing.TB, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.MakeBucket(ctx, name); err != nil {
		t.Fatal(err)
	}
}

// MakeBucket creates a bucket.
func (m *MinIO) MakeBucket(ctx context.Context, name string) error {
	if _, err := m.adminClient().CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		return fmt.Errorf("creating bucket %q on MinIO %s: %w", name, m.Endpoint, err)
	}
	return nil
}

// NewBucket creates a bucket with a name unique on this server and returns
// the name.
func (m *MinIO) NewBucket(t testing.TB) string {
	t.Helper()
	name := "test-" + strconv.FormatInt(m.buckets.Add(1), 10)
	m.CreateBucket(t, name)
	return name
}

// Config returns an S3Config for bucket on this server with the root
// credentials, path-style addressing and short timeouts suited to tests
// (RequestTimeout 5 s, 3 attempts, backoff capped at 100 ms), so a stopped
// server makes calls fail within seconds.
func (m *MinIO) Config(bucket string) s3seg.S3Config {
	return s3seg.S3Config{
		Endpoint:        m.Endpoint,
		Bucket:          bucket,
		Region:          m.Region,
		PathStyle:       true,
		AccessKeyID:     m.AccessKey,
		SecretAccessKey: m.SecretKey,
		RequestTimeout:  5 * time.Second,
		MaxAttempts:     3,
		MaxBackoff:      100 * time.Millisecond,
	}
}

// NewStore returns an S3Store on bucket with Config(bucket). It is closed
// by t.Cleanup.
func (m *MinIO) NewStore(t testing.TB, bucket string) *s3seg.S3Store {
	t.Helper()
	return NewS3Store(t, m.Config(bucket))
}

// NewS3Store builds an S3Store from cfg, failing the test on error, and
// closes it (idle connections) in t.Cleanup.
func NewS3Store(t testing.TB, cfg s3seg.S3Config) *s3seg.S3Store {
	t.Helper()
	s, err := s3seg.NewS3Store(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// PutRaw stores an object under the exact name key in bucket, bypassing
// S3Store (no key validation, no prefix), to simulate objects written by
// other tools.
func (m *MinIO) PutRaw(t testing.TB, bucket, key string, data []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := m.adminClient().PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(data), ContentLength: aws.Int64(int64(len(data))),
	}); err != nil {
		t.Fatalf("putting %q into bucket %q: %v", key, bucket, err)
	}
}
