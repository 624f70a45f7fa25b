package wal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"
)

var errCrash = errors.New("simulated crash")

// crasher simulates a power failure on a strict MemFS at an arbitrary point:
// either now, or at the n-th filesystem operation from now (whichever
// goroutine makes it). The state after the crash is a CrashClone; the old
// filesystem fails every operation from then on, so the old WAL instance
// stops making progress.
type crasher struct {
	fs        *MemFS
	rng       *rand.Rand // used only by the one crashNow that takes the snapshot
	countdown atomic.Int64
	crashed   atomic.Bool
	clone     atomic.Pointer[MemFS]
}

func newCrasher(fsys *MemFS, seed uint64) *crasher {
	c := &crasher{fs: fsys, rng: rand.New(rand.NewPCG(seed, 77))}
	fsys.SetHook(c.hook)
	return c
}

func (c *crasher) hook(Op, string) error {
	if c.crashed.Load() {
		return errCrash
	}
	if c.countdown.Load() > 0 && c.countdown.Add(-1) == 0 {
		c.crashNow()
		return errCrash
	}
	return nil
}

// crashNow marks the crash before taking the snapshot: an acknowledgement
// observed while crashed is still false happened before the snapshot.
func (c *crasher) crashNow() {
	if c.crashed.CompareAndSwap(false, true) {
		// Unsynced appends may reach the disk in part: nothing, a prefix,
		// or a prefix followed by zeros.
		c.clone.Store(c.fs.CrashCloneKeep(func(_ string, appended []byte) []byte {
			switch c.rng.IntN(3) {
			case 0:
				return nil
			case 1:
				return appended[:c.rng.IntN(len(appended)+1)]
			default:
				k := c.rng.IntN(len(appended) + 1)
				clear(appended[k:])
				return appended
			}
		}))
	}
}

// crashModel is what the test knows about the log.
type crashModel struct {
	written    []Entry // every entry the WAL took or may have taken, in index order
	durable    uint64  // entries <= durable were acknowledged as durable
	truncFloor uint64  // TruncateFront(truncFloor) succeeded
}

func (m *crashModel) lastIndex() uint64 {
	if len(m.written) == 0 {
		return 0
	}
	return m.written[len(m.written)-1].Index
}

// record adds the entries of batch that the WAL reports as written. A write
// that failed (only a crash makes writes fail here) may still have reached
// the file in part, so its entries may be recovered too: an error is an
// unknown outcome, not a definite failure.
func (m *crashModel) record(w *WAL, batch []Entry, err error) {
	last := w.LastIndex()
	for _, e := range batch {
		if (e.Index <= last || err != nil) && e.Index > m.lastIndex() {
			m.written = append(m.written, e)
		}
	}
}

// verify checks a recovered log against the model and returns it as the
// new model. exact: a clean Close preceded the Open, so nothing may be
// missing at the end.
func (m *crashModel) verify(t *testing.T, got []Entry, exact bool) {
	t.Helper()
	pos := map[uint64]int{}
	for i, e := range m.written {
		pos[e.Index] = i
	}
	// Identical bytes, and a gap-free run of what was written.
	for i, e := range got {
		j, ok := pos[e.Index]
		if !ok {
			t.Fatalf("recovered entry %d was never written", e.Index)
		}
		if !bytes.Equal(e.Data, m.written[j].Data) {
			t.Fatalf("recovered entry %d has different bytes", e.Index)
		}
		if i > 0 && j != pos[got[i-1].Index]+1 {
			t.Fatalf("recovered log has a hole between %d and %d", got[i-1].Index, e.Index)
		}
	}
	// Nothing acknowledged (and not truncated) is missing.
	have := map[uint64]bool{}
	for _, e := range got {
		have[e.Index] = true
	}
	for _, e := range m.written {
		if e.Index >= m.truncFloor && e.Index <= m.durable && !have[e.Index] {
			t.Fatalf("acknowledged entry %d lost (durable up to %d, truncated below %d, recovered %s)",
				e.Index, m.durable, m.truncFloor, describe(got))
		}
	}
	if exact && len(m.written) > 0 && (len(got) == 0 || got[len(got)-1].Index != m.lastIndex()) {
		t.Fatalf("after a clean close the log ends at %s, want %d", describe(got), m.lastIndex())
	}
	m.written = got
	m.durable = 0
	if len(got) > 0 {
		m.durable = got[len(got)-1].Index // Open fsyncs what it found
	}
}

func TestCrashRecovery(t *testing.T) {
	seeds := 60
	if testing.Short() {
		seeds = 10
	}
	var crashes, repairs int
	for seed := range seeds {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			c, r := runCrashWorkload(t, uint64(seed))
			crashes += c
			repairs += r
		})
	}
	t.Logf("%d crashes, %d torn tails repaired", crashes, repairs)
	// The workload must exercise recovery, not just clean reopens.
	if !t.Failed() && (crashes < 2*seeds || repairs == 0) {
		t.Fatalf("only %d crashes and %d torn-tail repairs over %d seeds", crashes, repairs, seeds)
	}
}

func runCrashWorkload(t *testing.T, seed uint64) (crashes, repairs int) {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	opts := Options{Dir: testDir, SegmentMaxBytes: int64(200 + rng.IntN(600))}
	if rng.IntN(4) == 0 {
		opts.SyncInterval = 50 * time.Microsecond
	}
	fsys := NewStrictMemFS()
	cr := newCrasher(fsys, seed)
	opts.FS = fsys
	w, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if w != nil {
			_ = w.Close()
		}
	}()
	ctx := context.Background()
	var m crashModel

	reboot := func() {
		t.Helper()
		if w != nil {
			_ = w.Close() // the old instance fails; its errors do not matter
		}
		clone := cr.clone.Load()
		fsys = clone
		cr = newCrasher(fsys, seed+uint64(crashes)<<32)
		opts.FS = fsys
		w, err = Open(opts)
		if err != nil {
			t.Fatalf("seed %d: Open after crash %d: %v", seed, crashes, err)
		}
		repairs += w.repaired
		m.verify(t, all(t, w), false)
		crashes++
	}
	// unexpected fails the test for an error that no crash explains.
	unexpected := func(what string, err error) {
		t.Helper()
		if err != nil && !cr.crashed.Load() {
			t.Fatalf("seed %d: %s: %v", seed, what, err)
		}
	}

	for op := 0; op < 250; op++ {
		if cr.crashed.Load() {
			reboot()
		}
		switch r := rng.IntN(100); {
		case r < 35: // Append
			batch := randomBatch(rng, m.lastIndex())
			err := w.Append(ctx, batch...)
			m.record(w, batch, err)
			unexpected("Append", err)
			if err == nil && !cr.crashed.Load() {
				m.durable = batch[len(batch)-1].Index
			}
		case r < 65: // AppendAsync
			batch := randomBatch(rng, m.lastIndex())
			err := w.AppendAsync(batch...)
			m.record(w, batch, err)
			unexpected("AppendAsync", err)
		case r < 75: // Sync
			upTo := m.lastIndex()
			err := w.Sync(ctx)
			unexpected("Sync", err)
			if err == nil && !cr.crashed.Load() {
				m.durable = max(m.durable, upTo)
			}
		case r < 83: // TruncateFront somewhere in the retained range
			first, last := w.FirstIndex(), m.lastIndex()
			if last == 0 {
				continue
			}
			idx := first + rng.Uint64N(last-first+2)
			// Even a failed call may have deleted some segments below idx.
			m.truncFloor = max(m.truncFloor, idx)
			unexpected("TruncateFront", w.TruncateFront(idx))
		case r < 86: // clean restart
			err := w.Close()
			unexpected("Close", err)
			if cr.crashed.Load() {
				reboot()
				continue
			}
			w, err = Open(opts)
			cr.countdown.Store(0) // no crash while the test reads the log back
			if cr.crashed.Load() {
				if err != nil {
					w = nil // crashed while opening
				}
				reboot()
				continue
			}
			if err != nil {
				t.Fatalf("seed %d: Open after Close: %v", seed, err)
			}
			m.verify(t, all(t, w), true)
		case r < 93: // crash now
			cr.crashNow()
		default: // crash at one of the next filesystem operations
			cr.countdown.Store(int64(1 + rng.IntN(25)))
		}
	}
	cr.crashNow()
	reboot()
	return crashes, repairs
}

func randomBatch(rng *rand.Rand, last uint64) []Entry {
	n := 1 + rng.IntN(4)
	batch := make([]Entry, n)
	for i := range batch {
		last += 1 + uint64(rng.IntN(3)/2) // mostly dense, some gaps
		size := rng.IntN(120)
		if rng.IntN(20) == 0 {
			size = 400 + rng.IntN(800) // sometimes bigger than a segment
		}
		data := make([]byte, size)
		for j := range data {
			data[j] = byte(rng.Uint32())
		}
		batch[i] = Entry{Index: last, Data: data}
	}
	return batch
}
