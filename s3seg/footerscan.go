package s3seg

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// Footer scanning for DR restore: read the self-describing footers of many
// objects, retrying transient failures for a bounded time.
//
// Each GET already goes through the store's own retries (S3Store: the SDK's
// standard retryer, MaxAttempts attempts with backoff capped at MaxBackoff,
// i.e. about a second in all by default), which rides out a blip but not an
// S3 brown-out of tens of seconds. ScanFooters adds an outer exponential
// backoff (cenkalti/backoff, as the checkpointer uses) per object, up to
// RetryFor. Answers that retrying cannot change end it at once: the object
// is gone (ErrNotFound: it is reported as Vanished, not as unreadable),
// access is denied, or the bytes are not a segment (ErrCorrupt,
// ErrUnsupportedVersion).

// ObjectFooter is one segment object's decoded footer.
type ObjectFooter struct {
	Key          string
	LastModified time.Time
	Entries      []IndexEntry
}

// ReadFailure is an object whose footer could not be read.
type ReadFailure struct {
	Key      string
	Attempts int
	Err      error
}

func (f ReadFailure) String() string {
	return fmt.Sprintf("%s: %v (after %d attempts)", f.Key, f.Err, f.Attempts)
}

// ScanOptions tunes ScanFooters.
type ScanOptions struct {
	// RetryFor bounds the retries of one object (0: one attempt).
	RetryFor time.Duration
	// InitialBackoff is the first delay between attempts (default 100ms);
	// it doubles up to MaxBackoff (default 5s), with jitter.
	InitialBackoff, MaxBackoff time.Duration
	// Workers reads this many objects in parallel (default 16).
	Workers int
	// Start, if set, is called once with the number of objects to read,
	// before the first is read; Done, if set, after each object (for a
	// progress bar).
	Start func(n int)
	Done  func()
}

// ScanResult is what ScanFooters found.
type ScanResult struct {
	Footers    []ObjectFooter
	Unreadable []ReadFailure // sorted by key
	Vanished   []string      // listed, then gone (deleted meanwhile)
}

// ScanFooters reads the footers of objs. It returns early only when ctx
// ends (the caller checks ctx.Err()).
func ScanFooters(ctx context.Context, store ObjectStore, objs []ObjectInfo, opt ScanOptions) ScanResult {
	if opt.Workers <= 0 {
		opt.Workers = 16
	}
	var (
		mu  sync.Mutex
		out ScanResult
		wg  sync.WaitGroup
	)
	if opt.Start != nil {
		opt.Start(len(objs))
	}
	work := make(chan ObjectInfo)
	for range opt.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for o := range work {
				f, fail := readFooterRetrying(ctx, store, o, opt)
				mu.Lock()
				switch {
				case fail == nil:
					out.Footers = append(out.Footers, f)
				case errors.Is(fail.Err, ErrNotFound):
					out.Vanished = append(out.Vanished, o.Key)
				default:
					out.Unreadable = append(out.Unreadable, *fail)
				}
				mu.Unlock()
				if opt.Done != nil {
					opt.Done()
				}
			}
		}()
	}
feed:
	for _, o := range objs {
		select {
		case work <- o:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	sortFailures(out.Unreadable)
	return out
}

// BucketScan is what ScanBucket found.
type BucketScan struct {
	ScanResult
	// Existing holds every segment object listed, less those deleted while
	// the scan ran (Vanished): like never listed.
	Existing map[string]bool
}

// ScanBucket is the DR restore's look at the bucket: it checks that store
// is usable, lists every segment object (SegmentKeyPrefix) and reads the
// footers of those not in skip (ScanFooters). An error means the scan did
// not happen or ctx ended.
func ScanBucket(ctx context.Context, store ObjectStore, skip map[string]bool, opt ScanOptions) (BucketScan, error) {
	if err := store.Check(ctx); err != nil {
		return BucketScan{}, fmt.Errorf("object store: %w", err)
	}
	objs, err := store.List(ctx, SegmentKeyPrefix)
	if err != nil {
		return BucketScan{}, fmt.Errorf("list segment objects: %w", err)
	}
	out := BucketScan{Existing: map[string]bool{}}
	var scan []ObjectInfo
	for _, o := range objs {
		out.Existing[o.Key] = true
		if !skip[o.Key] {
			scan = append(scan, o)
		}
	}
	out.ScanResult = ScanFooters(ctx, store, scan, opt)
	if err := ctx.Err(); err != nil {
		return out, err
	}
	for _, k := range out.Vanished {
		delete(out.Existing, k)
	}
	return out, nil
}

func sortFailures(fs []ReadFailure) {
	sort.Slice(fs, func(i, j int) bool { return fs[i].Key < fs[j].Key })
}

// readFooterRetrying reads one footer, retrying what may be transient.
func readFooterRetrying(ctx context.Context, store ObjectStore, o ObjectInfo, opt ScanOptions) (ObjectFooter, *ReadFailure) {
	bo := backoff.NewExponentialBackOff()
	if opt.InitialBackoff > 0 {
		bo.InitialInterval = opt.InitialBackoff
	}
	bo.MaxInterval = 5 * time.Second
	if opt.MaxBackoff > 0 {
		bo.MaxInterval = opt.MaxBackoff
	}
	attempts := 0
	var last error
	f, err := backoff.Retry(ctx, func() (ObjectFooter, error) {
		attempts++
		f, err := ReadObjectFooter(ctx, store, o)
		last = err
		if err != nil && definiteReadError(err) {
			return f, backoff.Permanent(err)
		}
		return f, err
	}, backoff.WithBackOff(bo), backoff.WithMaxElapsedTime(opt.RetryFor), backoff.WithMaxTries(maxTries(opt.RetryFor)))
	if err == nil {
		return f, nil
	}
	if last == nil || ctx.Err() != nil {
		last = err
	}
	return ObjectFooter{}, &ReadFailure{Key: o.Key, Attempts: attempts, Err: last}
}

// maxTries is 1 when retries are off (backoff.Retry's elapsed-time limit of
// 0 means "no limit").
func maxTries(retryFor time.Duration) uint {
	if retryFor <= 0 {
		return 1
	}
	return 0
}

// definiteReadError reports errors that retrying cannot change.
func definiteReadError(err error) bool {
	return errors.Is(err, ErrNotFound) || errors.Is(err, ErrAccessDenied) || errors.Is(err, ErrCorrupt) ||
		errors.Is(err, ErrUnsupportedVersion) || errors.Is(err, ErrBucketNotFound) || errors.Is(err, ErrInvalidRange)
}

// ReadObjectFooter fetches and decodes the footer of one listed object with one or two
// ranged GETs (a guess of the last 64 KiB, then exactly what the trailer
// announces).
func ReadObjectFooter(ctx context.Context, store ObjectStore, o ObjectInfo) (ObjectFooter, error) {
	want := min(o.Size, 64<<10)
	for attempt := 0; attempt < 2; attempt++ {
		if want <= 0 {
			return ObjectFooter{}, fmt.Errorf("%w: empty object", ErrCorrupt)
		}
		tail, err := store.GetRange(ctx, o.Key, o.Size-want, want)
		if err != nil {
			return ObjectFooter{}, err
		}
		f, err := DecodeFooterTail(tail, o.Size)
		var short *ShortTailError
		if errors.As(err, &short) {
			want = short.Need
			continue
		}
		if err != nil {
			return ObjectFooter{}, err
		}
		return ObjectFooter{Key: o.Key, LastModified: o.LastModified, Entries: f.Entries}, nil
	}
	return ObjectFooter{}, fmt.Errorf("%w: footer larger than its trailer announced", ErrCorrupt)
}
