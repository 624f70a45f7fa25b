package deploy

import (
	"bytes"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// HelmEnv and ComposeEnv name the binaries the tests run; `make test` and
// `make deploy-test` set them (make deps installs both).
const (
	HelmEnv    = "STREAMHOUSE_HELM"
	ComposeEnv = "STREAMHOUSE_DOCKER_COMPOSE"
	// helmVersion is the Makefile's HELM_VERSION: make deps caches the
	// binary as .cache/bin/helm-<version>.
	helmVersion = "v3.21.4"
)

// runtimeSettings are environment variables the deployment files may set
// although the agent's configuration does not read them.
var runtimeSettings = map[string]string{
	"GOMEMLIMIT": "the Go runtime's soft memory limit",
}

// helmBinary finds helm: $STREAMHOUSE_HELM, else the cache make deps
// fills. The tests fail (never skip) without it.
func helmBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv(HelmEnv); p != "" {
		if err := checkExecutable(p); err != nil {
			t.Fatalf("%s=%s: %v; run `make deps` to install helm %s, or point %s at a helm 3 binary", HelmEnv, p, err, helmVersion, HelmEnv)
		}
		return p
	}
	name := "helm-" + helmVersion
	var tried []string
	for _, dir := range []string{filepath.Join("..", ".cache", "bin"), homeCache()} {
		p := filepath.Join(dir, name)
		if checkExecutable(p) == nil {
			abs, err := filepath.Abs(p)
			if err != nil {
				t.Fatal(err)
			}
			return abs
		}
		tried = append(tried, p)
	}
	t.Fatalf("helm not found (%s unset; looked at %s): the chart tests need it; run `make deps` (it installs helm %s from the Go module proxy into .cache/bin, a few minutes once), or set %s to a helm 3 binary",
		HelmEnv, strings.Join(tried, ", "), helmVersion, HelmEnv)
	return ""
}

// composeBinary finds docker-compose: $STREAMHOUSE_DOCKER_COMPOSE, else
// on PATH. The tests fail (never skip) without it.
func composeBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv(ComposeEnv); p != "" {
		if err := checkExecutable(p); err != nil {
			t.Fatalf("%s=%s: %v; run `make deps` (it installs Debian's docker-compose), or point %s at docker-compose", ComposeEnv, p, err, ComposeEnv)
		}
		return p
	}
	p, err := exec.LookPath("docker-compose")
	if err != nil {
		t.Fatalf("docker-compose not found on PATH: the compose file tests need it; run `make deps` (apt-get install docker-compose), or set %s", ComposeEnv)
	}
	return p
}

func homeCache() string {
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "no-home")
	}
	return filepath.Join(home, ".cache", "streamhouse", "bin")
}

func checkExecutable(p string) error {
	st, err := os.Stat(p)
	if err != nil {
		return err
	}
	if st.IsDir() || st.Mode().Perm()&0o111 == 0 {
		return errors.New("not an executable file")
	}
	return nil
}

// run runs a tool with only PATH and a private HOME in its environment (so
// that the developer's variables do not change what is rendered) and
// returns its standard output, or an error holding its standard error.
func run(t *testing.T, dir string, env []string, name string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %w\n%s", filepath.Base(name), strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// agentSettings returns every environment variable the agent reads: the
// env tags of agentCmd in cmd/streamhouse/config.go.
func agentSettings(t *testing.T) map[string]bool {
	t.Helper()
	const file = "../cmd/streamhouse/config.go"
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, parser.SkipObjectResolution)
	if err != nil {
		t.Fatal(err)
	}
	var fields []*ast.Field
	ast.Inspect(f, func(n ast.Node) bool {
		if ts, ok := n.(*ast.TypeSpec); ok && ts.Name.Name == "agentCmd" {
			if st, ok := ts.Type.(*ast.StructType); ok {
				fields = st.Fields.List
			}
			return false
		}
		return true
	})
	names := map[string]bool{}
	for _, fld := range fields {
		if fld.Tag == nil {
			continue
		}
		tag, err := strconv.Unquote(fld.Tag.Value)
		if err != nil {
			t.Fatal(err)
		}
		for _, env := range strings.Split(reflect.StructTag(tag).Get("env"), ",") {
			if env != "" {
				names[env] = true
			}
		}
	}
	if len(names) < 40 || !names["DATA_DIR"] || !names["JOIN"] {
		t.Fatalf("%s: found only %d env tags in agentCmd; the parser no longer understands the file", file, len(names))
	}
	return names
}

// unknownSettings returns the names the agent does not read (sorted).
func unknownSettings(known map[string]bool, names []string) []string {
	var bad []string
	for _, n := range names {
		if _, rt := runtimeSettings[n]; !known[n] && !rt {
			bad = append(bad, n)
		}
	}
	slices.Sort(bad)
	return slices.Compact(bad)
}
