package partition

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/streamhouse/streamhouse/s3seg"
)

// Readiness combines what /ready reports: the node (leader known, log
// applied), the object store (reachable, bucket exists, credentials valid),
// free disk space (above MIN_FREE_DISK_BYTES, else produce answers 503) and
// the unflushed backlog (below MAX_UNFLUSHED_BYTES, else produce answers
// 503). The object store is checked by the service (at Start, then every
// ReadinessInterval); the rest is read at each call.
type Readiness struct {
	node         Node
	objects      ObjectChecker // nil: not checked
	store        *Store
	disk         *DiskGuard
	maxUnflushed int64
	log          *slog.Logger

	mu      sync.Mutex
	objErr  error
	checked bool
}

// check checks the object store and logs a change of its state.
func (r *Readiness) check(ctx context.Context) {
	if r.objects == nil {
		return
	}
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
func (r *Readiness) Ready() (bool, string) {
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
