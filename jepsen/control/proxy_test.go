package control

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strconv"
	"syscall"
	"testing"
)

func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// echoPeer serves agent i's peer port: it reads the handshake, then echoes.
func echoPeer(t *testing.T, m *proxyNet, i int) {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(m.BindIP(i), strconv.Itoa(m.ports.Peer)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				if _, err := br.ReadByte(); err != nil {
					return
				}
				n, err := binary.ReadUvarint(br)
				if err != nil {
					return
				}
				if _, err := io.ReadFull(br, make([]byte, n)); err != nil {
					return
				}
				_, _ = io.Copy(c, br)
			}()
		}
	}()
}

// dialPeer connects as agent from to agent to's advertised peer port and
// checks one echo round trip; it returns the connection.
func dialPeer(t *testing.T, m *proxyNet, from, to int) (net.Conn, bool) {
	t.Helper()
	c, err := net.Dial("tcp", net.JoinHostPort(m.AdvertiseIP(to), strconv.Itoa(m.ports.Peer)))
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort(m.AdvertiseIP(from), strconv.Itoa(m.ports.Peer))
	hs := append([]byte{0x02}, binary.AppendUvarint(nil, uint64(len(addr)))...)
	hs = append(hs, addr...)
	if _, err := c.Write(append(hs, "ping"...)); err != nil {
		c.Close()
		return nil, false
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		c.Close()
		return nil, false
	}
	return c, true
}

func TestProxyCutsPeerLinksByHandshakeAndGossipByDirection(t *testing.T) {
	m := &proxyNet{}
	ports := Ports{HTTP: freeLoopbackPort(t), GRPC: freeLoopbackPort(t), Peer: freeLoopbackPort(t), Gossip: freeLoopbackPort(t)}
	if err := m.Setup(3, ports); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	echoPeer(t, m, 1)

	live, ok := dialPeer(t, m, 0, 1)
	if !ok {
		t.Fatal("no round trip without faults")
	}
	defer live.Close()
	// A one-way cut breaks TCP both ways: the live connection is closed
	// and new ones from either side fail; agent 2 is unaffected.
	if err := m.SetCuts([]Cut{{From: 1, To: 0, Class: ClassPeer}}); err != nil {
		t.Fatal(err)
	}
	if _, err := live.Read(make([]byte, 1)); err == nil {
		t.Fatal("live connection survived the cut")
	}
	if _, ok := dialPeer(t, m, 0, 1); ok {
		t.Fatal("new connection across the cut worked")
	}
	if c, ok := dialPeer(t, m, 2, 1); !ok {
		t.Fatal("agent 2 was cut too")
	} else {
		c.Close()
	}
	// A gossip cut leaves the peer link alone.
	if err := m.SetCuts([]Cut{{From: 0, To: 1, Class: ClassGossip}}); err != nil {
		t.Fatal(err)
	}
	if c, ok := dialPeer(t, m, 0, 1); !ok {
		t.Fatal("gossip cut blocked the peer link")
	} else {
		c.Close()
	}

	// UDP gossip: agent 0 -> agent 1 is cut one way; a datagram sent
	// during the cut never arrives, one sent after the heal does, and
	// agent 1's answer comes back through the proxy.
	g0, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(m.BindIP(0)), Port: ports.Gossip})
	if err != nil {
		t.Fatal(err)
	}
	defer g0.Close()
	g1, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(m.BindIP(1)), Port: ports.Gossip})
	if err != nil {
		t.Fatal(err)
	}
	defer g1.Close()
	g2, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(m.BindIP(2)), Port: ports.Gossip})
	if err != nil {
		t.Fatal(err)
	}
	defer g2.Close()
	to1 := &net.UDPAddr{IP: net.ParseIP(m.AdvertiseIP(1)), Port: ports.Gossip}
	if err := m.SetCuts([]Cut{{From: 0, To: 1, Class: ClassGossip}}); err != nil {
		t.Fatal(err)
	}
	if _, err := g0.WriteToUDP([]byte("dropped"), to1); err != nil {
		t.Fatal(err)
	}
	// The proxy reads agent 1's port in order: once agent 2's marker
	// arrives, the cut datagram has been handled (dropped).
	if _, err := g2.WriteToUDP([]byte("marker"), to1); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	if n, _, err := g1.ReadFromUDP(buf); err != nil || string(buf[:n]) != "marker" {
		t.Fatalf("first datagram %q, %v; want the marker (the cut one must be dropped)", buf[:n], err)
	}
	if err := m.SetCuts(nil); err != nil {
		t.Fatal(err)
	}
	if _, err := g0.WriteToUDP([]byte("delivered"), to1); err != nil {
		t.Fatal(err)
	}
	n, from, err := g1.ReadFromUDP(buf)
	if err != nil || string(buf[:n]) != "delivered" {
		t.Fatalf("after the heal: %q, %v", buf[:n], err)
	}
	if _, err := g1.WriteToUDP([]byte("ack"), from); err != nil {
		t.Fatal(err)
	}
	n, _, err = g0.ReadFromUDP(buf)
	if err != nil || string(buf[:n]) != "ack" {
		t.Fatalf("answer through the proxy: %q %v", buf[:n], err)
	}
}

// TestProxyForwardsKafkaPortUncut: clients reach an agent's Kafka listener
// through the proxy, even while the agent is isolated from the others.
func TestProxyForwardsKafkaPortUncut(t *testing.T) {
	m := &proxyNet{}
	ports := Ports{HTTP: freeLoopbackPort(t), GRPC: freeLoopbackPort(t), Peer: freeLoopbackPort(t), Gossip: freeLoopbackPort(t), Kafka: freeLoopbackPort(t)}
	if err := m.Setup(3, ports); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	l, err := net.Listen("tcp", net.JoinHostPort(m.BindIP(0), strconv.Itoa(ports.Kafka)))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	if err := m.SetCuts([]Cut{{From: 1, To: 0, Class: ClassAll}, {From: 0, To: 1, Class: ClassAll}, {From: 2, To: 0, Class: ClassAll}, {From: 0, To: 2, Class: ClassAll}}); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", net.JoinHostPort(m.AdvertiseIP(0), strconv.Itoa(ports.Kafka)))
	if err != nil {
		t.Fatalf("the proxy does not listen on the Kafka port: %v", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("round trip through the proxy: %q %v", buf, err)
	}
	// Agent 1 is down (nothing listens behind the proxy): the client's
	// connection is reset, not closed cleanly.
	down, err := net.Dial("tcp", net.JoinHostPort(m.AdvertiseIP(1), strconv.Itoa(ports.Kafka)))
	if errors.Is(err, syscall.ECONNRESET) {
		return // the reset arrived while the dial completed: the same outcome
	}
	if err != nil {
		t.Fatal(err)
	}
	defer down.Close()
	if _, err := down.Read(buf); err == nil || errors.Is(err, io.EOF) || !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read from a down agent through the proxy: %v, want a connection reset", err)
	}
}
