package resources

import (
	"encoding/json"
	"slices"
	"strings"
)

// Keys are the search values of one resource version, extracted once at write time and
// stored by both stores in indexed form.
type Keys struct {
	// Eq are equality keys (see TokenKey, RefKey, ...), sorted and unique.
	Eq []string
}

// ExtractKeys computes the search keys of a resource given as decoded JSON (objects as
// map[string]any, numbers as json.Number or float64).
func ExtractKeys(typ string, doc map[string]any) Keys { return ExtractKeysAt(typ, doc, "") }

// ExtractKeysAt is ExtractKeys on a server whose FHIR base is base: absolute references to
// it are indexed as the local references they are.
func ExtractKeysAt(typ string, doc map[string]any, base string) Keys {
	var eq []string
	prefix := ""
	if base != "" {
		prefix = strings.TrimSuffix(base, "/") + "/"
	}
	for _, p := range Params(typ) {
		for _, path := range p.Paths {
			walk(doc, strings.Split(path, "."), func(v any) {
				eq = appendValueKeys(eq, p, v, prefix)
			})
		}
	}
	slices.Sort(eq)
	return Keys{Eq: slices.Compact(eq)}
}

// walk calls fn for every value at path below v, descending into arrays at every step.
func walk(v any, path []string, fn func(any)) {
	switch t := v.(type) {
	case []any:
		for _, e := range t {
			walk(e, path, fn)
		}
	case map[string]any:
		if len(path) == 0 {
			fn(t)
			return
		}
		if next, ok := t[path[0]]; ok {
			walk(next, path[1:], fn)
		}
	default:
		if len(path) == 0 && v != nil {
			fn(v)
		}
	}
}

func appendValueKeys(keys []string, p Param, v any, base string) []string {
	switch p.Type {
	case ParamToken:
		return appendTokenKeys(keys, p.Name, v)
	case ParamReference:
		return appendRefKeys(keys, p, v, base)
	case ParamURI:
		if s, ok := v.(string); ok && s != "" {
			keys = append(keys, RefURLKey(p.Name, s))
		}
	}
	return keys
}

func appendToken(keys []string, param, system, code string) []string {
	if code == "" {
		if system == "" {
			return keys
		}
		return append(keys, TokenSystemKey(param, system))
	}
	keys = append(keys, TokenKey(param, system, code), TokenCodeKey(param, code))
	if system != "" {
		keys = append(keys, TokenSystemKey(param, system))
	}
	return keys
}

func appendTokenKeys(keys []string, param string, v any) []string {
	switch t := v.(type) {
	case string: // code, id, uri, string
		return appendToken(keys, param, "", t)
	case bool:
		if t {
			return appendToken(keys, param, "", "true")
		}
		return appendToken(keys, param, "", "false")
	case map[string]any:
		str := func(k string) string { s, _ := t[k].(string); return s }
		if codings, ok := t["coding"].([]any); ok { // CodeableConcept
			for _, c := range codings {
				if cm, ok := c.(map[string]any); ok {
					keys = appendTokenKeys(keys, param, cm)
				}
			}
			return keys
		}
		if _, ok := t["code"]; ok { // Coding
			return appendToken(keys, param, str("system"), str("code"))
		}
		if _, ok := t["value"]; ok { // Identifier, ContactPoint
			if s, ok := t["value"].(string); ok {
				return appendToken(keys, param, str("system"), s)
			}
		}
		if _, ok := t["system"]; ok {
			return appendToken(keys, param, str("system"), "")
		}
	case json.Number, float64:
		return appendToken(keys, param, "", jsonScalar(t))
	}
	return keys
}

func jsonScalar(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func appendRefKeys(keys []string, p Param, v any, base string) []string {
	var ref string
	switch t := v.(type) {
	case string: // canonical
		ref = t
	case map[string]any:
		ref, _ = t["reference"].(string)
	}
	if ref == "" || strings.HasPrefix(ref, "#") {
		return keys
	}
	if base != "" {
		ref = strings.TrimPrefix(ref, base)
	}
	typ, id, ok := SplitLocalRef(ref)
	if !ok {
		return append(keys, RefURLKey(p.Name, ref))
	}
	if len(p.Targets) > 0 && !slices.Contains(p.Targets, typ) {
		return keys
	}
	return append(keys, RefKey(p.Name, typ, id), RefIDKey(p.Name, id))
}

// SplitLocalRef splits a relative reference "Type/id" or "Type/id/_history/n". Absolute URLs
// and anything else report ok=false.
func SplitLocalRef(ref string) (typ, id string, ok bool) {
	parts := strings.Split(ref, "/")
	if len(parts) != 2 && !(len(parts) == 4 && parts[2] == "_history") {
		return "", "", false
	}
	if !isTypeName(parts[0]) || !ValidID(parts[1]) {
		return "", "", false
	}
	return parts[0], parts[1], true
}

func isTypeName(s string) bool {
	if s == "" || s[0] < 'A' || s[0] > 'Z' {
		return false
	}
	for _, r := range s {
		if !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z') {
			return false
		}
	}
	return true
}
