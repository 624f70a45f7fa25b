package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/streamhouse/streamhouse/cluster"
	"github.com/streamhouse/streamhouse/partition"
	"github.com/streamhouse/streamhouse/s3seg"
)

// readiness combines what /ready reports: Raft (leader known, log applied),
// the object store (reachable, bucket exists, credentials valid) and the
// unflushed backlog (below MAX_UNFLUSHED_BYTES, else produce answers 503)
// and free disk space (above MIN_FREE_DISK_BYTES, else produce answers 503).
type readiness struct {
	node         *cluster.Node
	objects      s3seg.ObjectStore
	store        *partition.Store
	maxUnflushed int64
	disk         *partition.DiskGuard
	log          *slog.Logger

	mu      sync.Mutex
	objErr  error
	checked bool
	cancel  context.CancelFunc
	done    chan struct{}
}

// start checks the object store now and then every interval.
func (r *readiness) start(interval time.Duration) {
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.done = make(chan struct{})
	r.check(ctx)
	go func() {
		defer close(r.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				r.check(ctx)
			}
		}
	}()
}

func (r *readiness) check(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err := r.objects.Check(cctx)
	cancel()
	if ctx.Err() != nil {
		return
	}
	r.mu.Lock()
	prev, first := r.objErr, !r.checked
	r.objErr, r.checked = err, true
	r.mu.Unlock()
	switch {
	case err != nil && (first || prev == nil):
		r.log.Error("object store check failed; produce keeps records in the WAL until it recovers", "err", err)
	case err == nil && prev != nil:
		r.log.Info("object store reachable again")
	}
}

func (r *readiness) stop() {
	if r.cancel != nil {
		r.cancel()
		<-r.done
	}
}

// publicObjectStoreReason names the class of an object store failure for
// the public /ready: the endpoint, bucket and SDK details of the error stay
// in the log (check logs them at ERROR).
func publicObjectStoreReason(err error) string {
	switch {
	case errors.Is(err, s3seg.ErrBucketNotFound):
		return "object store: the bucket does not exist (details in the agent's log)"
	case errors.Is(err, s3seg.ErrAccessDenied):
		return "object store: access denied, check the credentials (details in the agent's log)"
	}
	return "object store unreachable (details in the agent's log)"
}

// Ready implements transport.Readiness. Its reason is served on the
// unauthenticated GET /ready, so it names no endpoint, bucket or address.
func (r *readiness) Ready() (bool, string) {
	if ok, why := r.node.Ready(); !ok {
		return false, why
	}
	r.mu.Lock()
	objErr := r.objErr
	r.mu.Unlock()
	if objErr != nil {
		return false, publicObjectStoreReason(objErr)
	}
	if low, why := r.disk.Low(); low {
		return false, why
	}
	if r.maxUnflushed > 0 {
		if b := r.store.Bytes(); b > r.maxUnflushed {
			return false, fmt.Sprintf("unflushed backlog of %d bytes is above MAX_UNFLUSHED_BYTES=%d (segment uploads are behind); produce answers 503", b, r.maxUnflushed)
		}
	}
	return true, ""
}
