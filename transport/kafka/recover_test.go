package kafka

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/streamhouse/streamhouse/fsm"
	"github.com/streamhouse/streamhouse/jepsen/testkit"
)

// panickyProducer panics on partition 1 (a handler bug in a worker
// goroutine of a multi-partition Produce).
type panickyProducer struct{ Producer }

func (p panickyProducer) Produce(ctx context.Context, topic string, recs []fsm.ProduceRecord) ([]fsm.RecordOffset, error) {
	if len(recs) > 0 && recs[0].Partition == 1 {
		panic("fake: produce exploded")
	}
	return p.Producer.Produce(ctx, topic, recs)
}

// A bug in a request handler (its own goroutine or a worker of it) closes
// that connection, as a protocol error does, and is logged; the agent keeps
// serving. A client then sees a broken connection: a produce's outcome is
// unknown to it, which is what Kafka clients assume of a broken connection.
func TestHandlerPanicClosesTheConnectionOnly(t *testing.T) {
	var logs testkit.SyncBuffer
	e := newEnv(t, func(c *Config) {
		c.Producer = panickyProducer{c.Producer}
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	e.agent.addTopic("t", 2)
	e.srv.handlers[int16(kmsg.ListGroups)] = api(0, 5, func(context.Context, *Conn, *kmsg.ListGroupsRequest) (kmsg.Response, error) {
		panic("fake: list groups exploded")
	})
	cl := e.client(t, kgo.RequestRetries(0))
	if _, err := kmsg.NewPtrListGroupsRequest().RequestWith(ctxT(t), cl); err == nil {
		t.Fatal("ListGroups answered although its handler panicked")
	}

	req := kmsg.NewPtrProduceRequest()
	req.Version, req.Acks, req.TimeoutMillis = 9, -1, 5000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = "t"
	if tp, err := e.agent.Topic("t"); err == nil {
		rt.TopicID = TopicID(tp.ID) // v13 names topics by ID
	}
	for p := int32(0); p < 2; p++ {
		rp := kmsg.NewProduceRequestTopicPartition()
		rp.Partition, rp.Records = p, appendFetched(nil, []fsm.FetchedRecord{{Record: fsm.Record{Value: []byte("v"), Timestamp: 1}}}, -1)
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	if resp, err := req.RequestWith(ctxT(t), e.client(t, kgo.RequestRetries(0))); err == nil {
		t.Fatalf("Produce answered although a partition's worker panicked: %+v", resp.Topics)
	}

	// The broker still serves.
	if _, err := kmsg.NewPtrApiVersionsRequest().RequestWith(ctxT(t), cl); err != nil {
		t.Fatalf("after the panics: %v", err)
	}
	for _, want := range []string{"panic in Kafka handler", "list groups exploded", "produce exploded"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
}
