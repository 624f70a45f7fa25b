package s3seg_test

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamhouse/streamhouse/jepsen/testkit"
	"github.com/streamhouse/streamhouse/s3seg"
)

// TestOpenStoreLocal: without a bucket the store is the local directory,
// measured with backend "local"; a private directory in a cluster is
// warned about.
func TestOpenStoreLocal(t *testing.T) {
	for _, private := range []bool{false, true} {
		var logs bytes.Buffer
		reg := prometheus.NewRegistry()
		store, err := s3seg.OpenStore(bg, s3seg.StoreConfig{Dir: t.TempDir(), PrivateDir: private}, reg,
			slog.New(slog.NewTextHandler(&logs, nil)))
		if err != nil {
			t.Fatal(err)
		}
		if err := store.Put(bg, "segments/a.seg", []byte("x")); err != nil {
			t.Fatal(err)
		}
		if n := testkit.Metric(t, reg, "streamhouse_s3_requests_total", "backend", "local", "operation", "put", "result", "ok"); n != 1 {
			t.Fatalf("put requests = %v", n)
		}
		if warned := strings.Contains(logs.String(), "private directory"); warned != private {
			t.Fatalf("private %v, warned %v:\n%s", private, warned, logs.String())
		}
		if !strings.Contains(logs.String(), "object store: local directory") {
			t.Fatalf("logs: %s", logs.String())
		}
	}
}

// TestOpenStoreS3Config: a bucket selects S3; a bad configuration names the
// setting (nothing is contacted).
func TestOpenStoreS3Config(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	store, err := s3seg.OpenStore(bg, s3seg.StoreConfig{S3: s3seg.S3Config{Bucket: "b", Endpoint: "http://127.0.0.1:1", PathStyle: true,
		AccessKeyID: "k", SecretAccessKey: "s"}}, nil, log)
	if err != nil || store == nil {
		t.Fatalf("store %v, err %v", store, err)
	}
	_, err = s3seg.OpenStore(bg, s3seg.StoreConfig{S3: s3seg.S3Config{Bucket: "a/b"}}, nil, log)
	if err == nil || !strings.Contains(err.Error(), "S3 object store (S3_BUCKET=a/b)") {
		t.Fatalf("err = %v", err)
	}
}
