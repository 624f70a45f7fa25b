package transport

import (
	"context"
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// APIKeyMetrics reports the state of the API keys file.
type APIKeyMetrics struct {
	keys     prometheus.Gauge // keys in force
	problems prometheus.Gauge // refused lines at the last read, +1 if the file could not be read
}

// NewAPIKeyMetrics creates streamhouse_api_keys and
// streamhouse_api_keys_file_problems and registers them with reg (nil = not
// registered).
func NewAPIKeyMetrics(reg prometheus.Registerer) *APIKeyMetrics {
	auto := promauto.With(reg)
	return &APIKeyMetrics{
		keys: auto.NewGauge(prometheus.GaugeOpts{Name: "streamhouse_api_keys",
			Help: "API keys in force (from API_KEYS_FILE)."}),
		problems: auto.NewGauge(prometheus.GaugeOpts{Name: "streamhouse_api_keys_file_problems",
			Help: "Lines of API_KEYS_FILE refused at its last read, plus 1 if it could not be read (deleted, unreadable); 0 = clean."}),
	}
}

// APIKeysWatch says which keys file WatchAPIKeys watches and what it
// updates.
type APIKeysWatch struct {
	Path    string        // the keys file (API_KEYS_FILE)
	Every   time.Duration // how often its modification time and size are checked
	Auth    *Authenticator
	Quotas  *Quotas // nil: no quotas to update
	Metrics *APIKeyMetrics
	Logger  *slog.Logger // nil discards
}

// WatchAPIKeys re-reads the keys file when it changes, until ctx ends, so
// keys can be added and revoked without a restart; see reload for
// how it treats a broken or deleted file.
func WatchAPIKeys(ctx context.Context, w APIKeysWatch) {
	stamp := func() (time.Time, int64) {
		fi, err := os.Stat(w.Path)
		if err != nil {
			return time.Time{}, -1
		}
		return fi.ModTime(), fi.Size()
	}
	// The first tick always re-reads: the file may have changed between
	// the agent's startup read and this watcher's start.
	mod, size := time.Time{}, int64(-2)
	if w.Logger == nil {
		w.Logger = slog.New(slog.DiscardHandler)
	}
	w.Metrics.keys.Set(float64(len(w.Auth.Keys())))
	t := time.NewTicker(w.Every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		m, sz := stamp()
		if m.Equal(mod) && sz == size {
			continue
		}
		mod, size = m, sz
		w.reload()
	}
}

// reload applies the keys file as it is now. It fails closed: the valid
// lines replace the keys in force (so a revocation in the same edit
// applies), every refused line is logged at ERROR and counted, and a file
// that cannot be read (deleted, unreadable) leaves no key in force.
func (w APIKeysWatch) reload() {
	keys, refused, err := LoadAPIKeysFileLenient(w.Path)
	if err != nil {
		w.Auth.SetKeys(nil)
		w.Quotas.SetKeys(nil)
		w.Metrics.keys.Set(0)
		w.Metrics.problems.Set(1)
		w.Logger.Error("API_KEYS_FILE cannot be read; every API request is refused until it is restored", "file", w.Path, "err", err)
		return
	}
	w.Auth.SetKeys(keys)
	w.Quotas.SetKeys(keys) // buckets of revoked keys are dropped
	w.Metrics.keys.Set(float64(len(keys)))
	w.Metrics.problems.Set(float64(len(refused)))
	for _, e := range refused {
		w.Logger.Error("API_KEYS_FILE: line refused; its key is not in force", "file", w.Path, "err", e)
	}
	w.Logger.Info("API_KEYS_FILE reloaded", "keys", len(keys), "refused_lines", len(refused))
}
