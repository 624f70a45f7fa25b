package pgtest

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/streamhouse/streamhouse/jepsen/proc"
)

const (
	// BinEnv names the environment variable that points at the directory
	// holding initdb and postgres; see Binaries.
	BinEnv = "PG_BIN"
	// Superuser is the server's superuser role (trust authentication, no
	// password).
	Superuser = "postgres"
	// osUser is the OS account the server runs as when the test runs as
	// root.
	osUser = "postgres"

	readyTimeout = 30 * time.Second // a starting server must accept connections within this
	stopTimeout  = 30 * time.Second // fast shutdown, then SIGKILL
	maxSocketLen = 100              // sun_path is 108 bytes on Linux, 104 on BSDs
)

// Server is a PostgreSQL server process started for tests. Its methods are
// safe for concurrent use.
type Server struct {
	Dir     string // the server's directory: data/, sock/, postgres.log
	DataDir string // the cluster directory initdb created (kept across Restart)
	LogPath string // initdb's and the server's output
	Port    int    // TCP port on 127.0.0.1 (kept across Restart)

	initdb, postgres string
	cred             *syscall.Credential // nil: run as the current user
	sockDir          string
	ownSockDir       bool // sockDir lives outside Dir (Dir's path was too long)

	mu     sync.Mutex
	p      *proc.Proc // nil while stopped
	closed bool

	dbs atomic.Int64
}

// Binaries locates initdb and postgres: in $PG_BIN if set, else in the
// highest-versioned /usr/lib/postgresql/<version>/bin that has both, else on
// PATH.
func Binaries() (initdb, postgres string, err error) {
	if dir := os.Getenv(BinEnv); dir != "" {
		initdb, postgres = filepath.Join(dir, "initdb"), filepath.Join(dir, "postgres")
		for _, p := range []string{initdb, postgres} {
			if err := proc.CheckExecutable(p); err != nil {
				return "", "", fmt.Errorf("pgtest: %s=%s: %s: %w", BinEnv, dir, p, err)
			}
		}
		return initdb, postgres, nil
	}
	if dir := newestDebianBin(); dir != "" {
		return filepath.Join(dir, "initdb"), filepath.Join(dir, "postgres"), nil
	}
	initdb, err1 := exec.LookPath("initdb")
	postgres, err2 := exec.LookPath("postgres")
	if err1 == nil && err2 == nil {
		return initdb, postgres, nil
	}
	return "", "", fmt.Errorf("pgtest: PostgreSQL server binaries (initdb, postgres) not found in $%s (unset), /usr/lib/postgresql/*/bin or PATH: "+
		"the integration tests need a real PostgreSQL server; install it (e.g. apt-get install postgresql) or set %s to the directory holding initdb and postgres",
		BinEnv, BinEnv)
}

// newestDebianBin returns the /usr/lib/postgresql/<version>/bin with the
// highest version that holds initdb and postgres, or "".
func newestDebianBin() string {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	best, bestVer := "", []int(nil)
	for _, d := range dirs {
		ver, ok := parseVersion(filepath.Base(filepath.Dir(d)))
		if !ok || proc.CheckExecutable(filepath.Join(d, "initdb")) != nil || proc.CheckExecutable(filepath.Join(d, "postgres")) != nil {
			continue
		}
		if best == "" || versionLess(bestVer, ver) {
			best, bestVer = d, ver
		}
	}
	return best
}

func parseVersion(s string) ([]int, bool) {
	var out []int
	for _, part := range strings.Split(s, ".") {
		n, err := strconv.Atoi(part)
		if err != nil {
			return nil, false
		}
		out = append(out, n)
	}
	return out, true
}

func versionLess(a, b []int) bool {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return len(a) < len(b)
}

// serverCredential returns the credential to run initdb and postgres with:
// nil for a non-root user, the OS user "postgres" for root (PostgreSQL
// refuses to run as root).
func serverCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup(osUser)
	if err != nil {
		return nil, fmt.Errorf("pgtest: running as root, and PostgreSQL refuses to run as root; the OS user %q to run it as was not found (%w): create it (e.g. install the postgresql package) or run the tests as a non-root user", osUser, err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("pgtest: OS user %q has a non-numeric uid %q or gid %q", osUser, u.Uid, u.Gid)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// StartServer initialises a new cluster in dir (created if missing; it
// should be empty), starts a server on 127.0.0.1:<free port> and waits until
// it accepts connections. On error nothing is left running; dir is left for
// inspection (the error includes the log tail). Close stops the server and
// removes dir.
func StartServer(dir string) (*Server, error) {
	initdb, postgres, err := Binaries()
	if err != nil {
		return nil, err
	}
	cred, err := serverCredential()
	if err != nil {
		return nil, err
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	s := &Server{
		Dir:      dir,
		DataDir:  filepath.Join(dir, "data"),
		LogPath:  filepath.Join(dir, "postgres.log"),
		initdb:   initdb,
		postgres: postgres,
		cred:     cred,
		sockDir:  filepath.Join(dir, "sock"),
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	if len(s.sockDir)+len("/.s.PGSQL.65535") > maxSocketLen {
		// The unix socket path would be too long for the kernel.
		if s.sockDir, err = os.MkdirTemp("", "pgsock"); err != nil {
			return nil, fmt.Errorf("pgtest: %w", err)
		}
		s.ownSockDir = true
	} else if err := os.Mkdir(s.sockDir, 0o700); err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	if err := s.prepareOwnership(); err != nil {
		s.removeSockDir()
		return nil, err
	}
	if err := s.runInitdb(); err != nil {
		s.removeSockDir()
		return nil, err
	}
	// A free port found by listening on :0 can be taken by someone else
	// before the server binds it; try a few.
	const tries = 5
	for i := 1; ; i++ {
		port, err := proc.FreePort("127.0.0.1")
		if err != nil {
			s.removeSockDir()
			return nil, err
		}
		s.Port = port
		err = s.start()
		if err == nil {
			return s, nil
		}
		tail := s.LogTail(4 << 10)
		if i == tries || !strings.Contains(tail, "could not bind") {
			s.removeSockDir()
			return nil, fmt.Errorf("pgtest: starting PostgreSQL (%s) on 127.0.0.1:%d: %w; log tail (%s):\n%s", s.postgres, s.Port, err, s.LogPath, tail)
		}
	}
}

// prepareOwnership hands the directories to the server's OS user and checks
// that it can reach them.
func (s *Server) prepareOwnership() error {
	if s.cred == nil {
		return nil
	}
	uid, gid := int(s.cred.Uid), int(s.cred.Gid)
	for _, d := range []string{s.Dir, s.sockDir} {
		if err := os.Chown(d, uid, gid); err != nil {
			return fmt.Errorf("pgtest: handing %s to OS user %s: %w", d, osUser, err)
		}
		for p := filepath.Dir(d); ; p = filepath.Dir(p) {
			fi, err := os.Stat(p)
			if err != nil {
				return fmt.Errorf("pgtest: %w", err)
			}
			if !searchable(fi, s.cred) {
				return fmt.Errorf("pgtest: the server runs as OS user %s (tests run as root), which cannot reach %s: its parent %s (mode %v) is not searchable by that user; use a directory under %s",
					osUser, d, p, fi.Mode().Perm(), os.TempDir())
			}
			if filepath.Dir(p) == p {
				break
			}
		}
	}
	return nil
}

func searchable(fi fs.FileInfo, cred *syscall.Credential) bool {
	perm := fi.Mode().Perm()
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		switch {
		case st.Uid == cred.Uid:
			return perm&0o100 != 0
		case st.Gid == cred.Gid:
			return perm&0o010 != 0
		}
	}
	return perm&0o001 != 0
}

// serverEnv is the test process's environment without the libpq PG*
// variables (PGDATA, PGPORT, ...), which would change how the server starts.
func serverEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			env = append(env, kv)
		}
	}
	return append(env, "LC_ALL=C")
}

func (s *Server) runInitdb() error {
	cmd := exec.Command(s.initdb, "-D", s.DataDir, "-U", Superuser, "--auth=trust",
		"-E", "UTF8", "--locale=C", "--no-sync")
	cmd.Dir = s.Dir
	cmd.Env = serverEnv()
	s.runAsServerUser(cmd)
	if err := proc.Run(cmd, s.LogPath, "initdb "+s.DataDir); err != nil {
		return fmt.Errorf("pgtest: %s failed: %w; log tail (%s):\n%s", s.initdb, err, s.LogPath, s.LogTail(4<<10))
	}
	return nil
}

// runAsServerUser runs cmd as s.cred (nil = the current user). The
// launcher adds the parent-death signal; Go sets it after switching
// credentials, so the switch does not clear it.
func (s *Server) runAsServerUser(cmd *exec.Cmd) {
	if s.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	}
}

// start launches the server on s.Port and waits until it accepts
// connections. On error the process is gone.
func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("pgtest: server is closed")
	}
	if s.p != nil {
		return nil // already running
	}
	cmd := exec.Command(s.postgres,
		"-D", s.DataDir,
		"-p", strconv.Itoa(s.Port),
		"-h", "127.0.0.1",
		"-k", s.sockDir,
		"-c", "fsync=off",
		"-c", "synchronous_commit=off",
		"-c", "full_page_writes=off",
		"-c", "max_connections=200",
		"-c", "logging_collector=off",
	)
	cmd.Dir = s.Dir
	cmd.Env = serverEnv()
	s.runAsServerUser(cmd)
	p, err := proc.Start(cmd, s.LogPath, fmt.Sprintf("starting postgres on 127.0.0.1:%d", s.Port))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	if err := p.WaitReady(ctx, 20*time.Millisecond, s.ping); err != nil {
		p.Kill()
		return fmt.Errorf("postgres: %w", err)
	}
	s.p = p
	return nil
}

// ping is the readiness probe: a real connection.
func (s *Server) ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.URL())
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	return conn.Ping(ctx)
}

// URL is the superuser's connection URL for the "postgres" database.
func (s *Server) URL() string { return s.DatabaseURL("postgres") }

// DatabaseURL is the superuser's connection URL for database name.
func (s *Server) DatabaseURL(name string) string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", Superuser, s.Port, name)
}

// CreateDatabase creates a database with a name unique on this server
// (prefix, sanitised, plus a counter) and returns its URL.
func (s *Server) CreateDatabase(ctx context.Context, prefix string) (string, error) {
	name, err := s.createDatabase(ctx, prefix)
	if err != nil {
		return "", err
	}
	return s.DatabaseURL(name), nil
}

func (s *Server) createDatabase(ctx context.Context, prefix string) (string, error) {
	name := s.uniqueName(prefix)
	conn, err := pgx.Connect(ctx, s.URL())
	if err != nil {
		return "", fmt.Errorf("pgtest: connecting to create database %s: %w", name, err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("pgtest: creating database %s: %w", name, err)
	}
	return name, nil
}

func (s *Server) uniqueName(prefix string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(prefix) {
		if b.Len() >= 40 { // identifiers are at most 63 bytes
			break
		}
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		case b.Len() > 0 && !strings.HasSuffix(b.String(), "_"):
			b.WriteByte('_')
		}
	}
	return fmt.Sprintf("t%d_%s", s.dbs.Add(1), strings.TrimSuffix(b.String(), "_"))
}

// NewDatabase creates a database unique on this server for the test and
// returns its URL; the database is dropped (connections forced out) in
// t.Cleanup if the server is running then. Many tests can share one server
// this way.
func (s *Server) NewDatabase(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	name, err := s.createDatabase(ctx, t.Name())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !s.Running() {
			return // stopped or closed: nothing to drop, or not now
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, s.URL())
		if err != nil {
			t.Logf("pgtest: dropping database %s: %v", name, err)
			return
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Logf("pgtest: dropping database %s: %v", name, err)
		}
	})
	return s.DatabaseURL(name)
}

// Running reports whether the server process is up.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.p != nil
}

// Stop shuts the server down (fast shutdown: clients are disconnected,
// then a checkpoint; SIGKILL after 30 s) and waits for the process to
// exit. The data directory and the port are kept for Restart. Stopping a
// stopped server does nothing.
func (s *Server) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopLocked()
}

func (s *Server) stopLocked() error {
	if s.p == nil {
		return nil
	}
	defer func() { s.p = nil }()
	if err := s.p.Stop(syscall.SIGINT, stopTimeout); err != nil {
		return fmt.Errorf("pgtest: stopping postgres: %w", err)
	}
	return nil
}

// Restart stops the server if it runs and starts it again on the same port
// with the same data, then waits until it accepts connections.
func (s *Server) Restart() error {
	if err := s.Stop(); err != nil {
		return err
	}
	if err := s.start(); err != nil {
		return fmt.Errorf("pgtest: restarting PostgreSQL on 127.0.0.1:%d: %w; log tail (%s):\n%s", s.Port, err, s.LogPath, s.LogTail(4<<10))
	}
	return nil
}

// Close stops the server and removes its directory. It is idempotent.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	err := s.stopLocked()
	s.removeSockDir()
	if rmErr := os.RemoveAll(s.Dir); err == nil {
		err = rmErr
	}
	return err
}

func (s *Server) removeSockDir() {
	if s.ownSockDir {
		_ = os.RemoveAll(s.sockDir)
	}
}

// LogTail returns up to the last n bytes of the initdb and server log,
// starting at a line boundary.
func (s *Server) LogTail(n int64) string { return proc.LogTail(s.LogPath, n) }

// StartTemp is StartServer in a fresh directory under os.TempDir whose name
// begins with prefix (reachable by the server's OS user when running as
// root). Close removes it; so does a failed start.
func StartTemp(prefix string) (*Server, error) {
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	s, err := StartServer(dir)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

// Start starts a server in a fresh directory under os.TempDir for the test,
// failing the test (never skipping) if it cannot. t.Cleanup closes it,
// printing the log tail first if the test failed.
func Start(t testing.TB) *Server {
	t.Helper()
	s, err := StartTemp("pgtest-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("PostgreSQL on 127.0.0.1:%d log tail (%s):\n%s", s.Port, s.LogPath, s.LogTail(8<<10))
		}
		if err := s.Close(); err != nil {
			t.Errorf("closing PostgreSQL: %v", err)
		}
	})
	return s
}
