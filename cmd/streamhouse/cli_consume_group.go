package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/streamhouse/streamhouse/transport/client"
)

// runMember is `consume --group G` without --partition: the process joins
// G as a member (client.GroupConsumer) and reads only the partitions the
// group assigns it, so several processes of one group split the topic.
// Without --follow it stops once the partitions it owns reach the high
// watermarks the topic had at start.
func (c *consumeCmd) runMember(s *session) error {
	_, infos, err := s.cl.DescribeTopic(s.setup, c.Topic)
	if err != nil {
		return cliError(fmt.Sprintf("consume %q", c.Topic), err)
	}
	startHigh := map[int32]int64{}
	for _, pi := range infos {
		startHigh[pi.Partition] = pi.HighWatermark
	}
	gc, err := s.cl.NewGroupConsumer(s.setup, client.GroupConsumerConfig{
		Group: c.Group, Topic: c.Topic, Start: c.start.position(time.Now()), ClientID: "streamhouse-cli",
		MaxRecords: 1000, MaxWait: consumeMaxWait, ManualCommit: true,
	})
	if err != nil {
		return cliError(fmt.Sprintf("join group %q", c.Group), err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), c.timeout())
		defer cancel()
		_ = gc.Close(ctx) // leave: the others take the partitions at once
	}()
	r := c.newReader(s.cl, gc)
	r.member, r.startHigh, r.gen = gc, startHigh, -1
	r.followGeneration()
	return c.read(s, r)
}

// followGeneration resets the per-partition state when the member's
// generation changed (a Poll rejoined): its partitions start at the
// group's committed offsets. It runs before every Poll and after it, before
// the records are printed, so records of a newly owned partition are
// committed.
func (r *reader) followGeneration() {
	gen := r.member.Generation()
	if gen == r.gen {
		return
	}
	r.gen = gen
	r.parts = r.k.Assignment()
	r.done = map[int32]bool{}
	for _, p := range r.parts {
		pos, _ := r.member.StartOffset(p)
		r.commitPos[p], r.committed[p] = pos, pos
		if high, ok := r.startHigh[p]; ok {
			r.target[p] = high
		} else {
			r.target[p], _ = r.k.HighWatermark(p)
		}
		if !r.Follow && pos >= r.target[p] {
			r.done[p] = true
			r.k.Pause(p)
		}
	}
	if !r.json() {
		fmt.Fprintf(os.Stderr, "group %s generation %d: reading partitions %v\n", r.Group, gen, r.parts)
	}
}

// commitAsMember commits as the group member. A commit the group refuses
// because it moved on is not an error: the records are read again by
// their next owner (at least once).
func (r *reader) commitAsMember(ctx context.Context, commits []client.OffsetCommit) error {
	err := r.member.CommitOffsets(ctx, commits...)
	switch client.Kind(err) {
	case "":
		if err != nil {
			return cliError(fmt.Sprintf("commit the offsets of group %q", r.Group), err)
		}
		for _, cm := range commits {
			r.committed[cm.Partition] = cm.Offset
		}
		return nil
	case client.KindIllegalGeneration, client.KindUnknownMember, client.KindRebalanceInProgress:
		fmt.Fprintf(os.Stderr, "group %s rebalanced: commit refused (%v); the next owner reads these records again\n", r.Group, err)
		return nil
	}
	return cliError(fmt.Sprintf("commit the offsets of group %q", r.Group), err)
}
