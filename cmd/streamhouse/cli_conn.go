package main

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/alecthomas/kong"
)

// defaultServer is the cluster every client command names without
// --server, STREAMHOUSE_SERVER or a profile: a local agent's GRPC_PORT.
const defaultServer = "127.0.0.1:9090"

// connFlags name the cluster and how to reach it, the same way for every
// command that talks to agents (topic, produce, consume, group, cluster,
// config). Precedence: flag > environment > config profile > default (see
// profile.go).
type connFlags struct {
	Server  serverList `name:"server" env:"STREAMHOUSE_SERVER,STREAMHOUSE_GRPC" default:"127.0.0.1:9090" placeholder:"HOST:PORT,..." help:"The agents' gRPC addresses (GRPC_PORT), comma-separated; any one that answers will do."`
	Config  string     `name:"config" env:"STREAMHOUSE_CONFIG" placeholder:"PATH" help:"Config file with the connection settings (default $XDG_CONFIG_HOME/streamhouse/config.yaml, else ~/.config/streamhouse/config.yaml)."`
	Profile string     `name:"profile" env:"STREAMHOUSE_PROFILE" help:"Named profile of the config file (default: the file's \"profile\" key)."`
	securityFlags
}

// serverList is the value of --server: gRPC host:port addresses,
// comma-separated. run checks it after parsing (checkServerFlag), so a bad
// value exits 2 with a message saying what the flag wants.
type serverList string

// serverWants says what --server takes, for error messages.
const serverWants = "--server takes the agents' gRPC host:port (GRPC_PORT, default 9090), comma-separated for several agents"

// checkServerFlag checks the --server value of the parsed command line,
// wherever it came from (flag, environment, profile, default): kong's
// validation hooks see only values given on the command line.
func checkServerFlag(kctx *kong.Context) error {
	for _, f := range kctx.Flags() {
		if s, ok := kctx.FlagValue(f).(serverList); ok {
			_, err := parseServerList(string(s))
			return err
		}
	}
	return nil
}

// parseServerList splits and checks a --server value.
func parseServerList(s string) ([]string, error) {
	addrs := splitList(s)
	if len(addrs) == 0 {
		return nil, errors.New("no address given; " + serverWants)
	}
	for _, a := range addrs {
		if err := checkServerAddr(a); err != nil {
			return nil, err
		}
	}
	return addrs, nil
}

// checkServerAddr checks one host:port.
func checkServerAddr(a string) error {
	if strings.Contains(a, "://") {
		return fmt.Errorf("%q is a URL; %s, e.g. 127.0.0.1:9090 (REST URLs are for curl and bench)", a, serverWants)
	}
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return fmt.Errorf("%q has no port; %s, e.g. %s:9090", a, serverWants, strings.Trim(a, "[]"))
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("%q: port %q is not a number from 1 to 65535; %s", a, port, serverWants)
	}
	if host == "" {
		return fmt.Errorf("%q has no host; %s", a, serverWants)
	}
	return nil
}

// explainedError is a command-line error whose message already says which
// flag, variable or file is wrong: run prints its message alone (exit 2),
// without kong's flag prefix and explainParseError's variable hint.
type explainedError struct{ error }

func (e explainedError) Unwrap() error { return e.error }
