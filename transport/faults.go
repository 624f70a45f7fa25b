package transport

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Faults injects network faults between PeerMuxes in one process, for
// tests. Share one Faults between every PeerMux of a test cluster (through
// PeerConfig.Faults); agents are named by their advertised addresses,
// exactly as peers dial them. An agent can always talk to itself.
//
// Faults act at three points:
//   - dial: a dial from→to that is not allowed fails with ErrPeerBlocked
//     (as a *net.OpError with Op "dial");
//   - accept: an inbound connection whose handshake names a sender that
//     may not send to us is closed;
//   - live connections: Write fails while us→peer is blocked, and bytes
//     that arrive while peer→us is blocked are dropped and fail the Read
//     (both close the connection); Partition, Isolate and Block also close
//     at once every live connection that has either direction blocked.
//
// Blackhole is the other kind of cut: traffic to and from the address is
// held, not refused, and no connection is closed — packets that vanish,
// as with an iptables DROP. A dial to or from it hangs until its timeout;
// a write on a live connection to or from it waits until Heal (then the
// bytes flow on, as TCP retransmits them), its write deadline (a timeout
// error) or Close. Bytes written before the cut are delivered. So a
// request in flight to a blackholed agent is neither answered nor failed:
// only its caller's context ends it.
//
// Block is message-level and asymmetric: with Block(a, b), b can still
// dial a and a receives b's requests, but a's answers are lost (the
// connection is closed when a writes). That is how "processed, but the
// caller never heard back" arises on a real one-way network fault.
//
// Create with NewFaults; the zero value is not usable. Methods are safe for
// concurrent use.
type Faults struct {
	mu       sync.Mutex
	isolated map[string]bool
	holes    map[string]bool // blackholed addresses
	changed  chan struct{}   // closed (and replaced) by Heal: held and delayed writes go on
	groups   map[string]int  // address → partition group; nil = no partition
	blocked  map[peerLink]bool
	delays   map[peerLink]time.Duration
	drops    map[string]int         // caller address → responses left to drop
	conns    map[*peerConn]struct{} // live connections with a known remote
}

type peerLink struct{ from, to string }

// NewFaults returns a Faults with no fault in force.
func NewFaults() *Faults {
	f := &Faults{conns: map[*peerConn]struct{}{}, changed: make(chan struct{})}
	f.reset()
	return f
}

func (f *Faults) reset() {
	f.isolated = map[string]bool{}
	f.holes = map[string]bool{}
	f.groups = nil
	f.blocked = map[peerLink]bool{}
	f.delays = map[peerLink]time.Duration{}
	f.drops = map[string]int{}
}

// Partition splits the agents into groups: two agents can talk only if they
// are in the same group; an agent listed in no group can talk to nobody
// (but itself). It replaces any earlier Partition (Isolate and Block stay in
// force); Partition() with no groups removes the partition. List each
// address in at most one group.
func (f *Faults) Partition(groups ...[]string) {
	f.mu.Lock()
	if len(groups) == 0 {
		f.groups = nil
	} else {
		f.groups = map[string]int{}
		for i, g := range groups {
			for _, a := range g {
				f.groups[a] = i
			}
		}
	}
	f.mu.Unlock()
	f.closeAffected()
}

// Isolate cuts addr off from everybody, in both directions, until Heal.
func (f *Faults) Isolate(addr string) {
	f.mu.Lock()
	f.isolated[addr] = true
	f.mu.Unlock()
	f.closeAffected()
}

// Blackhole holds all traffic to and from addr, in both directions,
// without closing any connection, until Heal (see the type comment).
func (f *Faults) Blackhole(addr string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.holes[addr] = true
}

// Block drops traffic from→to (dials and bytes) until Heal; to→from is
// unaffected (see the type comment for what that means for
// request/response traffic).
func (f *Faults) Block(from, to string) {
	f.mu.Lock()
	f.blocked[peerLink{from, to}] = true
	f.mu.Unlock()
	f.closeAffected()
}

// Delay adds d of latency before every write from→to (handshakes
// included); d <= 0 removes it for later writes, Heal also ends the wait
// of writes already delayed. A delayed write holds up later writes on the
// same connection, so it also throttles throughput.
func (f *Faults) Delay(from, to string, d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if d <= 0 {
		delete(f.delays, peerLink{from, to})
		return
	}
	f.delays[peerLink{from, to}] = d
}

// DropRPCResponses loses the next n peer-RPC responses to the caller `to`
// (an advertised address): the serving agent runs the handler to completion
// (with a response writer that discards everything), then closes the
// connection without answering. The caller sees a transport error although
// the request was processed: an "outcome unknown" failure. It sets the
// count (n <= 0 clears it); it does not add to an earlier one.
//
// The RPC client's net/http transport transparently retries a failed
// request on a reused connection only when the request is replayable (GET,
// HEAD, OPTIONS, TRACE without body, or with an Idempotency-Key header), so
// test it with POST, as forwarded writes are.
func (f *Faults) DropRPCResponses(to string, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if n <= 0 {
		delete(f.drops, to)
		return
	}
	f.drops[to] = n
}

// Heal removes every fault (partition, isolations, blackholes, blocks,
// delays and pending response drops). Connections closed by faults stay
// closed; peers redial. Traffic held by a blackhole flows on.
func (f *Faults) Heal() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reset()
	close(f.changed)
	f.changed = make(chan struct{})
}

// held returns, while traffic from→to is held by a blackhole, a channel
// closed when that may have changed; nil when it flows (or f is nil).
func (f *Faults) held(from, to string) <-chan struct{} {
	if f == nil || from == to {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.holes[from] || f.holes[to] {
		return f.changed
	}
	return nil
}

// healed returns a channel closed at the next Heal (nil for a nil f).
func (f *Faults) healed() <-chan struct{} {
	if f == nil {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.changed
}

// waitHeld returns nil once traffic from→to is not held, or ctx's error
// if ctx ends first.
func (f *Faults) waitHeld(ctx context.Context, from, to string) error {
	for ch := f.held(from, to); ch != nil; ch = f.held(from, to) {
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// allowedLocked reports whether traffic from→to may flow. f.mu is held.
func (f *Faults) allowedLocked(from, to string) bool {
	if from == to {
		return true
	}
	if f.isolated[from] || f.isolated[to] {
		return false
	}
	if f.groups != nil {
		gf, okf := f.groups[from]
		gt, okt := f.groups[to]
		if !okf || !okt || gf != gt {
			return false
		}
	}
	return !f.blocked[peerLink{from, to}]
}

// check returns an error wrapping ErrPeerBlocked unless traffic from→to may
// flow. A nil Faults allows everything.
func (f *Faults) check(from, to string) error {
	if f == nil {
		return nil
	}
	f.mu.Lock()
	ok := f.allowedLocked(from, to)
	f.mu.Unlock()
	if !ok {
		return fmt.Errorf("%w: %s -> %s", ErrPeerBlocked, from, to)
	}
	return nil
}

// delay returns the injected latency for writes from→to.
func (f *Faults) delay(from, to string) time.Duration {
	if f == nil {
		return 0
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.delays[peerLink{from, to}]
}

// takeDrop consumes one pending response drop for caller.
func (f *Faults) takeDrop(caller string) bool {
	if f == nil || caller == "" {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.drops[caller] <= 0 {
		return false
	}
	f.drops[caller]--
	if f.drops[caller] == 0 {
		delete(f.drops, caller)
	}
	return true
}

// attach registers a connection whose remote is known, after checking (in
// the same critical section, so no fault change slips between) that
// from→to may flow. On error the caller closes c.
func (f *Faults) attach(c *peerConn, from, to string) error {
	if f == nil {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.allowedLocked(from, to) {
		return fmt.Errorf("%w: %s -> %s", ErrPeerBlocked, from, to)
	}
	f.conns[c] = struct{}{}
	return nil
}

func (f *Faults) detach(c *peerConn) {
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.conns, c)
}

// closeAffected closes every registered connection with a blocked
// direction. Connections are closed after f.mu is released (peerConn.Close
// takes it to detach).
func (f *Faults) closeAffected() {
	f.mu.Lock()
	var victims []*peerConn
	for c := range f.conns {
		if !f.allowedLocked(c.local, c.remote) || !f.allowedLocked(c.remote, c.local) {
			victims = append(victims, c)
		}
	}
	f.mu.Unlock()
	for _, c := range victims {
		_ = c.Close()
	}
}
