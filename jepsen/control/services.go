package control

import (
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/streamhouse/streamhouse/s3seg/s3segtest"
)

// MinIO is the MinIO server (S3 for the agents): s3segtest's server, bound
// on the service address, with one bucket. It keeps its address across
// Stop/Start (an S3 outage).
type MinIO struct {
	Addr      string // host:port the agents dial
	AccessKey string
	SecretKey string
	Bucket    string
	srv       *s3segtest.MinIO
}

// StartMinIO starts MinIO from bin on host with data under dir and one
// bucket.
func StartMinIO(bin, host, dir, logPath, bucket string) (*MinIO, error) {
	srv, err := s3segtest.StartMinIOServer(s3segtest.MinIOConfig{Bin: bin, Host: host, Dir: dir, LogPath: logPath})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.MakeBucket(ctx, bucket); err != nil {
		srv.Close()
		return nil, err
	}
	return &MinIO{Addr: strings.TrimPrefix(srv.Endpoint, "http://"), AccessKey: srv.AccessKey, SecretKey: srv.SecretKey,
		Bucket: bucket, srv: srv}, nil
}

// Endpoint is the S3 endpoint URL.
func (m *MinIO) Endpoint() string { return m.srv.Endpoint }

// Start starts the server (after Stop) and waits until it serves.
func (m *MinIO) Start() error { return m.srv.Start() }

// Stop kills the server (an outage; the data stays).
func (m *MinIO) Stop() { m.srv.Kill() }

// Running reports whether the server runs.
func (m *MinIO) Running() bool { return m.srv.Running() }

// Close kills the server for good.
func (m *MinIO) Close() { m.srv.Close() }

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
