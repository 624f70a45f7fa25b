package s3seg_test

import (
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamhouse/streamhouse/jepsen/testkit"
	"github.com/streamhouse/streamhouse/s3seg"
	"github.com/streamhouse/streamhouse/s3seg/s3segtest"
)

func TestInstrumentedCounts(t *testing.T) {
	reg := prometheus.NewRegistry()
	fs := s3segtest.NewFaultStore(s3segtest.NewMemStore())
	s := s3seg.Instrumented(fs, reg, "local")
	data := make([]byte, 1000)
	if err := s.Put(bg, "a", data); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(bg, "a", data); !errors.Is(err, s3seg.ErrExists) {
		t.Fatal(err)
	}
	if _, err := s.Get(bg, "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(bg, "missing"); !errors.Is(err, s3seg.ErrNotFound) {
		t.Fatal(err)
	}
	if _, err := s.GetRange(bg, "a", 100, 50); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Head(bg, "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.List(bg, ""); err != nil {
		t.Fatal(err)
	}
	fs.Fail(s3seg.OpDelete, errors.New("injected"), 1)
	if err := s.Delete(bg, "a"); err == nil {
		t.Fatal("injected delete error lost")
	}
	if err := s.Delete(bg, "a"); err != nil {
		t.Fatal(err)
	}
	if err := s.Check(bg); err != nil {
		t.Fatal(err)
	}

	const req = "streamhouse_s3_requests_total"
	for _, c := range []struct {
		op, result string
		want       float64
	}{
		{"put", "ok", 1}, {"put", "error", 1},
		{"get", "ok", 1}, {"get", "error", 1},
		{"get_range", "ok", 1}, {"get_range", "error", 0},
		{"head", "ok", 1}, {"list", "ok", 1},
		{"delete", "ok", 1}, {"delete", "error", 1},
	} {
		if got := testkit.Metric(t, reg, req, "backend", "local", "operation", c.op, "result", c.result); got != c.want {
			t.Errorf("%s{%s,%s} = %v, want %v", req, c.op, c.result, got, c.want)
		}
	}
	for op, want := range map[string]float64{"put": 2, "get": 2, "get_range": 1, "head": 1, "delete": 2, "list": 1} {
		if got := testkit.Metric(t, reg, "streamhouse_s3_request_duration_seconds", "operation", op); got != want {
			t.Errorf("duration samples for %s = %v, want %v", op, got, want)
		}
	}
	const bytesTotal = "streamhouse_s3_bytes_total"
	if got := testkit.Metric(t, reg, bytesTotal, "operation", "put", "direction", "upload"); got != 1000 {
		t.Errorf("put bytes = %v, want 1000 (refused puts do not count)", got)
	}
	if got := testkit.Metric(t, reg, bytesTotal, "operation", "get", "direction", "download"); got != 1000 {
		t.Errorf("get bytes = %v, want 1000", got)
	}
	if got := testkit.Metric(t, reg, bytesTotal, "operation", "get_range", "direction", "download"); got != 50 {
		t.Errorf("get_range bytes = %v, want 50", got)
	}
}

func TestInstrumentedRegistries(t *testing.T) {
	// Separate registries are independent.
	r1, r2 := prometheus.NewRegistry(), prometheus.NewRegistry()
	a := s3seg.Instrumented(s3segtest.NewMemStore(), r1, "local")
	_ = s3seg.Instrumented(s3segtest.NewMemStore(), r2, "local")
	if err := a.Put(bg, "k", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if testkit.Metric(t, r1, "streamhouse_s3_requests_total", "operation", "put", "result", "ok") != 1 ||
		testkit.Metric(t, r2, "streamhouse_s3_requests_total", "operation", "put", "result", "ok") != 0 {
		t.Fatal("registries are not independent")
	}
	// Two backends in one registry, and the same backend twice, do not panic.
	shared := prometheus.NewRegistry()
	l1 := s3seg.Instrumented(s3segtest.NewMemStore(), shared, "local")
	l2 := s3seg.Instrumented(s3segtest.NewMemStore(), shared, "local")
	s3 := s3seg.Instrumented(s3segtest.NewMemStore(), shared, "s3")
	for _, s := range []s3seg.ObjectStore{l1, l2, s3} {
		if err := s.Put(bg, "k", nil); err != nil {
			t.Fatal(err)
		}
	}
	if got := testkit.Metric(t, shared, "streamhouse_s3_requests_total", "backend", "local", "operation", "put", "result", "ok"); got != 2 {
		t.Fatalf("local puts = %v, want 2", got)
	}
	if got := testkit.Metric(t, shared, "streamhouse_s3_requests_total", "backend", "s3", "operation", "put", "result", "ok"); got != 1 {
		t.Fatalf("s3 puts = %v, want 1", got)
	}
	// A nil registerer is allowed.
	if err := s3seg.Instrumented(s3segtest.NewMemStore(), nil, "x").Put(bg, "k", nil); err != nil {
		t.Fatal(err)
	}
}
