package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft-wal/segment"
	"github.com/hashicorp/raft-wal/types"
)

// finishInterruptedRoll repairs, before raft-wal opens the log, a tail
// segment whose file is sealed while wal-meta.db lists it unsealed.
//
// raft-wal seals a full segment inside the append that fills it (index
// frame + commit frame, one fsync) and acknowledges that append; the roll
// (meta commit listing the segment sealed plus a new tail, then the new
// file) runs afterwards on its rotation goroutine. A process killed in
// between, a meta commit that fails, or a Close that wins the race with the
// rotation goroutine leaves the sealed file listed as the unsealed tail.
// raft-wal's Open recovers it as a writer that is sealed, never asks it
// (Sealed is only called after a successful Append), and every Append
// answers ErrSealed: the log can never be appended to again, across any
// number of reopens.
//
// The repair commits what the roll would have: the tail sealed at its last
// committed index and a new empty tail after it (raft-wal creates its file
// on open). It trusts the on-disk index only if it holds, for every
// committed entry, the offset the recovered writer's scan found: that holds
// whenever the sealing commit validated (its CRC covers the index frame). Otherwise (power loss: the
// index frame was written, its commit did not validate, so it lies past the
// last intact commit and nothing acknowledged depends on it) the index
// frame's header is zeroed, and raft-wal recovers an unsealed tail.
func finishInterruptedRoll(dir string, meta types.MetaStore, sf *segment.Filer, vfs types.VFS, hl hclog.Logger) error {
	st, err := meta.Load(dir)
	if err != nil || len(st.Segments) == 0 {
		return err
	}
	tail := st.Segments[len(st.Segments)-1]
	if !tail.SealTime.IsZero() {
		return nil
	}
	seal, err := recoverSeal(dir, sf, vfs, tail, false)
	if err != nil || !seal.sealed {
		return err
	}
	// The seal read back may be only in the page cache: after a failed
	// fsync the kernel keeps the written pages but marks them clean, and a
	// later fsync reports success without writing them. The meta commit
	// below makes raft-wal read the segment through that index for good,
	// so the file's bytes up to the end of the seal are written again and
	// fsynced, and the seal is judged on what was then made durable (a
	// page evicted in between would otherwise be judged in one state and
	// committed in another).
	if err := rewriteDurably(vfs, dir, tail, seal.indexStart); err != nil {
		return fmt.Errorf("segment %d: make its seal durable: %w", tail.ID, err)
	}
	if seal, err = recoverSeal(dir, sf, vfs, tail, true); err != nil || !seal.sealed {
		return err
	}
	indexStart, last := seal.indexStart, seal.last
	if !seal.intact {
		hl.Warn("unsealing the raft log's tail segment: its seal did not complete (the index frame of an unacknowledged append)",
			"segment", tail.ID, "base", tail.BaseIndex, "last", last)
		return zeroIndexHeader(vfs, dir, tail, indexStart)
	}
	hl.Warn("finishing an interrupted raft log segment roll: the tail segment is sealed on disk but not in the meta store",
		"segment", tail.ID, "base", tail.BaseIndex, "last", last)
	now := time.Now()
	tail.SealTime, tail.IndexStart, tail.MaxIndex = now, indexStart, last
	st.Segments[len(st.Segments)-1] = tail
	st.Segments = append(st.Segments, types.SegmentInfo{ID: st.NextSegmentID, BaseIndex: last + 1, MinIndex: last + 1,
		SizeLimit: uint32(walSegmentSize), Codec: tail.Codec, CreateTime: now})
	st.NextSegmentID++
	return meta.CommitState(st)
}

// tailSeal is what recoverSeal found of the tail's file: whether it is
// sealed, where its index starts, its last committed index and (when asked
// for) whether the index matches every committed entry.
type tailSeal struct {
	sealed     bool
	indexStart uint64
	last       uint64
	intact     bool
}

// recoverSeal recovers the tail's file as raft-wal would (a missing file
// is not sealed: raft-wal creates it); with checkIndex it also compares a
// seal's index with the entries the scan found.
func recoverSeal(dir string, sf *segment.Filer, vfs types.VFS, tail types.SegmentInfo, checkIndex bool) (tailSeal, error) {
	w, err := sf.RecoverTail(tail)
	if errors.Is(err, os.ErrNotExist) {
		return tailSeal{}, nil
	}
	if err != nil {
		return tailSeal{}, err // raft-wal's Open fails the same way
	}
	var ts tailSeal
	ts.sealed, ts.indexStart, err = w.Sealed()
	ts.last = w.LastIndex()
	if err == nil && ts.sealed && checkIndex {
		ts.intact, err = indexMatches(vfs, dir, tail, w, ts.indexStart, ts.last)
	}
	return ts, errors.Join(err, w.Close())
}

// indexMatches reports whether the index array on disk at indexStart
// holds, for every committed entry from the segment's MinIndex to last, the
// frame offset the recovered writer found by scanning the file. A read
// error is returned as such: only a definite mismatch means the seal did
// not commit.
func indexMatches(vfs types.VFS, dir string, info types.SegmentInfo, w types.SegmentWriter, indexStart, last uint64) (bool, error) {
	ow, ok := w.(interface{ OffsetForFrame(uint64) (uint32, error) })
	if !ok {
		return false, fmt.Errorf("segment %d: cannot check its index (writer %T)", info.ID, w)
	}
	if last < info.MinIndex {
		return false, nil // nothing committed: the index frame cannot be
	}
	f, err := vfs.OpenReader(dir, segment.FileName(info))
	if err != nil {
		return false, err
	}
	defer f.Close()
	first := info.MinIndex - info.BaseIndex
	slots := make([]byte, 4*(last-info.MinIndex+1))
	if n, err := f.ReadAt(slots, int64(indexStart+4*first)); n < len(slots) {
		switch {
		case errors.Is(err, io.EOF):
			return false, nil // the file ends inside the index: torn
		case err == nil:
			err = io.ErrUnexpectedEOF // a short read is no evidence of a torn index
		}
		return false, err
	}
	for i := range last - info.MinIndex + 1 {
		off, err := ow.OffsetForFrame(info.MinIndex + i)
		if err != nil {
			return false, err
		}
		if binary.LittleEndian.Uint32(slots[4*i:]) != off {
			return false, nil
		}
	}
	return true, nil
}

// frameHeaderLen is the size of a raft-wal frame header: type, three
// reserved bytes, the payload length (the CRC in a commit frame).
const frameHeaderLen = 8

// openIndexFrame opens the segment's file for writing and reads the header
// of the index frame whose payload starts at indexStart.
func openIndexFrame(vfs types.VFS, dir string, info types.SegmentInfo, indexStart uint64) (types.WritableFile, [frameHeaderLen]byte, error) {
	var hdr [frameHeaderLen]byte
	if indexStart < frameHeaderLen {
		return nil, hdr, fmt.Errorf("segment %d: index start %d", info.ID, indexStart)
	}
	f, err := vfs.OpenWriter(dir, segment.FileName(info))
	if err != nil {
		return nil, hdr, err
	}
	if _, err := f.ReadAt(hdr[:], int64(indexStart-frameHeaderLen)); err != nil || hdr[0] != segment.FrameIndex {
		_ = f.Close()
		return nil, hdr, fmt.Errorf("segment %d: no index frame header before offset %d (%v)", info.ID, indexStart, err)
	}
	return f, hdr, nil
}

// zeroIndexHeader overwrites the index frame header before indexStart with
// zeros and fsyncs: raft-wal's recovery scan stops there.
func zeroIndexHeader(vfs types.VFS, dir string, info types.SegmentInfo, indexStart uint64) error {
	f, _, err := openIndexFrame(vfs, dir, info, indexStart)
	if err != nil {
		return err
	}
	_, err = f.WriteAt(make([]byte, frameHeaderLen), int64(indexStart-frameHeaderLen))
	if err == nil {
		err = f.Sync()
	}
	return errors.Join(err, f.Close())
}

// rewriteDurably writes the segment's bytes up to the end of its seal (the
// index frame at indexStart and the commit frame after it) back in place
// and fsyncs them: whatever the page cache holds of them is then on disk.
// The preallocated zeros after the seal are left alone.
func rewriteDurably(vfs types.VFS, dir string, info types.SegmentInfo, indexStart uint64) error {
	f, hdr, err := openIndexFrame(vfs, dir, info, indexStart)
	if err != nil {
		return err
	}
	n := int64(binary.LittleEndian.Uint32(hdr[4:]))
	end := int64(indexStart) + (n+frameHeaderLen-1)/frameHeaderLen*frameHeaderLen + frameHeaderLen
	buf := make([]byte, 1<<20)
	for off := int64(0); off < end; off += int64(len(buf)) {
		b := buf[:min(int64(len(buf)), end-off)]
		k, rerr := f.ReadAt(b, off)
		if k > 0 {
			if _, err := f.WriteAt(b[:k], off); err != nil {
				return errors.Join(err, f.Close())
			}
		}
		if errors.Is(rerr, io.EOF) {
			break
		}
		if rerr != nil {
			return errors.Join(rerr, f.Close())
		}
	}
	return errors.Join(f.Sync(), f.Close())
}
