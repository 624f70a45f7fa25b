package main

import (
	"encoding/json"
	"io"
	"os/exec"
	"slices"
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
	"deploy":    {}, // deployment files; its tests read them and run helm and docker-compose
}

// thirdPartyOwners says which top-level packages may import a third-party
// module (a module path and everything below it); no other package may,
// cmd included: it wires these packages and never reaches past them.
// Exceptions, with their reason:
//   - fsm is the raft.FSM: Apply receives *raft.Log and snapshots are
//     written to a raft.SnapshotSink.
//   - transport's peer mux provides the raft.StreamLayer that Raft's
//     network transport runs over.
//   - nats.go is only the benchmark's load generator for NATS JetStream
//     (transport/client/loadgen/natsload, make bench-compare).
var thirdPartyOwners = map[string][]string{
	"github.com/hashicorp/raft":        {"cluster", "fsm", "transport"},
	"github.com/hashicorp/raft-boltdb": {"cluster"},
	"github.com/hashicorp/raft-wal":    {"cluster"},
	"github.com/hashicorp/memberlist":  {"cluster"},
	"github.com/jackc/pgx":             {"pgsync"},
	"github.com/aws/aws-sdk-go-v2":     {"s3seg"},
	"github.com/aws/smithy-go":         {"s3seg"},
	"github.com/nats-io":               {"transport"},
}

const module = "github.com/streamhouse/streamhouse/"

func topLevel(pkg string) string {
	rest := strings.TrimPrefix(pkg, module)
	top, _, _ := strings.Cut(rest, "/")
	return top
}

// thirdPartyOwner returns the owners of the module imp belongs to, if
// the table restricts it.
func thirdPartyOwner(imp string) (string, []string, bool) {
	for mod, owners := range thirdPartyOwners {
		if imp == mod || strings.HasPrefix(imp, mod+"/") {
			return mod, owners, true
		}
	}
	return "", nil, false
}

// importViolation says what is wrong with package from importing imp, or
// "" when the tables allow it.
func importViolation(from, imp string) string {
	if !strings.HasPrefix(imp, module) {
		mod, owners, ok := thirdPartyOwner(imp)
		if ok && !slices.Contains(owners, from) {
			return "only " + strings.Join(owners, ", ") + " may import " + mod
		}
		return ""
	}
	to := topLevel(imp)
	allowed := allowedImports[from]
	switch {
	case to == from || slices.Contains(allowed, to):
		return ""
	case len(allowed) == 0:
		return from + " imports no other in-repo package"
	}
	return from + " may only import " + strings.Join(allowed, ", ") + " in-repo"
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
		if from == "jepsen" || strings.Contains(strings.TrimPrefix(p.ImportPath, module), "test") {
			continue // the harness and *test helper packages may import anything
		}
		if _, ok := allowedImports[from]; !ok && from != "cmd" {
			t.Errorf("%s: top-level package %q is not in the ownership table (DESIGN.md)", p.ImportPath, from)
			continue
		}
		checked++
		for _, imp := range p.Imports {
			if from == "cmd" && strings.HasPrefix(imp, module) {
				continue // cmd wires every in-repo package
			}
			if why := importViolation(from, imp); why != "" {
				t.Errorf("%s imports %s: %s (see DESIGN.md)", p.ImportPath, imp, why)
			}
		}
	}
	if checked < 5 {
		t.Fatalf("checked only %d packages; go list output not understood", checked)
	}
}

// TestImportViolationRules pins the tables' reading: a module's subpackages
// count as the module, and cmd is held to the third-party table too.
func TestImportViolationRules(t *testing.T) {
	cases := []struct {
		from, imp string
		bad       bool
	}{
		{"pgsync", "github.com/jackc/pgx/v5/pgxpool", false},
		{"partition", "github.com/jackc/pgx/v5/pgxpool", true},
		{"cmd", "github.com/aws/aws-sdk-go-v2/service/s3", true},
		{"s3seg", "github.com/aws/smithy-go/middleware", false},
		{"cluster", "github.com/hashicorp/raft-boltdb/v2", false},
		{"cluster", "github.com/hashicorp/raft-wal/metadb", false},
		{"partition", "github.com/hashicorp/raft-wal", true},
		{"fsm", "github.com/hashicorp/raft", false},
		{"fsm", "github.com/hashicorp/raft-boltdb/v2", true},
		{"transport", "github.com/hashicorp/memberlist", true},
		{"partition", "github.com/prometheus/client_golang/prometheus", false},
		{"partition", module + "s3seg", false},
		{"wal", module + "fsm", true},
		{"transport", module + "cluster", true},
	}
	for _, tc := range cases {
		if why := importViolation(tc.from, tc.imp); (why != "") != tc.bad {
			t.Errorf("%s importing %s: violation %q, want one: %v", tc.from, tc.imp, why, tc.bad)
		}
	}
}
