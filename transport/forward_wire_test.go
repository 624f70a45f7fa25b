package transport

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/streamhouse/streamhouse/fsm"
)

// TestForwardWireFormat pins the bytes of the peer RPC forwarding routes:
// agents of one version forward to each other, so requests and answers of
// PeerProducePath and PeerIdempotentPath never change shape.
func TestForwardWireFormat(t *testing.T) {
	recs := []fsm.ProduceRecord{
		{Partition: 3, Record: fsm.Record{Timestamp: 5, Value: []byte("a"), Headers: []fsm.Header{{Key: "h", Value: []byte("v")}}}},
		{Partition: 1, Record: fsm.Record{Timestamp: 6, Key: []byte{}, Value: []byte("b")}},
	}
	batch := fsm.IdempotentBatch{Topic: "t", Partition: 2, Producer: fsm.ProducerIdentity{ID: 9, Epoch: 1}, BaseSeq: 4,
		Records: []fsm.Record{{Value: []byte("a")}, {Key: []byte{}, Value: []byte("b")}}}
	var seen []string
	local := localProducerFunc(func(_ context.Context, topic string, recs []fsm.ProduceRecord) ([]fsm.RecordOffset, error) {
		if topic == "bad" {
			return nil, fmt.Errorf("%w: no topic %q", fsm.ErrTopicNotFound, topic)
		}
		out := make([]fsm.RecordOffset, len(recs))
		for i, r := range recs {
			out[i] = fsm.RecordOffset{Partition: r.Partition, Offset: int64(40 + i)}
		}
		return out, nil
	})
	mux := http.NewServeMux()
	mux.Handle(PeerProducePath, ProduceRPCHandler(local))
	mux.Handle(PeerIdempotentPath, IdempotentRPCHandler(local))
	record := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		seen = append(seen, fmt.Sprintf("%s %s owner=%q %x", r.Method, r.URL.Path, r.Header.Get(producerOwnerHeader), body))
		r.Body = io.NopCloser(strings.NewReader(string(body)))
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, r)
		seen = append(seen, fmt.Sprintf("%d %s %x", rec.Code, rec.Header().Get("Content-Type"), rec.Body.Bytes()))
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
	})
	srv := httptest.NewServer(record)
	defer srv.Close()
	f := &PeerForwarder{Client: srv.Client(), Resolve: func(string) (string, bool) { return strings.TrimPrefix(srv.URL, "http://"), true }}
	ctx := context.Background()
	if _, err := f.ForwardProduce(ctx, "n2", "orders", recs); err != nil {
		t.Fatal(err)
	}
	_, _ = f.ForwardProduce(ctx, "n2", "bad", recs)
	if _, err := f.ForwardIdempotent(ctx, "n2", batch); err != nil {
		t.Fatal(err)
	}
	batch.Owner, batch.BaseSeq = "owner-of-9", 1000
	if _, err := f.ForwardIdempotent(ctx, "n2", batch); err != nil {
		t.Fatal(err)
	}
	batch.Owner, batch.Producer.Epoch, batch.BaseSeq = "", 0, 2
	_, _ = f.ForwardIdempotent(ctx, "n2", batch)
	get, err := srv.Client().Get(srv.URL + PeerProducePath)
	if err != nil {
		t.Fatal(err)
	}
	get.Body.Close()
	want := []string{
		`POST /peer/v1/produce owner="" 066f72646572730206020a00016101016801760c01016200`,
		`200 application/octet-stream 0206500252`,
		`POST /peer/v1/produce owner="" 036261640206020a00016101016801760c01016200`,
		`404 application/json ` + hex.EncodeToString([]byte(`{"error":{"code":"not_found","message":"topic not found: no topic \"bad\""}}`+"\n")),
		`POST /peer/v1/produce-idempotent owner="" 0174040901080200000161000001016200`,
		`200 application/json ` + hex.EncodeToString([]byte(`{"base_offset":0,"count":2,"duplicate":false}`+"\n")),
		`POST /peer/v1/produce-idempotent owner="owner-of-9" 0174040901d00f0200000161000001016200`,
		`200 application/json ` + hex.EncodeToString([]byte(`{"base_offset":7,"count":2,"duplicate":true}`+"\n")),
		`POST /peer/v1/produce-idempotent owner="" 0174040900040200000161000001016200`,
		`409 application/json ` + hex.EncodeToString([]byte(`{"error":{"code":"producer_fenced","message":"producer fenced by a newer epoch: epoch 0 fenced"}}`+"\n")),
		`GET /peer/v1/produce owner="" `,
		`405  `,
	}
	if len(seen) != len(want) {
		t.Fatalf("exchanges:\n%s", strings.Join(seen, "\n"))
	}
	for i := range want {
		if seen[i] != want[i] {
			t.Errorf("exchange %d:\n got %s\nwant %s", i, seen[i], want[i])
		}
	}
}
