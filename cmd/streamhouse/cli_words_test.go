package main

import (
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/streamhouse/streamhouse/transport/client"
)

// The CLI's wording of every code and of the kinds it words itself (CLI.md,
// "Errors and exit codes").
func TestCLICodeWords(t *testing.T) {
	for _, tc := range []struct {
		code codes.Code
		kind string
		want string
	}{
		{codes.NotFound, "", "not found"},
		{codes.AlreadyExists, "", "already exists"},
		{codes.InvalidArgument, "", "invalid argument"},
		{codes.OutOfRange, "", "out of range"},
		{codes.FailedPrecondition, "", "failed precondition"},
		{codes.Unavailable, "", "unavailable"},
		{codes.Unknown, "", "outcome unknown"},
		{codes.DeadlineExceeded, "", "timed out"},
		{codes.ResourceExhausted, "", "too large"},
		{codes.Unimplemented, "", "not supported by the agent"},
		{codes.Canceled, "", "canceled"},
		{codes.Unauthenticated, "", "unauthenticated"},
		{codes.PermissionDenied, "", "permission denied"},
		{codes.Internal, "", "error (Internal)"},
		{codes.Aborted, "", "error (Aborted)"},
		{codes.DataLoss, "", "error (DataLoss)"},
		{codes.AlreadyExists, client.KindTopicExists, "already exists"},
		{codes.FailedPrecondition, client.KindProducerFenced, "producer fenced"},
		{codes.InvalidArgument, client.KindRecordTooLarge, "record too large"},
		{codes.ResourceExhausted, client.KindRequestTooLarge, "request too large"},
		{codes.NotFound, client.KindNotFound, "not found"},
	} {
		if got := codeWords(&client.Error{Code: tc.code, Kind: tc.kind}); got != tc.want {
			t.Errorf("%v/%q: %q, want %q", tc.code, tc.kind, got, tc.want)
		}
	}
}

func TestProduceRecordFromLine(t *testing.T) {
	key, part := "k", int32(3)
	for _, tc := range []struct {
		name      string
		cmd       produceCmd
		line      string
		key, val  string
		nullKey   bool
		partition int32 // -1: none
		err       string
	}{
		{name: "plain", line: "v", val: "v", nullKey: true, partition: -1},
		{name: "key", cmd: produceCmd{Key: &key}, line: "v", key: "k", val: "v", partition: -1},
		{name: "separator", cmd: produceCmd{KeySeparator: "::"}, line: "a::b::c", key: "a", val: "b::c", partition: -1},
		{name: "no separator", cmd: produceCmd{KeySeparator: "::"}, line: "abc", err: `record 7 has no key separator "::"`},
		{name: "partition", cmd: produceCmd{Partition: &part}, line: "v", val: "v", nullKey: true, partition: 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec, err := tc.cmd.record(7, []byte(tc.line), nil)
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("err %v, want %s", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (rec.Key == nil) != tc.nullKey || string(rec.Key) != tc.key || string(rec.Value) != tc.val {
				t.Fatalf("key %q value %q, want %q %q (null %v)", rec.Key, rec.Value, tc.key, tc.val, tc.nullKey)
			}
			if got := rec.HasExplicitPartition(); got != (tc.partition >= 0) || (got && rec.Partition != tc.partition) {
				t.Fatalf("partition %d explicit %v, want %d", rec.Partition, got, tc.partition)
			}
		})
	}
}
