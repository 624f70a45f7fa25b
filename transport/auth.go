package transport

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/streamhouse/streamhouse/fsm"
)

// API keys: bearer tokens that protect the public REST and gRPC APIs. The
// agent never stores a token, only its SHA-256; a token is 32 random bytes,
// so a hash cannot be brute-forced back into it. Keys come from a file the
// operator distributes (API_KEYS_FILE), one per line:
//
//	name:scope:topics:sha256hex[:quotas]
//
// scope is read, write or admin (admin ⊇ write ⊇ read); topics is "*" (all
// topics) or a comma-separated list whose entries may end in "*" (a
// prefix). The optional quotas field overrides the agent's per-key quota
// defaults for this key: comma-separated name=rate pairs, names from
// producer_byte_rate, consumer_byte_rate, controller_mutation_rate, rate
// per second (0 = unlimited). See docs/security.md for the operation →
// scope table and the quotas.

// Sentinel errors of authentication and authorization. They map to 401
// unauthenticated / 403 permission_denied on REST and to Unauthenticated /
// PermissionDenied on gRPC.
var (
	ErrUnauthenticated  = errors.New("unauthenticated")
	ErrPermissionDenied = errors.New("permission denied")
	// ErrMissingToken: the request carried no bearer token at all.
	ErrMissingToken = fmt.Errorf("%w: missing bearer token: send the header \"Authorization: Bearer\" followed by an API key", ErrUnauthenticated)
)

// Scope is what an API key may do. Scopes are ordered: a key may do
// everything a lower scope may.
type Scope int

// Scopes, lowest first.
const (
	ScopeRead  Scope = iota + 1 // consume, describe, list, metadata, cluster status
	ScopeWrite                  // + produce, InitProducer, group commit/reset/delete
	ScopeAdmin                  // + topic create/delete
)

func (s Scope) String() string {
	switch s {
	case ScopeRead:
		return "read"
	case ScopeWrite:
		return "write"
	case ScopeAdmin:
		return "admin"
	}
	return fmt.Sprintf("scope(%d)", int(s))
}

// ParseScope parses "read", "write" or "admin".
func ParseScope(s string) (Scope, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "read":
		return ScopeRead, nil
	case "write":
		return ScopeWrite, nil
	case "admin":
		return ScopeAdmin, nil
	}
	return 0, fmt.Errorf("unknown scope %q (use read, write or admin)", s)
}

// APIKey is one entry of the keys file: never the token, only its hash.
type APIKey struct {
	Name  string
	Scope Scope
	// Topics restricts the key to these topics (an entry ending in "*" is
	// a prefix); nil = every topic.
	Topics []string
	Hash   [sha256.Size]byte
	// Quotas overrides the agent's per-key quota defaults (per second,
	// 0 = unlimited); nil = the defaults.
	Quotas map[QuotaKind]float64
}

// AllTopics reports whether the key is not restricted to topics.
func (k *APIKey) AllTopics() bool { return k.Topics == nil }

// AllowsTopic reports whether the key's topic list covers topic.
func (k *APIKey) AllowsTopic(topic string) bool {
	if k.Topics == nil {
		return true
	}
	for _, t := range k.Topics {
		if p, ok := strings.CutSuffix(t, "*"); ok {
			if strings.HasPrefix(topic, p) {
				return true
			}
		} else if t == topic {
			return true
		}
	}
	return false
}

// Line is the key's line in the keys file.
func (k *APIKey) Line() string {
	topics := "*"
	if k.Topics != nil {
		topics = strings.Join(k.Topics, ",")
	}
	line := k.Name + ":" + k.Scope.String() + ":" + topics + ":" + hex.EncodeToString(k.Hash[:])
	if len(k.Quotas) > 0 {
		line += ":" + formatKeyQuotas(k.Quotas)
	}
	return line
}

// tokenPrefix starts every token StreamHouse generates, so secret scanners
// and humans can recognise one.
const tokenPrefix = "sh_"

var keyNameRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// HashToken returns the SHA-256 of a token, as stored in the keys file.
func HashToken(token string) [sha256.Size]byte { return sha256.Sum256([]byte(token)) }

// NewAPIKey generates a token (32 random bytes, base64url, prefixed "sh_")
// and the key entry that accepts it. The token is shown once; only the
// entry is stored. topics nil = every topic.
func NewAPIKey(name string, scope Scope, topics []string) (token string, key APIKey, err error) {
	key = APIKey{Name: name, Scope: scope, Topics: topics}
	if err := key.validate(); err != nil {
		return "", APIKey{}, err
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", APIKey{}, err
	}
	token = tokenPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	key.Hash = HashToken(token)
	return token, key, nil
}

func (k *APIKey) validate() error {
	if !keyNameRE.MatchString(k.Name) {
		return fmt.Errorf("key name %q: use 1-64 characters from [A-Za-z0-9._-]", k.Name)
	}
	if k.Scope < ScopeRead || k.Scope > ScopeAdmin {
		return fmt.Errorf("key %q: invalid scope %v", k.Name, k.Scope)
	}
	if k.Topics != nil && len(k.Topics) == 0 {
		return fmt.Errorf("key %q: empty topic list (use * for every topic)", k.Name)
	}
	for _, t := range k.Topics {
		name, prefix := strings.CutSuffix(t, "*")
		if prefix && name == "" {
			return fmt.Errorf("key %q: use * alone, not inside a list", k.Name)
		}
		if prefix {
			name += "x" // a prefix need not be a whole valid name
		}
		if err := fsm.ValidateTopicName(name); err != nil {
			return fmt.Errorf("key %q: topic %q: %w", k.Name, t, err)
		}
	}
	return nil
}

// ParseTopicList parses the topics field of a key: "*" (or "") = every
// topic (nil), else a comma-separated list.
func ParseTopicList(s string) []string {
	s = strings.TrimSpace(s)
	if s == "" || s == "*" {
		return nil
	}
	var out []string
	for _, t := range strings.Split(s, ",") {
		if t = strings.TrimSpace(t); t != "" && !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	if out == nil {
		out = []string{}
	}
	return out
}

// ParseAPIKeys reads a keys file: one name:scope:topics:sha256hex per
// line; blank lines and lines starting with # are ignored. Errors name
// the line. Names must be unique, and so must hashes. It is strict: any
// bad line fails the whole file (startup uses it).
func ParseAPIKeys(r io.Reader) ([]APIKey, error) {
	keys, bad, err := ParseAPIKeysLenient(r)
	if err != nil {
		return nil, err
	}
	if len(bad) > 0 {
		return nil, bad[0]
	}
	return keys, nil
}

// ParseAPIKeysLenient reads a keys file like ParseAPIKeys but keeps going
// past bad lines: keys are the valid lines, refused holds one error per
// line it refused (malformed, or a name or hash already used by an earlier
// valid line). err is set only when r cannot be read.
func ParseAPIKeysLenient(r io.Reader) (keys []APIKey, refused []error, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	names := map[string]int{}
	hashes := map[[sha256.Size]byte]int{}
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, err := parseAPIKeyLine(line)
		if err == nil {
			if prev, ok := names[k.Name]; ok {
				err = fmt.Errorf("key name %q already used on line %d", k.Name, prev)
			} else if prev, ok := hashes[k.Hash]; ok {
				err = fmt.Errorf("the same token hash is already on line %d", prev)
			}
		}
		if err != nil {
			refused = append(refused, fmt.Errorf("line %d: %w", n, err))
			continue
		}
		names[k.Name], hashes[k.Hash] = n, n
		keys = append(keys, k)
	}
	if err := sc.Err(); err != nil {
		return nil, nil, err
	}
	return keys, refused, nil
}

// parseAPIKeyLine parses one name:scope:topics:sha256hex[:quotas] line.
func parseAPIKeyLine(line string) (APIKey, error) {
	parts := strings.Split(line, ":")
	if len(parts) != 4 && len(parts) != 5 {
		return APIKey{}, fmt.Errorf("expected name:scope:topics:sha256hex[:quotas] (4 fields, or 5 with the optional quotas field, separated by ':'), got %d fields", len(parts))
	}
	scope, err := ParseScope(parts[1])
	if err != nil {
		return APIKey{}, err
	}
	if strings.TrimSpace(parts[2]) == "" {
		return APIKey{}, errors.New("empty topics field (use * for every topic, or a comma-separated list)")
	}
	k := APIKey{Name: strings.TrimSpace(parts[0]), Scope: scope, Topics: ParseTopicList(parts[2])}
	h, err := hex.DecodeString(strings.TrimSpace(parts[3]))
	if err != nil || len(h) != sha256.Size {
		return APIKey{}, errors.New("the hash must be 64 hex digits (the SHA-256 of the token; `streamhouse apikey create` prints the line)")
	}
	copy(k.Hash[:], h)
	if len(parts) == 5 {
		if k.Quotas, err = parseKeyQuotas(parts[4]); err != nil {
			return APIKey{}, err
		}
	}
	if err := k.validate(); err != nil {
		return APIKey{}, err
	}
	return k, nil
}

// LoadAPIKeysFile reads and parses a keys file strictly (ParseAPIKeys).
func LoadAPIKeysFile(path string) ([]APIKey, error) {
	keys, refused, err := LoadAPIKeysFileLenient(path)
	if err != nil {
		return nil, err
	}
	if len(refused) > 0 {
		return nil, fmt.Errorf("%s: %w", path, refused[0])
	}
	return keys, nil
}

// LoadAPIKeysFileLenient reads a keys file with ParseAPIKeysLenient. err
// is set when the file cannot be opened or read (a deleted file:
// errors.Is(err, fs.ErrNotExist)).
func LoadAPIKeysFileLenient(path string) (keys []APIKey, refused []error, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	keys, refused, err = ParseAPIKeysLenient(f)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return keys, refused, nil
}

// Authenticator checks bearer tokens against a set of API keys and the
// scopes of the callers. A nil *Authenticator allows everything (auth
// disabled). The key set can be replaced at any time (SetKeys); it is safe
// for concurrent use.
type Authenticator struct {
	keys atomic.Pointer[[]APIKey]
	// MetricsAuth: GET /metrics needs a read key (default: open).
	metricsAuth bool
}

// NewAuthenticator returns an Authenticator over keys. An empty set
// refuses every token.
func NewAuthenticator(keys []APIKey, metricsAuth bool) *Authenticator {
	a := &Authenticator{metricsAuth: metricsAuth}
	a.SetKeys(keys)
	return a
}

// SetKeys replaces the key set (e.g. after the keys file changed).
func (a *Authenticator) SetKeys(keys []APIKey) {
	k := slices.Clone(keys)
	a.keys.Store(&k)
}

// Keys returns the current key set.
func (a *Authenticator) Keys() []APIKey {
	if a == nil {
		return nil
	}
	return slices.Clone(*a.keys.Load())
}

// Enabled reports whether requests must carry a token.
func (a *Authenticator) Enabled() bool { return a != nil }

// MetricsProtected reports whether GET /metrics needs a read key.
func (a *Authenticator) MetricsProtected() bool { return a != nil && a.metricsAuth }

// Principal is the authenticated caller: the key its token matched.
type Principal struct{ Key APIKey }

// Authenticate finds the key of a token. Every key's hash is compared in
// constant time, and all of them are compared, so the time taken does not
// depend on which key (if any) matched. An unknown token wraps
// ErrUnauthenticated.
func (a *Authenticator) Authenticate(token string) (*Principal, error) {
	if token == "" {
		return nil, ErrMissingToken
	}
	h := HashToken(token)
	match := -1
	keys := *a.keys.Load()
	for i := range keys {
		if subtle.ConstantTimeCompare(keys[i].Hash[:], h[:]) == 1 {
			match = i
		}
	}
	if match < 0 {
		return nil, fmt.Errorf("%w: invalid API key (unknown or revoked token)", ErrUnauthenticated)
	}
	return &Principal{Key: keys[match]}, nil
}

// KeyByHash returns the key in force whose token hash is h: a connection
// that authenticated once (the Kafka listener's SASL) looks its key up again
// on every request, so a reloaded keys file applies to it at once. false
// when no key in force has that hash (revoked).
func (a *Authenticator) KeyByHash(h [sha256.Size]byte) (APIKey, bool) {
	keys := *a.keys.Load()
	for i := range keys {
		if keys[i].Hash == h {
			return keys[i], true
		}
	}
	return APIKey{}, false
}

// BearerToken extracts the token of an Authorization value "Bearer <token>"
// (the scheme is case-insensitive); ok is false when there is none.
func BearerToken(header string) (string, bool) {
	scheme, token, found := strings.Cut(strings.TrimSpace(header), " ")
	if !found || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

type principalKey struct{}

// WithPrincipal returns ctx carrying the authenticated caller.
func WithPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the caller WithPrincipal stored.
func PrincipalFrom(ctx context.Context) (*Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(*Principal)
	return p, ok && p != nil
}

// Authorize checks that the caller in ctx has at least scope and, for
// every topic given, that its key covers the topic. With auth disabled
// (nil receiver) it allows everything; with auth enabled, a context without
// a principal is unauthenticated. Refusals wrap ErrPermissionDenied (or
// ErrUnauthenticated) and say what was missing.
func (a *Authenticator) Authorize(ctx context.Context, scope Scope, topics ...string) error {
	if a == nil {
		return nil
	}
	p, ok := PrincipalFrom(ctx)
	if !ok {
		return ErrMissingToken
	}
	if p.Key.Scope < scope {
		return fmt.Errorf("%w: API key %q has scope %s; this operation needs %s", ErrPermissionDenied, p.Key.Name, p.Key.Scope, scope)
	}
	for _, t := range topics {
		if !p.Key.AllowsTopic(t) {
			return fmt.Errorf("%w: API key %q may not access topic %q", ErrPermissionDenied, p.Key.Name, t)
		}
	}
	return nil
}

// TopicVisible reports whether the caller may see topic in listings (auth
// disabled: always).
func (a *Authenticator) TopicVisible(ctx context.Context, topic string) bool {
	if a == nil {
		return true
	}
	p, ok := PrincipalFrom(ctx)
	return ok && p.Key.AllowsTopic(topic)
}

// TopicsVisible reports whether every topic is visible to the caller.
func (a *Authenticator) TopicsVisible(ctx context.Context, topics []string) bool {
	for _, t := range topics {
		if !a.TopicVisible(ctx, t) {
			return false
		}
	}
	return true
}
