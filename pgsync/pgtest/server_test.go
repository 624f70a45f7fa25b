package pgtest

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// withConn runs f on a fresh connection to url with a 10 s deadline and
// fails the test, naming sql, if it errs.
func withConn(t *testing.T, url, sql string, f func(context.Context, *pgx.Conn) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connecting to %s: %v", url, err)
	}
	defer conn.Close(context.Background())
	if err := f(ctx, conn); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func query(t *testing.T, url, sql string) string {
	t.Helper()
	var out string
	withConn(t, url, sql, func(ctx context.Context, c *pgx.Conn) error { return c.QueryRow(ctx, sql).Scan(&out) })
	return out
}

func execSQL(t *testing.T, url, sql string) {
	t.Helper()
	withConn(t, url, sql, func(ctx context.Context, c *pgx.Conn) error {
		_, err := c.Exec(ctx, sql)
		return err
	})
}

func TestServerLifecycle(t *testing.T) {
	s := Start(t)
	if !strings.HasPrefix(s.URL(), "postgres://postgres@127.0.0.1:") {
		t.Fatalf("URL = %s", s.URL())
	}
	if got := query(t, s.URL(), "SELECT current_setting('fsync')"); got != "off" {
		t.Errorf("fsync = %s, want off", got)
	}
	if got := query(t, s.URL(), "SELECT current_setting('server_encoding')"); got != "UTF8" {
		t.Errorf("server_encoding = %s, want UTF8", got)
	}
	// The unix socket lives inside the server directory.
	if _, err := os.Stat(filepath.Join(s.sockDir, ".s.PGSQL."+strconv.Itoa(s.Port))); err != nil {
		t.Errorf("unix socket: %v", err)
	}
	if s.ownSockDir {
		t.Errorf("socket dir %s outside %s", s.sockDir, s.Dir)
	}

	// Databases are isolated from each other.
	a, b := s.NewDatabase(t), s.NewDatabase(t)
	if a == b {
		t.Fatalf("NewDatabase returned %s twice", a)
	}
	execSQL(t, a, "CREATE TABLE only_in_a (x int)")
	if got := query(t, b, "SELECT count(*)::text FROM pg_tables WHERE tablename = 'only_in_a'"); got != "0" {
		t.Errorf("table of database a visible in b")
	}
	execSQL(t, a, "INSERT INTO only_in_a VALUES (42)")

	// Stop: connections are refused; Restart: same port, same data.
	port := s.Port
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if s.Running() {
		t.Fatal("Running after Stop")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if conn, err := pgx.Connect(ctx, a); err == nil {
		conn.Close(ctx)
		t.Fatal("connected to a stopped server")
	}
	if err := s.Stop(); err != nil { // stopping twice is fine
		t.Fatal(err)
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	if s.Port != port {
		t.Fatalf("port changed from %d to %d", port, s.Port)
	}
	if got := query(t, a, "SELECT x::text FROM only_in_a"); got != "42" {
		t.Fatalf("after restart: x = %s, want 42", got)
	}

	// Close stops the server and removes its directory; twice is fine.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.Dir); !os.IsNotExist(err) {
		t.Fatalf("directory %s still there after Close: %v", s.Dir, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Restart(); err == nil {
		t.Fatal("Restart after Close succeeded")
	}
}

func TestLongDirectoryMovesSocket(t *testing.T) {
	base, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if os.Geteuid() == 0 {
		if err := os.Chmod(base, 0o755); err != nil { // let the postgres user reach dir
			t.Fatal(err)
		}
	}
	dir := filepath.Join(base, strings.Repeat("d", 90))
	s, err := StartServer(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !s.ownSockDir {
		t.Fatalf("socket dir %s not moved", s.sockDir)
	}
	if got := query(t, s.URL(), "SELECT 'up'"); got != "up" {
		t.Fatal(got)
	}
	sock := s.sockDir
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Fatalf("socket dir %s left behind", sock)
	}
}

func TestBinariesFromEnv(t *testing.T) {
	t.Setenv(BinEnv, t.TempDir())
	_, _, err := Binaries()
	if err == nil || !strings.Contains(err.Error(), BinEnv) {
		t.Fatalf("Binaries with an empty %s: err = %v, want an error naming it", BinEnv, err)
	}
}

func TestVersionOrder(t *testing.T) {
	for _, c := range []struct {
		a, b string
		less bool
	}{{"9.6", "15", true}, {"15", "16", true}, {"16", "15", false}, {"15", "15.1", true}} {
		a, _ := parseVersion(c.a)
		b, _ := parseVersion(c.b)
		if got := versionLess(a, b); got != c.less {
			t.Errorf("versionLess(%s, %s) = %v", c.a, c.b, got)
		}
	}
}
