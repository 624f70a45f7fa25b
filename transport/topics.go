package transport

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/streamhouse/streamhouse/fsm"
)

// defaultCompression is what an empty fsm.TopicConfig.Compression means.
const defaultCompression = "zstd"

// TopicJSON is a topic in REST responses (POST /api/v1/topics, the list, and
// GET /api/v1/topics/{name}). Exported so that clients of the REST API in this
// module (the harness, tests) decode the one shape the server writes.
type TopicJSON struct {
	Name           string `json:"name"`
	ID             uint64 `json:"id"`
	Partitions     int32  `json:"partitions"`
	RetentionMs    int64  `json:"retention_ms"`
	RetentionBytes int64  `json:"retention_bytes"`
	Compression    string `json:"compression"`
	CreatedAt      string `json:"created_at"`
	// Configs is every supported config key with its value, Kafka-named
	// (GET /api/v1/topics/{name}/config has the same map).
	Configs map[string]string `json:"configs"`
}

// PartitionJSON is a partition's state in REST responses.
type PartitionJSON struct {
	Partition     int32  `json:"partition"`
	Leader        string `json:"leader"`
	LeaderEpoch   uint64 `json:"leader_epoch"`
	LowWatermark  int64  `json:"low_watermark"`
	HighWatermark int64  `json:"high_watermark"`
	FlushedOffset int64  `json:"flushed_offset"`
	Segments      int    `json:"segments"`
}

// TopicsResponse is GET /api/v1/topics.
type TopicsResponse struct {
	Topics []TopicJSON `json:"topics"`
}

// PartitionsResponse is GET /api/v1/topics/{name}/partitions.
type PartitionsResponse struct {
	Partitions []PartitionJSON `json:"partitions"`
}

// topicDetailJSON is GET /api/v1/topics/{name}: the topic object plus its
// partitions under "partition_info" ("partitions" is already the count).
type topicDetailJSON struct {
	TopicJSON
	PartitionInfo []PartitionJSON `json:"partition_info"`
}

func (s *HTTPServer) toTopicJSON(t fsm.Topic) TopicJSON {
	c := t.Config.Compression
	if c == "" {
		c = defaultCompression
	}
	configs, _ := s.configsOf(t)
	return TopicJSON{
		Name: t.Name, ID: t.ID, Partitions: t.Partitions,
		RetentionMs: t.Config.RetentionMs, RetentionBytes: t.Config.RetentionBytes,
		Compression: c,
		CreatedAt:   time.UnixMilli(t.CreatedAt).UTC().Format("2006-01-02T15:04:05.000Z07:00"),
		Configs:     configs,
	}
}

// configsOf is t's described configuration: every key with its value, and
// the keys the topic does not set (sorted).
func (s *HTTPServer) configsOf(t fsm.Topic) (map[string]string, []string) {
	configs, defaults := map[string]string{}, []string{}
	for _, v := range t.Config.Describe(int64(s.cfg.MaxRecordBytes)) {
		configs[v.Key] = v.Value
		if v.Default {
			defaults = append(defaults, v.Key)
		}
	}
	return configs, defaults
}

func toPartitionsJSON(ps []fsm.PartitionInfo) []PartitionJSON {
	out := make([]PartitionJSON, len(ps))
	for i, p := range ps {
		out[i] = PartitionJSON{
			Partition: p.Partition, Leader: p.Leader, LeaderEpoch: p.LeaderEpoch,
			LowWatermark: p.LowWatermark, HighWatermark: p.NextOffset,
			FlushedOffset: p.FlushedOffset, Segments: p.Segments,
		}
	}
	return out
}

type createTopicRequest struct {
	Name           *string                    `json:"name"`
	Partitions     *int32                     `json:"partitions"`
	RetentionMs    *int64                     `json:"retention_ms"`
	RetentionBytes *int64                     `json:"retention_bytes"`
	Compression    *string                    `json:"compression"`
	Config         map[string]json.RawMessage `json:"config"`
}

// Config keys accepted under "config" (Kafka-style names).
const (
	cfgCompression    = "compression"
	cfgRetentionMs    = "retention.ms"
	cfgRetentionBytes = "retention.bytes"
)

func (s *HTTPServer) handleCreateTopic(w http.ResponseWriter, r *http.Request) error {
	var req createTopicRequest
	if err := s.decodeBody(w, r, &req); err != nil {
		return err
	}
	if req.Name == nil || *req.Name == "" {
		return badRequest("name is required (a non-empty string)")
	}
	if err := s.authorize(r, ScopeAdmin, *req.Name); err != nil {
		return err
	}
	partitions := int32(1)
	if req.Partitions != nil {
		partitions = *req.Partitions
	}
	cfg, err := topicConfigOf(&req)
	if err != nil {
		return err
	}
	if err := s.cfg.Quotas.Take(r.Context(), QuotaMutations, int64(max(partitions, 1))); err != nil {
		return err
	}
	t, err := s.topics.CreateTopic(r.Context(), *req.Name, partitions, cfg)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/api/v1/topics/"+url.PathEscape(t.Name))
	writeJSON(w, http.StatusCreated, s.toTopicJSON(t))
	return nil
}

// topicConfigOf is the configuration of a create-topic request: the
// top-level fields, and the Kafka-style config object, whose keys must not
// contradict them.
func topicConfigOf(req *createTopicRequest) (fsm.TopicConfig, error) {
	var cfg fsm.TopicConfig
	if req.RetentionMs != nil {
		cfg.RetentionMs = *req.RetentionMs
	}
	if req.RetentionBytes != nil {
		cfg.RetentionBytes = *req.RetentionBytes
	}
	if req.Compression != nil {
		cfg.Compression = *req.Compression
	}
	keys := make([]string, 0, len(req.Config))
	for k := range req.Config {
		keys = append(keys, k)
	}
	slices.Sort(keys) // deterministic error messages
	for _, k := range keys {
		raw := req.Config[k]
		if isNull(raw) {
			continue
		}
		field := "config." + k
		switch k {
		case cfgCompression:
			var c string
			if err := json.Unmarshal(raw, &c); err != nil {
				return cfg, badRequest("%s: expected a string", field)
			}
			if req.Compression != nil && *req.Compression != c {
				return cfg, badRequest("compression and config.compression disagree (%q vs %q); set one", *req.Compression, c)
			}
			cfg.Compression = c
		case cfgRetentionMs, cfgRetentionBytes:
			n, err := configInt(field, raw)
			if err != nil {
				return cfg, err
			}
			top, dst := req.RetentionMs, &cfg.RetentionMs
			topName := "retention_ms"
			if k == cfgRetentionBytes {
				top, dst, topName = req.RetentionBytes, &cfg.RetentionBytes, "retention_bytes"
			}
			if top != nil && *top != n {
				return cfg, badRequest("%s and %s disagree (%d vs %d); set one", topName, field, *top, n)
			}
			*dst = n
		case fsm.ConfigCompressionType, fsm.ConfigMaxMessageBytes, fsm.ConfigCleanupPolicy:
			v, err := configString(field, raw)
			if err != nil {
				return cfg, err
			}
			if cfg, err = cfg.WithUpdates([]fsm.ConfigEntry{{Key: k, Value: v}}); err != nil {
				return cfg, err
			}
		default:
			return cfg, badRequest("%s: unknown config key %q (supported: %s, %s)", field, k,
				cfgCompression, strings.Join(fsm.ConfigKeys, ", "))
		}
	}
	return cfg, nil
}

// configInt accepts a JSON integer or a string holding one (Kafka tools send
// config values as strings).
func configInt(field string, raw json.RawMessage) (int64, error) {
	var n int64
	if err := json.Unmarshal(raw, &n); err == nil {
		return n, nil
	}
	var str string
	if err := json.Unmarshal(raw, &str); err == nil {
		if n, err := strconv.ParseInt(strings.TrimSpace(str), 10, 64); err == nil {
			return n, nil
		}
	}
	return 0, badRequest("%s: expected an integer (or a string holding one), got %s", field, clip(string(raw)))
}

func (s *HTTPServer) handleListTopics(w http.ResponseWriter, r *http.Request) error {
	ts := s.topics.Topics()
	out := TopicsResponse{Topics: make([]TopicJSON, 0, len(ts))}
	for _, t := range ts {
		if s.cfg.Auth.TopicVisible(r.Context(), t.Name) { // a topic-restricted key sees its topics only
			out.Topics = append(out.Topics, s.toTopicJSON(t))
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *HTTPServer) handleGetTopic(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	if err := s.authorize(r, ScopeRead, name); err != nil {
		return err
	}
	t, err := s.topics.Topic(name)
	if err != nil {
		return err
	}
	return s.writeTopicDetail(w, t)
}

func (s *HTTPServer) handleDeleteTopic(w http.ResponseWriter, r *http.Request) error {
	if err := s.authorize(r, ScopeAdmin, r.PathValue("name")); err != nil {
		return err
	}
	if err := s.cfg.Quotas.Take(r.Context(), QuotaMutations, TopicMutations(s.topics, r.PathValue("name"))); err != nil {
		return err
	}
	if err := s.topics.DeleteTopic(r.Context(), r.PathValue("name")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *HTTPServer) handlePartitions(w http.ResponseWriter, r *http.Request) error {
	if err := s.authorize(r, ScopeRead, r.PathValue("name")); err != nil {
		return err
	}
	ps, err := s.topics.Partitions(r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, PartitionsResponse{Partitions: toPartitionsJSON(ps)})
	return nil
}

// writeTopicDetail answers 200 with topic t and its partitions.
func (s *HTTPServer) writeTopicDetail(w http.ResponseWriter, t fsm.Topic) error {
	ps, err := s.topics.Partitions(t.Name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, topicDetailJSON{TopicJSON: s.toTopicJSON(t), PartitionInfo: toPartitionsJSON(ps)})
	return nil
}
