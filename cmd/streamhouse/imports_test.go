package main

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

// allowedImports is the package-ownership table of DESIGN.md: which in-repo
// top-level packages each top-level package may import (tests excluded).
var allowedImports = map[string][]string{
	"fsm":       {},
	"wal":       {},
	"s3seg":     {},
	"partition": {"fsm", "wal", "s3seg"},
	"cluster":   {"fsm", "transport"},
	"pgsync":    {"fsm"},
	"transport": {"fsm"},
}

const module = "github.com/streamhouse/streamhouse/"

func topLevel(pkg string) string {
	rest := strings.TrimPrefix(pkg, module)
	top, _, _ := strings.Cut(rest, "/")
	return top
}

func TestImportBoundaries(t *testing.T) {
	out, err := exec.Command("go", "list", "-json", "../../...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	checked := 0
	for {
		var p struct {
			ImportPath string
			Imports    []string
		}
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		from := topLevel(p.ImportPath)
		allowed, ok := allowedImports[from]
		if !ok || strings.Contains(strings.TrimPrefix(p.ImportPath, module), "test") {
			continue // cmd, jepsen and *test helper packages may import anything
		}
		checked++
		for _, imp := range p.Imports {
			if !strings.HasPrefix(imp, module) {
				continue
			}
			to := topLevel(imp)
			if to == from {
				continue
			}
			okImport := false
			for _, a := range allowed {
				okImport = okImport || a == to
			}
			if !okImport {
				t.Errorf("%s imports %s: %s may only import %v (see DESIGN.md)", p.ImportPath, imp, from, allowed)
			}
		}
	}
	if checked < 5 {
		t.Fatalf("checked only %d packages; go list output not understood", checked)
	}
}
