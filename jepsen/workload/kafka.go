package workload

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/streamhouse/streamhouse/jepsen/history"
)

// kafkaDriver opens franz-go clients against the agents' Kafka listeners:
// one kgo client per producer incarnation and per reader incarnation.
type kafkaDriver struct {
	addrs      []string
	topic      string
	partitions int32
	log        *slog.Logger
}

func newKafkaDriver(cfg Config, addrs []string, log *slog.Logger) *kafkaDriver {
	return &kafkaDriver{addrs: addrs, topic: cfg.Topic, partitions: cfg.Partitions, log: log.With("component", "kgo")}
}

func (d *kafkaDriver) close() {}

// commonOpts are the options of every kgo client of the workload (proc:
// its history process, in its log lines; -1 for the setup check): every
// agent as a seed, metadata refreshed at least every 2 s (the gRPC
// client's refresh), a short fixed retry backoff.
func (d *kafkaDriver) commonOpts(proc int) []kgo.Opt {
	return []kgo.Opt{
		kgo.SeedBrokers(d.addrs...),
		kgo.ClientID("jepsen"),
		kgo.MetadataMaxAge(2 * time.Second),
		kgo.MetadataMinAge(250 * time.Millisecond),
		kgo.RetryBackoffFn(func(int) time.Duration { return 50 * time.Millisecond }),
		kgo.DialTimeout(3 * time.Second),
		kgo.WithLogger(kgoLogger{d.log.With("process", proc)}),
	}
}

// newSender opens an idempotent producer (franz-go's default) with
// acks=all, sending to explicit partitions. Its knobs mirror the gRPC
// producer's: 5 ms linger, 5 s per produce request, 15 s per record
// (RecordDeliveryTimeout, which kgo enforces only where failing the
// record cannot break the idempotent sequence). Unknown-topic answers are
// retried until that timeout: the topic exists for the whole run.
func (d *kafkaDriver) newSender(ctx context.Context, proc int) (sender, error) {
	opts := append(d.commonOpts(proc),
		kgo.DefaultProduceTopic(d.topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(5*time.Millisecond),
		kgo.ProduceRequestTimeout(5*time.Second),
		kgo.RecordDeliveryTimeout(15*time.Second),
		kgo.UnknownTopicRetries(-1),
		kgo.MaxBufferedBytes(8<<20),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, err
	}
	if err := ping(ctx, cl); err != nil {
		cl.Close()
		return nil, err
	}
	return &kafkaSender{cl: cl}, nil
}

// newReader opens a client consuming every partition directly (no group)
// from the earliest offset. An OffsetOutOfRange answer is not papered
// over by a reset (NoResetOffset): the reader reports it and a new reader
// process starts from the earliest offset.
func (d *kafkaDriver) newReader(ctx context.Context, proc int) (reader, error) {
	parts := map[int32]kgo.Offset{}
	for p := int32(0); p < d.partitions; p++ {
		parts[p] = kgo.NewOffset().AtStart()
	}
	opts := append(d.commonOpts(proc),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{d.topic: parts}),
		kgo.ConsumeResetOffset(kgo.NoResetOffset()),
		kgo.FetchMaxWait(500*time.Millisecond),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, err
	}
	if err := ping(ctx, cl); err != nil {
		cl.Close()
		return nil, err
	}
	return &kafkaReader{cl: cl}, nil
}

// kafkaAPIs are the Kafka APIs the workload's clients use.
var kafkaAPIs = []kmsg.Key{kmsg.ApiVersions, kmsg.Metadata, kmsg.InitProducerID, kmsg.Produce, kmsg.ListOffsets, kmsg.Fetch}

// checkAPIs asks an agent's Kafka listener which APIs it serves and fails
// clearly when one the workload needs is missing (rather than recording
// a run of sends that never complete).
func (d *kafkaDriver) checkAPIs(ctx context.Context) error {
	cl, err := kgo.NewClient(d.commonOpts(-1)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	vctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := kmsg.NewPtrApiVersionsRequest().RequestWith(vctx, cl)
	if err != nil {
		return fmt.Errorf("kafka ApiVersions: %w", err)
	}
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		return fmt.Errorf("kafka ApiVersions: %w", err)
	}
	return missingAPIs(resp.ApiKeys)
}

// missingAPIs names the workload's Kafka APIs absent from an ApiVersions
// answer.
func missingAPIs(have []kmsg.ApiVersionsResponseApiKey) error {
	served := map[int16]bool{}
	for _, k := range have {
		served[k.ApiKey] = true
	}
	var missing []string
	for _, k := range kafkaAPIs {
		if !served[int16(k)] {
			missing = append(missing, k.Name())
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("the agents' Kafka listener does not serve %v, which Kafka client mode needs", missing)
	}
	return nil
}

// ping checks that some agent answers on its Kafka listener.
func ping(ctx context.Context, cl *kgo.Client) error {
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return cl.Ping(pctx)
}

type kafkaSender struct{ cl *kgo.Client }

// send produces one record. The record's context is never cancelled:
// only kgo decides when a record fails, so that an in-flight record is
// never abandoned by the workload itself.
func (s *kafkaSender) send(p int32, v int64, done func(sendOutcome)) {
	r := &kgo.Record{Partition: p, Value: value(v)}
	s.cl.Produce(context.Background(), r, func(r *kgo.Record, err error) {
		done(kafkaOutcome(r, err))
	})
}

// close flushes for at most 20 s, then closes the client, which fails
// every record still buffered or in flight with ErrClientClosed (outcome
// unknown).
func (s *kafkaSender) close() {
	fctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	_ = s.cl.Flush(fctx)
	cancel()
	s.cl.Close()
}

// kafkaOutcome is the history's view of a produce promise.
func kafkaOutcome(r *kgo.Record, err error) sendOutcome {
	t := classifyKafka(err)
	o := sendOutcome{t: t, off: -1, err: kafkaErrString(err)}
	if t == history.OK {
		o.off = r.Offset
	}
	return o
}

// definiteKafka are the produce errors after which the record definitely
// was not written, even if an earlier attempt of its batch got no answer:
// the broker refused the batch for what it contains (size, format,
// timestamps, acks), and the same bytes were sent on every attempt (kgo
// pins a batch's producer ID, epoch and sequence once written), so an
// earlier attempt was refused too. This holds while the topic's
// configuration does not change, as in every jepsen run. A later batch of
// the partition that kgo fails along with it (it fails every buffered
// record of the partition) was either never sent or sent with a sequence
// after the refused one, which an idempotent broker must refuse.
var definiteKafka = []error{
	kerr.MessageTooLarge, kerr.RecordListTooLarge, kerr.InvalidRecord, kerr.InvalidTimestamp,
	kerr.UnsupportedCompressionType, kerr.InvalidRequiredAcks, kerr.InvalidTopicException,
	kerr.UnsupportedForMessageFormat,
}

// classifyKafka maps a kgo produce promise's error to a history type: ok
// for nil, fail only when the record definitely was not written, info
// (outcome unknown) for everything else. In particular:
//   - kgo.ErrRecordTimeout and kgo.ErrRecordRetries: kgo gives up only
//     once a batch is not in flight, but an earlier attempt may have been
//     written before its connection broke (kgo stops treating a batch as
//     "unsure" after any answer, e.g. NOT_LEADER from a new leader).
//   - kgo.ErrClientClosed, kgo.ErrAborting: in-flight records are failed
//     without an answer.
//   - OUT_OF_ORDER_SEQUENCE_NUMBER, UNKNOWN_PRODUCER_ID,
//     INVALID_PRODUCER_EPOCH: ambiguous by Kafka's own account (kgo
//     treats them as possible data loss).
//   - UNKNOWN_TOPIC_OR_PARTITION, authorization errors, retriable broker
//     errors surfacing after retries, CORRUPT_MESSAGE (which a damaged
//     resend can draw after an intact first attempt was written), network
//     errors, context errors and anything unrecognised.
//
// kgo.ErrMaxBuffered is definite: the record was refused before being
// buffered (the workload uses the blocking Produce and never sees it).
func classifyKafka(err error) history.Type {
	if err == nil {
		return history.OK
	}
	if errors.Is(err, kgo.ErrMaxBuffered) {
		return history.Fail
	}
	for _, d := range definiteKafka {
		if errors.Is(err, d) {
			return history.Fail
		}
	}
	return history.Info
}

// kafkaErrString is the error text recorded in the history: the Kafka
// error code's name when there is one.
func kafkaErrString(err error) string {
	if err == nil {
		return ""
	}
	s := err.Error()
	if len(s) > 300 {
		s = s[:300]
	}
	var ke *kerr.Error
	if errors.As(err, &ke) {
		return fmt.Sprintf("[kafka %s] %s", ke.Message, s)
	}
	return "[kgo] " + s
}

type kafkaReader struct{ cl *kgo.Client }

// poll waits up to a second for records. A context that ends the wait is
// an empty poll, not an error.
func (r *kafkaReader) poll(ctx context.Context) ([]history.Rec, error) {
	pctx, cancel := context.WithTimeout(ctx, time.Second)
	fs := r.cl.PollRecords(pctx, 1000)
	cancel()
	var recs []history.Rec
	fs.EachRecord(func(rec *kgo.Record) {
		recs = append(recs, history.Rec{P: rec.Partition, O: rec.Offset, V: parseValue(rec.Value)})
	})
	return recs, fetchErr(fs.Errors())
}

// fetchErr folds a poll's fetch errors into one error, ignoring the end
// of the poll's own wait; errReaderReset (wrapped) when a partition's
// position was refused (out of range, or data loss detected), which
// stops kgo consuming that partition.
func fetchErr(errs []kgo.FetchError) error {
	var out []error
	reset := false
	for _, fe := range errs {
		if errors.Is(fe.Err, context.DeadlineExceeded) || errors.Is(fe.Err, context.Canceled) {
			continue
		}
		var dl *kgo.ErrDataLoss
		if errors.Is(fe.Err, kerr.OffsetOutOfRange) || errors.As(fe.Err, &dl) {
			reset = true
		}
		out = append(out, fmt.Errorf("partition %d: %w", fe.Partition, fe.Err))
	}
	if len(out) == 0 {
		return nil
	}
	err := errors.Join(out...)
	if reset {
		return fmt.Errorf("%w: %w", errReaderReset, err)
	}
	return err
}

func (r *kafkaReader) close() { r.cl.Close() }

// kgoLogger sends kgo's info, warning and error messages to the harness
// log (connection and metadata events, producer id resets, failed
// batches; its debug messages are per request).
type kgoLogger struct{ log *slog.Logger }

func (l kgoLogger) Level() kgo.LogLevel { return kgo.LogLevelInfo }

func (l kgoLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	lv := slog.LevelDebug
	switch level {
	case kgo.LogLevelError:
		lv = slog.LevelError
	case kgo.LogLevelWarn:
		lv = slog.LevelWarn
	case kgo.LogLevelInfo:
		lv = slog.LevelInfo
	}
	l.log.Log(context.Background(), lv, msg, keyvals...)
}
