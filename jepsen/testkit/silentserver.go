package testkit

import (
	"net"
	"sync"
	"testing"
)

// SilentServer is a TCP server on 127.0.0.1 that accepts connections and
// never reads or answers: only a client's own timeouts end its calls.
type SilentServer struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
}

// StartSilentServer starts a SilentServer, closed (with every connection it
// accepted) in t.Cleanup.
func StartSilentServer(t testing.TB) *SilentServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &SilentServer{ln: ln}
	s.wg.Add(1)
	go s.accept()
	t.Cleanup(s.close)
	return s
}

// Addr is the server's host:port.
func (s *SilentServer) Addr() string { return s.ln.Addr().String() }

// Conns is how many connections the server has accepted.
func (s *SilentServer) Conns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

func (s *SilentServer) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns = append(s.conns, c) // read nothing, answer nothing
		s.mu.Unlock()
	}
}

func (s *SilentServer) close() {
	s.ln.Close()
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		c.Close()
	}
}
