package main

import (
	"strings"
	"testing"

	"github.com/alecthomas/kong"
)

// TestParseErrorNamesTheVariableOnce: a bad value names its environment
// variable exactly once, whether it came from the variable or the flag.
func TestParseErrorNamesTheVariableOnce(t *testing.T) {
	parse := func(args ...string) string {
		t.Helper()
		var c cli
		parser, err := kong.New(&c, kong.Exit(func(int) {}))
		if err != nil {
			t.Fatal(err)
		}
		_, err = parser.Parse(args)
		if err == nil {
			t.Fatalf("%v parsed", args)
		}
		return explainParseError(parser, err)
	}
	t.Setenv("HTTP_PORT", "abc")
	got := parse("agent")
	if want := `HTTP_PORT (--http-port): expected a valid 64 bit int but got "abc"`; got != want {
		t.Errorf("from the variable: %q, want %q", got, want)
	}
	t.Setenv("HTTP_PORT", "")
	got = parse("agent", "--grpc-port=x")
	if strings.Count(got, "GRPC_PORT") != 1 || !strings.HasPrefix(got, "--grpc-port") {
		t.Errorf("from the flag: %q, want --grpc-port named first and GRPC_PORT once", got)
	}
}
