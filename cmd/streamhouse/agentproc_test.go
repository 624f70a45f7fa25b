package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/streamhouse/streamhouse/jepsen/proc"
	"github.com/streamhouse/streamhouse/jepsen/testkit"
)

// The agent binary is built once per test binary run, into binDir, which
// TestMain removes at the end.
var (
	buildOnce sync.Once
	binDir    string
	binPath   string
	buildErr  error
)

// TestMain runs the tests, removes the built binary and checks that no
// goroutine is left behind.
func TestMain(m *testing.M) {
	testkit.Main(m, testkit.Setup(func() (func(bool) error, error) {
		return func(bool) error {
			if binDir == "" {
				return nil
			}
			return os.RemoveAll(binDir)
		}, nil
	}))
}

func agentBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		if binDir, buildErr = os.MkdirTemp("", "streamhouse-bin-"); buildErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "streamhouse")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// runBinary runs the built binary to completion with exactly env and
// returns its stdout, stderr and exit code.
func runBinary(t testing.TB, env []string, stdin io.Reader, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(agentBinary(t), args...)
	cmd.Env = env
	cmd.Stdin = stdin
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("run %v: %v", args, err)
		}
		code = ee.ExitCode()
	}
	return out.String(), errb.String(), code
}

// freePort returns a port free on 127.0.0.1 for an agent the test starts
// later, from below the kernel's ephemeral range (proc.FreePort says why).
func freePort(t testing.TB) int {
	t.Helper()
	p, err := proc.FreePort("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// soloAgent is the environment of a one-agent cluster on fresh loopback
// ports, with its log in a directory of its own (printed if the test
// fails).
type soloAgent struct {
	env        []string
	httpPort   int
	grpcPort   int
	peerPort   int
	gossipPort int
	kafkaPort  int
	logPath    string
}

// newSoloAgent returns agent id's environment with data in dataDir; extra
// is added last (and so overrides).
func newSoloAgent(t *testing.T, id, dataDir string, extra ...string) *soloAgent {
	t.Helper()
	a := &soloAgent{
		httpPort: freePort(t), grpcPort: freePort(t), peerPort: freePort(t), gossipPort: freePort(t), kafkaPort: freePort(t),
		logPath: filepath.Join(t.TempDir(), "agent.log"),
	}
	a.env = append([]string{
		"NODE_ID=" + id, "BIND_ADDR=127.0.0.1", "DATA_DIR=" + dataDir,
		"HTTP_PORT=" + strconv.Itoa(a.httpPort), "GRPC_PORT=" + strconv.Itoa(a.grpcPort),
		"PEER_PORT=" + strconv.Itoa(a.peerPort), "GOSSIP_PORT=" + strconv.Itoa(a.gossipPort),
		"KAFKA_PORT=" + strconv.Itoa(a.kafkaPort),
	}, extra...)
	t.Cleanup(func() { dumpLogOnFailure(t, a.logPath) })
	return a
}

// start starts the agent (with extra arguments after "agent") and waits
// until it is ready.
func (a *soloAgent) start(t testing.TB, args ...string) *agentProc {
	t.Helper()
	return startProcArgs(t, args, a.env, a.httpPort, a.logPath)
}

// agentProc is an agent process started by a test.
type agentProc struct {
	*proc.Proc
	base string // REST base URL
}

func startProc(t testing.TB, env []string, httpPort int, logPath string) *agentProc {
	t.Helper()
	return startProcArgs(t, nil, env, httpPort, logPath)
}

// startProcArgs is startProc with extra command-line arguments after
// "agent".
func startProcArgs(t testing.TB, args, env []string, httpPort int, logPath string) *agentProc {
	t.Helper()
	p := launch(t, args, env, httpPort, logPath)
	p.waitReady(t, logPath, func(code int, _ map[string]any) bool { return code == 200 })
	return p
}

// launch starts an agent process writing its output to logPath.
func launch(t testing.TB, args, env []string, httpPort int, logPath string) *agentProc {
	t.Helper()
	cmd := exec.Command(agentBinary(t), append([]string{"agent"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	p, err := proc.Start(cmd, logPath, "")
	if err != nil {
		t.Fatal(err)
	}
	return &agentProc{Proc: p, base: fmt.Sprintf("http://127.0.0.1:%d", httpPort)}
}

// waitReady waits (30 s) until /ready answers what ok accepts (body holds
// at least a string "reason"); it fails the test with the log if the agent
// exits first.
func (p *agentProc) waitReady(t testing.TB, logPath string, ok func(code int, body map[string]any) bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := p.WaitReady(ctx, 20*time.Millisecond, func(context.Context) error {
		body := map[string]any{"reason": ""}
		code, err := tryCall("GET", p.base+"/ready", nil, &body)
		if _, isStr := body["reason"].(string); !isStr {
			body["reason"] = ""
		}
		if err == nil && !ok(code, body) {
			err = fmt.Errorf("/ready answered %d %v", code, body)
		}
		return err
	})
	if errors.Is(err, proc.ErrExited) {
		log, _ := os.ReadFile(logPath)
		t.Fatalf("agent exited early:\n%s", log)
	}
	if err != nil {
		t.Fatalf("agent process not ready after 30s: %v", err)
	}
}

func (p *agentProc) kill(t testing.TB) {
	t.Helper()
	p.Kill()
}

// dumpLogOnFailure prints the last lines of an agent log when t failed.
func dumpLogOnFailure(t testing.TB, path string) {
	if !t.Failed() {
		return
	}
	t.Logf("agent log %s (tail):\n%s", path, proc.LogTail(path, 8<<10))
}
