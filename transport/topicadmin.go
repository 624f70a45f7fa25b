package transport

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"

	"github.com/streamhouse/streamhouse/fsm"
)

// TopicConfigJSON is GET and PATCH /api/v1/topics/{name}/config: every
// supported key (Kafka names) with its value as a string, and the keys the
// topic leaves at their default.
type TopicConfigJSON struct {
	Topic    string            `json:"topic"`
	Configs  map[string]string `json:"configs"`
	Defaults []string          `json:"defaults"`
}

// createPartitionsRequest is POST /api/v1/topics/{name}/partitions.
type createPartitionsRequest struct {
	Count *int32 `json:"count"`
}

func (s *HTTPServer) topicConfigJSON(t fsm.Topic) TopicConfigJSON {
	configs, defaults := s.configsOf(t)
	return TopicConfigJSON{Topic: t.Name, Configs: configs, Defaults: defaults}
}

func (s *HTTPServer) handleGetTopicConfig(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	if err := s.authorize(r, ScopeRead, name); err != nil {
		return err
	}
	t, err := s.topics.Topic(name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.topicConfigJSON(t))
	return nil
}

// handleAlterTopicConfig is PATCH /api/v1/topics/{name}/config: a JSON
// object of key → value (strings; a JSON number is taken as its text).
// Only the named keys change.
func (s *HTTPServer) handleAlterTopicConfig(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	if err := s.authorize(r, ScopeAdmin, name); err != nil {
		return err
	}
	var raw map[string]json.RawMessage
	if err := s.decodeBody(w, r, &raw); err != nil {
		return err
	}
	if len(raw) == 0 {
		return badRequest("expected a JSON object of config keys to values, e.g. {\"retention.ms\": \"3600000\"} (supported keys: %s)", strings.Join(fsm.ConfigKeys, ", "))
	}
	set := make(map[string]string, len(raw))
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	slices.Sort(keys) // deterministic error messages
	for _, k := range keys {
		v, err := configString(k, raw[k])
		if err != nil {
			return err
		}
		set[k] = v
	}
	if err := s.cfg.Quotas.Take(r.Context(), QuotaMutations, 1); err != nil {
		return err
	}
	t, err := s.topics.AlterTopicConfig(r.Context(), name, set)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.topicConfigJSON(t))
	return nil
}

// handleCreatePartitions is POST /api/v1/topics/{name}/partitions with
// {"count": N}, the new total. It answers the topic as GET does.
func (s *HTTPServer) handleCreatePartitions(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	if err := s.authorize(r, ScopeAdmin, name); err != nil {
		return err
	}
	var req createPartitionsRequest
	if err := s.decodeBody(w, r, &req); err != nil {
		return err
	}
	if req.Count == nil {
		return badRequest("count is required: the new total number of partitions")
	}
	cur, err := s.topics.Topic(name)
	if err != nil {
		return err
	}
	if err := s.cfg.Quotas.Take(r.Context(), QuotaMutations, int64(max(*req.Count-cur.Partitions, 1))); err != nil {
		return err
	}
	t, err := s.topics.CreatePartitions(r.Context(), name, *req.Count)
	if err != nil {
		return err
	}
	// Committed: read the partitions as applied (no read barrier), so a
	// barrier that gives up cannot answer "not applied".
	ps, err := s.topics.PartitionsForRouting(name)
	if err != nil {
		return AfterProposal(err)
	}
	writeJSON(w, http.StatusOK, topicDetailJSON{TopicJSON: s.toTopicJSON(t), PartitionInfo: toPartitionsJSON(ps)})
	return nil
}

// configString accepts a JSON string, or a JSON number taken as its text.
func configString(field string, raw json.RawMessage) (string, error) {
	var str string
	if err := json.Unmarshal(raw, &str); err == nil {
		return str, nil
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err == nil {
		return n.String(), nil
	}
	return "", badRequest("%s: expected a string (or a number), got %s", field, clip(string(raw)))
}
