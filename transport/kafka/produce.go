package kafka

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/streamhouse/streamhouse/fsm"
)

// Producer appends records (partition.Producer).
type Producer interface {
	Produce(ctx context.Context, topic string, recs []fsm.ProduceRecord) ([]fsm.RecordOffset, error)
}

// IdempotentProducer serves producers with an id, epoch and sequence
// numbers (partition.Producer).
type IdempotentProducer interface {
	InitProducer(ctx context.Context, id uint64, owner string) (fsm.ProducerIdentity, error)
	ProduceIdempotent(ctx context.Context, b fsm.IdempotentBatch) (fsm.IdempotentResult, error)
}

// registerData registers Produce, Fetch, ListOffsets and InitProducerId.
func (s *Server) registerData(add func(int16, handler)) {
	if s.cfg.Producer != nil {
		add(int16(kmsg.Produce), api(3, 13, s.handleProduce))
	}
	if s.cfg.Idempotent != nil {
		add(int16(kmsg.InitProducerID), api(0, 4, s.handleInitProducerID))
	}
	add(int16(kmsg.Fetch), api(4, 16, s.handleFetch))
	if s.cfg.Offsets != nil {
		add(int16(kmsg.ListOffsets), api(1, 6, s.handleListOffsets))
	}
}

// producePart is one partition of a produce request, resolved and checked
// before the partitions are written in parallel.
type producePart struct {
	topic string
	info  fsm.PartitionInfo
	data  []byte
	out   *kmsg.ProduceResponseTopicPartition
}

// handleProduce writes every partition of the request in parallel (each
// waits for its Raft commit) and answers per partition. acks=0 gets no
// response; acks 1 and -1 both answer after the commit.
func (s *Server) handleProduce(ctx context.Context, c *Conn, req *kmsg.ProduceRequest) (kmsg.Response, error) {
	resp := req.ResponseKind().(*kmsg.ProduceResponse)
	view := s.newRoutingView()
	// The broker view (the cluster status) is built only when a partition
	// is led elsewhere: a produce to this agent's partitions never needs it.
	var bv *brokerView
	brokers := func() brokerView {
		if bv == nil {
			v := s.brokers()
			bv = &v
		}
		return *bv
	}
	var work []producePart
	leaders := map[int32]broker{}
	for _, rt := range req.Topics {
		t := kmsg.NewProduceResponseTopic()
		t.Topic, t.TopicID = rt.Topic, rt.TopicID
		t.Partitions = make([]kmsg.ProduceResponseTopicPartition, len(rt.Partitions))
		resp.Topics = append(resp.Topics, t)
	}
	for i, rt := range req.Topics {
		name := rt.Topic
		if req.Version >= 13 {
			name, _ = view.nameOf(rt.TopicID) // "" → unknown topic below
		}
		denied := name != "" && s.authorize(c, OpWrite, name) != nil // once per topic
		for j, rp := range rt.Partitions {
			out := &resp.Topics[i].Partitions[j]
			*out = kmsg.NewProduceResponseTopicPartition()
			out.Partition = rp.Partition
			p := producePart{topic: name, data: rp.Records, out: out}
			if code := s.checkProduce(req, view, &p, denied, brokers, leaders); code != 0 {
				out.ErrorCode = code
				continue
			}
			work = append(work, p)
		}
	}
	s.writeParts(ctx, c, req, work)
	if req.Acks == 0 {
		return nil, nil
	}
	resp.Brokers = produceBrokers(leaders)
	return resp, nil
}

// checkProduce resolves one partition and checks what can be checked
// before writing; a non-zero code is the partition's answer.
func (s *Server) checkProduce(req *kmsg.ProduceRequest, view *topicView, p *producePart, denied bool, brokers func() brokerView, leaders map[int32]broker) int16 {
	switch {
	case req.TransactionID != nil:
		return kerr.TransactionalIDAuthorizationFailed.Code
	case req.Acks != 0 && req.Acks != 1 && req.Acks != -1:
		return kerr.InvalidRequiredAcks.Code
	case p.topic == "":
		return kerr.UnknownTopicOrPartition.Code
	case denied:
		return kerr.TopicAuthorizationFailed.Code
	}
	info, err := view.partition(p.topic, p.out.Partition)
	if err != nil {
		return errorCode(err)
	}
	p.info = info
	p.out.LogStartOffset = info.LowWatermark
	if info.Leader != s.cfg.NodeID {
		// Kafka semantics: only the leader takes writes; the client
		// refreshes its metadata and sends the batch there (v10+ say where).
		if b, ok := brokers().byNode[info.Leader]; ok {
			p.out.CurrentLeader.LeaderID, p.out.CurrentLeader.LeaderEpoch = b.id, int32(info.LeaderEpoch)
			leaders[b.id] = b
		}
		return kerr.NotLeaderForPartition.Code
	}
	return 0
}

// produceBrokers lists the leaders named in CurrentLeader (v10+).
func produceBrokers(leaders map[int32]broker) []kmsg.ProduceResponseBroker {
	var out []kmsg.ProduceResponseBroker
	for _, b := range leaders {
		rb := kmsg.NewProduceResponseBroker()
		rb.NodeID, rb.Host, rb.Port = b.id, b.host, b.port
		out = append(out, rb)
	}
	return out
}

// writeParts writes the partitions in parallel within the request's timeout.
func (s *Server) writeParts(ctx context.Context, c *Conn, req *kmsg.ProduceRequest, work []producePart) {
	if req.TimeoutMillis > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(req.TimeoutMillis)*time.Millisecond)
		defer cancel()
	}
	if len(work) == 1 {
		s.writePart(ctx, c, &work[0])
		return
	}
	var wg sync.WaitGroup
	var panics workerPanics
	for i := range work {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer panics.catch(nil)
			s.writePart(ctx, c, &work[i])
		}()
	}
	wg.Wait()
	panics.rethrow()
}

// writePart decodes one partition's batches and appends them.
func (s *Server) writePart(ctx context.Context, c *Conn, p *producePart) {
	out := p.out
	batches, err := decodeBatches(p.data, int(s.cfg.MaxRequestBytes))
	if err != nil {
		out.ErrorCode = produceCode(err)
		out.ErrorMessage = kmsg.StringPtr(err.Error())
		return
	}
	out.BaseOffset, out.LogAppendTime = -1, -1
	for i := range batches {
		base, err := s.writeBatch(ctx, c, p, &batches[i])
		if err != nil {
			out.ErrorCode = produceCode(err)
			out.ErrorMessage = kmsg.StringPtr(err.Error())
			return
		}
		if i == 0 {
			out.BaseOffset = base
		}
	}
}

// writeBatch appends one batch and returns its base offset.
func (s *Server) writeBatch(ctx context.Context, c *Conn, p *producePart, b *producedBatch) (int64, error) {
	if b.idempotent() {
		return s.writeIdempotent(ctx, c, p, b)
	}
	recs := make([]fsm.ProduceRecord, len(b.records))
	for i := range b.records {
		recs[i] = fsm.ProduceRecord{Partition: p.info.Partition, Record: b.records[i]}
	}
	offs, err := s.cfg.Producer.Produce(ctx, p.topic, recs)
	if err != nil {
		return 0, err
	}
	return offs[0].Offset, nil
}

// produceCode maps a produce failure to its Kafka code.
func produceCode(err error) int16 {
	var be *batchError
	switch {
	case errors.As(err, &be):
		return be.code
	case errors.Is(err, fsm.ErrProducerNotOwned):
		// Another API key's producer id: the client gets a new one.
		return kerr.UnknownProducerID.Code
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return kerr.RequestTimedOut.Code
	}
	return errorCode(err)
}
