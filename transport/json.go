package transport

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/streamhouse/streamhouse/fsm"
)

// writeJSON writes v as the JSON response body with the given status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Only our own response types reach here; this is a bug, not input.
		status = http.StatusInternalServerError
		b = []byte(`{"error":{"code":"internal","message":"internal error: encoding the response failed"}}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// decodeBody decodes the request body, which must be exactly one JSON object
// no larger than the body limit, into dst. Unknown fields are rejected so a
// misspelt optional field is reported instead of silently ignored.
func (s *HTTPServer) decodeBody(w http.ResponseWriter, r *http.Request, dst any) error {
	if r.ContentLength > s.bodyLimit {
		return s.tooLarge()
	}
	r.Body = http.MaxBytesReader(w, r.Body, s.bodyLimit)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		if errors.Is(err, io.EOF) {
			return badRequest("request body is empty: expected a JSON object")
		}
		return s.jsonError("", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return s.tooLarge()
		}
		return badRequest("malformed JSON: unexpected data after the JSON object (send exactly one object)")
	}
	return nil
}

func (s *HTTPServer) tooLarge() *apiError {
	return &apiError{status: http.StatusRequestEntityTooLarge, code: CodeRequestTooLarge,
		msg: fmt.Sprintf("request body is larger than the %d-byte limit; split the batch into smaller requests", s.bodyLimit)}
}

// decodeStrict decodes one JSON value (already known to be well formed) into
// dst, rejecting unknown fields. path prefixes error messages.
func (s *HTTPServer) decodeStrict(path string, raw []byte, dst any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return s.jsonError(path, err)
	}
	return nil
}

// jsonError turns an encoding/json error into a 400 (or 413) saying what is
// wrong, without Go type names.
func (s *HTTPServer) jsonError(path string, err error) error {
	var (
		ae  *apiError
		mbe *http.MaxBytesError
		se  *json.SyntaxError
		te  *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.As(err, &mbe):
		return s.tooLarge()
	case errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest("malformed JSON: unexpected end of input")
	case errors.As(err, &se):
		return badRequest("malformed JSON at byte %d: %s", se.Offset, se.Error())
	case errors.As(err, &te):
		field := joinPath(path, te.Field)
		if field == "" {
			return badRequest("expected a JSON object, got %s", te.Value)
		}
		return badRequest("%s: expected %s, got %s", field, describeType(te.Type), te.Value)
	}
	msg := strings.TrimPrefix(err.Error(), "json: ")
	if strings.HasPrefix(msg, "unknown field ") {
		if path != "" {
			return badRequest("%s: %s", path, msg)
		}
		return badRequest("%s", msg)
	}
	return badRequest("reading the request body: %s", msg)
}

func joinPath(path, field string) string {
	switch {
	case path == "":
		return field
	case field == "":
		return path
	}
	return path + "." + field
}

func describeType(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Int:
		return fmt.Sprintf("a %d-bit integer", t.Bits())
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uint:
		return "a non-negative integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Slice, reflect.Array:
		return "an array"
	default:
		return "an object"
	}
}

// isNull reports whether raw is absent or the JSON literal null.
func isNull(raw json.RawMessage) bool {
	t := bytes.TrimSpace(raw)
	return len(t) == 0 || string(t) == "null"
}

// encoding is how a key, value or header value is carried in a JSON string.
type encoding int

const (
	encUTF8 encoding = iota
	encBase64
)

const base64Name = "base64"

func parseEncoding(field, s string) (encoding, error) {
	switch strings.ToLower(s) {
	case "", "utf8", "utf-8":
		return encUTF8, nil
	case base64Name:
		return encBase64, nil
	}
	return 0, badRequest("%s: unknown encoding %q (use \"utf8\" or \"base64\")", field, s)
}

// decodeBytes converts a JSON string to bytes. The result is never nil, so
// an empty key stays distinct from a null key.
func decodeBytes(field, s string, enc encoding) ([]byte, error) {
	if enc == encUTF8 {
		return append([]byte{}, s...), nil
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, badRequest("%s: invalid base64 (standard alphabet, padded): %v", field, err)
	}
	if b == nil {
		b = []byte{}
	}
	return b, nil
}

// encodeBytes returns b as a JSON string value and whether it had to be
// base64-encoded (forced, or because b is not valid UTF-8).
func encodeBytes(b []byte, force bool) (string, bool) {
	if !force && utf8.Valid(b) {
		return string(b), false
	}
	return base64.StdEncoding.EncodeToString(b), true
}

// rawHeader is a header as sent, before its value encoding is applied.
type rawHeader struct {
	key, value string
}

// parseHeaders accepts either an object {"k":"v",...}, kept in document order
// (duplicates included), or an array [{"key":"k","value":"v"},...]. null or
// absent means no headers.
func (s *HTTPServer) parseHeaders(field string, raw json.RawMessage) ([]rawHeader, error) {
	if isNull(raw) {
		return nil, nil
	}
	t := bytes.TrimSpace(raw)
	switch t[0] {
	case '{':
		return parseHeaderObject(field, t)
	case '[':
		var arr []json.RawMessage
		if err := json.Unmarshal(t, &arr); err != nil {
			return nil, s.jsonError(field, err)
		}
		out := make([]rawHeader, 0, len(arr))
		for i, el := range arr {
			p := fmt.Sprintf("%s[%d]", field, i)
			var h struct {
				Key   *string `json:"key"`
				Value *string `json:"value"`
			}
			if isNull(el) {
				return nil, badRequest("%s: expected an object {\"key\":...,\"value\":...}, got null", p)
			}
			if err := s.decodeStrict(p, el, &h); err != nil {
				return nil, err
			}
			if h.Key == nil {
				return nil, badRequest("%s.key is required (a string)", p)
			}
			if h.Value == nil {
				return nil, badRequest("%s.value is required (a string)", p)
			}
			out = append(out, rawHeader{key: *h.Key, value: *h.Value})
		}
		return out, nil
	}
	return nil, badRequest("%s: expected an object {\"key\":\"value\",...} or an array [{\"key\":...,\"value\":...},...]", field)
}

func parseHeaderObject(field string, raw []byte) ([]rawHeader, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	malformed := badRequest("%s: malformed header object", field)
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, malformed
	}
	var out []rawHeader
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, malformed
		}
		key, ok := tok.(string)
		if !ok {
			return nil, malformed
		}
		var v *string
		if err := dec.Decode(&v); err != nil || v == nil {
			return nil, badRequest("%s[%q]: header values must be strings", field, key)
		}
		out = append(out, rawHeader{key: key, value: *v})
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return nil, malformed
	}
	return out, nil
}

func decodeHeaders(field string, hs []rawHeader, enc encoding) ([]fsm.Header, error) {
	if len(hs) == 0 {
		return nil, nil
	}
	out := make([]fsm.Header, len(hs))
	for i, h := range hs {
		v, err := decodeBytes(fmt.Sprintf("%s[%q]", field, h.key), h.value, enc)
		if err != nil {
			return nil, err
		}
		out[i] = fsm.Header{Key: h.key, Value: v}
	}
	return out, nil
}

// orderedHeaders marshals as a JSON object whose members keep slice order
// (and duplicates), unlike a Go map.
type orderedHeaders []rawHeader

func (hs orderedHeaders) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, h := range hs {
		if i > 0 {
			b.WriteByte(',')
		}
		k, err := json.Marshal(h.key)
		if err != nil {
			return nil, err
		}
		v, err := json.Marshal(h.value)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// clipLen is the most characters of client-supplied text an error message
// echoes.
const clipLen = 64

// clip shortens client-supplied text echoed in error messages.
func clip(s string) string {
	if len(s) <= clipLen {
		return s
	}
	// Cut on a rune boundary so the message stays valid UTF-8.
	n := clipLen
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}

// quotedRun matches a Go-quoted string (%q) longer than clipLen bytes.
var quotedRun = regexp.MustCompile(`"(?:[^"\\]|\\.){` + strconv.Itoa(clipLen+1) + `,}"`)

// clipQuoted shortens every long quoted string in a public error message:
// the names and values a client sent (a 300-character topic name) are
// echoed %q-quoted by the packages that refuse them, and one place keeps
// all of them short. Applied to every REST error (writeError) and every
// classified failure (REST and gRPC).
func clipQuoted(msg string) string {
	return quotedRun.ReplaceAllStringFunc(msg, func(q string) string {
		if s, err := strconv.Unquote(q); err == nil {
			return strconv.Quote(clip(s))
		}
		return q[:clipLen] + `..."`
	})
}
