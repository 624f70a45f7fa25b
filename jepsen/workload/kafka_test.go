package workload

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/streamhouse/streamhouse/jepsen/history"
)

// TestClassifyKafka: a produce error is a definite failure only when the
// broker refused the batch for its content; every error after which the
// record may have been written is info.
func TestClassifyKafka(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want history.Type
	}{
		{"acknowledged", nil, history.OK},
		// Definite: the broker refused these bytes, on every attempt.
		{"message too large", kerr.MessageTooLarge, history.Fail},
		{"message too large, annotated by kgo", fmt.Errorf("%w (uncompressed_bytes=10, compressed_bytes=10)", kerr.MessageTooLarge), history.Fail},
		{"record list too large", kerr.RecordListTooLarge, history.Fail},
		{"invalid record", kerr.InvalidRecord, history.Fail},
		{"invalid timestamp", kerr.InvalidTimestamp, history.Fail},
		{"unsupported compression", kerr.UnsupportedCompressionType, history.Fail},
		{"invalid acks", kerr.InvalidRequiredAcks, history.Fail},
		{"invalid topic", kerr.InvalidTopicException, history.Fail},
		{"never buffered", kgo.ErrMaxBuffered, history.Fail},
		// Unknown: kgo's own give-ups, after attempts that may have landed.
		{"delivery timeout", kgo.ErrRecordTimeout, history.Info},
		{"retries exhausted", kgo.ErrRecordRetries, history.Info},
		{"client closed", kgo.ErrClientClosed, history.Info},
		{"aborting", kgo.ErrAborting, history.Info},
		// Unknown: ambiguous idempotence answers.
		{"out of order sequence", kerr.OutOfOrderSequenceNumber, history.Info},
		{"unknown producer id", kerr.UnknownProducerID, history.Info},
		{"invalid producer epoch", kerr.InvalidProducerEpoch, history.Info},
		{"duplicate sequence", kerr.DuplicateSequenceNumber, history.Info},
		// Unknown: answers about this attempt only.
		{"not leader", kerr.NotLeaderForPartition, history.Info},
		{"request timed out", kerr.RequestTimedOut, history.Info},
		{"not enough replicas after append", kerr.NotEnoughReplicasAfterAppend, history.Info},
		{"unknown topic", kerr.UnknownTopicOrPartition, history.Info},
		{"corrupt message", kerr.CorruptMessage, history.Info},
		{"topic authorization", kerr.TopicAuthorizationFailed, history.Info},
		{"unknown server error", kerr.UnknownServerError, history.Info},
		// Unknown: the network and contexts.
		{"connection reset", &net.OpError{Op: "read", Err: syscall.ECONNRESET}, history.Info},
		{"eof", io.EOF, history.Info},
		{"deadline", context.DeadlineExceeded, history.Info},
		{"canceled", context.Canceled, history.Info},
		{"anything else", errors.New("something new"), history.Info},
	}
	for _, c := range cases {
		if got := classifyKafka(c.err); got != c.want {
			t.Errorf("%s (%v): %s, want %s", c.name, c.err, got, c.want)
		}
	}
}

func TestKafkaOutcome(t *testing.T) {
	ok := kafkaOutcome(&kgo.Record{Offset: 42}, nil)
	if ok.t != history.OK || ok.off != 42 || ok.err != "" || ok.fatal {
		t.Fatalf("ok: %+v", ok)
	}
	unknown := kafkaOutcome(&kgo.Record{Offset: 42}, kgo.ErrRecordTimeout)
	if unknown.t != history.Info || unknown.off != -1 || !strings.HasPrefix(unknown.err, "[kgo] ") {
		t.Fatalf("timeout: %+v", unknown)
	}
	refused := kafkaOutcome(&kgo.Record{}, kerr.MessageTooLarge)
	if refused.t != history.Fail || !strings.Contains(refused.err, "[kafka MESSAGE_TOO_LARGE]") {
		t.Fatalf("refused: %+v", refused)
	}
}

func TestFetchErr(t *testing.T) {
	if err := fetchErr(nil); err != nil {
		t.Fatalf("no errors: %v", err)
	}
	if err := fetchErr([]kgo.FetchError{{Partition: -1, Err: context.DeadlineExceeded}}); err != nil {
		t.Fatalf("the end of the poll's wait is no error: %v", err)
	}
	err := fetchErr([]kgo.FetchError{{Topic: "jepsen", Partition: 2, Err: kerr.NotLeaderForPartition}})
	if err == nil || errors.Is(err, errReaderReset) || !errors.Is(err, kerr.NotLeaderForPartition) {
		t.Fatalf("not leader: %v", err)
	}
	for _, e := range []error{kerr.OffsetOutOfRange, &kgo.ErrDataLoss{Topic: "jepsen", Partition: 1, ConsumedTo: 10, ResetTo: 4}} {
		err := fetchErr([]kgo.FetchError{{Topic: "jepsen", Partition: 1, Err: e}, {Topic: "jepsen", Partition: 3, Err: kerr.NotLeaderForPartition}})
		if !errors.Is(err, errReaderReset) || !strings.Contains(err.Error(), "partition 1") || !strings.Contains(err.Error(), "partition 3") {
			t.Fatalf("%v: %v", e, err)
		}
	}
}

func TestMissingAPIs(t *testing.T) {
	var all []kmsg.ApiVersionsResponseApiKey
	for _, k := range kafkaAPIs {
		all = append(all, kmsg.ApiVersionsResponseApiKey{ApiKey: int16(k)})
	}
	if err := missingAPIs(all); err != nil {
		t.Fatalf("every API served: %v", err)
	}
	skeleton := []kmsg.ApiVersionsResponseApiKey{{ApiKey: int16(kmsg.ApiVersions)}, {ApiKey: int16(kmsg.Metadata)}}
	err := missingAPIs(skeleton)
	if err == nil || !strings.Contains(err.Error(), "Produce") || !strings.Contains(err.Error(), "Fetch") || strings.Contains(err.Error(), "Metadata") {
		t.Fatalf("skeleton listener: %v", err)
	}
}
