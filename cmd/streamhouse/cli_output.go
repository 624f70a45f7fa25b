package main

// Output of consume: the fixed-layout table, JSON lines and --format
// templates (CLI.md, "consume").

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/streamhouse/streamhouse/transport/client"
)

// tableColumn is one column of a fixedTable.
type tableColumn struct {
	name  string
	width int  // cells are padded to it (the last column is written as is)
	cut   bool // longer cells are cut to width, ending in "…"; else they overflow
}

// fixedTable writes rows whose column layout is decided before the first
// row and never re-measured, so rows written batch after batch stay aligned
// with the header (text/tabwriter measures every flushed block anew).
type fixedTable struct {
	w    io.Writer
	cols []tableColumn
	buf  []byte
}

// tableGap separates the columns.
const tableGap = "  "

func (t *fixedTable) header() error {
	names := make([]string, len(t.cols))
	for i, c := range t.cols {
		names[i] = c.name
	}
	return t.row(names...)
}

// row writes one row; cells[i] is column i's text.
func (t *fixedTable) row(cells ...string) error {
	b := t.buf[:0]
	for i, c := range t.cols {
		cell := cells[i]
		if i == len(t.cols)-1 {
			b = append(b, cell...)
			break
		}
		if c.cut {
			cell = cutText(cell, c.width)
		}
		b = append(b, cell...)
		for n := utf8.RuneCountInString(cell); n < c.width; n++ {
			b = append(b, ' ')
		}
		b = append(b, tableGap...)
	}
	b = append(b, '\n')
	t.buf = b
	_, err := t.w.Write(b)
	return err
}

// cutText shortens s to width characters, the last one "…".
func cutText(s string, width int) string {
	if utf8.RuneCountInString(s) <= width {
		return s
	}
	r := []rune(s)
	return string(r[:max(width-1, 0)]) + "…"
}

// Widths of consume's table columns that do not depend on the data.
const (
	keyColumnWidth     = 24
	headersColumnWidth = 24
	timestampWidth     = len("2006-01-02T15:04:05.000Z")
)

// consumeColumns is consume's table layout: the numbers as wide as the
// largest partition and offset known at start (with room for a hundred
// times more offsets with --follow), the key and headers cut to a fixed
// width, the value last and whole.
func consumeColumns(maxPartition int32, maxOffset int64, follow bool) []tableColumn {
	offsetDigits := len(strconv.FormatInt(max(maxOffset, 0), 10))
	if follow {
		offsetDigits += 2
	}
	return []tableColumn{
		{name: "PARTITION", width: max(len("PARTITION"), len(strconv.Itoa(int(maxPartition))))},
		{name: "OFFSET", width: max(len("OFFSET"), offsetDigits)},
		{name: "TIMESTAMP", width: timestampWidth},
		{name: "KEY", width: keyColumnWidth, cut: true},
		{name: "HEADERS", width: headersColumnWidth, cut: true},
		{name: "VALUE"},
	}
}

// keyText is a key's table cell: "(null)" for a null key, "" (two
// quotes) for an empty one.
func keyText(k []byte) string {
	switch {
	case k == nil:
		return "(null)"
	case len(k) == 0:
		return `""`
	}
	return bytesText(k)
}

// headersText is the headers' table cell: k=v pairs separated by commas,
// "-" for none.
func headersText(hs []client.Header) string {
	if len(hs) == 0 {
		return "-"
	}
	var b strings.Builder
	for i, h := range hs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(bytesText([]byte(h.Key)))
		b.WriteByte('=')
		b.WriteString(bytesText(h.Value))
	}
	return b.String()
}

// recordPrinter prints consumed records in one output format.
type recordPrinter interface {
	print(r *client.Record) error
}

// tablePrinter prints the table; the header comes with the first record,
// so a run that reads nothing prints nothing.
type tablePrinter struct {
	t      fixedTable
	headed bool
}

func (p *tablePrinter) print(r *client.Record) error {
	if !p.headed {
		p.headed = true
		if err := p.t.header(); err != nil {
			return err
		}
	}
	return p.t.row(strconv.Itoa(int(r.Partition)), strconv.FormatInt(r.Offset, 10), msTime(r.Timestamp),
		keyText(r.Key), headersText(r.Headers), bytesText(r.Value))
}

// recordJSON is one consumed record in JSON output (one object per line).
type recordJSON struct {
	Topic         string       `json:"topic"`
	Partition     int32        `json:"partition"`
	Offset        int64        `json:"offset"`
	Timestamp     int64        `json:"timestamp"`
	Key           *string      `json:"key"`
	KeyEncoding   string       `json:"key_encoding,omitempty"`
	Value         string       `json:"value"`
	ValueEncoding string       `json:"value_encoding,omitempty"`
	Headers       []headerJSON `json:"headers,omitempty"`
}

type headerJSON struct {
	Key      string `json:"key"`
	Value    string `json:"value"`
	Encoding string `json:"encoding,omitempty"`
}

// jsonPrinter prints JSON lines: one compact object per record.
type jsonPrinter struct{ enc *json.Encoder }

func (p jsonPrinter) print(r *client.Record) error {
	j := recordJSON{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Timestamp: r.Timestamp}
	if r.Key != nil {
		k, e := bytesJSON(r.Key)
		j.Key, j.KeyEncoding = &k, e
	}
	j.Value, j.ValueEncoding = bytesJSON(r.Value)
	for _, h := range r.Headers {
		v, e := bytesJSON(h.Value)
		j.Headers = append(j.Headers, headerJSON{Key: h.Key, Value: v, Encoding: e})
	}
	return p.enc.Encode(j)
}

// formatPrinter prints every record through a --format template.
type formatPrinter struct {
	w   io.Writer
	f   recordFormat
	buf []byte
}

func (p *formatPrinter) print(r *client.Record) error {
	p.buf = p.f.append(p.buf[:0], r)
	_, err := p.w.Write(p.buf)
	return err
}

// newRecordPrinter returns the printer of the output flags: a --format
// template, JSON lines, or the table laid out by cols.
func newRecordPrinter(w *bufio.Writer, format recordFormat, asJSON bool, cols []tableColumn) recordPrinter {
	switch {
	case format != nil:
		return &formatPrinter{w: w, f: format}
	case asJSON:
		return jsonPrinter{enc: json.NewEncoder(w)}
	default:
		return &tablePrinter{t: fixedTable{w: w, cols: cols}}
	}
}

// recordFormat is a compiled --format template: literal text and verbs.
type recordFormat []formatPart

type formatPart struct {
	lit  string
	verb byte // 0 for literal text
}

// formatVerbs are the --format verbs and what they print.
const formatVerbs = "%t topic, %p partition, %o offset, %k key, %v value, %h headers, %T timestamp (unix ms), %d timestamp (RFC 3339), %% a percent sign"

// parseFormat compiles a --format template (kcat's and rpk's verbs; escapes
// \n \t \r \\). Unknown verbs and escapes are errors.
func parseFormat(s string) (recordFormat, error) {
	var out recordFormat
	var lit strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '%' && c != '\\' {
			lit.WriteByte(c)
			continue
		}
		if i+1 == len(s) {
			return nil, fmt.Errorf("--format %q ends with a lone %q", s, c)
		}
		i++
		n := s[i]
		if c == '\\' {
			e, ok := map[byte]byte{'n': '\n', 't': '\t', 'r': '\r', '\\': '\\'}[n]
			if !ok {
				return nil, fmt.Errorf("--format %q: unknown escape \\%c (want \\n, \\t, \\r or \\\\)", s, n)
			}
			lit.WriteByte(e)
			continue
		}
		switch n {
		case '%':
			lit.WriteByte('%')
		case 't', 'p', 'o', 'k', 'v', 'h', 'T', 'd':
			if lit.Len() > 0 {
				out = append(out, formatPart{lit: lit.String()})
				lit.Reset()
			}
			out = append(out, formatPart{verb: n})
		default:
			return nil, fmt.Errorf("--format %q: unknown verb %%%c (want %s)", s, n, formatVerbs)
		}
	}
	if lit.Len() > 0 {
		out = append(out, formatPart{lit: lit.String()})
	}
	if out == nil {
		out = recordFormat{} // an empty template prints nothing, but it is one
	}
	return out, nil
}

// append renders r. Keys, values and header values are written as they
// are (a null key as nothing); headers as k=v pairs separated by commas.
func (f recordFormat) append(dst []byte, r *client.Record) []byte {
	for _, p := range f {
		switch p.verb {
		case 0:
			dst = append(dst, p.lit...)
		case 't':
			dst = append(dst, r.Topic...)
		case 'p':
			dst = strconv.AppendInt(dst, int64(r.Partition), 10)
		case 'o':
			dst = strconv.AppendInt(dst, r.Offset, 10)
		case 'k':
			dst = append(dst, r.Key...)
		case 'v':
			dst = append(dst, r.Value...)
		case 'h':
			for i, h := range r.Headers {
				if i > 0 {
					dst = append(dst, ',')
				}
				dst = append(append(append(dst, h.Key...), '='), h.Value...)
			}
		case 'T':
			dst = strconv.AppendInt(dst, r.Timestamp, 10)
		case 'd':
			dst = time.UnixMilli(r.Timestamp).UTC().AppendFormat(dst, "2006-01-02T15:04:05.000Z07:00")
		}
	}
	return dst
}
