package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The README's runnable examples: a fenced sh/bash block right after an
// HTML comment `<!-- test: NAME -->`. A line `# → TEXT` (or a command's
// trailing `# → TEXT`) is what the command before it prints.
const readmePath = "../../README.md"

// readmeTested are the blocks that must exist (removing a marker must not
// silently stop the test).
var readmeTested = []string{"quick-start", "cli"}

type readmeStep struct {
	line    int    // README line of the command
	cmd     string // one shell command (continuations joined)
	want    string // expected output, trimmed
	hasWant bool
}

type readmeBlock struct {
	name  string
	line  int
	steps []readmeStep
}

var (
	readmeMarker = regexp.MustCompile(`^<!-- test: ([a-z0-9-]+) -->$`)
	readmeFence  = regexp.MustCompile("^```(sh|bash)$")
)

const readmeArrow = "# → "

// parseReadmeBlocks returns the marked blocks of the README text.
func parseReadmeBlocks(text string) (map[string]readmeBlock, error) {
	blocks := map[string]readmeBlock{}
	lines := strings.Split(text, "\n")
	for i := 0; i < len(lines); i++ {
		m := readmeMarker.FindStringSubmatch(lines[i])
		if m == nil {
			continue
		}
		if i+1 >= len(lines) || !readmeFence.MatchString(lines[i+1]) {
			return nil, fmt.Errorf("README.md:%d: test marker %q is not followed by a ```sh block", i+1, m[1])
		}
		b := readmeBlock{name: m[1], line: i + 1}
		end := i + 2
		for end < len(lines) && lines[end] != "```" {
			end++
		}
		if end == len(lines) {
			return nil, fmt.Errorf("README.md:%d: block %q is not closed", i+1, m[1])
		}
		steps, err := parseReadmeSteps(lines[i+2:end], i+3)
		if err != nil {
			return nil, err
		}
		if _, dup := blocks[b.name]; dup {
			return nil, fmt.Errorf("README.md:%d: block %q marked twice", i+1, b.name)
		}
		b.steps = steps
		blocks[b.name] = b
		i = end
	}
	return blocks, nil
}

// parseReadmeSteps splits a block's lines (the first at README line
// first) into commands and their expected outputs.
func parseReadmeSteps(lines []string, first int) ([]readmeStep, error) {
	var steps []readmeStep
	for j := 0; j < len(lines); j++ {
		line, at := lines[j], first+j
		for strings.HasSuffix(line, "\\") && j+1 < len(lines) {
			j++
			line = strings.TrimSuffix(line, "\\") + "\n" + lines[j]
		}
		trimmed := strings.TrimSpace(line)
		switch {
		case trimmed == "":
		case strings.HasPrefix(trimmed, readmeArrow):
			if len(steps) == 0 || steps[len(steps)-1].hasWant {
				return nil, fmt.Errorf("README.md:%d: %q follows no command", at, trimmed)
			}
			s := &steps[len(steps)-1]
			s.want, s.hasWant = strings.TrimSpace(strings.TrimPrefix(trimmed, readmeArrow)), true
		case strings.HasPrefix(trimmed, "#"):
		default:
			s := readmeStep{line: at, cmd: line}
			if k := strings.Index(line, " "+readmeArrow); k >= 0 {
				s.cmd, s.want, s.hasWant = line[:k], strings.TrimSpace(line[k+1+len(readmeArrow):]), true
			}
			steps = append(steps, s)
		}
	}
	return steps, nil
}

// TestReadmeBlocksParse pins the marker syntax on a small document.
func TestReadmeBlocksParse(t *testing.T) {
	doc := "text\n<!-- test: demo -->\n```sh\n# a comment\necho a \\\n  b\n# → a b\necho c   # → c\nfalse # not an expectation\n```\n"
	blocks, err := parseReadmeBlocks(doc)
	if err != nil {
		t.Fatal(err)
	}
	b := blocks["demo"]
	want := []readmeStep{
		{line: 5, cmd: "echo a \n  b", want: "a b", hasWant: true},
		{line: 8, cmd: "echo c  ", want: "c", hasWant: true},
		{line: 9, cmd: "false # not an expectation"},
	}
	if fmt.Sprint(b.steps) != fmt.Sprint(want) {
		t.Fatalf("steps\n%+v\nwant\n%+v", b.steps, want)
	}
	if _, err := parseReadmeBlocks("<!-- test: x -->\n```sh\n# → orphan\n```\n"); err == nil {
		t.Fatal("an expectation without a command parsed")
	}
	if _, err := parseReadmeBlocks("<!-- test: x -->\ntext\n"); err == nil {
		t.Fatal("a marker without a block parsed")
	}
}

// TestReadmeExamples runs the README's quick start and CLI examples with
// bash against a real agent process on free ports: localhost:8080 in the
// blocks becomes the agent's REST address, and the CLI reaches its gRPC
// port through STREAMHOUSE_SERVER (and the older STREAMHOUSE_GRPC). Every
// command must exit 0 and print what a `# →` line says.
func TestReadmeExamples(t *testing.T) {
	for _, tool := range []string{"bash", "curl", "awk", "seq", "grep", "wc", "tail"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the README examples need %s: %v", tool, err)
		}
	}
	text, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	blocks, err := parseReadmeBlocks(string(text))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range readmeTested {
		if _, ok := blocks[name]; !ok {
			t.Fatalf("README.md has no block marked <!-- test: %s -->", name)
		}
	}
	bin := agentBinary(t)
	a := newSoloAgent(t, "readme", t.TempDir())
	p := a.start(t)
	defer p.Kill()

	// The examples' environment: this process's, without any STREAMHOUSE_*
	// setting of the developer's (a token, TLS, a profile), plus the agent.
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "STREAMHOUSE_") && !strings.HasPrefix(kv, "PATH=") {
			env = append(env, kv)
		}
	}
	env = append(env,
		"PATH="+filepath.Dir(bin)+string(os.PathListSeparator)+os.Getenv("PATH"),
		fmt.Sprintf("STREAMHOUSE_SERVER=127.0.0.1:%d", a.grpcPort),
		fmt.Sprintf("STREAMHOUSE_GRPC=127.0.0.1:%d", a.grpcPort),
		"HOME="+t.TempDir(), "XDG_CONFIG_HOME="+t.TempDir()) // no config profile of the developer's
	rest := "127.0.0.1:" + strconv.Itoa(a.httpPort)
	dir := t.TempDir()
	for _, name := range readmeTested {
		b := blocks[name]
		for i := range b.steps {
			b.steps[i].cmd = strings.ReplaceAll(b.steps[i].cmd, "localhost:8080", rest)
			if c := b.steps[i].cmd; strings.Contains(c, ":8080") || strings.Contains(c, ":9090") {
				t.Fatalf("README.md:%d: a tested command names a fixed port (use localhost:8080 for REST, STREAMHOUSE_SERVER for the CLI): %s", b.steps[i].line, c)
			}
		}
		runReadmeBlock(t, b, env, dir)
	}
	checkReadmeCLIExample(t, p.base)
}

// checkReadmeCLIExample: the CLI example's records are spread over every
// partition of its own topic (keyed by more than one key), and the quick
// start's topic kept only its own records.
func checkReadmeCLIExample(t *testing.T, base string) {
	t.Helper()
	var parts struct {
		Partitions []struct {
			Partition     int32 `json:"partition"`
			HighWatermark int64 `json:"high_watermark"`
		} `json:"partitions"`
	}
	if code := call(t, "GET", base+"/api/v1/topics/clicks/partitions", nil, &parts); code != 200 {
		t.Fatalf("partitions of the CLI example's topic: %d", code)
	}
	total := int64(0)
	for _, p := range parts.Partitions {
		if p.HighWatermark == 0 {
			t.Errorf("the CLI example left partition %d of clicks empty: its keys do not spread", p.Partition)
		}
		total += p.HighWatermark
	}
	if len(parts.Partitions) != 4 || total != 10000 {
		t.Errorf("clicks: %d partitions, %d records; the README says 4 and 10000", len(parts.Partitions), total)
	}
	n := 0
	for p := int32(0); p < 3; p++ {
		n += len(consumeAll(t, base, "orders", p))
	}
	if n != 4 {
		t.Errorf("the quick start's orders holds %d records, want its own 4", n)
	}
}

// TestDeployReadmeSecurity: deploy/README.md names the security settings
// docs/security.md documents and does not call them unimplemented.
func TestDeployReadmeSecurity(t *testing.T) {
	deploy, err := os.ReadFile("../../deploy/README.md")
	if err != nil {
		t.Fatal(err)
	}
	security, err := os.ReadFile("../../docs/security.md")
	if err != nil {
		t.Fatal(err)
	}
	if regexp.MustCompile(`(?i)not\s+(yet\s+)?implemented`).Match(deploy) {
		t.Error("deploy/README.md says something is not implemented")
	}
	for _, v := range []string{"TLS_CERT_PATH", "TLS_CA_PATH", "CLUSTER_SECRET", "GOSSIP_KEY", "API_KEYS_FILE"} {
		if !strings.Contains(string(security), "`"+v) {
			t.Errorf("docs/security.md does not document %s", v)
		}
		if !strings.Contains(string(deploy), "`"+v) {
			t.Errorf("deploy/README.md does not mention %s", v)
		}
	}
}

// runReadmeBlock runs a block's commands in one bash, in order (so
// variables carry over), and checks each one's exit code and output.
func runReadmeBlock(t *testing.T, b readmeBlock, env []string, dir string) {
	t.Helper()
	var script strings.Builder
	script.WriteString("set -o pipefail\n")
	for i, s := range b.steps {
		fmt.Fprintf(&script, "printf '\\n@@step %d\\n'\n%s\nprintf '\\n@@rc %d %%d\\n' $?\n", i, s.cmd, i)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "--noprofile", "--norc", "-c", script.String())
	cmd.Env, cmd.Dir = env, dir
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("block %s (README.md:%d): bash: %v\nstderr:\n%s", b.name, b.line, err, stderr.String())
	}
	outputs, codes := splitReadmeOutput(string(out))
	for i, s := range b.steps {
		code, ran := codes[i]
		switch {
		case !ran:
			t.Errorf("README.md:%d: %s: did not run", s.line, s.cmd)
		case code != 0:
			t.Errorf("README.md:%d: %s: exit %d\noutput: %s\nstderr:\n%s", s.line, s.cmd, code, outputs[i], stderr.String())
		case s.hasWant && strings.TrimSpace(outputs[i]) != s.want:
			t.Errorf("README.md:%d: %s\nprinted: %s\nREADME says: %s", s.line, s.cmd, strings.TrimSpace(outputs[i]), s.want)
		}
	}
}

// splitReadmeOutput cuts the script's stdout at the step markers into
// each step's output and exit code.
func splitReadmeOutput(out string) (map[int]string, map[int]int) {
	outputs, codes := map[int]string{}, map[int]int{}
	cur, body := -1, strings.Builder{}
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		line := sc.Text()
		var i, rc int
		switch {
		case strings.HasPrefix(line, "@@step "):
			_, _ = fmt.Sscanf(line, "@@step %d", &cur)
			body.Reset()
		case strings.HasPrefix(line, "@@rc "):
			if n, _ := fmt.Sscanf(line, "@@rc %d %d", &i, &rc); n == 2 && i == cur {
				outputs[i], codes[i] = body.String(), rc
			}
			cur = -1
		case cur >= 0:
			body.WriteString(line + "\n")
		}
	}
	return outputs, codes
}
