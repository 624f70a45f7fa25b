package fsm

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Topic configuration keys, named as Kafka names them (AlterTopicConfig,
// the APIs' describe output, and later the Kafka protocol's
// DescribeConfigs/IncrementalAlterConfigs). Each maps onto a TopicConfig
// field:
//
//	retention.ms       RetentionMs     (-1 or 0: keep forever; described as -1)
//	retention.bytes    RetentionBytes  (-1 or 0: unlimited; described as -1)
//	compression.type   Compression     (zstd, lz4, none; "uncompressed" = none)
//	max.message.bytes  MaxMessageBytes (0: the agent's MAX_RECORD_BYTES)
//	cleanup.policy     —               (only "delete": there is no compaction)
const (
	ConfigRetentionMs     = "retention.ms"
	ConfigRetentionBytes  = "retention.bytes"
	ConfigCompressionType = "compression.type"
	ConfigMaxMessageBytes = "max.message.bytes"
	ConfigCleanupPolicy   = "cleanup.policy"
)

// ConfigKeys are the supported keys, sorted.
var ConfigKeys = []string{ConfigCleanupPolicy, ConfigCompressionType, ConfigMaxMessageBytes, ConfigRetentionBytes, ConfigRetentionMs}

// MaxMessageBytesLimit bounds max.message.bytes (the largest record an
// agent can be configured to accept, MAX_RECORD_BYTES ≤ 64 MiB).
const MaxMessageBytesLimit = 64 << 20

// DefaultCompression is what an empty TopicConfig.Compression means.
const DefaultCompression = "zstd"

// ConfigError is a topic configuration key or value the cluster does not
// accept. It wraps ErrInvalidArgument (HTTP 400, gRPC InvalidArgument).
type ConfigError struct {
	Key    string
	Value  string
	Reason string
}

func (e *ConfigError) Error() string {
	if e.Key == "" {
		return "config: " + e.Reason
	}
	if e.Value == "" {
		return fmt.Sprintf("config %q: %s", e.Key, e.Reason)
	}
	return fmt.Sprintf("config %s=%q: %s", e.Key, e.Value, e.Reason)
}

// Unwrap makes errors.Is(err, ErrInvalidArgument) true.
func (e *ConfigError) Unwrap() error { return ErrInvalidArgument }

// ConfigEntry is one key set to a value, in Kafka's string form.
type ConfigEntry struct {
	Key   string
	Value string
}

// ConfigValue is one key of a topic's described configuration. Default is
// true when the topic does not set the key (Value is then the default).
type ConfigValue struct {
	Key     string
	Value   string
	Default bool
}

// ConfigEntries turns a key → value map into the sorted entries
// AlterTopicConfig carries, checking each key and value (a *ConfigError
// for the first bad one, in key order). An empty map is an error.
func ConfigEntries(set map[string]string) ([]ConfigEntry, error) {
	if len(set) == 0 {
		return nil, &ConfigError{Key: "", Reason: fmt.Sprintf("no keys given (supported: %s)", strings.Join(ConfigKeys, ", "))}
	}
	out := make([]ConfigEntry, 0, len(set))
	for k, v := range set {
		out = append(out, ConfigEntry{Key: k, Value: v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	if _, err := (TopicConfig{}).WithUpdates(out); err != nil {
		return nil, err
	}
	return out, nil
}

// WithUpdates returns c with the entries applied in order (incremental:
// keys not named keep their value). Pure and deterministic, so Apply uses
// it as well as the proposer.
func (c TopicConfig) WithUpdates(set []ConfigEntry) (TopicConfig, error) {
	for _, e := range set {
		if err := c.set(e.Key, e.Value); err != nil {
			return TopicConfig{}, err
		}
	}
	return c, nil
}

func (c *TopicConfig) set(key, value string) error {
	switch key {
	case ConfigRetentionMs:
		n, err := unlimitedInt(key, value)
		c.RetentionMs = n
		return err
	case ConfigRetentionBytes:
		n, err := unlimitedInt(key, value)
		c.RetentionBytes = n
		return err
	case ConfigCompressionType:
		v := value
		if v == "uncompressed" {
			v = "none"
		}
		if v == "" || ValidateCompression(v) != nil {
			return &ConfigError{Key: key, Value: value, Reason: "use zstd, lz4 or none (uncompressed)"}
		}
		c.Compression = v
	case ConfigMaxMessageBytes:
		n, err := strconv.ParseInt(value, 10, 64)
		if err != nil || n < 0 || n > MaxMessageBytesLimit {
			return &ConfigError{Key: key, Value: value, Reason: fmt.Sprintf("expected an integer from 1 to %d (0: the agent's MAX_RECORD_BYTES)", MaxMessageBytesLimit)}
		}
		c.MaxMessageBytes = n
	case ConfigCleanupPolicy:
		if value != "delete" {
			return &ConfigError{Key: key, Value: value, Reason: "only \"delete\" is supported (StreamHouse does not compact topics)"}
		}
	default:
		return &ConfigError{Key: key, Reason: fmt.Sprintf("unknown key (supported: %s)", strings.Join(ConfigKeys, ", "))}
	}
	return nil
}

// unlimitedInt parses a retention value: a non-negative integer, or -1 for
// unlimited (stored as 0, which is what CreateTopic has always meant).
func unlimitedInt(key, value string) (int64, error) {
	n, err := strconv.ParseInt(value, 10, 64)
	if err != nil || n < -1 {
		return 0, &ConfigError{Key: key, Value: value, Reason: "expected a non-negative integer, or -1 for unlimited"}
	}
	return max(n, 0), nil
}

// Describe lists every supported key with the topic's value, sorted by key.
// agentMaxRecordBytes is what max.message.bytes means when the topic does
// not set it (the describing agent's MAX_RECORD_BYTES).
func (c TopicConfig) Describe(agentMaxRecordBytes int64) []ConfigValue {
	unlimited := func(n int64) string {
		if n <= 0 {
			return "-1"
		}
		return strconv.FormatInt(n, 10)
	}
	comp := c.Compression
	if comp == "" {
		comp = DefaultCompression
	}
	mmb := c.MaxMessageBytes
	if mmb == 0 {
		mmb = agentMaxRecordBytes
	}
	return []ConfigValue{
		{Key: ConfigCleanupPolicy, Value: "delete", Default: true},
		{Key: ConfigCompressionType, Value: comp, Default: comp == DefaultCompression},
		{Key: ConfigMaxMessageBytes, Value: strconv.FormatInt(mmb, 10), Default: c.MaxMessageBytes == 0},
		{Key: ConfigRetentionBytes, Value: unlimited(c.RetentionBytes), Default: c.RetentionBytes <= 0},
		{Key: ConfigRetentionMs, Value: unlimited(c.RetentionMs), Default: c.RetentionMs <= 0},
	}
}

// RecordLimit is the largest record (Record.Size) a topic accepts on an
// agent whose own limit is agentLimit (0: none): the smaller of the two
// when the topic sets max.message.bytes. A topic cannot raise the agent's
// limit: the transports size their requests by it.
func (c TopicConfig) RecordLimit(agentLimit int) int {
	if m := int(c.MaxMessageBytes); m > 0 && (agentLimit <= 0 || m < agentLimit) {
		return m
	}
	return agentLimit
}
