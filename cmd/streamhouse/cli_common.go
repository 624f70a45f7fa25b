package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc/codes"

	"github.com/streamhouse/streamhouse/transport/client"
)

// clientFlags are the flags every client command (topic, produce, consume,
// group) takes. See CLI.md.
type clientFlags struct {
	Server  string        `name:"server" env:"STREAMHOUSE_GRPC" default:"127.0.0.1:9090" help:"Agent gRPC address host:port (comma-separated for several agents)."`
	Output  string        `name:"output" short:"o" default:"table" enum:"table,json" help:"Output format: table or json."`
	Timeout time.Duration `name:"timeout" default:"30s" help:"Timeout of each request to the cluster (admin commands: of the whole command)."`
}

// dial connects to the cluster named by --server.
func (f *clientFlags) dial(ctx context.Context) (*client.Client, error) {
	var addrs []string
	for _, a := range strings.Split(f.Server, ",") {
		if a = strings.TrimSpace(a); a != "" {
			addrs = append(addrs, a)
		}
	}
	if len(addrs) == 0 {
		return nil, errors.New("--server: no address given")
	}
	dctx, cancel := context.WithTimeout(ctx, f.timeout())
	defer cancel()
	c, err := client.Dial(dctx, addrs)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the cluster at %s: %s", f.Server, cliMessage(err))
	}
	return c, nil
}

func (f *clientFlags) timeout() time.Duration {
	if f.Timeout <= 0 {
		return 30 * time.Second
	}
	return f.Timeout
}

func (f *clientFlags) json() bool { return f.Output == "json" }

// cliError turns an error of the client into the one-line error the
// command exits with: the operation, a word for the gRPC code and the
// agent's message (see CLI.md, "Errors and exit codes").
func cliError(what string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %s", what, cliMessage(err))
}

// cliMessage words an error: "<kind>: <agent message>", without repeating
// the kind when the message already says it.
func cliMessage(err error) string {
	var e *client.Error
	if !errors.As(err, &e) {
		if errors.Is(err, context.DeadlineExceeded) {
			return "timed out (raise --timeout?)"
		}
		return err.Error()
	}
	word := codeWords(e)
	msg := strings.TrimSpace(e.Message)
	switch {
	case msg == "":
		return word
	case strings.Contains(strings.ToLower(msg), word):
		return msg
	default:
		return word + ": " + msg
	}
}

func codeWords(e *client.Error) string {
	switch e.Kind {
	case client.KindTopicExists:
		return "already exists"
	case client.KindProducerFenced:
		return "producer fenced"
	case client.KindRecordTooLarge:
		return "record too large"
	case client.KindRequestTooLarge:
		return "request too large"
	}
	switch e.Code {
	case codes.NotFound:
		return "not found"
	case codes.AlreadyExists:
		return "already exists"
	case codes.InvalidArgument:
		return "invalid argument"
	case codes.OutOfRange:
		return "out of range"
	case codes.FailedPrecondition:
		return "failed precondition"
	case codes.Unavailable:
		return "unavailable"
	case codes.Unknown:
		return "outcome unknown"
	case codes.DeadlineExceeded:
		return "timed out"
	case codes.ResourceExhausted:
		return "too large"
	case codes.Unimplemented:
		return "not supported by the agent"
	case codes.Canceled:
		return "canceled"
	default:
		return "error (" + e.Code.String() + ")"
	}
}

// writeJSON writes v as indented JSON followed by a newline.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// bytesJSON renders bytes for JSON output: the string when it is valid
// UTF-8, else base64 (and encoding says "base64").
func bytesJSON(b []byte) (s string, encoding string) {
	if utf8.Valid(b) {
		return string(b), ""
	}
	return base64.StdEncoding.EncodeToString(b), "base64"
}

// bytesText renders bytes for a table cell: as is when printable, else
// Go-quoted.
func bytesText(b []byte) string {
	s := string(b)
	if !utf8.ValidString(s) || strings.ContainsAny(s, "\t\n\r") {
		return strconv.Quote(s)
	}
	return s
}

func msTime(ms int64) string {
	if ms == 0 {
		return "-"
	}
	return time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z")
}

// stderrIsTerminal reports whether stderr is a character device (a
// terminal).
func stderrIsTerminal() bool {
	fi, err := os.Stderr.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
