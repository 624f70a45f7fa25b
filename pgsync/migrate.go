package pgsync

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"sort"
	"strconv"
	"sync"

	"github.com/jackc/pgx/v5"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrationLockKey is the pg_advisory_xact_lock key that serialises
// migrations of every StreamHouse agent on a database ("shpgsync").
const migrationLockKey int64 = 0x7368706773796e63

// migration is one embedded schema migration, migrations/NNNN_name.sql.
type migration struct {
	version int
	name    string
	sql     string
}

var migrationNameRE = regexp.MustCompile(`^(\d{4})_([a-z0-9_]+)\.sql$`)

// parseMigrations reads the migration files of fsys: names NNNN_name.sql,
// versions 1, 2, ... without holes or duplicates.
func parseMigrations(fsys fs.FS) ([]migration, error) {
	names, err := fs.Glob(fsys, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, n := range names {
		m := migrationNameRE.FindStringSubmatch(path.Base(n))
		if m == nil {
			return nil, fmt.Errorf("migration file %s is not named NNNN_name.sql", n)
		}
		b, err := fs.ReadFile(fsys, n)
		if err != nil {
			return nil, err
		}
		v, _ := strconv.Atoi(m[1])
		out = append(out, migration{version: v, name: m[2], sql: string(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	for i, m := range out {
		if m.version != i+1 {
			return nil, fmt.Errorf("migration %04d_%s: expected version %d (versions start at 1, without holes or duplicates)", m.version, m.name, i+1)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no migrations")
	}
	return out, nil
}

// embeddedMigrations are this binary's migrations; a malformed set is a
// build mistake caught by the tests.
var embeddedMigrations = sync.OnceValues(func() ([]migration, error) { return parseMigrations(migrationFiles) })

// SchemaVersion is the newest schema version this binary knows.
func SchemaVersion() int {
	ms, err := embeddedMigrations()
	if err != nil {
		return 0
	}
	return ms[len(ms)-1].version
}

// migrate brings the schema up to date in one transaction that holds the
// migration advisory lock, so agents starting at once apply each migration
// exactly once and the others then find nothing to do.
func (db *DB) migrate(ctx context.Context) error {
	ms, err := embeddedMigrations()
	if err != nil {
		return fmt.Errorf("pgsync: embedded migrations: %w", err)
	}
	known := ms[len(ms)-1].version
	tx, err := db.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	if err != nil {
		return fmt.Errorf("pgsync: migrating the schema at %s: %w", db.target, err)
	}
	defer rollback(tx)
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", migrationLockKey); err != nil {
		return fmt.Errorf("pgsync: migrating the schema at %s: taking the migration lock: %w", db.target, err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS streamhouse_schema_migrations (
	version    integer PRIMARY KEY,
	name       text NOT NULL,
	applied_at timestamptz NOT NULL DEFAULT now()
)`); err != nil {
		return fmt.Errorf("pgsync: migrating the schema at %s: %w", db.target, err)
	}
	rows, err := tx.Query(ctx, "SELECT version FROM streamhouse_schema_migrations ORDER BY version")
	if err != nil {
		return fmt.Errorf("pgsync: migrating the schema at %s: %w", db.target, err)
	}
	applied, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return fmt.Errorf("pgsync: migrating the schema at %s: %w", db.target, err)
	}
	if n := len(applied); n > 0 && int(applied[n-1]) > known {
		return fmt.Errorf("pgsync: the database at %s has schema version %d, this binary knows versions up to %d; run a newer StreamHouse: %w",
			db.target, applied[n-1], known, ErrSchemaTooNew)
	}
	for i, v := range applied {
		if int(v) != i+1 {
			return fmt.Errorf("pgsync: the database at %s records schema versions %v: version %d is missing; the schema was changed by hand", db.target, applied, i+1)
		}
	}
	var done []int
	for _, m := range ms[len(applied):] {
		if _, err := tx.Exec(ctx, m.sql); err != nil {
			return fmt.Errorf("pgsync: applying schema migration %04d_%s at %s: %w", m.version, m.name, db.target, err)
		}
		if _, err := tx.Exec(ctx, "INSERT INTO streamhouse_schema_migrations (version, name) VALUES ($1, $2)", m.version, m.name); err != nil {
			return fmt.Errorf("pgsync: recording schema migration %04d_%s at %s: %w", m.version, m.name, db.target, err)
		}
		done = append(done, m.version)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("pgsync: migrating the schema at %s: commit: %w", db.target, err)
	}
	if len(done) > 0 {
		db.log.Info("applied schema migrations", "target", db.target, "versions", done, "schema_version", known)
	} else {
		db.log.Debug("schema up to date", "target", db.target, "schema_version", known)
	}
	return nil
}
