package resources

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
)

// paramFields are the top-level elements of typ the paths of the parameters keep accepts
// start at ("code" for "code.coding", "value" for "value[x]"), each once.
func paramFields(typ string, keep func(Param) bool) []string {
	var fields []string
	for _, p := range Params(typ) {
		if !keep(p) {
			continue
		}
		for _, path := range p.Paths {
			f, _, _ := strings.Cut(path, ".")
			f, _, _ = strings.Cut(f, "[")
			if !slices.Contains(fields, f) {
				fields = append(fields, f)
			}
		}
	}
	return fields
}

// decodeTop decodes the top-level members fields of the JSON object raw, leaving the others
// undecoded (topFields; encoding/json when the scan fails). doc is nil when raw is not an
// object; ok is false when, besides, a member did not decode (doc then holds the others).
func decodeTop(raw []byte, fields []string) (doc map[string]any, ok bool) {
	top, scanned := topFields(raw, func(name string) bool { return slices.Contains(fields, name) })
	if !scanned {
		var all map[string]json.RawMessage
		if json.Unmarshal(raw, &all) != nil {
			return nil, false
		}
		top = make(map[string][]byte, len(fields))
		for _, f := range fields {
			if v, has := all[f]; has {
				top[f] = v
			}
		}
	}
	doc, ok = make(map[string]any, len(top)), true
	for _, f := range fields {
		v, has := top[f]
		if !has {
			continue
		}
		dec := json.NewDecoder(bytes.NewReader(v))
		dec.UseNumber()
		var val any
		if dec.Decode(&val) != nil {
			ok = false
			continue
		}
		doc[f] = val
	}
	return doc, ok
}

// topFields returns the raw values of the top-level members of the JSON object raw that want
// accepts, without decoding the rest: a read judged against a tenancy scope needs two or three
// elements of a resource, and decoding the others cost more than the read itself. raw is a
// stored resource (compact, valid JSON written by this server); on anything unexpected ok is
// false and the caller decodes the whole object instead.
func topFields(raw []byte, want func(name string) bool) (fields map[string][]byte, ok bool) {
	i := skipSpace(raw, 0)
	if i >= len(raw) || raw[i] != '{' {
		return nil, false
	}
	fields = map[string][]byte{}
	i = skipSpace(raw, i+1)
	if i < len(raw) && raw[i] == '}' {
		return fields, true
	}
	for i < len(raw) {
		if raw[i] != '"' {
			return nil, false
		}
		end := skipString(raw, i)
		if end < 0 {
			return nil, false
		}
		name := raw[i+1 : end-1]
		i = skipSpace(raw, end)
		if i >= len(raw) || raw[i] != ':' {
			return nil, false
		}
		i = skipSpace(raw, i+1)
		vend := skipValue(raw, i)
		if vend < 0 {
			return nil, false
		}
		// Names with escapes are not FHIR element names: such a member is never wanted.
		if !hasByte(name, '\\') && want(string(name)) {
			fields[string(name)] = raw[i:vend]
		}
		i = skipSpace(raw, vend)
		if i >= len(raw) {
			return nil, false
		}
		switch raw[i] {
		case ',':
			i = skipSpace(raw, i+1)
		case '}':
			return fields, true
		default:
			return nil, false
		}
	}
	return nil, false
}

func hasByte(b []byte, c byte) bool {
	for _, x := range b {
		if x == c {
			return true
		}
	}
	return false
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\n' || b[i] == '\r' || b[i] == '\t') {
		i++
	}
	return i
}

// skipString returns the index after the string starting at b[i] ('"'), or -1.
func skipString(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return -1
}

// skipValue returns the index after the JSON value starting at b[i], or -1. Objects and arrays
// are skipped by depth, strings by their quotes; scalars end at a delimiter.
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				j = skipString(b, j)
				if j < 0 {
					return -1
				}
				j-- // the loop's j++ moves past the closing quote
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return -1
	}
	j := i
	for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ' ' && b[j] != '\n' && b[j] != '\r' && b[j] != '\t' {
		j++
	}
	if j == i {
		return -1
	}
	return j
}
