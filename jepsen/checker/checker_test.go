package checker

import (
	"maps"
	"testing"

	"github.com/streamhouse/streamhouse/jepsen/history"
)

// hb builds a history by hand.
type hb struct{ ops []history.Op }

func (h *hb) add(op history.Op) history.Op {
	op.Index = int64(len(h.ops))
	op.Time = op.Index * 1000
	h.ops = append(h.ops, op)
	return op
}

func (h *hb) invoke(op history.Op) history.Op { op.Type = history.Invoke; return h.add(op) }

func (h *hb) complete(inv history.Op, t history.Type, fill func(*history.Op)) history.Op {
	c := history.Op{Process: inv.Process, Type: t, F: inv.F, Inv: inv.Index, P: inv.P, V: inv.V, Group: inv.Group, Node: inv.Node, Offsets: inv.Offsets}
	if fill != nil {
		fill(&c)
	}
	return h.add(c)
}

func (h *hb) sendInv(proc int, p int32, v int64) history.Op {
	return h.invoke(history.Op{Process: proc, F: history.FSend, P: p, V: v})
}

func (h *hb) sendOK(proc int, p int32, v, o int64) {
	h.complete(h.sendInv(proc, p, v), history.OK, func(c *history.Op) { c.O = o })
}

func (h *hb) sendEnd(proc int, p int32, v int64, t history.Type) {
	h.complete(h.sendInv(proc, p, v), t, func(c *history.Op) { c.Err = "boom" })
}

func recs(p int32, ov ...int64) []history.Rec {
	var rs []history.Rec
	for i := 0; i+1 < len(ov); i += 2 {
		rs = append(rs, history.Rec{P: p, O: ov[i], V: ov[i+1]})
	}
	return rs
}

func (h *hb) poll(proc int, rs []history.Rec) {
	h.complete(h.invoke(history.Op{Process: proc, F: history.FPoll}), history.OK, func(c *history.Op) { c.Recs = rs })
}

func (h *hb) final(node string, p int32, lw, hw int64, rs []history.Rec) {
	inv := h.invoke(history.Op{Process: 100, F: history.FFinalRead, P: p, Node: node})
	h.complete(inv, history.OK, func(c *history.Op) { c.Recs, c.LW, c.HW, c.Complete = rs, lw, hw, true })
}

func (h *hb) commit(proc int, group string, p int32, o int64, t history.Type) {
	inv := h.invoke(history.Op{Process: proc, F: history.FCommit, Group: group, Offsets: []history.Offset{{P: p, O: o}}})
	h.complete(inv, t, nil)
}

func (h *hb) fetch(proc int, group string, offs ...history.Offset) {
	inv := h.invoke(history.Op{Process: proc, F: history.FFetchOffsets, Group: group})
	h.complete(inv, history.OK, func(c *history.Op) { c.Offsets = offs })
}

func (h *hb) leaders(node string, obs ...history.LeaderObs) {
	inv := h.invoke(history.Op{Process: 200, F: history.FLeaders, Node: node})
	h.complete(inv, history.OK, func(c *history.Op) { c.Leaders = obs })
}

func (h *hb) nemesis(what string) {
	inv := h.invoke(history.Op{Process: history.NemesisProcess, F: history.FNemesis, Value: what, Targets: []string{"n1"}})
	h.complete(inv, history.OK, nil)
}

// clean is a history with every kind of operation and no anomaly:
// producers 0 and 1 on partitions 0 and 1, a poller (2), a group consumer
// (3) that is replaced by another (4), leader samples, a nemesis, a failed
// send that never shows up, an indefinite send that does, a final read on
// two agents.
func clean() *hb {
	h := &hb{}
	h.leaders("n1", history.LeaderObs{P: 0, Leader: "n1", Epoch: 1}, history.LeaderObs{P: 1, Leader: "n2", Epoch: 1})
	h.sendOK(0, 0, 1, 0)
	h.sendOK(0, 0, 2, 1)
	h.sendOK(1, 1, 1, 0)
	h.poll(2, append(recs(0, 0, 1, 1, 2), recs(1, 0, 1)...))
	h.nemesis("kill")
	h.sendEnd(0, 0, 3, history.Fail) // definitely not written
	h.sendEnd(0, 0, 4, history.Info) // written after all (offset 2)
	h.sendOK(0, 0, 5, 3)
	h.leaders("n2", history.LeaderObs{P: 0, Leader: "n3", Epoch: 2}, history.LeaderObs{P: 1, Leader: "n2", Epoch: 1})
	h.sendOK(1, 1, 2, 1)
	h.poll(2, append(recs(0, 2, 4, 3, 5), recs(1, 1, 2)...))
	h.poll(3, recs(0, 0, 1, 1, 2))
	h.commit(3, "g", 0, 2, history.OK)
	h.commit(3, "g", 0, 3, history.Info) // unknown: may or may not be applied
	h.fetch(4, "g", history.Offset{P: 0, O: 2})
	h.poll(4, recs(0, 2, 4, 3, 5))
	h.commit(4, "g", 0, 4, history.OK)
	h.fetch(4, "g", history.Offset{P: 0, O: 4})
	for _, n := range []string{"n1", "n2"} {
		h.final(n, 0, 0, 4, recs(0, 0, 1, 1, 2, 2, 4, 3, 5))
		h.final(n, 1, 0, 2, recs(1, 0, 1, 1, 2))
	}
	return h
}

func counts(want map[string]int) map[string]int {
	m := map[string]int{}
	for _, k := range AllKinds {
		m[k] = 0
	}
	maps.Copy(m, want)
	return m
}

func TestCleanHistoryPasses(t *testing.T) {
	res := Check(clean().ops, Options{})
	if !res.Valid || res.Total() != 0 {
		t.Fatalf("clean history: %+v", res)
	}
	st := res.Stats
	if st.SendsOK != 5 || st.SendsFail != 1 || st.SendsInfo != 1 || st.FinalReads != 4 || st.Commits != 2 || st.NemesisOps != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// Each case builds a history with one planted anomaly; the checker must
// report it (and exactly the listed side effects).
func TestEachAnomalyIsDetected(t *testing.T) {
	cases := []struct {
		name  string
		build func() *hb
		opts  Options
		want  map[string]int
	}{
		{"lost-write: acknowledged, missing from one agent's final read", func() *hb {
			h := clean()
			h.final("n3", 1, 0, 2, recs(1, 0, 1)) // lacks value 2 at offset 1
			return h
		}, Options{}, map[string]int{LostWrite: 1, OffsetGap: 1}},
		{"unseen and lost: acknowledged, never read by anyone", func() *hb {
			h := &hb{}
			h.sendOK(0, 0, 1, 0)
			h.sendOK(0, 0, 2, 1)
			h.final("n1", 0, 0, 1, recs(0, 0, 1))
			return h
		}, Options{}, map[string]int{Unseen: 1, LostWrite: 1}},
		{"unseen: acknowledged, final read incomplete", func() *hb {
			h := &hb{}
			h.sendOK(0, 0, 1, 0)
			inv := h.invoke(history.Op{Process: 100, F: history.FFinalRead, P: 0, Node: "n1"})
			h.complete(inv, history.Info, nil)
			return h
		}, Options{}, map[string]int{Unseen: 1}},
		{"duplicate: one value at two offsets", func() *hb {
			h := clean()
			h.final("n3", 1, 0, 3, recs(1, 0, 1, 1, 2, 2, 2))
			return h
		}, Options{}, map[string]int{Duplicate: 1}},
		{"inconsistent offsets: one offset, two values across reads", func() *hb {
			h := clean()
			h.poll(5, recs(1, 0, 1, 1, 99))
			return h
		}, Options{}, map[string]int{InconsistentOffsets: 1}},
		{"inconsistent offsets: acknowledged offset read with another value", func() *hb {
			h := &hb{}
			h.sendOK(0, 0, 1, 0)
			h.sendOK(0, 0, 2, 1)
			h.sendOK(1, 0, 7, 1) // two acks for one offset
			h.final("n1", 0, 0, 2, recs(0, 0, 1, 1, 2))
			return h
		}, Options{}, map[string]int{InconsistentOffsets: 1, LostWrite: 1, Unseen: 1}},
		{"offset gap: a hole in the final read", func() *hb {
			h := &hb{}
			h.sendOK(0, 0, 1, 0)
			h.sendOK(0, 0, 2, 2)
			h.final("n1", 0, 0, 3, recs(0, 0, 1, 2, 2))
			return h
		}, Options{}, map[string]int{OffsetGap: 1}},
		{"offset gap allowed: the DR restore's recorded gap", func() *hb {
			h := &hb{}
			h.sendOK(0, 0, 1, 0)
			h.sendOK(0, 0, 2, 1000)
			h.final("n1", 0, 0, 1001, recs(0, 0, 1, 1000, 2))
			return h
		}, Options{AllowedGaps: map[int32][]Range{0: {{From: 1, To: 1000}}}}, map[string]int{}},
		{"nonmonotonic send: a producer's later value at a lower offset", func() *hb {
			h := &hb{}
			h.sendOK(0, 0, 1, 1)
			h.sendOK(0, 0, 2, 0)
			h.final("n1", 0, 0, 2, recs(0, 0, 2, 1, 1))
			return h
		}, Options{}, map[string]int{NonmonotonicSend: 1}},
		{"poll skip: a poller jumps over a record", func() *hb {
			h := clean()
			h.poll(6, recs(0, 0, 1))
			h.poll(6, recs(0, 2, 4))
			return h
		}, Options{}, map[string]int{PollSkip: 1}},
		{"no poll skip across an allowed gap", func() *hb {
			h := &hb{}
			h.sendOK(0, 0, 1, 0)
			h.sendOK(0, 0, 2, 1000)
			h.poll(6, recs(0, 0, 1))
			h.poll(6, recs(0, 1000, 2))
			h.final("n1", 0, 0, 1001, recs(0, 0, 1, 1000, 2))
			return h
		}, Options{AllowedGaps: map[int32][]Range{0: {{From: 1, To: 1000}}}}, map[string]int{}},
		{"nonmonotonic poll: a poller goes backwards", func() *hb {
			h := clean()
			h.poll(6, recs(0, 0, 1, 1, 2))
			h.poll(6, recs(0, 1, 2))
			return h
		}, Options{}, map[string]int{NonmonotonicPoll: 1}},
		{"aborted read: a definitely failed send became visible", func() *hb {
			h := clean()
			h.poll(7, recs(0, 4, 3)) // value 3 failed; read at offset 4
			return h
		}, Options{}, map[string]int{AbortedRead: 1, PollSkip: 0}},
		{"commit regression: committed offset goes backwards", func() *hb {
			h := clean()
			h.fetch(8, "g", history.Offset{P: 0, O: 1})
			return h
		}, Options{}, map[string]int{CommitRegression: 1}},
		{"commit regression: an older acknowledged commit does not excuse it", func() *hb {
			h := clean()
			h.fetch(8, "g", history.Offset{P: 0, O: 2}) // commit 2 completed before commit 4 began
			return h
		}, Options{}, map[string]int{CommitRegression: 1}},
		{"no commit regression: an indeterminate commit may take effect late", func() *hb {
			// Commit 3 ended as info (outcome unknown) before commit 4 was
			// acknowledged; like any indefinite operation it may still take
			// effect at any later time (seen in cut-raft: a timed-out
			// forwarded commit reached the Raft leader 27 s later by TCP
			// retransmission and was applied).
			h := clean()
			h.fetch(8, "g", history.Offset{P: 0, O: 3})
			return h
		}, Options{}, map[string]int{CommitRegression: 0}},
		{"commit regression: acknowledged commit vanishes", func() *hb {
			h := clean()
			h.fetch(8, "g")
			return h
		}, Options{}, map[string]int{CommitRegression: 1}},
		{"commit past the high watermark", func() *hb {
			h := clean()
			h.commit(9, "g", 0, 9, history.OK)
			return h
		}, Options{}, map[string]int{CommitPastHW: 1}},
		{"two leaders in one partition epoch", func() *hb {
			h := clean()
			h.leaders("n3", history.LeaderObs{P: 0, Leader: "n1", Epoch: 2})
			return h
		}, Options{}, map[string]int{TwoLeaders: 1}},
		{"DR: unflushed loss is not an anomaly, flushed loss is", func() *hb {
			h := &hb{}
			h.sendOK(0, 0, 1, 0)
			h.sendOK(0, 0, 2, 1)
			h.sendOK(0, 0, 3, 2) // above the flushed offset 2: may be lost
			h.complete(h.invoke(history.Op{Process: history.NemesisProcess, F: history.FDisaster}), history.OK, nil)
			h.sendOK(0, 0, 4, 1000)
			h.final("n1", 0, 0, 1001, recs(0, 0, 1, 1000, 4)) // value 2 (offset 1, flushed) lost
			return h
		}, Options{FlushedBefore: map[int32]int64{0: 2}, AllowedGaps: map[int32][]Range{0: {{From: 2, To: 1000}}}},
			map[string]int{LostWrite: 1, Unseen: 1, OffsetGap: 1}},
		{"DR: offset reuse after the disaster", func() *hb {
			h := &hb{}
			h.sendOK(0, 0, 1, 0)
			h.sendOK(0, 0, 2, 1)
			h.complete(h.invoke(history.Op{Process: history.NemesisProcess, F: history.FDisaster}), history.OK, nil)
			h.sendOK(1, 0, 3, 1)
			h.final("n1", 0, 0, 2, recs(0, 0, 1, 1, 3))
			return h
		}, Options{FlushedBefore: map[int32]int64{0: 1}}, map[string]int{OffsetReuse: 1, InconsistentOffsets: 1}},
		{"DR: a record read before the disaster in the lost range and written again after it is no duplicate", func() *hb {
			h := &hb{}
			h.sendOK(0, 0, 1, 0)
			inv := h.sendInv(0, 0, 2)
			h.poll(5, recs(0, 0, 1, 1, 2)) // written at 1, read, not yet acknowledged
			h.complete(h.invoke(history.Op{Process: history.NemesisProcess, F: history.FDisaster}), history.OK, nil)
			h.complete(inv, history.OK, func(c *history.Op) { c.O = 1000 }) // the retry after the restore
			h.final("n1", 0, 0, 1001, recs(0, 0, 1, 1000, 2))
			return h
		}, Options{FlushedBefore: map[int32]int64{0: 1}, AllowedGaps: map[int32][]Range{0: {{From: 1, To: 1000}}}}, map[string]int{}},
		{"DR: a duplicate within the surviving log is still one", func() *hb {
			h := &hb{}
			h.sendOK(0, 0, 1, 0)
			h.complete(h.invoke(history.Op{Process: history.NemesisProcess, F: history.FDisaster}), history.OK, nil)
			h.sendOK(0, 0, 1, 1000)
			h.final("n1", 0, 0, 1001, recs(0, 0, 1, 1000, 1))
			return h
		}, Options{FlushedBefore: map[int32]int64{0: 1}, AllowedGaps: map[int32][]Range{0: {{From: 1, To: 1000}}}}, map[string]int{Duplicate: 1}},
		{"DR: committed offsets and epochs restart with the restored cluster", func() *hb {
			h := &hb{}
			h.sendOK(0, 0, 1, 0)
			h.sendOK(0, 0, 2, 1)
			h.commit(3, "g", 0, 2, history.OK)
			h.leaders("n1", history.LeaderObs{P: 0, Leader: "n1", Epoch: 3})
			h.complete(h.invoke(history.Op{Process: history.NemesisProcess, F: history.FDisaster}), history.OK, nil)
			h.fetch(4, "g", history.Offset{P: 0, O: 1}) // the checkpoint had 1
			h.leaders("n1", history.LeaderObs{P: 0, Leader: "n2", Epoch: 3})
			h.final("n1", 0, 0, 2, recs(0, 0, 1, 1, 2))
			return h
		}, Options{FlushedBefore: map[int32]int64{0: 2}}, map[string]int{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := Check(tc.build().ops, tc.opts)
			want := counts(tc.want)
			if !maps.Equal(res.Counts, want) {
				t.Fatalf("counts %v\nwant   %v\nexamples %+v", res.Counts, want, res.Anomalies)
			}
			if res.Valid != (res.Total() == 0) {
				t.Fatalf("Valid %v with %d anomalies", res.Valid, res.Total())
			}
			for k, n := range res.Counts {
				if n > 0 && len(res.Anomalies[k]) == 0 {
					t.Fatalf("%s counted but no example kept", k)
				}
			}
		})
	}
}

// A commit whose outcome was unknown may land after a later acknowledged
// one: reading its value is not a regression.
func TestLateIndefiniteCommitIsNotARegression(t *testing.T) {
	h := &hb{}
	h.sendOK(0, 0, 1, 0)
	h.sendOK(0, 0, 2, 1)
	h.sendOK(0, 0, 3, 2)
	inv := h.invoke(history.Op{Process: 3, F: history.FCommit, Group: "g", Offsets: []history.Offset{{P: 0, O: 1}}})
	h.commit(4, "g", 0, 3, history.OK)
	h.complete(inv, history.Info, nil) // timed out; applied late
	h.fetch(5, "g", history.Offset{P: 0, O: 1})
	h.final("n1", 0, 0, 3, recs(0, 0, 1, 1, 2, 2, 3))
	if res := Check(h.ops, Options{}); !res.Valid {
		t.Fatalf("%+v", res)
	}
}

// The history survives a JSON round trip through the recorder.
func TestRecorderRoundTrip(t *testing.T) {
	path := t.TempDir() + "/history.jsonl"
	r, err := history.NewRecorder(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range clean().ops {
		r.Record(op)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	ops, err := history.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(ops) != len(clean().ops) {
		t.Fatalf("%d ops back, want %d", len(ops), len(clean().ops))
	}
	if res := Check(ops, Options{}); !res.Valid {
		t.Fatalf("reloaded clean history: %+v", res)
	}
	bad := clean()
	bad.final("n3", 1, 0, 2, recs(1, 0, 1))
	if res := Check(bad.ops, Options{}); res.Counts[LostWrite] != 1 {
		t.Fatalf("%+v", res.Counts)
	}
}

// TestRecordedWipeFinding replays an excerpt of a real history (class
// wipe, seed 7; see docs/jepsen.md, "Findings"): value 339 was written at
// offset 338 of partition 2 and read there, but its send came back as a
// definite failure (the wiped partition leader answered "topic not
// found"); the producer then reused the batch's sequence number, so value
// 863 was acknowledged as a duplicate at offset 338 and never written.
func TestRecordedWipeFinding(t *testing.T) {
	ops, err := history.Load("testdata/wipe-acked-duplicate-offset.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	res := Check(ops, Options{})
	want := counts(map[string]int{LostWrite: 1, Unseen: 1, AbortedRead: 1, InconsistentOffsets: 1})
	if !maps.Equal(res.Counts, want) {
		t.Fatalf("counts %v\nwant   %v\n%+v", res.Counts, want, res.Anomalies)
	}
	if a := res.Anomalies[LostWrite][0]; a.V != 863 || a.O != 338 || a.P != 2 {
		t.Fatalf("lost write %+v", a)
	}
}
