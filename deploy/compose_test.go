package deploy

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// composeService is the part of `docker-compose config` output the test
// reads (env_file is already merged into environment there).
type composeService struct {
	Image       string            `yaml:"image"`
	Hostname    string            `yaml:"hostname"`
	Environment map[string]string `yaml:"environment"`
	Volumes     []string          `yaml:"volumes"`
}

// imageDataDir is DATA_DIR in deploy/Dockerfile.
const imageDataDir = "/data"

// TestComposeFiles validates every documented combination of compose files
// with `docker-compose config` on a copy of deploy/ (the production ones
// with .env from .env.example, as the README says), then checks each
// agent: only settings the agent reads (or compose variables, since .env
// serves both), no empty values, unique NODE_IDs, ADVERTISE_ADDR its own
// service, JOIN naming agents on their gossip port, its own volume at
// DATA_DIR, one bucket and one database for all.
func TestComposeFiles(t *testing.T) {
	t.Parallel()
	compose := composeBinary(t)
	known := agentSettings(t)
	cases := []struct {
		files    []string
		dotEnv   bool
		agents   int
		founders int
	}{
		{[]string{"docker-compose.yml"}, false, 3, 3},
		{[]string{"docker-compose.yml", "docker-compose.scale.yml"}, false, 5, 3},
		{[]string{"docker-compose.prod.yml"}, true, 3, 3},
		{[]string{"docker-compose.prod.yml", "docker-compose.scale.yml"}, true, 5, 3},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.files, "+"), func(t *testing.T) {
			t.Parallel() // docker-compose mostly waits (Python start-up)
			dir := copyDeploy(t, c.dotEnv)
			var args []string
			for _, f := range c.files {
				args = append(args, "-f", f)
			}
			out, err := run(t, dir, nil, compose, append(args, "config")...)
			if err != nil {
				t.Fatal(err)
			}
			var cfg struct {
				Services map[string]composeService `yaml:"services"`
			}
			if err := yaml.Unmarshal([]byte(out), &cfg); err != nil {
				t.Fatalf("docker-compose config output: %v", err)
			}
			vars := composeVariables(t)
			agents, probs := checkComposeAgents(cfg.Services, known, vars)
			for _, msg := range probs {
				t.Error(msg)
			}
			if len(agents) != c.agents {
				t.Errorf("%d agents (%v), want %d", len(agents), agents, c.agents)
			}
			founders := 0
			for _, name := range agents {
				if cfg.Services[name].Environment["BOOTSTRAP_EXPECT"] != "" {
					founders++
				}
			}
			if founders != c.founders {
				t.Errorf("%d agents with BOOTSTRAP_EXPECT, want %d founders", founders, c.founders)
			}
		})
	}
}

// TestComposeChecksCatchMistakes feeds the agent checks a stack with one
// mistake per agent and expects each to be named.
func TestComposeChecksCatchMistakes(t *testing.T) {
	known := agentSettings(t)
	env := func(id string, kv ...string) map[string]string {
		m := map[string]string{"NODE_ID": id, "ADVERTISE_ADDR": id, "JOIN": "a:7946,b:7946,c:7946",
			"S3_BUCKET": "bkt", "DATABASE_URL": "postgres://u@postgres/db", "S3_ENDPOINT": "http://minio:9000"}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	agent := func(host string, vol string, e map[string]string) composeService {
		return composeService{Image: "streamhouse/server:latest", Hostname: host, Environment: e, Volumes: []string{vol + ":/data:rw"}}
	}
	services := map[string]composeService{
		"a":        agent("a", "a-data", env("a", "S3_BUKET", "x")),
		"b":        agent("b", "b-data", env("b", "WAL_SYNC_MS", "", "JOIN", "a:7946,b:7946,postgres:7946")),
		"c":        agent("c", "b-data", env("c", "S3_BUCKET", "other", "DATABASE_URL", "postgres://u@pg/db")),
		"postgres": {Image: "postgres:15-alpine"},
		"minio":    {Image: "minio/minio"},
	}
	agents, probs := checkComposeAgents(services, known, map[string]bool{"STREAMHOUSE_VERSION": true})
	if !slices.Equal(agents, []string{"a", "b", "c"}) {
		t.Errorf("agents %v", agents)
	}
	all := strings.Join(probs, "\n")
	for _, want := range []string{
		"a: [S3_BUKET] are neither agent settings",
		"b: WAL_SYNC_MS is empty",
		`b: JOIN entry "postgres:7946" is not an agent's gossip address`,
		"b and c share the volume b-data at DATA_DIR",
		`c: S3_BUCKET="other", others "bkt"`,
		`c: DATABASE_URL names host "pg", which is not a service`,
	} {
		if !strings.Contains(all, want) {
			t.Errorf("no problem %q among:\n%s", want, all)
		}
	}
	if len(probs) != 7 { // c's DATABASE_URL also differs from the others'
		t.Errorf("%d problems, want 7:\n%s", len(probs), all)
	}
}

// copyDeploy copies the compose files and their env files into a
// temporary deploy/ (its parent stands in for the build context).
func copyDeploy(t *testing.T, dotEnv bool) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "deploy")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob("docker-compose*.yml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no compose files: %v", err)
	}
	copies := map[string]string{"dev.env": "dev.env"}
	if dotEnv {
		copies[".env.example"] = ".env"
	}
	for _, f := range files {
		copies[f] = f
	}
	for from, to := range copies {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, to), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// composeVariables returns the ${VAR} names the compose files substitute:
// .env, shared by all of them, legitimately holds these next to the agent
// settings.
func composeVariables(t *testing.T) map[string]bool {
	t.Helper()
	files, err := filepath.Glob("docker-compose*.yml")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)`)
	vars := map[string]bool{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range re.FindAllStringSubmatch(string(b), -1) {
			vars[m[1]] = true
		}
	}
	return vars
}

// problems collects what is wrong with a stack, one sentence each.
type problems []string

func (p *problems) add(format string, args ...any) { *p = append(*p, fmt.Sprintf(format, args...)) }

// checkComposeAgents checks the services running the agent image and
// returns their names and what is wrong.
func checkComposeAgents(services map[string]composeService, known, vars map[string]bool) (agents []string, p problems) {
	for name, s := range services {
		if strings.HasPrefix(s.Image, "streamhouse/server:") {
			agents = append(agents, name)
		}
	}
	slices.Sort(agents)
	nodeIDs, volumes, shared := map[string]string{}, map[string]string{}, map[string]string{}
	for _, name := range agents {
		s := services[name]
		env := s.Environment
		var names []string
		for k, v := range env {
			if !vars[k] {
				names = append(names, k)
			}
			if v == "" {
				p.add("%s: %s is empty (an empty number or boolean is a configuration error; leave it out)", name, k)
			}
		}
		if bad := unknownSettings(known, names); len(bad) > 0 {
			p.add("%s: %v are neither agent settings (cmd/streamhouse/config.go) nor compose variables", name, bad)
		}
		if prev, dup := nodeIDs[env["NODE_ID"]]; dup || env["NODE_ID"] == "" {
			p.add("%s: NODE_ID %q (also %s)", name, env["NODE_ID"], prev)
		}
		nodeIDs[env["NODE_ID"]] = name
		if env["ADVERTISE_ADDR"] != name || s.Hostname != name {
			p.add("%s: ADVERTISE_ADDR %q, hostname %q; peers dial the service name", name, env["ADVERTISE_ADDR"], s.Hostname)
		}
		p.checkJoin(name, env, services)
		p.checkDataVolume(name, s, volumes)
		for _, k := range []string{"S3_BUCKET", "DATABASE_URL"} {
			if prev, ok := shared[k]; ok && prev != env[k] || env[k] == "" {
				p.add("%s: %s=%q, others %q: every agent needs the same one", name, k, env[k], prev)
			}
			shared[k] = env[k]
		}
		p.checkDependencyHosts(name, env, services)
	}
	return agents, p
}

// checkJoin: every JOIN entry is an agent service on its gossip port.
func (p *problems) checkJoin(name string, env map[string]string, services map[string]composeService) {
	join := strings.Split(env["JOIN"], ",")
	for _, j := range join {
		host, port, err := net.SplitHostPort(j)
		if err != nil {
			p.add("%s: JOIN entry %q: %v", name, j, err)
			continue
		}
		peer, ok := services[host]
		gossip := peer.Environment["GOSSIP_PORT"]
		if gossip == "" {
			gossip = "7946" // the image's GOSSIP_PORT
		}
		if !ok || !strings.HasPrefix(peer.Image, "streamhouse/server:") || port != gossip {
			p.add("%s: JOIN entry %q is not an agent's gossip address (%s:%s)", name, j, host, gossip)
		}
	}
	if len(join) < 3 {
		p.add("%s: JOIN %q names fewer than the three founders", name, env["JOIN"])
	}
}

// checkDataVolume: a named volume of its own at DATA_DIR.
func (p *problems) checkDataVolume(name string, s composeService, owners map[string]string) {
	dataDir := s.Environment["DATA_DIR"]
	if dataDir == "" {
		dataDir = imageDataDir
	}
	for _, v := range s.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) < 2 || parts[1] != dataDir {
			continue
		}
		if prev, dup := owners[parts[0]]; dup {
			p.add("%s and %s share the volume %s at DATA_DIR", prev, name, parts[0])
		}
		owners[parts[0]] = name
		return
	}
	p.add("%s: no volume at DATA_DIR %s (volumes %v)", name, dataDir, s.Volumes)
}

// checkDependencyHosts: an S3_ENDPOINT or DATABASE_URL host without a
// domain must be a service of the stack.
func (p *problems) checkDependencyHosts(name string, env map[string]string, services map[string]composeService) {
	for _, k := range []string{"S3_ENDPOINT", "DATABASE_URL"} {
		if env[k] == "" {
			continue
		}
		u, err := url.Parse(env[k])
		if err != nil || u.Hostname() == "" {
			p.add("%s: %s=%q is not a URL", name, k, env[k])
			continue
		}
		if h := u.Hostname(); !strings.Contains(h, ".") {
			if _, ok := services[h]; !ok {
				p.add("%s: %s names host %q, which is not a service", name, k, h)
			}
		}
	}
}
