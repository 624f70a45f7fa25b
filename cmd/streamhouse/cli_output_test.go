package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/streamhouse/streamhouse/transport/client"
)

var updateGolden = flag.Bool("update", false, "rewrite the testdata/*.golden files of the CLI output tests")

// golden compares got with testdata/name (rewritten with -update).
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *updateGolden {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (run with -update after checking the change):\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

// outputBatches are three fetched batches over two partitions: keys and
// headers of every length, a null and an empty key, a value that needs
// quoting, one that is not UTF-8, offsets wider in the later batches.
func outputBatches() [][]client.Record {
	const ts = 1764280586648
	h := func(kv ...string) []client.Header {
		var out []client.Header
		for i := 0; i < len(kv); i += 2 {
			out = append(out, client.Header{Key: kv[i], Value: []byte(kv[i+1])})
		}
		return out
	}
	rec := func(p int32, off int64, key []byte, value string, hs []client.Header) client.Record {
		return client.Record{Topic: "orders", Partition: p, Offset: off, Timestamp: ts + off, Key: key, Value: []byte(value), Headers: hs}
	}
	return [][]client.Record{
		{
			rec(0, 0, []byte("a"), `{"id":1}`, nil),
			rec(0, 1, []byte("user-42"), `{"id":2}`, h("source", "cli")),
		},
		{
			rec(1, 1234567, nil, "no key", nil),
			rec(0, 2, []byte{}, "empty key", h("a", "1", "b", "2")),
			rec(1, 1234568, []byte("a-key-much-longer-than-the-key-column"), "tab\there", h("trace", "0123456789abcdef0123456789")),
		},
		{
			rec(1, 1234569, []byte("k"), string([]byte{0xff, 0xfe}), nil),
			rec(0, 3, []byte("b"), "100%", h("x", "y")),
		},
	}
}

// printBatches runs consume's printing (reader.printBatch) over the
// batches, as a run reading partitions 0 and 1 up to their high watermarks.
func printBatches(t *testing.T, c *consumeCmd) []byte {
	t.Helper()
	var buf bytes.Buffer
	out := bufio.NewWriter(&buf)
	target := map[int32]int64{0: 4, 1: 1234570}
	r := &reader{consumeCmd: c, target: target, commitPos: map[int32]int64{}, out: out,
		printer: newRecordPrinter(out, c.format, c.json(), consumeColumns(1, target[1], c.Follow))}
	for _, b := range outputBatches() {
		if _, err := r.printBatch(b); err != nil {
			t.Fatal(err)
		}
		if err := r.flush(); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

// checkAligned fails unless every row of a table starts each of its
// columns (but the last, which may be wide) where the header does.
func checkAligned(t *testing.T, table string) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(table, "\n"), "\n")
	header := lines[0]
	var starts []int
	for i := 1; i < len(header); i++ {
		if header[i] != ' ' && header[i-1] == ' ' {
			starts = append(starts, i)
		}
	}
	starts = starts[:len(starts)-1] // the last column's start is checked by the one before
	for n, line := range lines[1:] {
		runes := []rune(line)
		for _, s := range starts {
			if len(runes) <= s || runes[s] == ' ' || runes[s-1] != ' ' || runes[s-2] != ' ' {
				t.Fatalf("row %d is not aligned with the header at column %d:\n%s\n%s", n+1, s, header, line)
			}
		}
	}
}

func TestConsumeTableGolden(t *testing.T) {
	c := &consumeCmd{}
	got := printBatches(t, c)
	checkAligned(t, string(got))
	if !strings.HasPrefix(string(got), "PARTITION  OFFSET   TIMESTAMP") || !strings.Contains(string(got), "HEADERS") {
		t.Fatalf("header: %q", got)
	}
	golden(t, "consume-table.golden", got)
}

func TestConsumeJSONLinesGolden(t *testing.T) {
	c := &consumeCmd{}
	c.Output = "json"
	golden(t, "consume-json.golden", printBatches(t, c))
}

func TestConsumeFormatGolden(t *testing.T) {
	c := &consumeCmd{Format: `%t/%p@%o key=%k value=%v headers=[%h]\t%T %d 100%%\n`}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	golden(t, "consume-format.golden", printBatches(t, c))
}

func TestParseFormatErrors(t *testing.T) {
	for _, tc := range []struct{ format, want string }{
		{"%x", "unknown verb %x"},
		{"%k %", "ends with a lone '%'"},
		{`%v\q`, `unknown escape \q`},
		{`\`, `ends with a lone '\\'`},
	} {
		if _, err := parseFormat(tc.format); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parseFormat(%q) = %v, want an error with %q", tc.format, err, tc.want)
		}
	}
	f, err := parseFormat("")
	if err != nil || f == nil {
		t.Fatalf("an empty template: %v %v", f, err)
	}
}

func TestParseFrom(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string // StartPosition.String(), or "ago <d>"
	}{
		{"earliest", "earliest"},
		{"", "earliest"},
		{"latest", "latest"},
		{"42", "offset 42"},
		{"@1764280586648", "timestamp 2025-11-27T21:56:26.648Z"},
		{"2025-11-27T21:56:26.648Z", "timestamp 2025-11-27T21:56:26.648Z"},
		{"2025-11-27T22:56:26+01:00", "timestamp 2025-11-27T21:56:26Z"},
		{"-1h", "ago 1h0m0s"},
		{"-15m", "ago 15m0s"},
		{"-2d", "ago 48h0m0s"},
	} {
		s, err := parseFrom(tc.in)
		got := s.pos.String()
		if s.ago > 0 {
			got = "ago " + s.ago.String()
		}
		if err != nil || got != tc.want {
			t.Errorf("parseFrom(%q) = %s %v, want %s", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"abc", "-1", "-0h", "-1x", "@x", "@-5", "2025-13-01T00:00:00Z", "-d"} {
		if _, err := parseFrom(bad); err == nil || !strings.Contains(err.Error(), "want earliest") {
			t.Errorf("parseFrom(%q) = %v, want an error", bad, err)
		}
	}
}

// The produce progress bar counts records without a fake total ("176281/-").
func TestProgressBarWithoutTotal(t *testing.T) {
	var buf bytes.Buffer
	bar := newProgressBar(&buf, "producing to orders")
	if err := bar.Add(176281); err != nil {
		t.Fatal(err)
	}
	if err := bar.Finish(); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if !strings.Contains(out, "producing to orders") || !strings.Contains(out, "176281") || strings.Contains(out, "/-") || !strings.Contains(out, "records/s") {
		t.Fatalf("progress bar: %q", out)
	}
}

// Every -o json document is indented, including a body passed through as
// it came from an agent (cluster status).
func TestWriteJSONIndentsRawBodies(t *testing.T) {
	var buf bytes.Buffer
	if err := writeJSON(&buf, json.RawMessage(`{"node_id":"agent-1","members":[{"id":"agent-1"}]}`)); err != nil {
		t.Fatal(err)
	}
	want := "{\n  \"node_id\": \"agent-1\",\n  \"members\": [\n    {\n      \"id\": \"agent-1\"\n    }\n  ]\n}\n"
	if buf.String() != want {
		t.Fatalf("writeJSON printed %q, want %q", buf.String(), want)
	}
}
