package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/streamhouse/streamhouse/transport/client"
)

func TestParseServerList(t *testing.T) {
	for _, tc := range []struct {
		in      string
		ok      bool
		wantMsg string
	}{
		{"127.0.0.1:9090", true, ""},
		{"a:1, b:2 ,[::1]:9090", true, ""},
		{"http://127.0.0.1:8080", false, "is a URL; --server takes the agents' gRPC host:port (GRPC_PORT, default 9090)"},
		{"127.0.0.1", false, "has no port; --server takes"},
		{"agent-1:http", false, "is not a number"},
		{"agent-1:0", false, "is not a number"},
		{":9090", false, "has no host"},
		{" , ", false, "no address given"},
	} {
		_, err := parseServerList(tc.in)
		if (err == nil) != tc.ok || (err != nil && !strings.Contains(err.Error(), tc.wantMsg)) {
			t.Errorf("parseServerList(%q) = %v, want ok=%v / %q", tc.in, err, tc.ok, tc.wantMsg)
		}
	}
}

// TestServerFlagBadValueExits2: a URL or a port-less address, from the
// flag or the environment, is a bad command line with a message saying
// what --server takes, never a Go parse error.
func TestServerFlagBadValueExits2(t *testing.T) {
	for _, tc := range []struct {
		env  []string
		args []string
	}{
		{nil, []string{"topic", "list", "--server", "http://127.0.0.1:8080"}},
		{nil, []string{"cluster", "status", "--server", "127.0.0.1"}},
		{[]string{"STREAMHOUSE_SERVER=http://127.0.0.1:8080"}, []string{"cluster", "health"}},
		{[]string{"STREAMHOUSE_GRPC=localhost"}, []string{"group", "list"}},
	} {
		_, errOut, code := runBinary(t, cliEnv(t, tc.env...), nil, tc.args...)
		if code != 2 || !strings.Contains(errOut, "--server takes the agents' gRPC host:port (GRPC_PORT, default 9090)") ||
			strings.Contains(errOut, "parse \"") {
			t.Errorf("%v %v: exit %d, stderr:\n%s", tc.env, tc.args, code, errOut)
		}
	}
}

// TestBenchServerFlags: bench --server takes REST URLs, --grpc-server
// (or STREAMHOUSE_SERVER) gRPC host:port; the wrong kind exits 2 saying
// which.
func TestBenchServerFlags(t *testing.T) {
	for _, tc := range []struct {
		env  []string
		args []string
		want string
	}{
		{nil, []string{"bench", "--server", "127.0.0.1:8080"}, "bench --server takes the agents' REST URLs (http://host:HTTP_PORT, default 8080), not \"127.0.0.1:8080\""},
		{nil, []string{"bench", "--grpc-server", "http://127.0.0.1:9090"}, "--grpc-server (or STREAMHOUSE_SERVER): \"http://127.0.0.1:9090\" is a URL"},
		{[]string{"STREAMHOUSE_SERVER=127.0.0.1"}, []string{"bench"}, "\"127.0.0.1\" has no port"},
	} {
		_, errOut, code := runBinary(t, cliEnv(t, tc.env...), nil, tc.args...)
		if code != 2 || !strings.Contains(errOut, tc.want) || strings.Contains(errOut, "environment variable") {
			t.Errorf("%v %v: exit %d, want 2 and %q in:\n%s", tc.env, tc.args, code, tc.want, errOut)
		}
	}
}

// configSettings runs `config -o json` and returns setting → (value, source).
func configSettings(t *testing.T, env []string, args ...string) (map[string][2]string, string) {
	t.Helper()
	out, errOut, code := runBinary(t, env, nil, append([]string{"config", "-o", "json"}, args...)...)
	if code != 0 {
		t.Fatalf("config %v: exit %d: %s", args, code, errOut)
	}
	var cj struct {
		ConfigFile string `json:"config_file"`
		Settings   []struct {
			Setting string `json:"setting"`
			Value   any    `json:"value"`
			Source  string `json:"source"`
		} `json:"settings"`
	}
	if err := json.Unmarshal([]byte(out), &cj); err != nil {
		t.Fatalf("config -o json: %v: %s", err, out)
	}
	m := map[string][2]string{}
	for _, s := range cj.Settings {
		v, _ := json.Marshal(s.Value)
		m[s.Setting] = [2]string{strings.Trim(string(v), `"`), s.Source}
	}
	return m, cj.ConfigFile
}

// TestConfigPrecedence: flag > environment > profile > file top level >
// default, per setting; --profile / STREAMHOUSE_PROFILE / the file's
// "profile" key select the profile; relative CA paths are relative to the
// file; STREAMHOUSE_CONFIG names another file.
func TestConfigPrecedence(t *testing.T) {
	xdg := t.TempDir()
	dir := filepath.Join(xdg, "streamhouse")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "config.yaml")
	writeFile(t, file, `server: top:1
token: top-token
profiles:
  prod:
    server: prod-1:9090,prod-2:9090
    tls:
      ca: ca.crt
  staging:
    server: staging:9090
`)
	base := func(extra ...string) []string {
		return append(cliEnv(t), append([]string{"XDG_CONFIG_HOME=" + xdg}, extra...)...)
	}

	if _, errOut, _ := runBinary(t, base(), nil, "config"); strings.Contains(errOut, "others can read it") {
		t.Errorf("warning for a private file: %s", errOut)
	}
	if err := os.Chmod(file, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, errOut, _ := runBinary(t, base(), nil, "config"); !strings.Contains(errOut, "holds an API token and others can read it") {
		t.Errorf("no warning for a token readable by others: %q", errOut)
	}
	s, path := configSettings(t, base())
	if path != file || s["server"] != [2]string{"top:1", "config " + file} || s["token"][1] != "config "+file || s["tls"] != [2]string{"false", "default"} {
		t.Fatalf("top level: %v (file %s)", s, path)
	}
	s, _ = configSettings(t, base(), "--profile", "prod")
	if s["server"] != [2]string{"prod-1:9090,prod-2:9090", "profile prod of " + file} || s["tls-ca"][0] != filepath.Join(dir, "ca.crt") {
		t.Fatalf("--profile prod: %v", s)
	}
	s, _ = configSettings(t, base("STREAMHOUSE_PROFILE=staging", "STREAMHOUSE_GRPC=env-alias:9090"))
	if s["server"] != [2]string{"env-alias:9090", "environment STREAMHOUSE_GRPC"} || s["token"][1] != "profile staging of "+file {
		t.Fatalf("env alias over profile: %v", s)
	}
	s, _ = configSettings(t, base("STREAMHOUSE_SERVER=", "STREAMHOUSE_GRPC=alias:9090"))
	if s["server"] != [2]string{"alias:9090", "environment STREAMHOUSE_GRPC"} {
		t.Fatalf("an empty STREAMHOUSE_SERVER counts as unset: %v", s)
	}
	s, _ = configSettings(t, base("STREAMHOUSE_SERVER=env:9090", "STREAMHOUSE_GRPC=alias:9090"), "--profile", "prod")
	if s["server"] != [2]string{"env:9090", "environment STREAMHOUSE_SERVER"} {
		t.Fatalf("env over profile: %v", s)
	}
	s, _ = configSettings(t, base("STREAMHOUSE_SERVER=env:9090"), "--server", "flag:9090", "--profile", "prod")
	if s["server"] != [2]string{"flag:9090", "flag"} {
		t.Fatalf("flag over env: %v", s)
	}
	s, path = configSettings(t, cliEnv(t))
	if path != "" || s["server"] != [2]string{defaultServer, "default"} || s["token"] != [2]string{"(none)", "default"} {
		t.Fatalf("no file: %v (file %q)", s, path)
	}
	other := filepath.Join(t.TempDir(), "other.yaml")
	writeFile(t, other, "server: other:9090\n")
	s, _ = configSettings(t, base("STREAMHOUSE_CONFIG="+other))
	if s["server"] != [2]string{"other:9090", "config " + other} {
		t.Fatalf("STREAMHOUSE_CONFIG: %v", s)
	}
}

// TestConfigFileErrorsExit2: an unknown key, an unknown profile, a
// missing explicit file and a bad server in the file are bad command
// lines with a clear message.
func TestConfigFileErrorsExit2(t *testing.T) {
	dir := t.TempDir()
	typo := filepath.Join(dir, "typo.yaml")
	writeFile(t, typo, "servers: a:1\n")
	badServer := filepath.Join(dir, "bad.yaml")
	writeFile(t, badServer, "server: http://a:8080\n")
	good := filepath.Join(dir, "good.yaml")
	writeFile(t, good, "profiles:\n  prod:\n    server: a:1\n")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--config", typo}, "field servers not found"},
		{[]string{"--config", good, "--profile", "nope"}, `has no profile "nope" (it has: prod)`},
		{[]string{"--config", filepath.Join(dir, "missing.yaml")}, "no such file"},
		{[]string{"--profile", "prod"}, "no config file"},
		{[]string{"--config", badServer}, "is a URL; --server takes"},
	} {
		_, errOut, code := runBinary(t, cliEnv(t), nil, append([]string{"topic", "list"}, tc.args...)...)
		if code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, want 2 and %q in:\n%s", tc.args, code, tc.want, errOut)
		}
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestVersionAndCompletion: --version and `version` print the version,
// commit and Go version; `completion SHELL` prints the shell's hook; with
// COMP_LINE set the binary answers completions.
func TestVersionAndCompletion(t *testing.T) {
	env := cliEnv(t)
	for _, args := range [][]string{{"--version"}, {"version"}} {
		out, _, code := runBinary(t, env, nil, args...)
		if code != 0 || !strings.HasPrefix(out, "streamhouse ") || !strings.Contains(out, "commit ") || !strings.Contains(out, "go1.") {
			t.Errorf("%v: exit %d: %q", args, code, out)
		}
	}
	for shell, want := range map[string]string{
		"bash": "complete -C ", "zsh": "bashcompinit", "fish": "complete -f -c streamhouse -a \"(__complete_streamhouse)\"",
	} {
		out, errOut, code := runBinary(t, env, nil, "completion", shell)
		if code != 0 || !strings.Contains(out, want) || !strings.Contains(out, agentBinary(t)) {
			t.Errorf("completion %s: exit %d: %s %s", shell, code, out, errOut)
		}
	}
	if _, _, code := runBinary(t, env, nil, "completion", "tcsh"); code != 2 {
		t.Errorf("completion tcsh: exit %d, want 2", code)
	}
	out, _, code := runBinary(t, append(env, "COMP_LINE=streamhouse cluster "), nil)
	if code != 0 || !strings.Contains(out, "health") || !strings.Contains(out, "status") {
		t.Errorf("COMP_LINE completion: exit %d: %q", code, out)
	}
	out, _, _ = runBinary(t, append(env, "COMP_LINE=streamhouse topic list --ser"), nil)
	if !strings.Contains(out, "--server") {
		t.Errorf("flag completion: %q", out)
	}
}

// TestPrintHealthAndStatus pins the tables of cluster status and cluster
// health.
func TestPrintHealthAndStatus(t *testing.T) {
	leader := &client.ClusterStatus{NodeID: "n1", RaftState: "Leader", AppliedIndex: 9, Ready: true, UnflushedBytes: 10}
	follower := &client.ClusterStatus{NodeID: "n2", RaftState: "Follower", AppliedIndex: 9, LastContactMs: 0, Ready: true}
	rep := client.HealthReport{RaftLeader: "n1", Agents: []client.AgentProbe{
		{Member: client.ClusterMember{NodeID: "n1", GRPCAddress: "h:1", GossipState: "alive", Suffrage: "voter"}, Status: leader},
		{Member: client.ClusterMember{NodeID: "n2", GRPCAddress: "h:2", GossipState: "alive", Suffrage: "voter"}, Status: follower},
		{Member: client.ClusterMember{NodeID: "n3", GossipState: "dead", Suffrage: "voter"}, Error: "refused"},
	}, Problems: []client.HealthProblem{{Agent: "n3", Reason: "dead"}, {Reason: "under-replicated"}}}
	var b strings.Builder
	if err := printHealth(&b, rep); err != nil {
		t.Fatal(err)
	}
	want := `AGENT  GRPC  GOSSIP  RAFT   STATE        APPLIED  CONTACT  READY  UNFLUSHED
n1     h:1   alive   voter  Leader       9        -        true   10
n2     h:2   alive   voter  Follower     9        0s       true   0
n3     -     dead    voter  unreachable  -        -        -      -

NOT HEALTHY (2 problems):
  - n3: dead
  - under-replicated
`
	if b.String() != want {
		t.Errorf("health table:\n%s\nwant:\n%s", b.String(), want)
	}
	b.Reset()
	err := printClusterStatus(&b, client.ClusterStatus{NodeID: "n1", RaftState: "Leader", RaftLeader: "n1", RaftTerm: 2, CommitIndex: 5, AppliedIndex: 5,
		Members: []client.ClusterMember{{NodeID: "n1", GossipState: "alive", Suffrage: "voter", RaftLeader: true, GRPCAddress: "h:9191",
			HTTPAddress: "h:8181", PeerAddress: "h:9291", Leaderships: []string{"t/0", "t/1"}, KafkaAddress: "h:9092", BrokerID: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	want = `answered by n1 (Leader); raft leader n1, term 2, commit 5, applied 5

AGENT  GOSSIP  RAFT   LEADER  GRPC    REST    PEER    KAFKA (BROKER)  PARTITIONS LED
n1     alive   voter  *       h:9191  h:8181  h:9291  h:9092 (1)      2 (t/0 t/1)
`
	if b.String() != want {
		t.Errorf("status table:\n%s\nwant:\n%s", b.String(), want)
	}
}
