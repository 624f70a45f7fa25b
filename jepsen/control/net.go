package control

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
)

// Link classes of a Cut.
const (
	ClassAll    = "all"    // every packet
	ClassPeer   = "peer"   // Raft and agent-to-agent RPC (PEER_PORT)
	ClassGossip = "gossip" // memberlist (GOSSIP_PORT, TCP and UDP)
)

// Cut drops the traffic of one class from agent From to agent To (one
// direction; a symmetric cut is two Cuts).
type Cut struct {
	From, To int
	Class    string
}

func (c Cut) String() string { return fmt.Sprintf("n%d->n%d/%s", c.From+1, c.To+1, c.Class) }

// Ports are the agents' listening ports. In netns mode every agent uses the
// same ones (each has its own address); in proxy mode too (each binds its
// own loopback address).
type Ports struct {
	HTTP, GRPC, Peer, Gossip, Kafka int
}

// network places agents and injects link faults.
type network interface {
	Name() string
	// Setup prepares n agent slots.
	Setup(n int, ports Ports) error
	// AdvertiseIP is the address agent i advertises (peers and clients dial).
	AdvertiseIP(i int) string
	// BindIP is the address agent i binds.
	BindIP(i int) string
	// ClientIP is the address the harness dials agent i's HTTP/gRPC on.
	ClientIP(i int) string
	// ServiceIP is where MinIO and Postgres are reachable for the agents.
	ServiceIP() string
	// Command returns the command running bin with args as agent i.
	Command(i int, bin string, args ...string) *exec.Cmd
	// SetCuts replaces the current link faults.
	SetCuts(cuts []Cut) error
	Close() error
}

// run executes a command, returning its combined output in the error.
func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// netnsNet runs each agent in its own network namespace, attached by a
// veth pair to a bridge in the root namespace (which holds ServiceIP);
// link faults are iptables DROP rules in the receiving agent's namespace.
type netnsNet struct {
	idx   int // selects names and the 10.213.<idx>.0/24 subnet
	n     int
	ports Ports
	mu    sync.Mutex
	up    []string // namespaces created
	br    bool
}

func (m *netnsNet) Name() string { return "netns" }

func (m *netnsNet) bridge() string        { return fmt.Sprintf("shj%dbr", m.idx) }
func (m *netnsNet) ns(i int) string       { return fmt.Sprintf("shj%d-n%d", m.idx, i+1) }
func (m *netnsNet) hostVeth(i int) string { return fmt.Sprintf("shj%dh%d", m.idx, i+1) }
func (m *netnsNet) peerVeth(i int) string { return fmt.Sprintf("shj%dp%d", m.idx, i+1) }

func (m *netnsNet) ServiceIP() string        { return fmt.Sprintf("10.213.%d.1", m.idx) }
func (m *netnsNet) AdvertiseIP(i int) string { return fmt.Sprintf("10.213.%d.%d", m.idx, 11+i) }
func (m *netnsNet) BindIP(i int) string      { return m.AdvertiseIP(i) }
func (m *netnsNet) ClientIP(i int) string    { return m.AdvertiseIP(i) }

var netnsRuns atomic.Int64

// ownerDir holds one file per index in use, naming the harness process.
const ownerDir = "/run/streamhouse-jepsen"

func (m *netnsNet) ownerFile() string { return filepath.Join(ownerDir, strconv.Itoa(m.idx)+".pid") }

// ownerAlive reports whether the harness that claimed index idx runs.
func ownerAlive(idx string) bool {
	b, err := os.ReadFile(filepath.Join(ownerDir, idx+".pid"))
	if err != nil {
		return false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return false
	}
	return syscall.Kill(pid, 0) == nil
}

// free reports whether no interface or namespace of index m.idx exists.
func (m *netnsNet) free(n int) bool {
	if linkExists(m.bridge()) {
		return false
	}
	for i := 0; i < n; i++ {
		if _, err := os.Stat("/run/netns/" + m.ns(i)); err == nil || linkExists(m.hostVeth(i)) {
			return false
		}
	}
	return true
}

func linkExists(name string) bool {
	return exec.Command("ip", "link", "show", name).Run() == nil
}

func (m *netnsNet) Setup(n int, ports Ports) error {
	m.n, m.ports = n, ports
	// Pick a free index (another run, or a crashed one, may hold one; the
	// veths of a namespace deleted a moment ago may linger): a new one
	// for every run of this process.
	start := (os.Getpid() + int(netnsRuns.Add(1))*7) % 200
	for k := 0; ; k++ {
		if k == 200 {
			return fmt.Errorf("netns: no free bridge name shj<20..219>br")
		}
		m.idx = 20 + (start+k)%200
		if m.free(n) {
			break
		}
	}
	// Claim the index: CleanupStale leaves it alone while this process
	// lives (several harnesses may share a machine).
	if err := os.MkdirAll(ownerDir, 0o755); err == nil {
		_ = os.WriteFile(m.ownerFile(), []byte(strconv.Itoa(os.Getpid())), 0o644)
	}
	steps := [][]string{
		{"ip", "link", "add", m.bridge(), "type", "bridge"},
		{"ip", "addr", "add", m.ServiceIP() + "/24", "dev", m.bridge()},
		{"ip", "link", "set", m.bridge(), "up"},
	}
	for _, s := range steps {
		if err := run(s[0], s[1:]...); err != nil {
			_ = m.Close()
			return err
		}
		m.br = true
	}
	for i := 0; i < n; i++ {
		ns := m.ns(i)
		if err := run("ip", "netns", "add", ns); err != nil {
			_ = m.Close()
			return err
		}
		m.up = append(m.up, ns)
		steps := [][]string{
			{"ip", "link", "add", m.hostVeth(i), "type", "veth", "peer", "name", m.peerVeth(i)},
			{"ip", "link", "set", m.peerVeth(i), "netns", ns},
			{"ip", "link", "set", m.hostVeth(i), "master", m.bridge()},
			{"ip", "link", "set", m.hostVeth(i), "up"},
			{"ip", "-n", ns, "link", "set", "lo", "up"},
			{"ip", "-n", ns, "link", "set", m.peerVeth(i), "name", "eth0"},
			{"ip", "-n", ns, "addr", "add", m.AdvertiseIP(i) + "/24", "dev", "eth0"},
			{"ip", "-n", ns, "link", "set", "eth0", "up"},
			{"ip", "netns", "exec", ns, "iptables", "-N", "JEPSEN"},
			{"ip", "netns", "exec", ns, "iptables", "-A", "INPUT", "-j", "JEPSEN"},
		}
		for _, s := range steps {
			if err := run(s[0], s[1:]...); err != nil {
				_ = m.Close()
				return err
			}
		}
	}
	return nil
}

func (m *netnsNet) Command(i int, bin string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", m.ns(i), bin}, args...)...)
}

// iptablesRules returns, per agent, the iptables-restore input that makes
// its JEPSEN chain (jumped to from INPUT) drop what cuts say it must not
// receive.
func iptablesRules(n int, ports Ports, ip func(int) string, cuts []Cut) ([]string, error) {
	rules := make([][]string, n)
	for _, c := range cuts {
		if c.From < 0 || c.From >= n || c.To < 0 || c.To >= n || c.From == c.To {
			return nil, fmt.Errorf("bad cut %v", c)
		}
		src := ip(c.From)
		switch c.Class {
		case ClassAll:
			rules[c.To] = append(rules[c.To], "-A JEPSEN -s "+src+" -j DROP")
		case ClassPeer, ClassGossip:
			port := ports.Peer
			protos := []string{"tcp"}
			if c.Class == ClassGossip {
				port, protos = ports.Gossip, []string{"tcp", "udp"}
			}
			for _, p := range protos {
				// Requests to our port and answers from theirs.
				for _, dir := range []string{"--dport", "--sport"} {
					rules[c.To] = append(rules[c.To], fmt.Sprintf("-A JEPSEN -s %s -p %s %s %d -j DROP", src, p, dir, port))
				}
			}
		default:
			return nil, fmt.Errorf("unknown link class %q", c.Class)
		}
	}
	out := make([]string, n)
	for i := range out {
		var b strings.Builder
		b.WriteString("*filter\n:JEPSEN - [0:0]\n")
		for _, r := range rules[i] {
			b.WriteString(r + "\n")
		}
		b.WriteString("COMMIT\n")
		out[i] = b.String()
	}
	return out, nil
}

func (m *netnsNet) SetCuts(cuts []Cut) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	inputs, err := iptablesRules(m.n, m.ports, m.AdvertiseIP, cuts)
	if err != nil {
		return err
	}
	var firstErr error
	for i, in := range inputs {
		// One iptables-restore per namespace: the chain is flushed and
		// refilled atomically.
		cmd := exec.Command("ip", "netns", "exec", m.ns(i), "iptables-restore", "--noflush")
		cmd.Stdin = strings.NewReader(in)
		if out, err := cmd.CombinedOutput(); err != nil && firstErr == nil {
			firstErr = fmt.Errorf("iptables-restore in %s: %v: %s", m.ns(i), err, bytes.TrimSpace(out))
		}
	}
	return firstErr
}

func (m *netnsNet) Close() error {
	var firstErr error
	for _, ns := range m.up {
		if err := run("ip", "netns", "del", ns); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	m.up = nil
	_ = os.Remove(m.ownerFile())
	if m.br {
		if err := run("ip", "link", "del", m.bridge()); err != nil && firstErr == nil {
			firstErr = err
		}
		m.br = false
	}
	return firstErr
}

// NetnsAvailable reports whether network namespaces, veth, bridges and
// iptables work here (root, iproute2, iptables), with the reason if not.
func NetnsAvailable() (bool, string) {
	if os.Geteuid() != 0 {
		return false, "not root"
	}
	for _, bin := range []string{"ip", "iptables", "iptables-restore"} {
		if _, err := exec.LookPath(bin); err != nil {
			return false, bin + " not found"
		}
	}
	ns := fmt.Sprintf("shjprobe%d", os.Getpid())
	if err := run("ip", "netns", "add", ns); err != nil {
		return false, err.Error()
	}
	defer func() { _ = run("ip", "netns", "del", ns) }()
	if err := run("ip", "netns", "exec", ns, "iptables", "-L", "-n"); err != nil {
		return false, err.Error()
	}
	if err := run("ip", "-n", ns, "link", "add", "probe0", "type", "veth", "peer", "name", "probe1"); err != nil {
		return false, err.Error()
	}
	if err := run("ip", "-n", ns, "link", "add", "probebr", "type", "bridge"); err != nil {
		return false, err.Error()
	}
	return true, ""
}

// CleanupStale deletes namespaces and bridges left by harness processes
// that are gone (names shj<N>-n<i>, shj<N>br; the owner of N is recorded
// in /run/streamhouse-jepsen/N.pid). Those of running harnesses stay;
// those without an owner file are deleted only when force is set (the
// -cleanup flag), since another harness may be using them.
func CleanupStale(force bool) []string {
	var removed []string
	idxOf := func(name string) (string, bool) {
		rest := strings.TrimPrefix(name, "shj")
		if strings.HasPrefix(rest, "probe") {
			pid, err := strconv.Atoi(strings.TrimPrefix(rest, "probe"))
			return "", err == nil && syscall.Kill(pid, 0) != nil
		}
		end := strings.IndexFunc(rest, func(r rune) bool { return r < '0' || r > '9' })
		if end <= 0 {
			return "", false
		}
		return rest[:end], true
	}
	stale := func(name string) bool {
		idx, ok := idxOf(name)
		if !ok {
			return false
		}
		if idx == "" {
			return true
		}
		if _, err := os.Stat(filepath.Join(ownerDir, idx+".pid")); err != nil {
			return force
		}
		return !ownerAlive(idx)
	}
	ents, _ := os.ReadDir("/run/netns")
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "shj") && stale(e.Name()) {
			if run("ip", "netns", "del", e.Name()) == nil {
				removed = append(removed, e.Name())
			}
		}
	}
	out, _ := exec.Command("ip", "-o", "link", "show", "type", "bridge").Output()
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) > 1 {
			name := strings.TrimSuffix(f[1], ":")
			if strings.HasPrefix(name, "shj") && strings.HasSuffix(name, "br") && stale(name) {
				if run("ip", "link", "del", name) == nil {
					removed = append(removed, name)
				}
				if idx, ok := idxOf(name); ok {
					_ = os.Remove(filepath.Join(ownerDir, idx+".pid"))
				}
			}
		}
	}
	return removed
}
