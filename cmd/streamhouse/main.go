// Command streamhouse is the StreamHouse agent and its command-line tools.
package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/alecthomas/kong"
	"github.com/willabides/kongplete"
)

type cli struct {
	VersionFlag kong.VersionFlag `name:"version" help:"Print the version, commit and Go version, and exit."`

	Agent      agentCmd      `cmd:"" help:"Run a StreamHouse agent."`
	Cluster    clusterCmd    `cmd:"" help:"Inspect the cluster: status and health."`
	Restore    restoreCmd    `cmd:"" help:"Disaster recovery: rebuild a cluster's state in an empty DATA_DIR from the latest Postgres checkpoint and the bucket, then exit."`
	Bench      benchCmd      `cmd:"" help:"Load-test a running agent over REST and report throughput and latency."`
	Topic      topicCmd      `cmd:"" help:"Create, list, describe and delete topics (gRPC API; see CLI.md)."`
	Produce    produceCmd    `cmd:"" help:"Produce records from arguments or stdin lines with the idempotent producer."`
	Consume    consumeCmd    `cmd:"" help:"Print the records of a topic (optionally as a consumer group)."`
	Group      groupCmd      `cmd:"" help:"List, describe, reset and delete consumer groups."`
	APIKey     apikeyCmd     `cmd:"" name:"apikey" help:"Create API keys (bearer tokens) for API_KEYS_FILE."`
	Config     configCmd     `cmd:"" help:"Show the effective connection settings and where each comes from (flag, environment, config file, default)."`
	Completion completionCmd `cmd:"" help:"Print a shell completion script: bash, zsh or fish."`
	Version    versionCmd    `cmd:"" help:"Print the version, commit and Go version."`
}

type versionCmd struct{}

func (versionCmd) Run() error {
	fmt.Println(versionText())
	return nil
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	dropEmptyConnEnvs()
	var c cli
	exited, exitCode := false, 0
	resolver := &profileResolver{}
	parser, err := kong.New(&c,
		kong.Name("streamhouse"),
		kong.Description("StreamHouse: an S3-native event streaming system."),
		kong.UsageOnError(),
		kong.Vars{"version": versionText()},
		kong.Resolvers(resolver),
		kong.Bind(resolver),
		// --help (and kong's own exits) end parsing; run returns the code
		// instead of kong calling os.Exit, so tests can call run.
		kong.Exit(func(code int) { exited, exitCode = true, code }),
	)
	if err != nil {
		fmt.Fprintln(os.Stderr, "streamhouse:", err)
		return 2
	}
	// A shell asking for completions (COMP_LINE set) gets them and ends here.
	kongplete.Complete(parser, kongplete.WithExitFunc(func(code int) { exited, exitCode = true, code }))
	if exited {
		return exitCode
	}
	kctx, err := parser.Parse(args)
	if exited {
		return exitCode
	}
	if err != nil {
		msg := explainParseError(parser, err)
		var ee explainedError
		if errors.As(err, &ee) {
			msg = ee.Error()
		}
		fmt.Fprintln(os.Stderr, "streamhouse: configuration error:", msg)
		return 2
	}
	if kctx == nil { // --help
		return 0
	}
	if err := checkServerFlag(kctx); err != nil {
		fmt.Fprintln(os.Stderr, "streamhouse: configuration error:", err)
		return 2
	}
	if !strings.HasPrefix(kctx.Command(), "agent") { // the agent logs it (warnSecretFlags)
		flags, instead := secretFlagsIn(args)
		for i, f := range flags {
			fmt.Fprintf(os.Stderr, "streamhouse: warning: %s is visible to every local user (ps, /proc); use %s instead\n", f, instead[i])
		}
	}
	if err := kctx.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "streamhouse:", err)
		return 1
	}
	return 0
}
