// Package pgtest starts a real PostgreSQL server for tests and benchmarks:
// initdb into a temporary directory, postgres on 127.0.0.1:<free port> with
// trust authentication and fsync off, and a unix socket inside that
// directory. It never mocks: code under test talks to a real server.
//
// One Server per test package (started in TestMain with StartServer) can
// serve many isolated tests through NewDatabase; Stop and Restart simulate
// outages with the same port and data.
//
// Binaries are found through $PG_BIN (a directory holding initdb and
// postgres), else the highest /usr/lib/postgresql/<version>/bin, else PATH.
// A missing binary is an error that says so: tests fail, they never skip.
// Unix only (Linux adds the parent-death signal).
//
// PostgreSQL refuses to run as root. When the test runs as root, initdb and
// postgres run as the OS user "postgres" and the server directory is
// chowned to it; the directory's parents must be searchable by that user
// (Start uses a fresh directory under os.TempDir, which is).
package pgtest
