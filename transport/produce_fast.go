package transport

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/tidwall/gjson"

	"github.com/streamhouse/streamhouse/fsm"
)

// maxFastDepth bounds how deeply a body the one-pass decoder looks at may
// nest: gjson's validator recurses once per level, so a body of nothing
// but brackets must not reach it (the strict decoder, which does not
// recurse, refuses nesting deeper than encoding/json's limit). A batch it
// takes nests at most 5 deep: the body, records, a record, its headers, a
// header.
const maxFastDepth = 8

// nestedAtMost reports whether body nests '{' and '[' outside strings at
// most max deep. body need not be valid JSON (this only bounds what the
// validator sees); strings are skipped with IndexByte, an escaped quote
// being one after an odd run of backslashes.
func nestedAtMost(body []byte, max int) bool {
	depth := 0
	for i := 0; i < len(body); i++ {
		switch body[i] {
		case '"':
			for {
				k := bytes.IndexByte(body[i+1:], '"')
				if k < 0 {
					return true // unterminated: the validator refuses it
				}
				i += k + 1
				run := 0
				for b := i - 1; body[b] == '\\'; b-- {
					run++
				}
				if run%2 == 0 {
					break
				}
			}
		case '{', '[':
			if depth++; depth > max {
				return false
			}
		case '}', ']':
			depth--
		}
	}
	return true
}

// decodeBatchFast decodes a produce batch in one pass: gjson validates the
// body (strict JSON, the same grammar as encoding/json) and walks it
// without reflection, each string taken as is when it is plain (no
// escapes, valid UTF-8) and decoded by encoding/json otherwise. It
// succeeds only for a batch that decodeBatch accepts with the same result
// (FuzzDecodeBatchFast); for any other (ok false: a repeated or case-folded
// key, a record's topic, a number or type the strict decoder would refuse
// or convert, a record toProduceRecord refuses) the caller runs
// decodeBatch, which names what is wrong.
//
// allow authorizes the topic before any record is decoded (as decodeBatch
// does); its error is the request's answer.
func (s *HTTPServer) decodeBatchFast(body []byte, allow func(topic string) error) (topic string, recs []fsm.ProduceRecord, ok bool, err error) {
	if !nestedAtMost(body, maxFastDepth) || !gjson.ValidBytes(body) {
		return "", nil, false, nil
	}
	root := gjson.ParseBytes(body)
	if !root.IsObject() {
		return "", nil, false, nil
	}
	var records gjson.Result
	var seen uint8
	ok = true
	root.ForEach(func(k, v gjson.Result) bool {
		switch k.Raw {
		case `"topic"`:
			topic, ok = jsonString(v)
			ok = ok && seen&1 == 0 && topic != ""
			seen |= 1
		case `"records"`:
			records, ok = v, seen&2 == 0 && v.IsArray()
			seen |= 2
		default:
			ok = false
		}
		return ok
	})
	if !ok || seen != 3 {
		return "", nil, false, nil
	}
	topic = strings.Clone(topic) // not a window on the body's copy
	if err := allow(topic); err != nil {
		return "", nil, false, err
	}
	recs = make([]fsm.ProduceRecord, 0, min(len(records.Raw)/16, 1<<12))
	records.ForEach(func(_, v gjson.Result) bool {
		var rj recordJSON
		if rj, ok = fastRecord(v); !ok {
			return false
		}
		rec, err := s.toProduceRecord("", &rj)
		if err != nil {
			ok = false
			return false
		}
		recs = append(recs, rec)
		return true
	})
	if !ok || len(recs) == 0 {
		return "", nil, false, nil
	}
	return topic, recs, true, nil
}

// fastRecord is one record of a batch as encoding/json would decode it
// into recordJSON — or false where it might not: a key that is not
// exactly one of the fields (encoding/json folds case) or comes twice
// (encoding/json keeps the last), a record's topic, a number that is not
// a plain integer of the field's size, a string field holding another type.
func fastRecord(v gjson.Result) (rj recordJSON, ok bool) {
	if !v.IsObject() {
		return rj, false
	}
	var seen uint8
	ok = true
	v.ForEach(func(k, f gjson.Result) bool {
		var bit uint8
		switch k.Raw {
		case `"key"`:
			bit = 1 << 0
			rj.Key, ok = jsonOpt(f, jsonString)
		case `"value"`:
			bit = 1 << 1
			rj.Value = json.RawMessage(f.Raw)
		case `"partition"`:
			bit = 1 << 2
			rj.Partition, ok = jsonOpt(f, jsonInt[int32])
		case `"timestamp"`:
			bit = 1 << 3
			rj.Timestamp, ok = jsonOpt(f, jsonInt[int64])
		case `"headers"`:
			bit = 1 << 4
			rj.Headers = json.RawMessage(f.Raw)
		case `"key_encoding"`:
			bit = 1 << 5
			rj.KeyEncoding, ok = jsonOptString(f)
		case `"value_encoding"`:
			bit = 1 << 6
			rj.ValueEncoding, ok = jsonOptString(f)
		case `"headers_encoding"`:
			bit = 1 << 7
			rj.HeadersEncoding, ok = jsonOptString(f)
		default: // a record's topic, an unknown or case-folded key
			ok = false
		}
		ok = ok && seen&bit == 0
		seen |= bit
		return ok
	})
	return rj, ok && rj.Value != nil
}

// jsonString is a JSON string token's value as encoding/json decodes it:
// its bytes when plain, else through encoding/json (escapes, and invalid
// UTF-8, which it replaces with U+FFFD).
func jsonString(v gjson.Result) (string, bool) {
	if v.Type != gjson.String {
		return "", false
	}
	raw := v.Raw
	if in := raw[1 : len(raw)-1]; strings.IndexByte(in, '\\') < 0 && utf8.ValidString(in) {
		return in, true
	}
	var s string
	return s, json.Unmarshal([]byte(raw), &s) == nil
}

// jsonOptString is a string field that JSON null leaves empty.
func jsonOptString(v gjson.Result) (string, bool) {
	if v.Type == gjson.Null {
		return "", true
	}
	return jsonString(v)
}

// jsonOpt is a pointer field: nil for JSON null, else what decode makes of
// the token.
func jsonOpt[T any](v gjson.Result, decode func(gjson.Result) (T, bool)) (*T, bool) {
	if v.Type == gjson.Null {
		return nil, true
	}
	x, ok := decode(v)
	return &x, ok
}

// jsonInt is a number token that encoding/json decodes into T: digits with
// an optional minus sign (no fraction or exponent), in T's range.
func jsonInt[T int32 | int64](v gjson.Result) (T, bool) {
	if v.Type != gjson.Number {
		return 0, false
	}
	for i := 0; i < len(v.Raw); i++ {
		if c := v.Raw[i]; (c < '0' || c > '9') && !(c == '-' && i == 0) {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(v.Raw, 10, 64)
	return T(n), err == nil && int64(T(n)) == n
}
