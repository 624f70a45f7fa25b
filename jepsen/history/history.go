// Package history is the operation history of a jepsen run: every client
// operation as an invocation and its completion (ok, fail or info), every
// nemesis action and every observation, recorded in order, kept in memory
// for the checker and written as JSON lines (history.jsonl) as it happens.
package history

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// Type is an operation's kind in the history.
type Type string

// Operation types, as in Jepsen: an invocation, then exactly one of ok
// (it happened), fail (it definitely did not happen) or info (unknown: it
// may or may not have happened, e.g. a timeout or an agent killed
// mid-request).
const (
	Invoke Type = "invoke"
	OK     Type = "ok"
	Fail   Type = "fail"
	Info   Type = "info"
)

// Operation functions.
const (
	// FSend produces one value (V) to partition P; ok carries its offset O.
	FSend = "send"
	// FPoll is one Poll of an assign-based poller or a group consumer; ok
	// carries the records returned, in order.
	FPoll = "poll"
	// FCommit commits group offsets (Offsets: next offset to read per
	// partition).
	FCommit = "commit"
	// FFetchOffsets reads a group's committed offsets (ok: Offsets; a
	// partition without a committed offset is absent).
	FFetchOffsets = "fetch-offsets"
	// FFinalRead reads partition P from its low watermark to its high
	// watermark on agent Node after the faults; ok carries the records,
	// LW, HW and Complete.
	FFinalRead = "final-read"
	// FLeaders is a sample of partition leadership as seen by agent Node
	// (ok: Leaders).
	FLeaders = "leaders"
	// FNemesis is a fault action (Value names it, Targets the agents).
	FNemesis = "nemesis"
	// FDisaster marks the moment of a DR drill's disaster (ok only): every
	// agent and its disk is gone.
	FDisaster = "disaster"
)

// NemesisProcess is the process of nemesis operations.
const NemesisProcess = -1

// Rec is one record seen by a read: partition, offset, value.
type Rec struct {
	P int32 `json:"p"`
	O int64 `json:"o"`
	V int64 `json:"v"`
}

// Offset is a committed group offset of one partition.
type Offset struct {
	P int32 `json:"p"`
	O int64 `json:"o"`
}

// LeaderObs is one agent's view of one partition's leader and epoch.
type LeaderObs struct {
	P      int32  `json:"p"`
	Leader string `json:"leader"`
	Epoch  uint64 `json:"epoch"`
}

// Op is one history entry. Completions repeat the invocation's process, f
// and arguments and name it in Inv.
type Op struct {
	Index   int64  `json:"index"`
	Time    int64  `json:"time"` // nanoseconds since the run started
	Process int    `json:"process"`
	Type    Type   `json:"type"`
	F       string `json:"f"`
	Inv     int64  `json:"inv,omitempty"` // index of the invocation (completions)

	P int32 `json:"p,omitempty"`
	V int64 `json:"v,omitempty"`
	O int64 `json:"o,omitempty"`

	Recs     []Rec       `json:"recs,omitempty"`
	Offsets  []Offset    `json:"offsets,omitempty"`
	Group    string      `json:"group,omitempty"`
	Node     string      `json:"node,omitempty"`
	Leaders  []LeaderObs `json:"leaders,omitempty"`
	LW       int64       `json:"lw,omitempty"`
	HW       int64       `json:"hw,omitempty"`
	Complete bool        `json:"complete,omitempty"`

	Value   string   `json:"value,omitempty"`
	Targets []string `json:"targets,omitempty"`
	Err     string   `json:"error,omitempty"`
}

// Recorder appends operations to the history. It is safe for concurrent
// use; the index order is the order of Record calls.
type Recorder struct {
	start time.Time

	mu  sync.Mutex
	ops []Op
	w   *bufio.Writer
	f   io.Closer
	err error
}

// NewRecorder returns a recorder writing JSON lines to path ("" = memory
// only).
func NewRecorder(path string) (*Recorder, error) {
	r := &Recorder{start: time.Now()}
	if path != "" {
		f, err := os.Create(path)
		if err != nil {
			return nil, err
		}
		r.w, r.f = bufio.NewWriterSize(f, 1<<16), f
	}
	return r, nil
}

// Start is the run's time origin.
func (r *Recorder) Start() time.Time { return r.start }

// Record appends op (Index and Time are set here) and returns it.
func (r *Recorder) Record(op Op) Op {
	r.mu.Lock()
	defer r.mu.Unlock()
	op.Index = int64(len(r.ops))
	op.Time = time.Since(r.start).Nanoseconds()
	r.ops = append(r.ops, op)
	if r.w != nil && r.err == nil {
		b, err := json.Marshal(op)
		if err == nil {
			b = append(b, '\n')
			_, err = r.w.Write(b)
		}
		r.err = err
	}
	return op
}

// Invoke records an invocation.
func (r *Recorder) Invoke(op Op) Op {
	op.Type = Invoke
	return r.Record(op)
}

// Complete records the completion of inv with type t; fill (may be nil)
// sets the result fields on the completion, which starts as a copy of
// inv's process, f and arguments.
func (r *Recorder) Complete(inv Op, t Type, fill func(*Op)) Op {
	c := Op{Process: inv.Process, Type: t, F: inv.F, Inv: inv.Index, P: inv.P, V: inv.V,
		Group: inv.Group, Node: inv.Node, Value: inv.Value, Targets: inv.Targets, Offsets: inv.Offsets}
	if fill != nil {
		fill(&c)
	}
	return r.Record(c)
}

// Ops returns a copy of the history so far.
func (r *Recorder) Ops() []Op {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Op(nil), r.ops...)
}

// Len is the number of operations so far.
func (r *Recorder) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.ops)
}

// Close flushes and closes the file.
func (r *Recorder) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.w == nil {
		return r.err
	}
	err := r.w.Flush()
	if cerr := r.f.Close(); err == nil {
		err = cerr
	}
	r.w = nil
	if r.err != nil {
		return r.err
	}
	return err
}

// Load reads a history written by a Recorder.
func Load(path string) ([]Op, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var ops []Op
	dec := json.NewDecoder(bufio.NewReaderSize(f, 1<<16))
	for {
		var op Op
		if err := dec.Decode(&op); err == io.EOF {
			return ops, nil
		} else if err != nil {
			return ops, fmt.Errorf("%s: op %d: %w", path, len(ops), err)
		}
		ops = append(ops, op)
	}
}
