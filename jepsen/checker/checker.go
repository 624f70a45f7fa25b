// Package checker analyses a jepsen history (package history) for the
// anomalies StreamHouse claims never to show. It is pure: a function of the
// history and the options, no I/O, no clock.
//
// Anomalies (Result.Counts keys):
//
//   - lost-write: an acknowledged send whose value is missing from a
//     complete final read of its partition (one per agent that lacks it).
//   - unseen: an acknowledged send whose value no read observed at all
//     (polls and final reads).
//   - duplicate: one value at two offsets of a partition.
//   - inconsistent-offsets: one offset holding two values across reads and
//     acknowledgements.
//   - offset-gap: a complete final read missing an offset between its low
//     and high watermark that is not in an allowed gap (DR restore).
//   - nonmonotonic-send: one producer's acknowledged offsets in a partition
//     going backwards in the order the values were sent.
//   - poll-skip: a poller (or group consumer) moving past a record of the
//     log without returning it.
//   - nonmonotonic-poll: a poller returning an offset at or below one it
//     already returned.
//   - aborted-read: a send that definitely failed whose value was read.
//   - commit-regression: a read of a group's committed offset lower than an
//     acknowledged commit that completed before the read began, with no
//     commit of that lower value that could have been applied later (an
//     indefinite commit, or one acknowledged after that commit began).
//   - commit-past-hw: an acknowledged (or read) committed offset above the
//     partition's final high watermark.
//   - two-leaders: two agents named as leader of one partition in one
//     leader epoch.
//   - offset-reuse (DR only): a send acknowledged after the disaster at an
//     offset at or below one acknowledged before it.
package checker

import (
	"fmt"
	"slices"
	"sort"

	"github.com/streamhouse/streamhouse/jepsen/history"
)

// Anomaly kinds.
const (
	LostWrite           = "lost-write"
	Unseen              = "unseen"
	Duplicate           = "duplicate"
	InconsistentOffsets = "inconsistent-offsets"
	OffsetGap           = "offset-gap"
	NonmonotonicSend    = "nonmonotonic-send"
	PollSkip            = "poll-skip"
	NonmonotonicPoll    = "nonmonotonic-poll"
	AbortedRead         = "aborted-read"
	CommitRegression    = "commit-regression"
	CommitPastHW        = "commit-past-hw"
	TwoLeaders          = "two-leaders"
	OffsetReuse         = "offset-reuse"
)

// AllKinds lists every anomaly kind, in report order.
var AllKinds = []string{LostWrite, Unseen, Duplicate, InconsistentOffsets, OffsetGap, NonmonotonicSend,
	PollSkip, NonmonotonicPoll, AbortedRead, CommitRegression, CommitPastHW, TwoLeaders, OffsetReuse}

// Range is the offsets [From, To).
type Range struct {
	From int64 `json:"from"`
	To   int64 `json:"to"`
}

func (r Range) contains(o int64) bool { return o >= r.From && o < r.To }

// Options adjust the checks.
type Options struct {
	// AllowedGaps are offset ranges per partition that may hold no record
	// (the gaps a DR restore leaves so offsets are never reused).
	AllowedGaps map[int32][]Range
	// DR: the history has a disaster (an ok history.FDisaster op): every
	// agent and disk was lost and a new cluster restored from Postgres +
	// the bucket. Sends acknowledged before it at offsets at or above
	// FlushedBefore[p] (the flushed offset known before the disaster) may
	// be lost: they are counted in Stats.LostUnflushed, not as anomalies.
	// Committed offsets and leader epochs are checked within each era.
	FlushedBefore map[int32]int64
	// MaxExamples bounds the examples kept per kind (default 20).
	MaxExamples int
}

// Anomaly is one finding.
type Anomaly struct {
	Kind    string  `json:"kind"`
	P       int32   `json:"p"`
	O       int64   `json:"o,omitempty"`
	V       int64   `json:"v,omitempty"`
	Process int     `json:"process,omitempty"`
	Node    string  `json:"node,omitempty"`
	Detail  string  `json:"detail"`
	Ops     []int64 `json:"ops,omitempty"` // history indexes
}

// Stats summarises the history.
type Stats struct {
	Ops           int `json:"ops"`
	SendsOK       int `json:"sends_ok"`
	SendsFail     int `json:"sends_fail"`
	SendsInfo     int `json:"sends_info"`
	SendsOpen     int `json:"sends_open"` // invoked, never completed
	Polls         int `json:"polls_ok"`
	PolledRecords int `json:"polled_records"`
	Commits       int `json:"commits_ok"`
	FinalReads    int `json:"final_reads_complete"`
	FinalRecords  int `json:"final_records"`
	LeaderSamples int `json:"leader_samples"`
	NemesisOps    int `json:"nemesis_ops"`
	LostUnflushed int `json:"lost_unflushed,omitempty"` // DR: acknowledged above the flushed offset and lost
	Recovered     int `json:"recovered_unflushed,omitempty"`
	// DR: observations before the disaster of records at offsets the
	// restore gave up (they are gone; not counted as duplicates).
	SeenInLostRange int   `json:"seen_in_lost_range,omitempty"`
	DisasterIndex   int64 `json:"disaster_index,omitempty"`
}

// Result is the checker's verdict.
type Result struct {
	Valid     bool                 `json:"valid"`
	Counts    map[string]int       `json:"counts"`
	Anomalies map[string][]Anomaly `json:"anomalies,omitempty"` // examples, at most MaxExamples per kind
	Stats     Stats                `json:"stats"`
}

// Total is the number of anomalies of every kind.
func (r Result) Total() int {
	n := 0
	for _, c := range r.Counts {
		n += c
	}
	return n
}

type send struct {
	inv      history.Op
	done     history.Type // "" while open
	offset   int64
	complete int64 // index of the completion
}

type obs struct {
	o, v int64
	op   int64
}

type checker struct {
	opts     Options
	ops      []history.Op
	res      Result
	disaster int64 // index of the disaster op, -1 when none

	sends   []*send
	byInv   map[int64]*history.Op // invocation by index
	compl   map[int64]history.Op  // completion by invocation index
	readsPV map[int32]map[int64][]obs
	readsPO map[int32]map[int64][]obs
	readVal map[int32]map[int64]bool // values seen by any read
	known   map[int32][]int64        // every observed offset per partition, sorted
	finalHW map[int32]int64
}

// Check analyses ops (in index order).
func Check(ops []history.Op, opts Options) Result {
	if opts.MaxExamples <= 0 {
		opts.MaxExamples = 20
	}
	c := &checker{
		opts: opts, ops: ops, disaster: -1,
		res:     Result{Counts: map[string]int{}, Anomalies: map[string][]Anomaly{}},
		byInv:   map[int64]*history.Op{},
		compl:   map[int64]history.Op{},
		readsPV: map[int32]map[int64][]obs{},
		readsPO: map[int32]map[int64][]obs{},
		readVal: map[int32]map[int64]bool{},
		known:   map[int32][]int64{},
		finalHW: map[int32]int64{},
	}
	for _, k := range AllKinds {
		c.res.Counts[k] = 0
	}
	c.index()
	c.checkOffsetsAndValues()
	c.checkLostAndUnseen()
	c.checkGaps()
	c.checkSendOrder()
	c.checkPolls()
	c.checkAborted()
	c.checkCommits()
	c.checkLeaders()
	c.checkOffsetReuse()
	c.res.Valid = c.res.Total() == 0
	if len(c.res.Anomalies) == 0 {
		c.res.Anomalies = nil
	}
	return c.res
}

func (c *checker) report(a Anomaly) {
	c.res.Counts[a.Kind]++
	if len(c.res.Anomalies[a.Kind]) < c.opts.MaxExamples {
		c.res.Anomalies[a.Kind] = append(c.res.Anomalies[a.Kind], a)
	}
}

func (c *checker) addRead(p int32, o, v, op int64) {
	if c.readsPV[p] == nil {
		c.readsPV[p], c.readsPO[p], c.readVal[p] = map[int64][]obs{}, map[int64][]obs{}, map[int64]bool{}
	}
	c.readsPV[p][v] = append(c.readsPV[p][v], obs{o, v, op})
	c.readsPO[p][o] = append(c.readsPO[p][o], obs{o, v, op})
	c.readVal[p][v] = true
	c.known[p] = append(c.known[p], o)
}

func (c *checker) index() {
	st := &c.res.Stats
	st.Ops = len(c.ops)
	st.DisasterIndex = -1
	for i := range c.ops {
		op := &c.ops[i]
		if op.Type == history.Invoke {
			c.byInv[op.Index] = op
			if op.F == history.FSend {
				c.sends = append(c.sends, &send{inv: *op, offset: -1})
			}
			continue
		}
		if op.F == history.FDisaster && op.Type == history.OK && c.disaster < 0 {
			c.disaster = op.Index
			st.DisasterIndex = op.Index
		}
		c.compl[op.Inv] = *op
		switch op.F {
		case history.FNemesis:
			st.NemesisOps++
		case history.FPoll:
			if op.Type == history.OK {
				st.Polls++
				st.PolledRecords += len(op.Recs)
				for _, r := range op.Recs {
					c.addRead(r.P, r.O, r.V, op.Index)
				}
			}
		case history.FFinalRead:
			if op.Type == history.OK {
				for _, r := range op.Recs {
					c.addRead(r.P, r.O, r.V, op.Index)
				}
				if op.Complete {
					st.FinalReads++
					st.FinalRecords += len(op.Recs)
					c.finalHW[op.P] = max(c.finalHW[op.P], op.HW)
				}
			}
		case history.FCommit:
			if op.Type == history.OK {
				st.Commits++
			}
		case history.FLeaders:
			if op.Type == history.OK {
				st.LeaderSamples++
			}
		}
	}
	for _, s := range c.sends {
		cp, ok := c.compl[s.inv.Index]
		if !ok {
			st.SendsOpen++
			continue
		}
		s.done, s.complete = cp.Type, cp.Index
		switch cp.Type {
		case history.OK:
			st.SendsOK++
			s.offset = cp.O
			c.known[s.inv.P] = append(c.known[s.inv.P], cp.O)
		case history.Fail:
			st.SendsFail++
		case history.Info:
			st.SendsInfo++
		}
	}
	for p := range c.known {
		slices.Sort(c.known[p])
		c.known[p] = slices.Compact(c.known[p])
	}
}

func sortedKeys[K int32 | int64, V any](m map[K]V) []K {
	ks := make([]K, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// keyed collects observations of one coordinate of a record (an offset,
// or a value) under the other (partition and value, or partition and
// offset): partition and key -> other coordinate -> observing ops.
type keyed map[pkey]map[int64][]int64

// pkey is a partition and an offset or a value.
type pkey struct {
	p int32
	k int64
}

func (m keyed) add(p int32, k, other, op int64) {
	key := pkey{p, k}
	if m[key] == nil {
		m[key] = map[int64][]int64{}
	}
	m[key][other] = append(m[key][other], op)
}

// conflict is a key observed with more than one other coordinate: the
// others, sorted, and the first op that observed each.
type conflict struct {
	pkey
	others []int64
	ops    []int64
}

// conflicts lists every key with more than one other coordinate, ordered
// by partition, then key.
func (m keyed) conflicts() []conflict {
	keys := make([]pkey, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		return keys[i].p < keys[j].p || (keys[i].p == keys[j].p && keys[i].k < keys[j].k)
	})
	var out []conflict
	for _, k := range keys {
		if len(m[k]) < 2 {
			continue
		}
		cf := conflict{pkey: k, others: sortedKeys(m[k])}
		for _, o := range cf.others {
			cf.ops = append(cf.ops, m[k][o][0])
		}
		out = append(out, cf)
	}
	return out
}

// checkOffsetsAndValues: duplicates and inconsistent offsets over reads
// and acknowledgements.
func (c *checker) checkOffsetsAndValues() {
	offsetsOf, valuesAt := c.offsetsAndValues()
	for _, d := range offsetsOf.conflicts() {
		c.report(Anomaly{Kind: Duplicate, P: d.p, V: d.k, O: d.others[0], Ops: d.ops,
			Detail: fmt.Sprintf("value %d of partition %d at offsets %v", d.k, d.p, d.others)})
	}
	for _, d := range valuesAt.conflicts() {
		c.report(Anomaly{Kind: InconsistentOffsets, P: d.p, O: d.k, V: d.others[0], Ops: d.ops,
			Detail: fmt.Sprintf("offset %d of partition %d holds values %v", d.k, d.p, d.others)})
	}
}

// offsetsAndValues indexes every acknowledgement and read: the offsets of
// each value and the values at each offset. Acknowledgements count as
// observations here (not as reads: they do not count as "seen" for
// unseen/aborted).
func (c *checker) offsetsAndValues() (offsetsOf, valuesAt keyed) {
	offsetsOf, valuesAt = keyed{}, keyed{}
	add := func(p int32, o, v, op int64) {
		if c.disaster >= 0 && op < c.disaster && c.allowedGap(p, o) {
			// DR: a record seen before the disaster at an offset the
			// restore gave up (past the recovery point) is gone; its
			// producer may legitimately write it again after the
			// restore. Not a duplicate (a consumer sees it twice).
			c.res.Stats.SeenInLostRange++
		} else {
			offsetsOf.add(p, v, o, op)
		}
		valuesAt.add(p, o, v, op)
	}
	for _, s := range c.sends {
		if s.done == history.OK {
			add(s.inv.P, s.offset, s.inv.V, s.complete)
		}
	}
	for _, p := range sortedKeys(c.readsPO) {
		for _, o := range sortedKeys(c.readsPO[p]) {
			for _, r := range c.readsPO[p][o] {
				add(p, r.o, r.v, r.op)
			}
		}
	}
	return offsetsOf, valuesAt
}

// lossExempt: a DR send acknowledged before the disaster at or above the
// flushed offset known then.
func (c *checker) lossExempt(s *send) bool {
	if c.disaster < 0 || s.complete > c.disaster {
		return false
	}
	fb, ok := c.opts.FlushedBefore[s.inv.P]
	return !ok || s.offset >= fb
}

func (c *checker) checkLostAndUnseen() {
	// Complete final reads per partition.
	finals := map[int32][]history.Op{}
	for _, op := range c.ops {
		if op.F == history.FFinalRead && op.Type == history.OK && op.Complete {
			finals[op.P] = append(finals[op.P], op)
		}
	}
	finalVals := map[int64]map[int64]bool{}
	for _, ops := range finals {
		for _, op := range ops {
			m := map[int64]bool{}
			for _, r := range op.Recs {
				m[r.V] = true
			}
			finalVals[op.Index] = m
		}
	}
	for _, s := range c.sends {
		if s.done != history.OK {
			continue
		}
		p, v := s.inv.P, s.inv.V
		seen := c.readVal[p][v]
		if c.lossExempt(s) {
			// Recovered means: in the final read (after the restore), at
			// its offset; a read before the disaster does not count.
			inFinal := len(finals[p]) > 0
			for _, f := range finals[p] {
				inFinal = inFinal && finalVals[f.Index][v]
			}
			if inFinal {
				c.res.Stats.Recovered++
			} else {
				c.res.Stats.LostUnflushed++
			}
			continue
		}
		for _, f := range finals[p] {
			if !finalVals[f.Index][v] {
				c.report(Anomaly{Kind: LostWrite, P: p, O: s.offset, V: v, Process: s.inv.Process, Node: f.Node,
					Ops:    []int64{s.inv.Index, s.complete, f.Index},
					Detail: fmt.Sprintf("value %d acknowledged at offset %d of partition %d is missing from the final read on %s (high watermark %d)", v, s.offset, p, f.Node, f.HW)})
			}
		}
		if !seen {
			c.report(Anomaly{Kind: Unseen, P: p, O: s.offset, V: v, Process: s.inv.Process,
				Ops:    []int64{s.inv.Index, s.complete},
				Detail: fmt.Sprintf("value %d acknowledged at offset %d of partition %d was never read", v, s.offset, p)})
		}
	}
}

func (c *checker) allowedGap(p int32, o int64) bool {
	for _, r := range c.opts.AllowedGaps[p] {
		if r.contains(o) {
			return true
		}
	}
	return false
}

// missing returns the parts of [from, to) not covered by the allowed gaps
// of p.
func (c *checker) missing(p int32, from, to int64) []Range {
	out := []Range{{from, to}}
	for _, g := range c.opts.AllowedGaps[p] {
		var next []Range
		for _, r := range out {
			if g.To <= r.From || g.From >= r.To {
				next = append(next, r)
				continue
			}
			if g.From > r.From {
				next = append(next, Range{r.From, g.From})
			}
			if g.To < r.To {
				next = append(next, Range{g.To, r.To})
			}
		}
		out = next
	}
	return out
}

func (c *checker) checkGaps() {
	for _, op := range c.ops {
		if op.F != history.FFinalRead || op.Type != history.OK || !op.Complete {
			continue
		}
		offs := make([]int64, 0, len(op.Recs))
		for _, r := range op.Recs {
			offs = append(offs, r.O)
		}
		slices.Sort(offs)
		offs = slices.Compact(offs)
		expect := op.LW
		holes := func(to int64) {
			if to <= expect {
				return
			}
			for _, r := range c.missing(op.P, expect, to) {
				c.report(Anomaly{Kind: OffsetGap, P: op.P, O: r.From, Node: op.Node, Ops: []int64{op.Index},
					Detail: fmt.Sprintf("partition %d on %s has no records at offsets [%d, %d) (low watermark %d, high watermark %d)", op.P, op.Node, r.From, r.To, op.LW, op.HW)})
			}
		}
		for _, o := range offs {
			if o < expect || o >= op.HW {
				continue
			}
			holes(o)
			expect = o + 1
		}
		holes(op.HW)
	}
}

func (c *checker) checkSendOrder() {
	type key struct {
		proc int
		p    int32
	}
	last := map[key]*send{}
	// c.sends is in invocation order.
	for _, s := range c.sends {
		if s.done != history.OK {
			continue
		}
		k := key{s.inv.Process, s.inv.P}
		if prev := last[k]; prev != nil && s.offset <= prev.offset {
			c.report(Anomaly{Kind: NonmonotonicSend, P: s.inv.P, O: s.offset, V: s.inv.V, Process: s.inv.Process,
				Ops:    []int64{prev.inv.Index, s.inv.Index},
				Detail: fmt.Sprintf("process %d sent %d then %d to partition %d; they were acknowledged at offsets %d then %d", s.inv.Process, prev.inv.V, s.inv.V, s.inv.P, prev.offset, s.offset)})
		}
		last[k] = s
	}
}

// between reports the first known offset of p strictly between a and b
// that is not in an allowed gap, or -1.
func (c *checker) between(p int32, a, b int64) int64 {
	ks := c.known[p]
	i := sort.Search(len(ks), func(i int) bool { return ks[i] > a })
	for ; i < len(ks) && ks[i] < b; i++ {
		if !c.allowedGap(p, ks[i]) {
			return ks[i]
		}
	}
	return -1
}

func (c *checker) checkPolls() {
	type key struct {
		proc int
		p    int32
	}
	type last struct {
		o  int64
		op int64
	}
	prev := map[key]last{}
	for _, op := range c.ops {
		if op.F != history.FPoll || op.Type != history.OK {
			continue
		}
		for _, r := range op.Recs {
			k := key{op.Process, r.P}
			l, ok := prev[k]
			prev[k] = last{r.O, op.Index}
			if !ok {
				continue
			}
			switch {
			case r.O <= l.o:
				c.report(Anomaly{Kind: NonmonotonicPoll, P: r.P, O: r.O, V: r.V, Process: op.Process, Ops: []int64{l.op, op.Index},
					Detail: fmt.Sprintf("process %d read offset %d of partition %d after offset %d", op.Process, r.O, r.P, l.o)})
			case r.O > l.o+1:
				if m := c.between(r.P, l.o, r.O); m >= 0 {
					c.report(Anomaly{Kind: PollSkip, P: r.P, O: m, V: r.V, Process: op.Process, Ops: []int64{l.op, op.Index},
						Detail: fmt.Sprintf("process %d jumped from offset %d to %d of partition %d, skipping offset %d", op.Process, l.o, r.O, r.P, m)})
				}
			}
		}
	}
}

func (c *checker) checkAborted() {
	for _, s := range c.sends {
		if s.done != history.Fail {
			continue
		}
		for _, r := range c.readsPV[s.inv.P][s.inv.V] {
			c.report(Anomaly{Kind: AbortedRead, P: s.inv.P, O: r.o, V: s.inv.V, Process: s.inv.Process,
				Ops:    []int64{s.inv.Index, s.complete, r.op},
				Detail: fmt.Sprintf("send of %d to partition %d failed definitely, yet it was read at offset %d", s.inv.V, s.inv.P, r.o)})
			break
		}
	}
}

// era is 0 before the disaster (or without one), 1 after.
func (c *checker) era(index int64) int {
	if c.disaster >= 0 && index > c.disaster {
		return 1
	}
	return 0
}

type commitEv struct {
	o        int64
	inv      int64
	complete int64 // -1: never completed
	t        history.Type
}

// commitKey is a group's partition.
type commitKey struct {
	group string
	p     int32
}

func (c *checker) checkCommits() {
	commits := c.commitEvents()
	for _, op := range c.ops {
		if op.F != history.FFetchOffsets || op.Type != history.OK {
			continue
		}
		if inv := c.byInv[op.Inv]; inv != nil {
			c.checkOffsetRead(op, inv, commits)
		}
	}
}

// commitEvents lists the commits of every group's partition in invocation
// order, and reports the acknowledged ones past the final high watermark.
func (c *checker) commitEvents() map[commitKey][]commitEv {
	commits := map[commitKey][]commitEv{}
	for _, op := range c.ops {
		if op.F != history.FCommit || op.Type != history.Invoke {
			continue
		}
		cp, done := c.compl[op.Index]
		for _, o := range op.Offsets {
			ev := commitEv{o: o.O, inv: op.Index, complete: -1, t: history.Info}
			if done {
				ev.complete, ev.t = cp.Index, cp.Type
			}
			commits[commitKey{op.Group, o.P}] = append(commits[commitKey{op.Group, o.P}], ev)
			if ev.t == history.OK {
				if hw, ok := c.finalHW[o.P]; ok && o.O > hw {
					c.report(Anomaly{Kind: CommitPastHW, P: o.P, O: o.O, Process: op.Process, Ops: []int64{op.Index, ev.complete},
						Detail: fmt.Sprintf("group %s committed offset %d of partition %d, past the final high watermark %d", op.Group, o.O, o.P, hw)})
				}
			}
		}
	}
	return commits
}

// checkOffsetRead checks one completed read of a group's committed offsets
// (op, invoked by inv): past the final high watermark, or below an earlier
// acknowledged commit without an excuse.
func (c *checker) checkOffsetRead(op history.Op, inv *history.Op, commits map[commitKey][]commitEv) {
	read := map[int32]int64{}
	for _, o := range op.Offsets {
		read[o.P] = o.O
		if hw, ok := c.finalHW[o.P]; ok && o.O > hw {
			c.report(Anomaly{Kind: CommitPastHW, P: o.P, O: o.O, Process: op.Process, Ops: []int64{op.Index},
				Detail: fmt.Sprintf("group %s's committed offset of partition %d read as %d, past the final high watermark %d", op.Group, o.P, o.O, hw)})
		}
	}
	for k, evs := range commits {
		if k.group != op.Group {
			continue
		}
		floor := c.commitFloor(evs, inv.Index)
		if floor == nil {
			continue
		}
		got, ok := read[k.p]
		if !ok {
			got = -1
		}
		if got < floor.o && !excusedRegression(evs, got, op.Index, floor) {
			c.report(Anomaly{Kind: CommitRegression, P: k.p, O: got, Process: op.Process, Ops: []int64{floor.inv, floor.complete, op.Index},
				Detail: fmt.Sprintf("group %s's committed offset of partition %d read as %d after a commit of %d was acknowledged", k.group, k.p, got, floor.o)})
		}
	}
}

// commitFloor is the highest acknowledged commit completed before a read
// invoked at index readInv, in the read's era; nil when there is none.
func (c *checker) commitFloor(evs []commitEv, readInv int64) *commitEv {
	var floor *commitEv
	for i := range evs {
		e := &evs[i]
		if e.t == history.OK && e.complete < readInv && c.era(e.complete) == c.era(readInv) && (floor == nil || e.o > floor.o) {
			floor = e
		}
	}
	return floor
}

// excusedRegression reports whether a read of got, completed at index
// readDone, below floor is excused by a commit of the value read that may
// have been applied after the floor: not failed, invoked before the read
// completed, and either indefinite (pending, or info: like any indefinite
// operation it may take effect at any time after its invocation, even
// after later commits were acknowledged) or acknowledged only after the
// floor was invoked.
func excusedRegression(evs []commitEv, got, readDone int64, floor *commitEv) bool {
	for _, e := range evs {
		if e.o == got && e.t != history.Fail && e.inv < readDone && (e.complete < 0 || e.t == history.Info || e.complete > floor.inv) {
			return true
		}
	}
	return false
}

func (c *checker) checkLeaders() {
	type key struct {
		era   int
		p     int32
		epoch uint64
	}
	leaders := map[key]map[string]int64{}
	var keys []key
	for _, op := range c.ops {
		if op.F != history.FLeaders || op.Type != history.OK {
			continue
		}
		for _, l := range op.Leaders {
			if l.Leader == "" {
				continue
			}
			k := key{c.era(op.Index), l.P, l.Epoch}
			if leaders[k] == nil {
				leaders[k] = map[string]int64{}
				keys = append(keys, k)
			}
			if _, ok := leaders[k][l.Leader]; !ok {
				leaders[k][l.Leader] = op.Index
			}
		}
	}
	for _, k := range keys {
		if len(leaders[k]) < 2 {
			continue
		}
		var names []string
		var ops []int64
		for n, i := range leaders[k] {
			names = append(names, n)
			ops = append(ops, i)
		}
		slices.Sort(names)
		slices.Sort(ops)
		c.report(Anomaly{Kind: TwoLeaders, P: k.p, O: int64(k.epoch), Ops: ops,
			Detail: fmt.Sprintf("partition %d has leaders %v in epoch %d", k.p, names, k.epoch)})
	}
}

func (c *checker) checkOffsetReuse() {
	if c.disaster < 0 {
		return
	}
	maxBefore := map[int32]int64{}
	for _, s := range c.sends {
		if s.done == history.OK && s.complete < c.disaster {
			maxBefore[s.inv.P] = max(maxBefore[s.inv.P], s.offset+1)
		}
	}
	for _, s := range c.sends {
		if s.done == history.OK && s.complete > c.disaster && s.offset < maxBefore[s.inv.P] {
			c.report(Anomaly{Kind: OffsetReuse, P: s.inv.P, O: s.offset, V: s.inv.V, Process: s.inv.Process, Ops: []int64{s.inv.Index, s.complete},
				Detail: fmt.Sprintf("value %d was acknowledged after the disaster at offset %d of partition %d, at or below the offset %d acknowledged before it", s.inv.V, s.offset, s.inv.P, maxBefore[s.inv.P]-1)})
		}
	}
}
