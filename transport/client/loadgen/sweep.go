package loadgen

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// SaturatedBelow is the share of the offered rate under which a sweep
// point counts as saturated: the system no longer keeps up.
const SaturatedBelow = 0.95

// Sweep produces at each of rates in turn (ascending, records/s), each for
// cfg.Duration, and stops after the first point whose achieved rate falls
// below SaturatedBelow of the offered one: the latency-vs-throughput curve
// up to saturation, as the OpenMessaging Benchmark draws it. Every point is
// measured by Run (so against agents too); done, when set, sees each point
// as it completes. The points measured so far come back with any error.
func Sweep(ctx context.Context, cfg Config, rates []int64, t Target, done func(Result) error, agents ...Agent) ([]Result, error) {
	if cfg.Duration <= 0 {
		return nil, errors.New("a rate sweep needs a duration per point")
	}
	var out []Result
	for _, rate := range rates {
		if rate <= 0 {
			return out, fmt.Errorf("sweep rate %d is not positive", rate)
		}
		point := cfg
		point.Rate, point.Consume = rate, false
		res, err := Run(ctx, point, t, agents...)
		if err != nil {
			return out, fmt.Errorf("at %d records/s: %w", rate, err)
		}
		out = append(out, res)
		if done != nil {
			if err := done(res); err != nil {
				return out, err
			}
		}
		if Saturated(res) {
			break
		}
		if err := sleep(ctx, sweepPause); err != nil {
			return out, err
		}
	}
	return out, nil
}

// sweepPause lets the system under load drain between two sweep points
// (a variable for the tests).
var sweepPause = 2 * time.Second

// Saturated reports whether a fixed-rate result fell behind its offered
// rate (always false for a saturated run, which offers no rate).
func Saturated(r Result) bool {
	return r.TargetRate > 0 && r.RecordsPerSec < SaturatedBelow*float64(r.TargetRate)
}
