package pgsync

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/streamhouse/streamhouse/jepsen/testkit"
)

func TestMigrationsIdempotent(t *testing.T) {
	t.Parallel()
	url := srv.NewDatabase(t)
	for range 3 {
		db := openURL(t, url)
		db.Close()
	}
	db := openURL(t, url)
	if got := queryInt(t, db, "SELECT count(*) FROM streamhouse_schema_migrations"); got != int64(SchemaVersion()) {
		t.Fatalf("%d migrations recorded, want %d", got, SchemaVersion())
	}
	if got := queryInt(t, db, "SELECT max(version) FROM streamhouse_schema_migrations"); got != int64(SchemaVersion()) {
		t.Fatalf("schema version %d, want %d", got, SchemaVersion())
	}
	// The guard row is seeded exactly once.
	if got := queryInt(t, db, "SELECT count(*) FROM streamhouse_checkpoint_guard"); got != 1 {
		t.Fatalf("%d guard rows, want 1", got)
	}
}

func TestMigrationsConcurrent(t *testing.T) {
	t.Parallel()
	url := srv.NewDatabase(t)
	const agents = 4
	var wg sync.WaitGroup
	errs := make([]error, agents)
	dbs := make([]*DB, agents)
	start := make(chan struct{})
	for i := range agents {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			dbs[i], errs[i] = Open(ctx, url, nil)
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("agent %d: %v", i, err)
		}
		t.Cleanup(dbs[i].Close)
	}
	counts := queryInts(t, dbs[0], "SELECT count(*) FROM streamhouse_schema_migrations GROUP BY version ORDER BY version")
	if len(counts) != SchemaVersion() {
		t.Fatalf("versions recorded: %d, want %d", len(counts), SchemaVersion())
	}
	for v, n := range counts {
		if n != 1 {
			t.Errorf("migration %d recorded %d times", v+1, n)
		}
	}
	if got := queryInt(t, dbs[0], "SELECT count(*) FROM streamhouse_checkpoint_guard"); got != 1 {
		t.Fatalf("%d guard rows, want 1", got)
	}
}

func TestSchemaTooNewRefused(t *testing.T) {
	t.Parallel()
	url := srv.NewDatabase(t)
	db := openURL(t, url)
	future := SchemaVersion() + 7
	execSQL(t, db, "INSERT INTO streamhouse_schema_migrations (version, name) VALUES ($1, 'from_the_future')", future)
	db.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db2, err := Open(ctx, url, nil)
	if err == nil {
		db2.Close()
		t.Fatal("Open accepted a database with a newer schema")
	}
	if !errors.Is(err, ErrSchemaTooNew) {
		t.Fatalf("err = %v, want ErrSchemaTooNew", err)
	}
	for _, want := range []string{strconv.Itoa(future), strconv.Itoa(SchemaVersion())} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name version %s", err, want)
		}
	}
}

func TestParseMigrations(t *testing.T) {
	ms, err := embeddedMigrations()
	if err != nil {
		t.Fatalf("embedded migrations: %v", err)
	}
	if ms[0].version != 1 || ms[0].name != "init" || !strings.Contains(ms[0].sql, "CREATE TABLE streamhouse_segments") {
		t.Fatalf("first migration = %d %s", ms[0].version, ms[0].name)
	}
	file := func(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s)} }
	for name, fsys := range map[string]fstest.MapFS{
		"hole":      {"migrations/0001_a.sql": file("x"), "migrations/0003_c.sql": file("x")},
		"duplicate": {"migrations/0001_a.sql": file("x"), "migrations/0001_b.sql": file("x")},
		"bad name":  {"migrations/1_a.sql": file("x")},
		"no start":  {"migrations/0002_a.sql": file("x")},
		"empty":     {},
	} {
		if _, err := parseMigrations(fsys); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	got, err := parseMigrations(fstest.MapFS{"migrations/0002_b.sql": file("two"), "migrations/0001_a.sql": file("one")})
	if err != nil || len(got) != 2 || got[0].sql != "one" || got[1].name != "b" {
		t.Fatalf("parseMigrations = %+v, %v", got, err)
	}
}

const secret = "s3cr3t-Pa55"

func TestOpenBadURL(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ url, want string }{
		{"", "empty"},
		{"   ", "empty"},
		{"mysql://u:" + secret + "@db.example:3306/x", "unsupported scheme"},
		{"postgres://u:" + secret + "@127.0.0.1:notaport/x", "invalid database URL"},
		{"postgres://u:" + secret + "@[::1/x", "invalid database URL"},
		{"host=127.0.0.1 port=nope password=" + secret, "invalid database URL"},
		{"host=127.0.0.1 port=nope password='" + secret + "'", "invalid database URL"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		db, err := Open(ctx, c.url, nil)
		cancel()
		if err == nil {
			db.Close()
			t.Errorf("Open(%q) succeeded", c.url)
			continue
		}
		t.Logf("Open(%q): %v", c.url, err)
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("Open(%q) = %q, want it to say %q", c.url, err, c.want)
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("Open(%q) error leaks the password: %q", c.url, err)
		}
	}
}

func TestOpenUnreachable(t *testing.T) {
	t.Parallel()
	// A port nobody listens on: refused at once; a "server" that accepts
	// connections and never answers: only the context bounds the wait.
	closedAddr, hungAddr := testkit.ClosedAddr(t), testkit.StartHungServer(t).Addr

	for _, c := range []struct {
		name, addr string
		timeout    time.Duration
	}{
		{"refused", closedAddr, 10 * time.Second},
		{"hung", hungAddr, 500 * time.Millisecond},
	} {
		url := "postgres://streamhouse:" + secret + "@" + c.addr + "/meta?sslmode=disable"
		ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
		began := time.Now()
		db, err := Open(ctx, url, nil)
		took := time.Since(began)
		cancel()
		if err == nil {
			db.Close()
			t.Fatalf("%s: Open succeeded", c.name)
		}
		if took > c.timeout+2*time.Second {
			t.Errorf("%s: Open took %v with a %v context", c.name, took, c.timeout)
		}
		msg := err.Error()
		t.Logf("%s: %v (after %v)", c.name, msg, took.Round(time.Millisecond))
		if !strings.Contains(msg, c.addr) || !strings.Contains(msg, "meta") {
			t.Errorf("%s: error %q does not name the host and database", c.name, msg)
		}
		if strings.Contains(msg, secret) {
			t.Errorf("%s: error leaks the password: %q", c.name, msg)
		}
	}
}

func TestOpenMissingDatabase(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	db, err := Open(ctx, srv.DatabaseURL("no_such_database"), nil)
	if err == nil {
		db.Close()
		t.Fatal("Open succeeded on a missing database")
	}
	if !strings.Contains(err.Error(), "no_such_database") || !strings.Contains(err.Error(), "127.0.0.1:"+strconv.Itoa(srv.Port)) {
		t.Fatalf("error %q does not name the database and host", err)
	}
}

func TestRedact(t *testing.T) {
	for _, raw := range []string{
		"postgres://u:" + secret + "@h:5432/db",
		"postgresql://u:" + secret + "@h/db?sslmode=require",
		"postgres://u:" + secret + "@[::1/db",
		"host=h password=" + secret + " dbname=x",
		"host=h password='" + secret + "' dbname=x",
	} {
		if got := redact(raw); strings.Contains(got, secret) || !strings.Contains(got, "xxxxx") {
			t.Errorf("redact(%q) = %q", raw, got)
		}
	}
	if got := redact("postgres://u@h/db"); got != "postgres://u@h/db" {
		t.Errorf("redact without password = %q", got)
	}
}
