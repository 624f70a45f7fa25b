package s3seg_test

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestImportBoundary keeps the module's dependency table true: s3seg
// imports nothing else from this repository, and s3seg/s3segtest only s3seg.
func TestImportBoundary(t *testing.T) {
	const module = "github.com/streamhouse/streamhouse/"
	allowed := map[string][]string{
		".":         nil,
		"s3segtest": {module + "s3seg"},
	}
	for dir, allow := range allowed {
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil || len(files) == 0 {
			t.Fatalf("no Go files in %s: %v", dir, err)
		}
		for _, name := range files {
			isTest := strings.HasSuffix(name, "_test.go")
			src, err := os.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			f, err := parser.ParseFile(token.NewFileSet(), name, src, parser.ImportsOnly)
			if err != nil {
				t.Fatal(err)
			}
			for _, imp := range f.Imports {
				path, _ := strconv.Unquote(imp.Path.Value)
				if !strings.HasPrefix(path, module) {
					continue
				}
				ok := isTest && strings.HasPrefix(path, module+"s3seg")
				for _, a := range allow {
					ok = ok || path == a
				}
				if !ok {
					t.Errorf("%s imports %s, outside the package's allowed in-repo imports", name, path)
				}
			}
		}
	}
}
