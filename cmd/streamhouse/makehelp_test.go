package main

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// TestMakeHelpAligned: `make help` lists every target with a ## comment,
// each description starting in the same column, whatever the longest
// target name is.
func TestMakeHelpAligned(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Fatalf("make is not installed: %v", err)
	}
	src, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	targets := regexp.MustCompile(`(?m)^([a-zA-Z_-]+):.*## `).FindAllStringSubmatch(string(src), -1)
	cmd := exec.Command("make", "-s", "--no-print-directory", "-C", "../..", "help")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("make help: %v", err)
	}
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	if len(lines) != len(targets) {
		t.Fatalf("make help printed %d lines for %d documented targets:\n%s", len(lines), len(targets), out)
	}
	col := -1
	for i, line := range lines {
		name := targets[i][1]
		if !strings.HasPrefix(line, "  "+name+" ") {
			t.Fatalf("line %q does not start with target %s", line, name)
		}
		rest := line[2+len(name):]
		at := 2 + len(name) + len(rest) - len(strings.TrimLeft(rest, " "))
		if col == -1 {
			col = at
		}
		if at != col || at-2-len(name) < 2 {
			t.Errorf("description of %s starts at column %d, want %d with at least two spaces before it:\n%s", name, at, col, out)
		}
	}
}
