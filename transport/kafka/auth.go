package kafka

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/streamhouse/streamhouse/transport"
)

// Operation is what a request does to a resource (a topic, or the cluster
// when the topic is ""). Each maps to the API key scope it needs, as on
// REST and gRPC (docs/security.md): reading and describing need read,
// writing needs write, creating, deleting and altering need admin.
type Operation int

// Operations.
const (
	OpRead Operation = iota + 1
	OpWrite
	OpDescribe
	OpCreate
	OpDelete
	OpAlter
)

func (o Operation) String() string {
	switch o {
	case OpRead:
		return "read"
	case OpWrite:
		return "write"
	case OpDescribe:
		return "describe"
	case OpCreate:
		return "create"
	case OpDelete:
		return "delete"
	case OpAlter:
		return "alter"
	}
	return fmt.Sprintf("operation(%d)", int(o))
}

// scope is the API key scope the operation needs.
func (o Operation) scope() transport.Scope {
	switch o {
	case OpRead, OpDescribe:
		return transport.ScopeRead
	case OpWrite:
		return transport.ScopeWrite
	}
	return transport.ScopeAdmin
}

// errDenied is wrapped by every authorization refusal.
var errDenied = errors.New("not authorized")

// authError is a refusal with the Kafka error code the client gets:
// TOPIC_AUTHORIZATION_FAILED for a topic, CLUSTER_AUTHORIZATION_FAILED for
// the cluster. errorCode maps it; callers authorizing a consumer group
// answer GROUP_AUTHORIZATION_FAILED for any error wrapping errDenied.
type authError struct {
	code *kerr.Error
	msg  string
}

func (e *authError) Error() string { return e.code.Message + ": " + e.msg }
func (e *authError) Unwrap() error { return errDenied }

// authorize checks that c's API key may do op on topic ("" = the cluster).
// Without API keys (Config.Auth nil) everything is allowed. The key is
// looked up again on every call, so an edit of API_KEYS_FILE (a revoked
// key, a narrower scope or topic list) applies to open connections.
func (s *Server) authorize(c *Conn, op Operation, topic string) error {
	if s.cfg.Auth == nil {
		return nil
	}
	code := kerr.ClusterAuthorizationFailed
	if topic != "" {
		code = kerr.TopicAuthorizationFailed
	}
	if !c.sasl.authenticated {
		return &authError{code: code, msg: "the connection is not authenticated (use SASL/PLAIN with an API key as the password)"}
	}
	k, ok := s.cfg.Auth.KeyByHash(c.sasl.keyHash)
	if !ok {
		return &authError{code: code, msg: fmt.Sprintf("API key %q was revoked", c.Principal)}
	}
	if need := op.scope(); k.Scope < need {
		return &authError{code: code, msg: fmt.Sprintf("API key %q has scope %s; %s needs %s", k.Name, k.Scope, op, need)}
	}
	if topic != "" && !k.AllowsTopic(topic) {
		return &authError{code: code, msg: fmt.Sprintf("API key %q may not access topic %q", k.Name, topic)}
	}
	return nil
}

// withKey returns ctx carrying c's API key as the transport principal (for
// the per-key quotas, transport.Quotas), or ctx when there is none.
func (s *Server) withKey(ctx context.Context, c *Conn) context.Context {
	if s.cfg.Auth == nil || !c.sasl.authenticated {
		return ctx
	}
	k, ok := s.cfg.Auth.KeyByHash(c.sasl.keyHash)
	if !ok {
		return ctx
	}
	return transport.WithPrincipal(ctx, &transport.Principal{Key: k})
}

// takeMutations charges n controller mutations (partitions created or
// deleted) to c's key (KEY_MUTATIONS_PER_SEC); over the quota it refuses
// with THROTTLING_QUOTA_EXCEEDED and charges nothing.
func (s *Server) takeMutations(ctx context.Context, c *Conn, n int64) error {
	err := s.cfg.Quotas.Take(s.withKey(ctx, c), transport.QuotaMutations, max(n, 1))
	var qe *transport.QuotaError
	if errors.As(err, &qe) {
		return refuse(kerr.ThrottlingQuotaExceeded, "%v", err)
	}
	return err
}

// Kafka ACL operation codes, for the authorized-operations bit sets of
// Metadata and DescribeCluster.
const (
	aclRead            = 3
	aclWrite           = 4
	aclCreate          = 5
	aclDelete          = 6
	aclAlter           = 7
	aclDescribe        = 8
	aclDescribeConfigs = 10
	aclAlterConfigs    = 11
)

// topicOperations is the Kafka authorized-operations bit set of c on topic.
func (s *Server) topicOperations(c *Conn, topic string) int32 {
	var bits int32
	for _, p := range []struct {
		op  Operation
		acl []int
	}{
		{OpRead, []int{aclRead}}, {OpWrite, []int{aclWrite}}, {OpDescribe, []int{aclDescribe, aclDescribeConfigs}},
		{OpCreate, []int{aclCreate}}, {OpDelete, []int{aclDelete}}, {OpAlter, []int{aclAlter, aclAlterConfigs}},
	} {
		if s.authorize(c, p.op, topic) == nil {
			for _, a := range p.acl {
				bits |= 1 << a
			}
		}
	}
	return bits
}
