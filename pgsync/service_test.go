package pgsync

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamhouse/streamhouse/jepsen/testkit"
	"github.com/streamhouse/streamhouse/pgsync/pgtest"
)

// TestCheckpointServiceWaitsForPostgresAndTheClusterID: the service retries
// a database that is down, reports the connection on its gauge, and
// writes checkpoints only once the cluster ID is known.
func TestCheckpointServiceWaitsForPostgresAndTheClusterID(t *testing.T) {
	t.Parallel()
	own := pgtest.Start(t) // stopped below: not the shared server
	url := own.NewDatabase(t)
	if err := own.Stop(); err != nil {
		t.Fatal(err)
	}
	src := &fakeSource{}
	src.set(fixture(t), true)
	var clusterID atomic.Value
	clusterID.Store("")
	reg := prometheus.NewRegistry()
	svc, err := NewCheckpointService(CheckpointServiceConfig{
		DatabaseURL: url, Source: src, ClusterID: func() string { return clusterID.Load().(string) }, NodeID: node,
		Interval: 10 * time.Millisecond, Registerer: reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	svc.Start(context.Background())
	t.Cleanup(svc.Close)
	if v := testkit.Metric(t, reg, "streamhouse_checkpoint_db_connected"); v != 0 {
		t.Fatalf("connected = %v while Postgres is down", v)
	}

	if err := own.Restart(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the service to connect", func() bool {
		return testkit.Metric(t, reg, "streamhouse_checkpoint_db_connected") == 1
	})
	db := openURL(t, url)
	if info, err := db.LatestInfo(ctxT(t)); !errors.Is(err, ErrNoCheckpoint) {
		t.Fatalf("checkpoint %+v (%v) before the cluster ID is known", info, err)
	}
	clusterID.Store(cluster)
	waitIndex(t, db, 100)
	svc.Close()
	svc.Close() // idempotent
}

func TestCheckpointServiceConfig(t *testing.T) {
	t.Parallel()
	src := &fakeSource{}
	id := func() string { return cluster }
	if _, err := NewCheckpointService(CheckpointServiceConfig{DatabaseURL: "mysql://x", Source: src, ClusterID: id, NodeID: node}); err == nil {
		t.Fatal("a malformed URL was accepted")
	}
	if _, err := NewCheckpointService(CheckpointServiceConfig{DatabaseURL: "postgres://u@h/db", ClusterID: id, NodeID: node}); err == nil {
		t.Fatal("a service without a source was accepted")
	}
	svc, err := NewCheckpointService(CheckpointServiceConfig{DatabaseURL: "postgres://u@h/db", Source: src, ClusterID: id, NodeID: node})
	if err != nil {
		t.Fatal(err)
	}
	svc.Close() // never started: returns at once
}
