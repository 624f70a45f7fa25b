package pgsync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// defaultConnectTimeout bounds one connection attempt when the URL sets no
// connect_timeout, so a black-holed host fails even under a context
// without deadline.
const defaultConnectTimeout = 10 * time.Second

// DB is the checkpoint database: a pgx connection pool on a database whose
// schema Open has migrated. It is safe for concurrent use.
type DB struct {
	pool   *pgxpool.Pool
	log    *slog.Logger
	target string // "host:port/database (user u)", never the password
}

// Open validates databaseURL (postgres://user:password@host:port/dbname?...
// or a key=value DSN, as libpq and pgx accept), connects, and applies the
// embedded schema migrations. ctx bounds the whole call. Errors name the
// host, database and user, never the password. log may be nil.
func Open(ctx context.Context, databaseURL string, log *slog.Logger) (*DB, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "pgsync")
	cfg, err := parseURL(databaseURL)
	if err != nil {
		return nil, err
	}
	db := &DB{log: log, target: describe(cfg.ConnConfig)}
	db.pool, err = pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("pgsync: connecting to PostgreSQL at %s: %s", db.target, scrub(err.Error(), databaseURL))
	}
	if err := db.pool.Ping(ctx); err != nil {
		db.pool.Close()
		return nil, fmt.Errorf("pgsync: connecting to PostgreSQL at %s: %w", db.target, scrubErr(err, databaseURL))
	}
	if err := db.migrate(ctx); err != nil {
		db.pool.Close()
		return nil, scrubErr(err, databaseURL)
	}
	return db, nil
}

// Ping connects to the database once and asks for the server version,
// without touching the schema or running migrations (`streamhouse agent
// --check-config`). ctx bounds the call. It returns a description of the
// target (host, port, database, user; never the password) and the server
// version; errors are worded like Open's.
func Ping(ctx context.Context, databaseURL string) (target, version string, err error) {
	cfg, err := parseURL(databaseURL)
	if err != nil {
		return "", "", err
	}
	target = describe(cfg.ConnConfig)
	conn, err := pgx.ConnectConfig(ctx, cfg.ConnConfig)
	if err != nil {
		return target, "", fmt.Errorf("pgsync: connecting to PostgreSQL at %s: %w", target, scrubErr(err, databaseURL))
	}
	defer conn.Close(context.Background())
	if err := conn.QueryRow(ctx, "SELECT current_setting('server_version')").Scan(&version); err != nil {
		return target, "", fmt.Errorf("pgsync: querying PostgreSQL at %s: %w", target, scrubErr(err, databaseURL))
	}
	return target, version, nil
}

// Close closes the connection pool. It is idempotent.
func (db *DB) Close() { db.pool.Close() }

// Target describes the database for messages: host, port, database and
// user, without the password.
func (db *DB) Target() string { return db.target }

var schemeRE = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9+.-]*$`)

// parseURL validates the URL up front and returns the pool configuration.
// ValidateURL reports whether databaseURL is a usable PostgreSQL URL,
// without connecting (a configuration check before Open is retried).
func ValidateURL(databaseURL string) error {
	_, err := parseURL(databaseURL)
	return err
}

func parseURL(raw string) (*pgxpool.Config, error) {
	if strings.TrimSpace(raw) == "" {
		return nil, errors.New("pgsync: the database URL is empty; expected postgres://user:password@host:port/dbname")
	}
	if scheme, _, ok := strings.Cut(raw, "://"); ok && schemeRE.MatchString(scheme) && scheme != "postgres" && scheme != "postgresql" {
		return nil, fmt.Errorf("pgsync: database URL %s: unsupported scheme %q; expected postgres://user:password@host:port/dbname", redact(raw), scheme)
	}
	cfg, err := pgxpool.ParseConfig(raw)
	if err != nil {
		// pgx's message quotes the URL with the password redacted (best
		// effort); scrub it again with what secrets finds.
		return nil, fmt.Errorf("pgsync: invalid database URL: %s", scrub(err.Error(), raw))
	}
	if cfg.ConnConfig.Host == "" {
		return nil, fmt.Errorf("pgsync: database URL %s names no host", redact(raw))
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = defaultConnectTimeout
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = "streamhouse"
	}
	return cfg, nil
}

func describe(cc *pgx.ConnConfig) string {
	return fmt.Sprintf("%s:%d/%s (user %s)", cc.Host, cc.Port, cc.Database, cc.User)
}

var dsnPasswordRE = regexp.MustCompile(`password\s*=\s*('(?:[^'\\]|\\.)*'|\S*)`)

// redact returns raw with its password replaced by "xxxxx", also when raw
// is too malformed to parse.
func redact(raw string) string {
	if strings.HasPrefix(raw, "postgres://") || strings.HasPrefix(raw, "postgresql://") {
		if u, err := url.Parse(raw); err == nil {
			return u.Redacted()
		}
	}
	return scrub(dsnPasswordRE.ReplaceAllString(raw, "password=xxxxx"), raw)
}

// secrets returns the password candidates in raw: the URL userinfo's
// password (raw and percent-decoded) and any password= value.
func secrets(raw string) []string {
	var out []string
	if _, rest, ok := strings.Cut(raw, "://"); ok {
		authority := rest
		if i := strings.IndexAny(authority, "/?#"); i >= 0 {
			authority = authority[:i]
		}
		if at := strings.LastIndexByte(authority, '@'); at >= 0 {
			if _, pw, ok := strings.Cut(authority[:at], ":"); ok && pw != "" {
				out = append(out, pw)
				if dec, err := url.PathUnescape(pw); err == nil && dec != pw {
					out = append(out, dec)
				}
			}
		}
	}
	for _, m := range dsnPasswordRE.FindAllStringSubmatch(raw, -1) {
		if pw := strings.Trim(m[1], "'"); pw != "" {
			out = append(out, pw)
		}
	}
	return out
}

// scrub removes raw's password from msg.
func scrub(msg, raw string) string {
	for _, s := range secrets(raw) {
		msg = strings.ReplaceAll(msg, s, "xxxxx")
	}
	return msg
}

// scrubErr returns err, or an error with the same message scrubbed of
// raw's password that still wraps err's sentinels, if the message held it.
func scrubErr(err error, raw string) error {
	msg := err.Error()
	if clean := scrub(msg, raw); clean != msg {
		return &scrubbedError{msg: clean, err: err}
	}
	return err
}

type scrubbedError struct {
	msg string
	err error
}

func (e *scrubbedError) Error() string { return e.msg }
func (e *scrubbedError) Unwrap() error { return e.err }

// rollback ends a transaction that was not committed, on a fresh context so
// that a cancelled ctx still releases the connection cleanly.
func rollback(tx pgx.Tx) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = tx.Rollback(ctx)
}
