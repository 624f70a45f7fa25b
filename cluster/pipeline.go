package cluster

import (
	"sync"

	"github.com/hashicorp/raft"
)

// pipelineBuffer is how many completed AppendEntries futures a pipeline
// holds for a consumer that has stopped reading. hashicorp/raft sends at
// most one more request per replication-loop round after its decoder
// exits, so this is never reached in practice.
const pipelineBuffer = 1024

// drainedPipeline wraps the network transport's AppendEntries pipeline so
// that its response decoder can always hand a completed request on.
//
// hashicorp/raft v1.7.3 (hashicorp/raft#612): the network transport's
// pipeline passes completed requests on an unbuffered channel
// (MaxRPCsInFlight 2). When a follower answers Success=false or a newer
// term, Raft's pipeline decoder stops reading that channel; a request the
// replication loop sends at the same moment then blocks forever, because
// the transport's decoder is itself blocked handing on the previous
// response. Replication to that follower stops for good and Raft's Shutdown
// never returns. Here a goroutine owned by the wrapper moves every
// completed request into a buffered channel, so the transport's decoder
// never waits for Raft's, the blocked send cannot happen, and Close (which
// Raft calls once its loop ends) stops the goroutine.
//
// AppendEntries also honours the gate's fence (a leader stalled on local
// storage sends nothing, see raftGate.setFenced): a refused send makes Raft
// leave the pipeline and fall back to plain AppendEntries, which the gate
// refuses too.
type drainedPipeline struct {
	raft.AppendPipeline
	gate *raftGate
	out  chan raft.AppendFuture
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

func newDrainedPipeline(p raft.AppendPipeline, gate *raftGate) *drainedPipeline {
	d := &drainedPipeline{AppendPipeline: p, gate: gate,
		out: make(chan raft.AppendFuture, pipelineBuffer), stop: make(chan struct{}), done: make(chan struct{})}
	go d.pump()
	return d
}

func (d *drainedPipeline) pump() {
	defer close(d.done)
	in := d.AppendPipeline.Consumer()
	for {
		select {
		case f := <-in:
			select {
			case d.out <- f:
			case <-d.stop:
				return
			}
		case <-d.stop:
			return
		}
	}
}

// AppendEntries pipelines a request unless the gate is fenced.
func (d *drainedPipeline) AppendEntries(args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) (raft.AppendFuture, error) {
	if d.gate.fenced.Load() {
		return nil, errFenced
	}
	return d.AppendPipeline.AppendEntries(args, resp)
}

// Consumer returns the buffered channel of completed requests.
func (d *drainedPipeline) Consumer() <-chan raft.AppendFuture { return d.out }

// Close closes the transport's pipeline, then stops the pump and waits for
// it; it is idempotent.
func (d *drainedPipeline) Close() error {
	err := d.AppendPipeline.Close()
	d.once.Do(func() { close(d.stop) })
	<-d.done
	return err
}
