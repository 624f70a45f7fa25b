package fsm

import (
	"fmt"
	"sort"
)

// Kafka broker IDs.
//
// Every agent is a Kafka broker and needs an int32 broker ID that does not
// change across restarts and leader changes and that no two agents share.
// The Raft leader registers each member of the Raft configuration
// (RegisterBroker); Apply allocates the smallest ID from 1 that no
// registered node holds, so IDs are small and deterministic on every
// replica. A node keeps its ID while it is registered; the leader
// unregisters a node (Remove) only once it has left the Raft
// configuration, and only then may its ID go to another node.

// CmdRegisterBroker registers (or unregisters) a node as a Kafka broker.
const CmdRegisterBroker CommandType = 15

// MaxBrokerID bounds allocated broker IDs (Kafka IDs are int32).
const MaxBrokerID = 1<<31 - 1

// RegisterBroker gives Node a broker ID (the one it has, else the smallest
// free one), or with Remove drops its registration.
// Payload version 1: node, flags (bit 0: Remove).
type RegisterBroker struct {
	Node   string
	Remove bool
}

// Type implements Command.
func (*RegisterBroker) Type() CommandType { return CmdRegisterBroker }
func (*RegisterBroker) version() uint8    { return 1 }

func (c *RegisterBroker) encode(e *enc) {
	e.str(c.Node)
	var flags uint64
	if c.Remove {
		flags |= 1
	}
	e.uv(flags)
}

func decodeRegisterBroker(v uint8, d *dec) (Command, error) {
	if err := checkVersion(CmdRegisterBroker, v, 1); err != nil {
		return nil, err
	}
	c := &RegisterBroker{Node: d.str()}
	flags := d.uv()
	if flags&^1 != 0 {
		d.fail("register broker flags")
	}
	c.Remove = flags&1 != 0
	return c, nil
}

func (f *FSM) applyRegisterBroker(c *RegisterBroker) (*Result, bool) {
	s := f.state
	if c.Node == "" {
		return fail(CodeInvalid, "broker registration without a node ID"), false
	}
	id, ok := s.Brokers[c.Node]
	if c.Remove {
		if !ok {
			return &Result{}, false
		}
		delete(s.Brokers, c.Node)
		return &Result{BrokerID: id}, true
	}
	if ok {
		return &Result{BrokerID: id}, false
	}
	id = s.freeBrokerID()
	if id < 0 {
		return fail(CodeLimitExceeded, "no free broker ID"), false
	}
	if s.Brokers == nil {
		s.Brokers = map[string]int32{}
	}
	s.Brokers[c.Node] = id
	return &Result{BrokerID: id}, true
}

// freeBrokerID is the smallest ID from 1 that no node holds (-1: none).
func (s *State) freeBrokerID() int32 {
	used := make(map[int32]bool, len(s.Brokers))
	for _, id := range s.Brokers {
		used[id] = true
	}
	for id := int32(1); id > 0; id++ {
		if !used[id] {
			return id
		}
	}
	return -1
}

// BrokerIDs returns the registered broker IDs by node ID (a copy).
func (f *FSM) BrokerIDs() map[string]int32 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make(map[string]int32, len(f.state.Brokers))
	for n, id := range f.state.Brokers {
		out[n] = id
	}
	return out
}

// BrokerID returns node's broker ID; false when it is not registered.
func (f *FSM) BrokerID(node string) (int32, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	id, ok := f.state.Brokers[node]
	return id, ok
}

// Snapshot item itemBrokers (tag 3, after the state and lineage items,
// written only when a broker is registered): a section version byte (1),
// then the registrations sorted by node: node, ID.
const brokersSectionVersion = 1

func encodeBrokers(st *State) []byte {
	e := enc{}
	e.u8(itemBrokers)
	e.u8(brokersSectionVersion)
	nodes := make([]string, 0, len(st.Brokers))
	for n := range st.Brokers {
		nodes = append(nodes, n)
	}
	sort.Strings(nodes)
	e.uv(uint64(len(nodes)))
	for _, n := range nodes {
		e.str(n)
		e.iv(int64(st.Brokers[n]))
	}
	return e.b
}

func decodeBrokers(b []byte, st *State) error {
	d := &dec{b: b}
	if v := d.u8(); d.err == nil && v != brokersSectionVersion {
		return fmt.Errorf("%w: broker section version %d not supported (max %d)", ErrDecode, v, brokersSectionVersion)
	}
	st.Brokers = map[string]int32{}
	used := map[int32]bool{}
	d.each(2, func() {
		n := d.str()
		id := d.i32()
		if _, dup := st.Brokers[n]; dup || id <= 0 || used[id] {
			d.fail("broker registration (bad or duplicate ID or node)")
		}
		used[id] = true
		st.Brokers[n] = id
	})
	if err := d.done("broker section"); err != nil {
		return err
	}
	if len(d.b) != 0 {
		return fmt.Errorf("%w: trailing bytes in broker section", ErrDecode)
	}
	return nil
}
