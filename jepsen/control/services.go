package control

import (
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
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// MinIO is a MinIO server process (S3 for the agents). It binds a fixed
// address so Stop/Start (an S3 outage) keep it.
type MinIO struct {
	Addr      string // host:port the agents dial
	AccessKey string
	SecretKey string
	Bucket    string
	Dir       string
	LogPath   string
	bin       string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

func freePortOn(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// StartMinIO starts MinIO on host with data in dir and one bucket.
func StartMinIO(bin, host, dir, logPath, bucket string) (*MinIO, error) {
	m := &MinIO{AccessKey: "jepsen-" + randomHex(4), SecretKey: randomHex(16), Bucket: bucket,
		Dir: filepath.Join(dir, "data"), LogPath: logPath, bin: bin}
	if err := os.MkdirAll(m.Dir, 0o755); err != nil {
		return nil, err
	}
	var last error
	for try := 0; try < 5; try++ {
		port, err := freePortOn(host)
		if err != nil {
			return nil, err
		}
		m.Addr = net.JoinHostPort(host, strconv.Itoa(port))
		if last = m.Start(); last == nil {
			if err := m.createBucket(); err != nil {
				m.Stop()
				return nil, err
			}
			return m, nil
		}
	}
	return nil, last
}

// Endpoint is the S3 endpoint URL.
func (m *MinIO) Endpoint() string { return "http://" + m.Addr }

// Start starts the server (after Stop) and waits until it serves.
func (m *MinIO) Start() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd != nil {
		return nil
	}
	logf, err := os.OpenFile(m.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	consolePort, err := freePortOn("127.0.0.1")
	if err != nil {
		return err
	}
	cmd := exec.Command(m.bin, "server", m.Dir, "--address", m.Addr,
		"--console-address", "127.0.0.1:"+strconv.Itoa(consolePort), "--quiet", "--anonymous",
		"--certs-dir", filepath.Join(filepath.Dir(m.Dir), "certs"))
	var env []string
	for _, kv := range os.Environ() {
		if len(kv) < 6 || kv[:6] != "MINIO_" {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env, "MINIO_ROOT_USER="+m.AccessKey, "MINIO_ROOT_PASSWORD="+m.SecretKey,
		"MINIO_BROWSER=off", "MINIO_UPDATE=off", "MINIO_CI_CD=on", "MINIO_REGION=us-east-1")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := client.Get(m.Endpoint() + "/minio/health/ready")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		select {
		case <-exited:
			return errors.New("minio exited during startup (see " + m.LogPath + ")")
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited
			return fmt.Errorf("minio on %s not ready after 30s", m.Addr)
		}
	}
	m.cmd, m.exited = cmd, exited
	return nil
}

// Stop kills the server (an outage; the data stays).
func (m *MinIO) Stop() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return
	}
	_ = m.cmd.Process.Signal(syscall.SIGKILL)
	<-m.exited
	m.cmd, m.exited = nil, nil
}

// Running reports whether the server runs.
func (m *MinIO) Running() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cmd != nil
}

// forwarder is a plain TCP forwarder (Postgres on loopback, reachable from
// the agents' namespaces at ServiceIP).
type forwarder struct {
	l      net.Listener
	target string
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]bool
}

func startForwarder(listen, target string) (*forwarder, error) {
	l, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, err
	}
	f := &forwarder{l: l, target: target, conns: map[net.Conn]bool{}}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			f.wg.Add(1)
			go func() {
				defer f.wg.Done()
				up, err := net.DialTimeout("tcp", f.target, 5*time.Second)
				if err != nil {
					c.Close()
					return
				}
				f.mu.Lock()
				f.conns[c], f.conns[up] = true, true
				f.mu.Unlock()
				done := make(chan struct{}, 2)
				go func() { _, _ = io.Copy(up, c); closeWrite(up); done <- struct{}{} }()
				go func() { _, _ = io.Copy(c, up); closeWrite(c); done <- struct{}{} }()
				<-done
				<-done
				c.Close()
				up.Close()
				f.mu.Lock()
				delete(f.conns, c)
				delete(f.conns, up)
				f.mu.Unlock()
			}()
		}
	}()
	return f, nil
}

func (f *forwarder) Addr() string { return f.l.Addr().String() }

func (f *forwarder) Close() {
	f.l.Close()
	f.mu.Lock()
	for c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}

// waitHTTP polls url until it answers 200 or ctx ends.
func waitHTTP(ctx context.Context, url string) error {
	client := &http.Client{Timeout: time.Second}
	for {
		resp, err := client.Get(url)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (m *MinIO) createBucket() error {
	client := s3.New(s3.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(m.Endpoint()), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(m.AccessKey, m.SecretKey, ""),
		HTTPClient:  &http.Client{Timeout: 10 * time.Second},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var err error
	for ctx.Err() == nil {
		if _, err = client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(m.Bucket)}); err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond) // MinIO answers 503 for a moment after start
	}
	return fmt.Errorf("create bucket %s: %w", m.Bucket, err)
}
