package s3segtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
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
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

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

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has been waited for

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
		if err := checkExecutable(p); err != nil {
			return "", fmt.Errorf("%s=%s: %w; run `make deps` to build MinIO, or point %s at a minio server binary", MinIOEnv, p, err, MinIOEnv)
		}
		return p, nil
	}
	var tried []string
	if root, err := moduleRoot(); err == nil {
		p := filepath.Join(root, ".cache", "bin", "minio")
		if checkExecutable(p) == nil {
			return p, nil
		}
		tried = append(tried, p)
	}
	if home, err := os.UserHomeDir(); err == nil {
		p := filepath.Join(home, ".cache", "streamhouse", "bin", "minio")
		if checkExecutable(p) == nil {
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

func checkExecutable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return errors.New("not an executable file")
	}
	return nil
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

// StartMinIO starts a MinIO server on 127.0.0.1:<free port> with a fresh data
// directory and waits until it is ready. It fails the test (never skips) if
// the binary is missing or the server does not come up. The server is
// stopped by t.Cleanup; if the test failed, the tail of its log is printed
// first.
func StartMinIO(t testing.TB) *MinIO {
	t.Helper()
	bin, err := MinIOBinary()
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	m := &MinIO{
		AccessKey: "streamhouse-" + randomHex(6),
		SecretKey: randomHex(20),
		Region:    "us-east-1",
		Dir:       filepath.Join(root, "data"),
		LogPath:   filepath.Join(root, "minio.log"),
		bin:       bin,
		certsDir:  filepath.Join(root, "certs"),
	}
	for _, d := range []string{m.Dir, m.certsDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("MinIO %s log tail (%s):\n%s", m.Endpoint, m.LogPath, m.logTail(8<<10))
		}
		m.kill()
		m.closeClient()
	})
	// A free port found by listening on :0 can be taken by someone else
	// before MinIO binds it; try a few pairs.
	const tries = 5
	for i := 1; ; i++ {
		addrs := freeAddrs(t, 2)
		m.addr, m.consoleAddr = addrs[0], addrs[1]
		m.Endpoint = "http://" + m.addr
		err := m.start()
		if err == nil {
			return m
		}
		if i == tries || !strings.Contains(m.logTail(4<<10), "already in use") {
			t.Fatalf("starting MinIO: %v (the log tail follows)", err)
		}
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// freeAddrs returns n distinct free 127.0.0.1 addresses (all listened on at
// once, so they differ, then released).
func freeAddrs(t testing.TB, n int) []string {
	t.Helper()
	var addrs []string
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		addrs = append(addrs, l.Addr().String())
	}
	return addrs
}

// start launches the server process and waits until it is ready. On error
// the process is gone.
func (m *MinIO) start() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd != nil {
		return errors.New("MinIO is already running")
	}
	logf, err := os.OpenFile(m.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close() // the child has its own descriptor
	fmt.Fprintf(logf, "---- %s: starting MinIO on %s\n", time.Now().Format(time.RFC3339Nano), m.addr)
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
	cmd.Stdout, cmd.Stderr = logf, logf
	setProcAttr(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", m.bin, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	if err := m.waitReady(exited); err != nil {
		_ = cmd.Process.Kill()
		<-exited
		return err
	}
	m.cmd, m.exited = cmd, exited
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

// waitReady polls until the server answers S3 requests, the process exits,
// or minioReadyTimeout passes: first the readiness endpoint, then an
// authenticated ListBuckets, because /minio/health/ready answers 200 while
// the object layer is still initialising (S3 calls then get 503 for a
// moment, typically after a restart).
func (m *MinIO) waitReady(exited <-chan struct{}) error {
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: time.Second}
	deadline := time.Now().Add(minioReadyTimeout)
	var last error
	for {
		select {
		case <-exited:
			return errors.New("MinIO exited during startup")
		default:
		}
		resp, err := client.Get(m.Endpoint + "/minio/health/ready")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				err = m.listBuckets()
				if err == nil {
					return nil
				}
			} else {
				err = fmt.Errorf("readiness probe answered %s", resp.Status)
			}
		}
		last = err
		if time.Now().After(deadline) {
			return fmt.Errorf("MinIO at %s not ready after %v: %w", m.Endpoint, minioReadyTimeout, last)
		}
		select {
		case <-exited:
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// Stop stops the server (SIGTERM, then SIGKILL after 10 s) and waits for the
// process to exit. The data directory and the port are kept for Restart.
// Stopping a stopped server does nothing.
func (m *MinIO) Stop(t testing.TB) {
	t.Helper()
	m.stop(syscall.SIGTERM)
}

// kill stops the server at once (test cleanup: the data is thrown away).
func (m *MinIO) kill() { m.stop(syscall.SIGKILL) }

func (m *MinIO) stop(sig syscall.Signal) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return
	}
	_ = m.cmd.Process.Signal(sig)
	select {
	case <-m.exited:
	case <-time.After(minioStopTimeout):
		_ = m.cmd.Process.Kill()
		<-m.exited
	}
	m.cmd, m.exited = nil, nil
}

// Restart stops the server if it runs and starts it again on the same port
// with the same data directory and credentials, then waits until it is
// ready.
func (m *MinIO) Restart(t testing.TB) {
	t.Helper()
	m.Stop(t)
	if err := m.start(); err != nil {
		t.Fatalf("restarting MinIO on %s: %v (the log tail follows)", m.addr, err)
	}
}

// logTail returns up to the last n bytes of the server log.
func (m *MinIO) logTail(n int64) string {
	f, err := os.Open(m.LogPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	off := max(fi.Size()-n, 0)
	b := make([]byte, fi.Size()-off)
	if _, err := f.ReadAt(b, off); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Sprintf("(reading log: %v)", err)
	}
	if off > 0 {
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	if len(b) == 0 {
		return "(empty)"
	}
	return string(b)
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

// listBuckets sends one ListBuckets request without retries.
func (m *MinIO) listBuckets() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := m.adminClient().ListBuckets(ctx, &s3.ListBucketsInput{}, func(o *s3.Options) { o.RetryMaxAttempts = 1 })
	return err
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
	if _, err := m.adminClient().CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		t.Fatalf("creating bucket %q on MinIO %s: %v", name, m.Endpoint, err)
	}
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
