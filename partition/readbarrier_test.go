package partition

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/streamhouse/streamhouse/fsm"
)

// Every read of partition state — records, watermarks, offsets for a
// timestamp, a reset to the latest offset, the storage view — passes the
// node's read barrier first, so an agent that acknowledged a produce before
// applying it never answers without the record.
func TestReadsOfPartitionStatePassTheReadBarrier(t *testing.T) {
	e := newEnv(t, ProducerConfig{})
	e.topic("t", 1)
	e.produce("t", 0, "a")
	svc, err := New(e.cfg, e.deps())
	if err != nil {
		t.Fatal(err)
	}
	groups := newGroups(e.cfg, e.deps(), e.fetch)
	ctx := context.Background()
	reads := map[string]func() error{
		"fetch": func() error {
			res, err := e.fetch.Fetch(ctx, fsm.FetchRequest{Topic: "t", Partition: 0})
			if err == nil && len(res.Records) != 1 {
				err = fmt.Errorf("fetched %d records, want 1", len(res.Records))
			}
			return err
		},
		"offset for timestamp": func() error {
			_, err := e.fetch.OffsetForTimestamp(ctx, "t", 0, 0)
			return err
		},
		"partitions": func() error {
			ps, err := e.admin.Partitions("t")
			if err == nil && ps[0].NextOffset != 1 {
				err = fmt.Errorf("high watermark %d, want 1", ps[0].NextOffset)
			}
			return err
		},
		"reset to latest": func() error {
			_, err := groups.ResetGroup(ctx, "g", fsm.GroupReset{Topic: "t", Strategy: fsm.ResetLatest})
			return err
		},
		"partition storage": func() error {
			_, err := svc.PartitionStorage("t", 0, 1)
			return err
		},
	}
	behind := fmt.Errorf("%w: behind what this agent acknowledged", fsm.ErrUnavailable)
	e.node.barrier = func(context.Context) error { return behind }
	for name, read := range reads {
		if err := read(); !errors.Is(err, behind) {
			t.Errorf("%s with the barrier failing: %v, want the barrier's error", name, err)
		}
	}
	if ps, err := e.admin.PartitionsForRouting("t"); err != nil || len(ps) != 1 {
		t.Errorf("routing a produce waited for the read barrier: %v", err)
	}
	e.node.barrier = nil
	for name, read := range reads {
		if err := read(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}
