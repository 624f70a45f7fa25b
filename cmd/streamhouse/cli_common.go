package main

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc/codes"

	"github.com/streamhouse/streamhouse/transport"
	"github.com/streamhouse/streamhouse/transport/client"
)

// clientFlags are the flags every client command (topic, produce, consume,
// group) takes. See CLI.md.
type clientFlags struct {
	connFlags
	Output  string        `name:"output" short:"o" default:"table" enum:"table,json" help:"Output format: table or json."`
	Timeout time.Duration `name:"timeout" default:"30s" help:"Timeout of each request to the cluster (admin commands: of the whole command)."`
}

// securityFlags are the TLS and API-key flags of every command that talks
// to an agent (client commands, cluster, bench); a config profile can set
// them (profile.go).
type securityFlags struct {
	TLS                bool   `name:"tls" env:"STREAMHOUSE_TLS" help:"Connect over TLS, verifying the agent's certificate against the system roots (or --tls-ca). Implied by --tls-ca, --insecure-skip-verify and https:// URLs."`
	TLSCA              string `name:"tls-ca" env:"STREAMHOUSE_TLS_CA" help:"PEM CA certificate(s) to verify the agent's TLS certificate with (implies --tls)."`
	InsecureSkipVerify bool   `name:"insecure-skip-verify" help:"Connect over TLS without verifying the agent's certificate (testing only: anyone in the path can read the traffic and the token)."`
	Token              string `name:"token" env:"STREAMHOUSE_TOKEN" help:"API key sent as Authorization: Bearer (needed when the agents set API_KEYS_FILE). Prefer the environment variable: flags show up in ps."`
}

// tlsConfig is the client TLS config the flags ask for; nil = plaintext
// (unless forced, e.g. by an https URL: then the system roots verify).
func (f *securityFlags) tlsConfig(force bool) (*tls.Config, error) {
	if !f.TLS && f.TLSCA == "" && !f.InsecureSkipVerify && !force {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if f.TLSCA != "" {
		pool, err := transport.LoadCertPool(f.TLSCA)
		if err != nil {
			return nil, fmt.Errorf("--tls-ca: %w", err)
		}
		cfg.RootCAs = pool
	}
	if f.InsecureSkipVerify {
		cfg.InsecureSkipVerify = true //nolint:gosec // the user asked for it
	}
	return cfg, nil
}

// clientOptions are the Go client's options for the flags.
func (f *securityFlags) clientOptions(force bool) ([]client.Option, error) {
	var opts []client.Option
	cfg, err := f.tlsConfig(force)
	if err != nil {
		return nil, err
	}
	if cfg != nil {
		opts = append(opts, client.WithTLS(cfg))
	}
	if f.Token != "" {
		opts = append(opts, client.WithToken(f.Token))
	}
	return opts, nil
}

// httpClient is an HTTP client for REST URLs: TLS as the flags (or an
// https URL) ask, and the token on every request.
func (f *securityFlags) httpClient(base *http.Transport, timeout time.Duration, https bool) (*http.Client, error) {
	if base == nil {
		base = &http.Transport{}
	}
	cfg, err := f.tlsConfig(https)
	if err != nil {
		return nil, err
	}
	base.TLSClientConfig = cfg
	var rt http.RoundTripper = base
	if f.Token != "" {
		rt = bearerTransport{next: base, header: "Bearer " + f.Token}
	}
	return &http.Client{Timeout: timeout, Transport: rt}, nil
}

// bearerTransport adds the Authorization header to every request.
type bearerTransport struct {
	next   http.RoundTripper
	header string
}

func (b bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", b.header)
	return b.next.RoundTrip(r)
}

// dial connects to the cluster named by --server.
func (f *clientFlags) dial(ctx context.Context) (*client.Client, error) {
	addrs, err := parseServerList(string(f.Server))
	if err != nil {
		return nil, err
	}
	dctx, cancel := context.WithTimeout(ctx, f.timeout())
	defer cancel()
	opts, err := f.clientOptions(false)
	if err != nil {
		return nil, err
	}
	c, err := client.Dial(dctx, addrs, opts...)
	if err != nil {
		if code := client.Code(err); code == codes.Unauthenticated || code == codes.PermissionDenied {
			return nil, fmt.Errorf("the cluster at %s refused the request: %s", f.Server, cliMessage(err))
		}
		return nil, fmt.Errorf("cannot reach the cluster at %s: %s", f.Server, cliMessage(err))
	}
	return c, nil
}

// splitList splits a comma-separated flag value, dropping blanks.
func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// session is the connection of a streaming command (produce, consume).
type session struct {
	ctx   context.Context // ends on SIGINT or SIGTERM
	setup context.Context // ctx bounded by --timeout, for the calls before streaming
	cl    *client.Client
	close func()
}

// openSession connects to the cluster for a streaming command.
func (f *clientFlags) openSession() (*session, error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	cl, err := f.dial(ctx)
	if err != nil {
		stop()
		return nil, err
	}
	setup, cancelSetup := context.WithTimeout(ctx, f.timeout())
	return &session{ctx: ctx, setup: setup, cl: cl, close: func() {
		cancelSetup()
		_ = cl.Close()
		stop()
	}}, nil
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
	hint := ""
	if e.Code == codes.Unauthenticated {
		hint = " (set --token or STREAMHOUSE_TOKEN)"
	}
	switch {
	case msg == "":
		return word + hint
	case strings.Contains(strings.ToLower(msg), word):
		return msg + hint
	default:
		return word + ": " + msg + hint
	}
}

// cliCodeWords are the CLI's wordings (CLI.md) where they differ from the
// client's (client.CodeWord).
var cliCodeWords = map[codes.Code]string{
	codes.OutOfRange:        "out of range",
	codes.DeadlineExceeded:  "timed out",
	codes.ResourceExhausted: "too large",
	codes.Unimplemented:     "not supported by the agent",
}

// kindWords word the agent's error kinds that say more than their code.
var kindWords = map[string]string{
	client.KindTopicExists:     "already exists",
	client.KindProducerFenced:  "producer fenced",
	client.KindRecordTooLarge:  "record too large",
	client.KindRequestTooLarge: "request too large",
}

// codeWords words the kind or code of e: a code without a wording is
// "error (<code name>)".
func codeWords(e *client.Error) string {
	if w, ok := kindWords[e.Kind]; ok {
		return w
	}
	if w, ok := cliCodeWords[e.Code]; ok {
		return w
	}
	if w := client.CodeWord(e.Code); w != e.Code.String() && e.Code != codes.Internal {
		return w
	}
	return "error (" + e.Code.String() + ")"
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
