package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"log/slog"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// Gossip member states as reported by Members. memberlist's API does not
// expose its suspicion state (a suspected member stays alive here until
// memberlist declares it dead), so there is no "suspect".
const (
	StateAlive = "alive"
	StateDead  = "dead"
	// StateLeft: the member announced it was leaving before it went.
	StateLeft = "left"
	// StateUnknown: the member is in the Raft configuration but gossip has
	// never heard of it (or forgot it).
	StateUnknown = "unknown"
)

// metaVersion is the version of the gossip metadata encoding.
const metaVersion = 1

// nodeMeta is the small JSON document each agent gossips about itself. It
// must stay under memberlist's 512-byte limit.
type nodeMeta struct {
	Version  int    `json:"v"`
	ID       string `json:"id"`
	Peer     string `json:"p"`             // raft + peer RPC host:port (PEER_PORT)
	HTTP     string `json:"h,omitempty"`   // public REST host:port
	GRPC     string `json:"g,omitempty"`   // public gRPC host:port
	Kafka    string `json:"k,omitempty"`   // Kafka listener host:port clients are told (KAFKA_ADVERTISED_ADDR)
	Ver      string `json:"ver,omitempty"` // the agent's version (build), cut to 30 bytes
	Instance string `json:"i"`             // this incarnation of the data dir
	Cluster  string `json:"c,omitempty"`   // Raft group this instance belongs to
	Admitted bool   `json:"a,omitempty"`   // a leader has admitted this instance
	Legacy   bool   `json:"lg,omitempty"`  // identity.Legacy: names no cluster on Raft connections
	Expect   int    `json:"e,omitempty"`   // BOOTSTRAP_EXPECT
	Leaving  bool   `json:"l,omitempty"`   // set just before a graceful leave
	Features int    `json:"f,omitempty"`   // fsm.FeatureLevel of this agent's binary (0: older)
	LowDisk  bool   `json:"d,omitempty"`   // free disk below MIN_FREE_DISK_BYTES: do not make it Raft leader
}

func (m nodeMeta) encode() ([]byte, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	if len(b) > memberlist.MetaMaxSize {
		return nil, fmt.Errorf("gossip metadata of %d bytes exceeds %d (shorten the node ID or addresses)", len(b), memberlist.MetaMaxSize)
	}
	return b, nil
}

func decodeMeta(b []byte) (nodeMeta, bool) {
	var m nodeMeta
	if len(b) == 0 || json.Unmarshal(b, &m) != nil || m.ID == "" {
		return nodeMeta{}, false
	}
	return m, true
}

// gossipMember is one agent as the gossip layer last saw it.
type gossipMember struct {
	Name   string    // memberlist name = node ID
	Addr   string    // gossip host:port
	State  string    // StateAlive, StateDead, StateLeft
	Since  time.Time // local time the current state was observed
	Meta   nodeMeta
	MetaOK bool
}

// failedFor reports how long the member has been dead or left (0 when it
// is alive).
func (m gossipMember) failedFor(now time.Time) time.Duration {
	if m.State != StateDead && m.State != StateLeft {
		return 0
	}
	return now.Sub(m.Since)
}

type gossipEventKind uint8

const (
	evJoin gossipEventKind = iota
	evLeave
	evUpdate
	evConflict
)

type gossipEvent struct {
	kind gossipEventKind
	name string
	addr string
	meta []byte
	at   time.Time
}

// gossip wraps memberlist. The memberlist callbacks only enqueue events on
// a buffered channel (or set the overflow flag); one goroutine applies them
// to the member table and wakes the waiters. Nothing here calls Raft.
type gossip struct {
	cfg *Config
	log *slog.Logger
	ml  *memberlist.Memberlist

	events   chan gossipEvent
	overflow atomic.Bool

	metaMu   sync.Mutex
	meta     []byte
	metaKick chan struct{}

	mu      sync.RWMutex
	members map[string]*gossipMember

	changeMu sync.Mutex
	changed  chan struct{}

	shutdownMu sync.Mutex
	shutdown   bool

	advertise string // gossip host:port others reach us on
	// joinTried is set once the join loop made its first attempt (or had
	// no address but our own to try).
	joinTried   atomic.Bool
	forgetAfter time.Duration
	cancel      context.CancelFunc
	wg          sync.WaitGroup
}

func newGossip(cfg *Config, log *slog.Logger) *gossip {
	forget := 10 * time.Minute
	if d := 2 * cfg.DeadAgentTimeout; d > forget {
		forget = d
	}
	return &gossip{
		cfg:         cfg,
		log:         log.With("component", "gossip"),
		events:      make(chan gossipEvent, 4096),
		metaKick:    make(chan struct{}, 1),
		members:     map[string]*gossipMember{},
		changed:     make(chan struct{}),
		forgetAfter: forget,
	}
}

// start creates the memberlist with the given local metadata and starts
// the event, metadata and join goroutines.
func (g *gossip) start(meta nodeMeta) error {
	b, err := meta.encode()
	if err != nil {
		return err
	}
	g.meta = b
	mc := memberlist.DefaultLANConfig()
	mc.Name = g.cfg.NodeID
	host, port, err := splitHostPort(g.cfg.GossipBindAddr)
	if err != nil {
		return err
	}
	mc.BindAddr, mc.BindPort = host, port
	mc.AdvertisePort = port
	if g.cfg.GossipAdvertiseAddr != "" {
		ah, ap, err := splitHostPort(g.cfg.GossipAdvertiseAddr)
		if err != nil {
			return err
		}
		ip, err := resolveIP(ah)
		if err != nil {
			return fmt.Errorf("cluster: gossip advertise address %q: %w", g.cfg.GossipAdvertiseAddr, err)
		}
		mc.AdvertiseAddr = ip
		if ap != 0 {
			mc.AdvertisePort = ap
		}
	}
	if g.cfg.GossipProbeInterval > 0 {
		mc.ProbeInterval = g.cfg.GossipProbeInterval
	}
	if g.cfg.GossipProbeTimeout > 0 {
		mc.ProbeTimeout = g.cfg.GossipProbeTimeout
	}
	if g.cfg.GossipInterval > 0 {
		mc.GossipInterval = g.cfg.GossipInterval
	}
	if g.cfg.GossipSuspicionMult > 0 {
		mc.SuspicionMult = g.cfg.GossipSuspicionMult
	}
	if g.cfg.GossipPushPullInterval > 0 {
		mc.PushPullInterval = g.cfg.GossipPushPullInterval
	}
	mc.DeadNodeReclaimTime = g.cfg.GossipDeadReclaimTime
	if len(g.cfg.GossipKey) > 0 {
		// Encrypt and verify both directions: a message without the key is
		// dropped, so an agent with another key never becomes a member.
		mc.SecretKey = append([]byte(nil), g.cfg.GossipKey...)
		mc.GossipVerifyIncoming, mc.GossipVerifyOutgoing = true, true
	}
	mc.Delegate = (*metaDelegate)(g)
	mc.Events = (*eventDelegate)(g)
	mc.Conflict = (*eventDelegate)(g)
	mc.Logger = log.New(&slogWriter{l: g.log}, "", 0)
	ml, err := memberlist.Create(mc)
	if err != nil {
		return fmt.Errorf("cluster: gossip on %s: %w", g.cfg.GossipBindAddr, err)
	}
	g.ml = ml
	// LocalNode points into memberlist's table, which memberlist updates
	// without that lock later on: read the address once, now.
	ln := ml.LocalNode()
	g.advertise = net.JoinHostPort(ln.Addr.String(), strconv.Itoa(int(ln.Port)))
	ctx, cancel := context.WithCancel(context.Background())
	g.cancel = cancel
	g.wg.Add(2)
	go g.eventLoop(ctx)
	go g.metaLoop(ctx)
	if len(g.cfg.Join) > 0 {
		g.wg.Add(1)
		go g.joinLoop(ctx)
	} else {
		g.joinTried.Store(true)
	}
	return nil
}

// resolveIP returns host if it is an IP, else its first address (IPv4
// preferred): memberlist advertises IPs only.
func resolveIP(host string) (string, error) {
	if net.ParseIP(host) != nil {
		return host, nil
	}
	ips, err := net.LookupIP(host)
	if err != nil {
		return "", err
	}
	for _, ip := range ips {
		if ip.To4() != nil {
			return ip.String(), nil
		}
	}
	if len(ips) == 0 {
		return "", fmt.Errorf("no address for %s", host)
	}
	return ips[0].String(), nil
}

// addr is the advertised gossip host:port.
func (g *gossip) addr() string { return g.advertise }

// setMeta replaces the local metadata and schedules its broadcast.
func (g *gossip) setMeta(m nodeMeta) {
	b, err := m.encode()
	if err != nil {
		g.log.Error("cannot gossip metadata", "err", err)
		return
	}
	g.metaMu.Lock()
	g.meta = b
	g.metaMu.Unlock()
	select {
	case g.metaKick <- struct{}{}:
	default:
	}
}

// leave broadcasts that this agent leaves the cluster on purpose: first
// metadata with Leaving set (so the others record "left", not "dead"), then
// memberlist's leave.
func (g *gossip) leave(meta nodeMeta, timeout time.Duration) error {
	g.shutdownMu.Lock()
	defer g.shutdownMu.Unlock()
	if g.shutdown || g.ml == nil {
		return nil
	}
	start := time.Now()
	if b, err := meta.encode(); err == nil {
		g.metaMu.Lock()
		g.meta = b
		g.metaMu.Unlock()
		if err := g.ml.UpdateNode(timeout / 2); err != nil {
			g.log.Warn("leave: metadata broadcast not acknowledged", "err", err)
		}
	}
	return g.ml.Leave(max(timeout-time.Since(start), 100*time.Millisecond))
}

// close stops gossip without a leave broadcast: to the others this looks
// like a crash until the agent comes back.
func (g *gossip) close() {
	g.shutdownMu.Lock()
	if g.shutdown {
		g.shutdownMu.Unlock()
		return
	}
	g.shutdown = true
	g.shutdownMu.Unlock()
	if g.ml != nil {
		_ = g.ml.Shutdown()
	}
	if g.cancel != nil {
		g.cancel()
	}
	g.wg.Wait()
}

// changedCh returns a channel closed at the next change of the member
// table.
func (g *gossip) changedCh() <-chan struct{} {
	g.changeMu.Lock()
	defer g.changeMu.Unlock()
	return g.changed
}

func (g *gossip) notify() {
	g.changeMu.Lock()
	close(g.changed)
	g.changed = make(chan struct{})
	g.changeMu.Unlock()
}

// snapshot returns a copy of the member table.
func (g *gossip) snapshot() map[string]gossipMember {
	g.mu.RLock()
	defer g.mu.RUnlock()
	out := make(map[string]gossipMember, len(g.members))
	for k, m := range g.members {
		out[k] = *m
	}
	return out
}

// below reports whether gossip last showed the agent at peer address addr
// below feature level: an alive entry for the address decides; without
// one, any entry the table still holds (an agent suspected, dead or
// restarting keeps the level it had).
func (g *gossip) below(addr string, level int) bool {
	g.mu.RLock()
	defer g.mu.RUnlock()
	seen := false
	for _, m := range g.members {
		if !m.MetaOK || m.Meta.Peer != addr {
			continue
		}
		if m.State == StateAlive {
			return m.Meta.Features < level
		}
		seen = seen || m.Meta.Features < level
	}
	return seen
}

// lookup returns one member's table entry (without the suspicion overlay).
func (g *gossip) lookup(name string) (gossipMember, bool) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	m, ok := g.members[name]
	if !ok {
		return gossipMember{}, false
	}
	return *m, true
}

// ---- memberlist callbacks: enqueue only ----

type eventDelegate gossip

func (d *eventDelegate) enqueue(kind gossipEventKind, n *memberlist.Node) {
	ev := gossipEvent{
		kind: kind, name: n.Name, addr: n.Address(),
		meta: append([]byte(nil), n.Meta...), at: time.Now(),
	}
	select {
	case d.events <- ev:
	default:
		d.overflow.Store(true)
	}
}

func (d *eventDelegate) NotifyJoin(n *memberlist.Node)   { d.enqueue(evJoin, n) }
func (d *eventDelegate) NotifyLeave(n *memberlist.Node)  { d.enqueue(evLeave, n) }
func (d *eventDelegate) NotifyUpdate(n *memberlist.Node) { d.enqueue(evUpdate, n) }
func (d *eventDelegate) NotifyConflict(_, other *memberlist.Node) {
	d.enqueue(evConflict, other)
}

type metaDelegate gossip

func (d *metaDelegate) NodeMeta(limit int) []byte {
	d.metaMu.Lock()
	defer d.metaMu.Unlock()
	if len(d.meta) > limit {
		return nil
	}
	return append([]byte(nil), d.meta...)
}
func (d *metaDelegate) NotifyMsg([]byte)                           {}
func (d *metaDelegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d *metaDelegate) LocalState(join bool) []byte                { return nil }
func (d *metaDelegate) MergeRemoteState(buf []byte, join bool)     {}

// ---- goroutines ----

func (g *gossip) eventLoop(ctx context.Context) {
	defer g.wg.Done()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-g.events:
			changed := g.apply(ev)
		drain:
			for {
				select {
				case ev := <-g.events:
					changed = g.apply(ev) || changed
				default:
					break drain
				}
			}
			if g.overflow.Swap(false) {
				g.resync()
				changed = true
			}
			if changed {
				g.notify()
			}
		case <-tick.C:
			changed := false
			if g.overflow.Swap(false) {
				g.resync()
				changed = true
			}
			if g.prune(time.Now()) {
				changed = true
			}
			if changed {
				g.notify()
			}
		}
	}
}

// apply folds one event into the member table; it reports a change.
func (g *gossip) apply(ev gossipEvent) bool {
	if ev.kind == evConflict {
		g.log.Warn("another agent uses this node ID from a different address; it is ignored until the original is dead",
			"node", ev.name, "addr", ev.addr)
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	m, ok := g.members[ev.name]
	if !ok {
		m = &gossipMember{Name: ev.name}
		g.members[ev.name] = m
	}
	old := *m
	if meta, ok := decodeMeta(ev.meta); ok {
		m.Meta, m.MetaOK = meta, true
	}
	// memberlist does not tell a leave from a failure in NotifyLeave: an
	// agent that leaves on purpose first gossips metadata saying so.
	state := StateAlive
	if ev.kind == evLeave {
		state = StateDead
		if m.MetaOK && m.Meta.Leaving {
			state = StateLeft
		}
	}
	if !ok || m.State != state {
		m.State = state
		m.Since = ev.at
	}
	m.Addr = ev.addr
	if ev.kind != evUpdate && ev.name != g.cfg.NodeID && (old.State != m.State || !ok) {
		lvl := slog.LevelInfo
		if m.State == StateDead {
			lvl = slog.LevelWarn
		}
		g.log.Log(context.Background(), lvl, "gossip member "+m.State, "node", ev.name, "addr", ev.addr)
	}
	return !ok || old.State != m.State || old.Addr != m.Addr || old.Meta != m.Meta
}

// resync rebuilds the table from memberlist after the event channel
// overflowed (thousands of events queued: not expected in practice). It
// reads only the member names: memberlist updates the other fields of the
// nodes Members returns without a lock. A member first seen here has no
// metadata until it next updates it, so the leader does not add it yet.
func (g *gossip) resync() {
	now := time.Now()
	live := map[string]bool{}
	for _, n := range g.ml.Members() {
		live[n.Name] = true
	}
	g.log.Warn("gossip event queue overflowed; member table rebuilt from memberlist", "members", len(live))
	g.mu.Lock()
	defer g.mu.Unlock()
	for name := range live {
		m, ok := g.members[name]
		if !ok {
			m = &gossipMember{Name: name}
			g.members[name] = m
		}
		if !ok || m.State != StateAlive {
			m.State, m.Since = StateAlive, now
		}
	}
	for name, m := range g.members {
		if !live[name] && m.State == StateAlive {
			m.State, m.Since = StateDead, now
			if m.MetaOK && m.Meta.Leaving {
				m.State = StateLeft
			}
		}
	}
}

// prune forgets members that have been dead or left for a long time.
func (g *gossip) prune(now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	pruned := false
	for name, m := range g.members {
		if name != g.cfg.NodeID && m.failedFor(now) > g.forgetAfter {
			delete(g.members, name)
			pruned = true
		}
	}
	return pruned
}

func (g *gossip) metaLoop(ctx context.Context) {
	defer g.wg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case <-g.metaKick:
			if err := g.ml.UpdateNode(2 * time.Second); err != nil {
				g.log.Debug("gossip metadata update not yet acknowledged", "err", err)
			}
		}
	}
}

// joinLoop joins the agents listed in Join once at start, then keeps
// trying, with capped exponential backoff and jitter, whenever this agent
// sees no other live member (after a failed first attempt, or after
// everyone else was declared dead).
func (g *gossip) joinLoop(ctx context.Context) {
	defer g.wg.Done()
	self := g.addr()
	var targets []string
	for _, a := range g.cfg.Join {
		if a != self && a != "" {
			targets = append(targets, a)
		}
	}
	if len(targets) == 0 {
		g.joinTried.Store(true)
		return
	}
	if g.cfg.joinHold != nil {
		select {
		case <-g.cfg.joinHold:
		case <-ctx.Done():
			return
		}
	}
	backoff := g.cfg.JoinRetryMin
	failures := 0
	// The first attempt is made even if others have joined this agent by
	// now: bootstrap waits for it (joinTried) to see whom JOIN reaches, so
	// skipping it would leave a founder that a quicker co-founder reached
	// first waiting forever.
	for first := true; ; first = false {
		if first || g.ml.NumMembers() <= 1 {
			n, err := g.ml.Join(targets)
			g.joinTried.Store(true)
			switch members := g.ml.NumMembers(); {
			case n > 0 && members > 1:
				g.log.Info("joined the cluster", "via", targets, "members", members)
				backoff, failures = g.cfg.JoinRetryMin, 0
			case members > 1: // others joined this agent: nothing to retry
				g.log.Info("JOIN addresses not reached, but other agents joined this one", "join", targets, "members", members, "err", err)
			default:
				failures++
				if failures == 1 || failures%10 == 0 {
					g.log.Warn("cannot join the cluster yet; retrying", "join", targets, "attempts", failures, "err", err)
				}
				backoff = min(backoff*2, g.cfg.JoinRetryMax)
			}
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// gossipVersion cuts a version string to 30 bytes so that the metadata
// stays well under memberlist's limit.
func gossipVersion(v string) string {
	if len(v) > 30 {
		return v[:30]
	}
	return v
}
