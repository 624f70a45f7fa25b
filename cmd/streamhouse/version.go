package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// version and commit are set at build time with -ldflags "-X
// main.version=... -X main.commit=..." (make build sets both); without
// commit the Go build info's VCS revision is used.
var (
	version = "dev"
	commit  = ""
)

// versionText is what --version and `version` print: the version, the
// commit the binary was built from (from the Go build info; "+dirty" when
// the tree had changes) and the Go version.
func versionText() string {
	return fmt.Sprintf("streamhouse %s (commit %s, %s %s/%s)", version, buildCommit(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// buildCommit is the commit set at build time, else the VCS revision in
// the build info, else "unknown" (go run, -buildvcs=false, or a build
// outside a git checkout).
func buildCommit() string {
	if commit != "" {
		return commit
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	rev, dirty := "", false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "unknown"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "+dirty"
	}
	return rev
}

// shortCommit is buildCommit cut to 12 characters (plus "+dirty").
func shortCommit() string {
	c := buildCommit()
	base, dirty := c, ""
	if i := len(c) - len("+dirty"); i > 0 && c[i:] == "+dirty" {
		base, dirty = c[:i], "+dirty"
	}
	if len(base) > 12 {
		base = base[:12]
	}
	return base + dirty
}
