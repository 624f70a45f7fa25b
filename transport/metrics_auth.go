package transport

import (
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
)

// topicLabel is the label that names a topic in the agent's series.
const topicLabel = "topic"

// metricsHandler serves GET /metrics. With METRICS_AUTH (the route then
// runs behind authentication), a key restricted to topics sees only the
// series without a topic label and those of its own topics: one tenant
// never sees another tenant's lag, watermarks or group names. A key for
// every topic sees everything.
func (s *HTTPServer) metricsHandler() func(http.ResponseWriter, *http.Request) error {
	opts := promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		ErrorHandling: promhttp.ContinueOnError,
	}
	all := promhttp.HandlerFor(s.cfg.Gatherer, opts)
	return func(w http.ResponseWriter, r *http.Request) error {
		p, ok := PrincipalFrom(r.Context())
		if !ok || p.Key.AllTopics() {
			all.ServeHTTP(w, r)
			return nil
		}
		promhttp.HandlerFor(topicFilteredGatherer(s.cfg.Gatherer, p.Key.AllowsTopic), opts).ServeHTTP(w, r)
		return nil
	}
}

// topicFilteredGatherer gathers from g and drops every series whose topic
// label visible refuses (and families left empty by that). It edits the
// families g returns, which must be fresh on every call (as
// prometheus.Registry's are).
func topicFilteredGatherer(g prometheus.Gatherer, visible func(topic string) bool) prometheus.Gatherer {
	return prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		mfs, err := g.Gather()
		out := make([]*dto.MetricFamily, 0, len(mfs))
		for _, mf := range mfs {
			kept := make([]*dto.Metric, 0, len(mf.Metric))
			for _, m := range mf.Metric {
				if seriesVisible(m, visible) {
					kept = append(kept, m)
				}
			}
			if len(kept) == 0 && len(mf.Metric) > 0 {
				continue
			}
			mf.Metric = kept
			out = append(out, mf)
		}
		return out, err
	})
}

func seriesVisible(m *dto.Metric, visible func(string) bool) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == topicLabel {
			return visible(l.GetValue())
		}
	}
	return true
}
