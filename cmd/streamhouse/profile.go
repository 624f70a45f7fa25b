package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/alecthomas/kong"
	"gopkg.in/yaml.v3"
)

// The config file (CLI.md, "Config file and profiles") holds connection
// settings so that commands need no flags:
//
//	server: 127.0.0.1:9191,127.0.0.1:9192   # settings of every profile
//	profile: prod                           # the profile used without --profile
//	profiles:
//	  prod:
//	    server: agent-1.example:9090
//	    tls: {ca: ca.crt}                     # relative to the file's directory
//	    token: sh_...
//
// Precedence, per setting: flag > environment variable > the selected
// profile > the file's top level > the flag's default. Unknown keys are an
// error (a typo must not silently fall back to a default).

// profileSettings are the settings of a profile (or the file's top level).
type profileSettings struct {
	Server string      `yaml:"server"`
	TLS    *profileTLS `yaml:"tls"`
	Token  string      `yaml:"token"`
}

type profileTLS struct {
	Enabled            *bool  `yaml:"enabled"`
	CA                 string `yaml:"ca"`
	InsecureSkipVerify *bool  `yaml:"insecure_skip_verify"`
}

// configFile is the whole file.
type configFile struct {
	profileSettings `yaml:",inline"`
	Profile         string                     `yaml:"profile"`
	Profiles        map[string]profileSettings `yaml:"profiles"`
}

// defaultConfigPath is $XDG_CONFIG_HOME/streamhouse/config.yaml, else
// ~/.config/streamhouse/config.yaml ("" when neither is known).
func defaultConfigPath() string {
	dir := os.Getenv("XDG_CONFIG_HOME")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil || home == "" {
			return ""
		}
		dir = filepath.Join(home, ".config")
	}
	return filepath.Join(dir, "streamhouse", "config.yaml")
}

// readConfigFile parses the file at path strictly (unknown keys are
// errors). An empty file is an empty config.
func readConfigFile(path string) (*configFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var cf configFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cf); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &cf, nil
}

// selectProfile merges the named profile (name "" = the file's "profile"
// key, if any) over the file's top level. The result's source names where
// the settings came from.
func (cf *configFile) selectProfile(path, name string) (profileSettings, string, error) {
	if name == "" {
		name = cf.Profile
	}
	out, source := cf.profileSettings, "config "+path
	if name == "" {
		return out, source, nil
	}
	p, ok := cf.Profiles[name]
	if !ok {
		return out, source, fmt.Errorf("%s has no profile %q (it has: %s)", path, name, profileNames(cf.Profiles))
	}
	if p.Server != "" {
		out.Server = p.Server
	}
	if p.Token != "" {
		out.Token = p.Token
	}
	if p.TLS != nil {
		out.TLS = mergeTLS(out.TLS, p.TLS)
	}
	return out, fmt.Sprintf("profile %s of %s", name, path), nil
}

func mergeTLS(base, over *profileTLS) *profileTLS {
	out := profileTLS{}
	if base != nil {
		out = *base
	}
	if over.Enabled != nil {
		out.Enabled = over.Enabled
	}
	if over.CA != "" {
		out.CA = over.CA
	}
	if over.InsecureSkipVerify != nil {
		out.InsecureSkipVerify = over.InsecureSkipVerify
	}
	return &out
}

func profileNames(m map[string]profileSettings) string {
	if len(m) == 0 {
		return "none"
	}
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// value is the profile's value for a connection flag (nil: not set).
// Relative CA paths are relative to the file's directory.
func (p profileSettings) value(flag, path string) any {
	switch flag {
	case "server":
		if p.Server != "" {
			return p.Server
		}
	case "token":
		if p.Token != "" {
			return p.Token
		}
	case "tls":
		if p.TLS != nil && p.TLS.Enabled != nil {
			return *p.TLS.Enabled
		}
	case "tls-ca":
		if p.TLS != nil && p.TLS.CA != "" {
			if filepath.IsAbs(p.TLS.CA) {
				return p.TLS.CA
			}
			return filepath.Join(filepath.Dir(path), p.TLS.CA)
		}
	case "insecure-skip-verify":
		if p.TLS != nil && p.TLS.InsecureSkipVerify != nil {
			return *p.TLS.InsecureSkipVerify
		}
	}
	return nil
}

// profileFlags are the flags a profile can set.
var profileFlags = map[string]bool{"server": true, "token": true, "tls": true, "tls-ca": true, "insecure-skip-verify": true}

// profileResolver is the kong resolver that fills connection flags set
// neither on the command line (kong skips those) nor in the environment
// from the config file. It reads the file once, on the first flag it is
// asked about, and remembers which flags it set (for `config`).
type profileResolver struct {
	loaded bool
	set    profileSettings
	path   string // the file read ("" when none)
	source string // where set came from
	err    error
	used   map[string]bool
}

func (r *profileResolver) Validate(*kong.Application) error { return nil }

func (r *profileResolver) Resolve(kctx *kong.Context, _ *kong.Path, flag *kong.Flag) (any, error) {
	if !profileFlags[flag.Name] || envSet(flag.Envs) {
		return nil, nil
	}
	if err := r.load(kctx); err != nil {
		return nil, explainedError{err}
	}
	v := r.set.value(flag.Name, r.path)
	if v != nil {
		if r.used == nil {
			r.used = map[string]bool{}
		}
		r.used[flag.Name] = true
	}
	return v, nil
}

// load reads the file named by --config (else the default path, where a
// missing file is fine) and selects --profile.
func (r *profileResolver) load(kctx *kong.Context) error {
	if r.loaded {
		return r.err
	}
	r.loaded = true
	path, explicit := flagString(kctx, "config"), true
	if path == "" {
		path, explicit = defaultConfigPath(), false
	}
	profile := flagString(kctx, "profile")
	if path == "" {
		return r.fail(profile, "")
	}
	cf, err := readConfigFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist) && !explicit:
		return r.fail(profile, path)
	case err != nil:
		r.err = fmt.Errorf("config file: %w", err)
		return r.err
	}
	r.path = path
	r.set, r.source, r.err = cf.selectProfile(path, profile)
	warnReadableToken(path, cf)
	return r.err
}

// warnReadableToken warns on stderr when the file holds a token and others
// than its owner may read it.
func warnReadableToken(path string, cf *configFile) {
	hasToken := cf.Token != ""
	for _, p := range cf.Profiles {
		hasToken = hasToken || p.Token != ""
	}
	if fi, err := os.Stat(path); err == nil && hasToken && fi.Mode().Perm()&0o077 != 0 {
		fmt.Fprintf(os.Stderr, "streamhouse: warning: %s holds an API token and others can read it (mode %v); chmod 600 it\n", path, fi.Mode().Perm())
	}
}

// fail is load without a file: an error only when a profile was asked for.
func (r *profileResolver) fail(profile, path string) error {
	if profile != "" {
		r.err = fmt.Errorf("--profile %s: no config file (%s does not exist; set --config or STREAMHOUSE_CONFIG)", profile, orDash(path))
	}
	return r.err
}

// flagString is the string value of the flag name on the parsed command
// line ("" when absent).
func flagString(kctx *kong.Context, name string) string {
	for _, f := range kctx.Flags() {
		if f.Name == name {
			if s, ok := kctx.FlagValue(f).(string); ok {
				return s
			}
		}
	}
	return ""
}

// envSet reports whether one of envs is set to a non-empty value.
func envSet(envs []string) bool {
	for _, e := range envs {
		if os.Getenv(e) != "" {
			return true
		}
	}
	return false
}

// connEnvs are the environment variables of the connection flags.
var connEnvs = []string{"STREAMHOUSE_SERVER", "STREAMHOUSE_GRPC", "STREAMHOUSE_CONFIG", "STREAMHOUSE_PROFILE",
	"STREAMHOUSE_TOKEN", "STREAMHOUSE_TLS", "STREAMHOUSE_TLS_CA"}

// dropEmptyConnEnvs unsets the connection variables that are set but
// empty, so that an empty one counts as unset (kong would take its empty
// value over STREAMHOUSE_GRPC, the profile and the default).
func dropEmptyConnEnvs() {
	for _, e := range connEnvs {
		if v, ok := os.LookupEnv(e); ok && v == "" {
			_ = os.Unsetenv(e)
		}
	}
}
