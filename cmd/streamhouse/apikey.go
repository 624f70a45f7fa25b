package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/streamhouse/streamhouse/transport"
)

type apikeyCmd struct {
	Create apikeyCreateCmd `cmd:"" help:"Generate an API key: prints the token (once) and the line to add to API_KEYS_FILE."`
}

type apikeyCreateCmd struct {
	Name   string `name:"name" required:"" help:"Name of the key (1-64 characters from [A-Za-z0-9._-]); it appears in logs and error messages, never the token."`
	Scope  string `name:"scope" default:"read" enum:"read,write,admin" help:"read (consume, describe, list), write (+ produce, commit offsets), admin (+ create/delete topics)."`
	Topics string `name:"topics" default:"*" help:"Comma-separated topics the key may use (a trailing * matches a prefix), or * for every topic."`
	Output string `name:"output" short:"o" default:"table" enum:"table,json" help:"table or json."`
}

func (c *apikeyCreateCmd) Run() error {
	scope, err := transport.ParseScope(c.Scope)
	if err != nil {
		return err
	}
	token, key, err := transport.NewAPIKey(c.Name, scope, transport.ParseTopicList(c.Topics))
	if err != nil {
		return err
	}
	if c.Output == "json" {
		topics := key.Topics
		if topics == nil {
			topics = []string{"*"}
		}
		return writeJSON(os.Stdout, map[string]any{
			"name": key.Name, "scope": key.Scope.String(), "topics": topics, "token": token, "line": key.Line(),
		})
	}
	fmt.Printf("token: %s\n", token)
	fmt.Printf("line:  %s\n", key.Line())
	fmt.Fprintln(os.Stderr, strings.TrimSpace(`
The token is shown only now: the agents store its SHA-256, never the token.
Give the token to the client (Authorization: Bearer <token>, or
STREAMHOUSE_TOKEN for the CLI) and append the line to API_KEYS_FILE on every
agent; agents re-read the file within seconds. Delete the line to revoke.`))
	return nil
}
