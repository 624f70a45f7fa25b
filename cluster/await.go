package cluster

import (
	"context"
	"reflect"

	"github.com/hashicorp/raft"
)

// Waiting for Raft futures (DESIGN.md, "Leave and Close").
//
// hashicorp/raft (v1.7.3) does not answer every future it accepted when it
// shuts down: Apply and Barrier futures still queued in its apply channel,
// commit batches queued for its FSM goroutine (which may include
// configuration changes), VerifyLeader and LeadershipTransfer requests
// still queued — their Error() then blocks forever, because it waits on
// the future's answer channel and on its deferError.ShutdownCh, which Raft
// leaves nil on every future it returns to callers. A goroutine of ours
// stuck there would hang Close (the leader loop is in Node.wg) or leak.
//
// await therefore sets that exported field (promoted from the unexported
// embedded deferError, which reflect allows) to a channel of its own that
// it closes when the caller's ctx ends or this node's Raft has shut down,
// so Error() itself returns and no goroutine is left behind.
// TestRaftFuturesTakeAStopChannel pins the field on the futures we wait
// for, so a Raft upgrade that renames it fails loudly; meanwhile a future
// without it is waited for on a helper goroutine that may outlive a Raft
// that dropped it, but the caller — and Close — never hangs.

// raftFutureStopField is hashicorp/raft's deferError.ShutdownCh.
const raftFutureStopField = "ShutdownCh"

// await waits for f like f.Error(), but also returns when ctx ends (with
// ctx.Err()) or once this node's Raft has shut down (with
// raft.ErrRaftShutdown). A wait cut short says nothing about the outcome:
// an Apply may still be, or have been, committed (translateApplyErr
// reports both errors as fsm.ErrOutcomeUnknown). When the answer and the
// cut come together either may be reported, so a cut must only ever be
// read as "unknown".
func (n *Node) await(ctx context.Context, f raft.Future) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(n.raftDown, cancel)()
	stop := make(chan struct{})
	defer context.AfterFunc(wctx, func() { close(stop) })()
	var err error
	if setFutureStop(f, stop) {
		err = f.Error()
	} else {
		err = awaitOnGoroutine(f, stop)
	}
	if err == nil || wctx.Err() == nil {
		return err
	}
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	return raft.ErrRaftShutdown
}

// setFutureStop makes stop a second shutdown channel of f: f.Error()
// returns raft.ErrRaftShutdown once stop is closed. It reports false when
// f has no settable nil ShutdownCh of that type (a future that is not a
// pointer, such as Raft's static error futures; a field Raft set itself;
// a Raft version without the field).
func setFutureStop(f raft.Future, stop chan struct{}) bool {
	v := reflect.ValueOf(f)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return false
	}
	field := v.Elem().FieldByName(raftFutureStopField)
	if !field.IsValid() || !field.CanSet() || field.Type() != reflect.TypeOf(stop) || !field.IsNil() {
		return false
	}
	// Raft never reads this field of a future it returned (only Error
	// does, on the caller's goroutine), so writing it after the future
	// was queued races with nothing.
	field.Set(reflect.ValueOf(stop))
	return true
}

// awaitOnGoroutine is await's fallback for a future whose Error() cannot
// be told to stop: Error() runs on a goroutine, which ends when f is
// answered (or when Raft's own shutdown channel closes, if it set one).
func awaitOnGoroutine(f raft.Future, stop <-chan struct{}) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-stop:
		return raft.ErrRaftShutdown
	}
}
