package testkit

import (
	"net"
	"sync"
	"testing"
)

// HungServer is a TCP server on 127.0.0.1 that accepts connections and
// never reads from nor answers them, so only a client's own timeout ends a
// call.
type HungServer struct {
	Addr string

	mu    sync.Mutex
	conns []net.Conn
}

// StartHungServer starts a HungServer; t.Cleanup closes the listener and
// every connection.
func StartHungServer(t testing.TB) *HungServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &HungServer{Addr: l.Addr().String()}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			h.mu.Lock()
			h.conns = append(h.conns, c) // read nothing, answer nothing
			h.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, c := range h.conns {
			c.Close()
		}
	})
	return h
}

// Conns is the number of connections accepted so far.
func (h *HungServer) Conns() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.conns)
}

// ClosedAddr returns a 127.0.0.1 address that nothing listens on (a
// connection is refused at once).
func ClosedAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}
