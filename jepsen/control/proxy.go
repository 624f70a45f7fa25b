package control

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strconv"
	"sync"
	"time"
)

// proxyNet is the fallback where network namespaces are unavailable: agent
// i binds 127.0.2.<i+1> and advertises 127.0.1.<i+1>, where a fault proxy
// listens on its peer and gossip ports (and forwards its HTTP, gRPC and
// Kafka ports untouched). The proxy knows who is talking:
//
//   - peer connections (PEER_PORT) start with the dialer's advertised
//     address (transport/PEER.md), which the proxy reads;
//   - gossip UDP packets come from the sender's bound address;
//   - gossip TCP connections (memberlist push/pull, fallback probes) come
//     from 127.0.0.1 (the kernel's choice), so their sender is unknown: one
//     is refused while any cut touches the receiving agent's gossip.
//
// A TCP link works only while neither direction is cut (as on a real
// network, where a one-way drop breaks TCP both ways); UDP is cut per
// direction. Live connections are closed when a cut starts.
type proxyNet struct {
	n     int
	ports Ports

	mu    sync.Mutex
	cuts  map[Cut]bool
	conns map[*proxyConn]bool
	ls    []io.Closer
	wg    sync.WaitGroup
	done  chan struct{}
}

type proxyConn struct {
	from, to int // from = -1: unknown sender
	class    string
	a, b     net.Conn
}

func (m *proxyNet) Name() string             { return "proxy" }
func (m *proxyNet) AdvertiseIP(i int) string { return fmt.Sprintf("127.0.1.%d", i+1) }
func (m *proxyNet) BindIP(i int) string      { return fmt.Sprintf("127.0.2.%d", i+1) }
func (m *proxyNet) ClientIP(i int) string    { return m.AdvertiseIP(i) }
func (m *proxyNet) ServiceIP() string        { return "127.0.0.1" }
func (m *proxyNet) Command(_ int, bin string, args ...string) *exec.Cmd {
	return exec.Command(bin, args...)
}

func (m *proxyNet) agentOf(ip string) int {
	for i := 0; i < m.n; i++ {
		if ip == m.AdvertiseIP(i) || ip == m.BindIP(i) {
			return i
		}
	}
	return -1
}

func (m *proxyNet) Setup(n int, ports Ports) error {
	m.n, m.ports = n, ports
	m.cuts, m.conns, m.done = map[Cut]bool{}, map[*proxyConn]bool{}, make(chan struct{})
	for i := 0; i < n; i++ {
		adv, bind := m.AdvertiseIP(i), m.BindIP(i)
		for _, p := range proxiedPorts(ports) {
			l, err := net.Listen("tcp", net.JoinHostPort(adv, strconv.Itoa(p.port)))
			if err != nil {
				_ = m.Close()
				return fmt.Errorf("proxy: %w", err)
			}
			m.ls = append(m.ls, l)
			m.wg.Add(1)
			go m.acceptLoop(l, i, p.class, net.JoinHostPort(bind, strconv.Itoa(p.port)))
		}
		pc, err := net.ListenPacket("udp", net.JoinHostPort(adv, strconv.Itoa(ports.Gossip)))
		if err != nil {
			_ = m.Close()
			return fmt.Errorf("proxy: %w", err)
		}
		m.ls = append(m.ls, pc)
		m.wg.Add(1)
		go m.udpLoop(pc.(*net.UDPConn), i)
	}
	return nil
}

// reset closes c with a TCP RST (no linger) rather than a FIN.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	c.Close()
}

// proxiedPorts are the TCP ports the proxy listens on for each agent and
// their fault class ("": client traffic, never cut).
func proxiedPorts(ports Ports) []proxiedPort {
	out := []proxiedPort{{ports.HTTP, ""}, {ports.GRPC, ""}, {ports.Peer, ClassPeer}, {ports.Gossip, ClassGossip}}
	if ports.Kafka != 0 {
		out = append(out, proxiedPort{ports.Kafka, ""})
	}
	return out
}

type proxiedPort struct {
	port  int
	class string
}

// linkOK reports whether TCP of class between a and b works (no cut in
// either direction). m.mu held.
func (m *proxyNet) tcpOK(a, b int, class string) bool {
	if class == "" {
		return true
	}
	if a < 0 {
		// Unknown sender: refuse while any cut touches b's class.
		for c := range m.cuts {
			if (c.To == b || c.From == b) && (c.Class == ClassAll || c.Class == class) {
				return false
			}
		}
		return true
	}
	for _, k := range []string{ClassAll, class} {
		if m.cuts[Cut{a, b, k}] || m.cuts[Cut{b, a, k}] {
			return false
		}
	}
	return true
}

func (m *proxyNet) udpOK(from, to int) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return !m.cuts[Cut{from, to, ClassAll}] && !m.cuts[Cut{from, to, ClassGossip}]
}

func (m *proxyNet) acceptLoop(l net.Listener, to int, class, target string) {
	defer m.wg.Done()
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.serve(c, to, class, target)
		}()
	}
}

func (m *proxyNet) serve(c net.Conn, to int, class, target string) {
	from := -1
	var head []byte
	br := bufio.NewReader(c)
	if class == ClassPeer {
		// tag, uvarint length, "host:port" of the dialer.
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		tag, err := br.ReadByte()
		if err != nil {
			c.Close()
			return
		}
		n, err := binary.ReadUvarint(br)
		if err != nil || n == 0 || n > 300 {
			c.Close()
			return
		}
		addr := make([]byte, n)
		if _, err := io.ReadFull(br, addr); err != nil {
			c.Close()
			return
		}
		_ = c.SetReadDeadline(time.Time{})
		if host, _, err := net.SplitHostPort(string(addr)); err == nil {
			from = m.agentOf(host)
		}
		head = append([]byte{tag}, binary.AppendUvarint(nil, n)...)
		head = append(head, addr...)
	}
	m.mu.Lock()
	ok := m.tcpOK(from, to, class)
	m.mu.Unlock()
	if !ok {
		// Like a DROP: the dialer sees nothing, then a reset.
		c.Close()
		return
	}
	up, err := net.DialTimeout("tcp", target, 5*time.Second)
	if err != nil {
		// The agent is down: reset, as its refused dial would (a clean
		// close reads as EOF, which clients such as kgo take for a TLS
		// or SASL mismatch and do not retry).
		reset(c)
		return
	}
	if len(head) > 0 {
		if _, err := up.Write(head); err != nil {
			c.Close()
			up.Close()
			return
		}
	}
	pc := &proxyConn{from: from, to: to, class: class, a: c, b: up}
	m.mu.Lock()
	if !m.tcpOK(from, to, class) {
		m.mu.Unlock()
		c.Close()
		up.Close()
		return
	}
	m.conns[pc] = true
	m.mu.Unlock()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _, _ = io.Copy(up, br); closeWrite(up) }()
	go func() { defer wg.Done(); _, _ = io.Copy(c, up); closeWrite(c) }()
	wg.Wait()
	c.Close()
	up.Close()
	m.mu.Lock()
	delete(m.conns, pc)
	m.mu.Unlock()
}

func closeWrite(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
}

// udpLoop forwards gossip datagrams to agent `to` through a per-sender
// socket bound to the sender's advertised address, so answers go back
// through the same path (a small NAT).
func (m *proxyNet) udpLoop(pc *net.UDPConn, to int) {
	defer m.wg.Done()
	var mu sync.Mutex
	back := map[int]*net.UDPConn{}
	defer func() {
		mu.Lock()
		for _, b := range back {
			b.Close()
		}
		mu.Unlock()
	}()
	target := &net.UDPAddr{IP: net.ParseIP(m.BindIP(to)), Port: m.ports.Gossip}
	buf := make([]byte, 65536)
	for {
		n, src, err := pc.ReadFromUDP(buf)
		if err != nil {
			return
		}
		from := m.agentOf(src.IP.String())
		if from < 0 || !m.udpOK(from, to) {
			continue
		}
		mu.Lock()
		b := back[from]
		if b == nil {
			b, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(m.AdvertiseIP(from))})
			if err != nil {
				mu.Unlock()
				continue
			}
			back[from] = b
			m.wg.Add(1)
			go func(from int, b *net.UDPConn) {
				defer m.wg.Done()
				ret := &net.UDPAddr{IP: net.ParseIP(m.BindIP(from)), Port: m.ports.Gossip}
				rb := make([]byte, 65536)
				for {
					n, _, err := b.ReadFromUDP(rb)
					if err != nil {
						return
					}
					if m.udpOK(to, from) {
						_, _ = b.WriteToUDP(rb[:n], ret)
					}
				}
			}(from, b)
		}
		mu.Unlock()
		_, _ = b.WriteToUDP(buf[:n], target)
		select {
		case <-m.done:
			return
		default:
		}
	}
}

func (m *proxyNet) SetCuts(cuts []Cut) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cuts = map[Cut]bool{}
	for _, c := range cuts {
		m.cuts[c] = true
	}
	for pc := range m.conns {
		if !m.tcpOK(pc.from, pc.to, pc.class) {
			pc.a.Close()
			pc.b.Close()
		}
	}
	return nil
}

func (m *proxyNet) Close() error {
	m.mu.Lock()
	select {
	case <-m.done:
	default:
		if m.done != nil {
			close(m.done)
		}
	}
	for _, l := range m.ls {
		l.Close()
	}
	m.ls = nil
	for pc := range m.conns {
		pc.a.Close()
		pc.b.Close()
	}
	m.mu.Unlock()
	m.wg.Wait()
	return nil
}
