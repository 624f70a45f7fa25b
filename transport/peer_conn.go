package transport

import (
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// peerConn wraps every peer TCP connection, inbound and outbound. It keeps
// the connection in its mux's set (so PeerMux.Close closes it) and, when
// the mux has Faults, in the Faults registry (so a new fault closes it) and
// checks faults on every Read and Write. TLS, when on, runs above it.
type peerConn struct {
	net.Conn
	m      *PeerMux
	f      *Faults // nil = no fault injection
	local  string  // this agent's advertised address
	remote string  // the peer's advertised address; "" until an inbound handshake is read

	// writeDeadline mirrors the write deadline (unix nanos, 0 = none) so
	// an injected delay honours it.
	writeDeadline atomic.Int64

	closed    chan struct{}
	closeOnce sync.Once
	closeErr  error
}

func newPeerConn(c net.Conn, m *PeerMux, local, remote string) *peerConn {
	return &peerConn{Conn: c, m: m, f: m.faults, local: local, remote: remote, closed: make(chan struct{})}
}

// Read drops bytes that arrive while traffic remote→local is blocked: the
// Read fails and the connection is closed. A Read that receives nothing
// just waits, as on a real network, so a request may still go out on a
// connection whose answers are blocked (see Faults).
func (c *peerConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && c.remote != "" {
		if ferr := c.f.check(c.remote, c.local); ferr != nil {
			_ = c.Close()
			return 0, ferr
		}
	}
	return n, err
}

// Write waits while traffic local→remote is held by a blackhole and out
// any injected delay (both cut short by the write deadline, which then
// fails the write as a timeout, by Close, or ended by Heal), then fails
// and closes the connection if traffic local→remote is blocked.
func (c *peerConn) Write(p []byte) (int, error) {
	if c.remote != "" {
		if err := c.waitHeld(); err != nil {
			return 0, err
		}
		if d := c.f.delay(c.local, c.remote); d > 0 {
			if err := c.waitDelay(d); err != nil {
				return 0, err
			}
		}
		if err := c.f.check(c.local, c.remote); err != nil {
			_ = c.Close()
			return 0, err
		}
	}
	return c.Conn.Write(p)
}

// waitHeld waits while a blackhole holds traffic local→remote, until the
// write deadline (a timeout error) or Close.
func (c *peerConn) waitHeld() error {
	ch := c.f.held(c.local, c.remote)
	if ch == nil {
		return nil
	}
	var timeout <-chan time.Time
	if dl := c.writeDeadline.Load(); dl != 0 {
		t := time.NewTimer(time.Until(time.Unix(0, dl)))
		defer t.Stop()
		timeout = t.C
	}
	for ; ch != nil; ch = c.f.held(c.local, c.remote) {
		select {
		case <-ch:
		case <-timeout:
			return &net.OpError{Op: "write", Net: "tcp", Addr: peerAddr(c.remote), Err: os.ErrDeadlineExceeded}
		case <-c.closed:
			return &net.OpError{Op: "write", Net: "tcp", Addr: peerAddr(c.remote), Err: net.ErrClosed}
		}
	}
	return nil
}

func (c *peerConn) waitDelay(d time.Duration) error {
	timedOut := false
	if dl := c.writeDeadline.Load(); dl != 0 {
		if left := time.Until(time.Unix(0, dl)); left < d {
			d, timedOut = max(left, 0), true
		}
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-c.f.healed():
		return nil
	case <-c.closed:
		return &net.OpError{Op: "write", Net: "tcp", Addr: peerAddr(c.remote), Err: net.ErrClosed}
	}
	if timedOut {
		return &net.OpError{Op: "write", Net: "tcp", Addr: peerAddr(c.remote), Err: os.ErrDeadlineExceeded}
	}
	return nil
}

// SetDeadline sets both deadlines on the connection.
func (c *peerConn) SetDeadline(t time.Time) error {
	c.storeWriteDeadline(t)
	return c.Conn.SetDeadline(t)
}

// SetWriteDeadline sets the write deadline on the connection.
func (c *peerConn) SetWriteDeadline(t time.Time) error {
	c.storeWriteDeadline(t)
	return c.Conn.SetWriteDeadline(t)
}

func (c *peerConn) storeWriteDeadline(t time.Time) {
	if t.IsZero() {
		c.writeDeadline.Store(0)
		return
	}
	c.writeDeadline.Store(t.UnixNano())
}

// Close closes the connection once and forgets it.
func (c *peerConn) Close() error {
	c.closeOnce.Do(func() {
		close(c.closed)
		c.closeErr = c.Conn.Close()
		c.m.untrack(c)
		c.f.detach(c)
	})
	return c.closeErr
}
