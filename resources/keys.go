package resources

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/runes"
	"golang.org/x/text/transform"
	"golang.org/x/text/unicode/norm"
)

// Keys are the search values of one resource version, extracted once at write time and
// stored by both stores in indexed form.
type Keys struct {
	// Eq are equality keys (see TokenKey, RefKey, ...), sorted and unique.
	Eq []string
	// Strings are normalized string values for prefix and contains searches.
	Strings []StringKey
	// Dates are the instants each date value covers, at its precision.
	Dates []DateKey
	// Numbers are number and quantity values.
	Numbers []NumberKey
	// Sort holds, per parameter with values, the values _sort orders by.
	Sort []SortKey
}

// SortKey is what _sort=param (Asc: the lowest value) and _sort=-param (Desc: the highest)
// compare, encoded so that byte order is value order (see SortValue*).
type SortKey struct {
	Param     string
	Asc, Desc string
}

// Sentinels for resources without a value: they sort last in both directions.
const (
	SortMissingAsc  = "\U0010FFFF"
	SortMissingDesc = ""
)

// SortValueInt encodes an integer (dates in microseconds) in order-preserving hex.
func SortValueInt(v int64) string {
	return fmt.Sprintf("%016x", uint64(v)^(1<<63))
}

// SortValueFloat encodes a float64 in order-preserving hex.
func SortValueFloat(f float64) string {
	bits := math.Float64bits(f)
	if bits&(1<<63) != 0 {
		bits = ^bits
	} else {
		bits |= 1 << 63
	}
	return fmt.Sprintf("%016x", bits)
}

// StringKey is one string value of a parameter, normalized (NormalizeString).
type StringKey struct {
	Param string
	Value string
}

// DateKey is the range [Lo, Hi) of unix microseconds a date, dateTime, instant or Period
// value covers ("2024-05" covers the whole month; an open Period end is unbounded).
type DateKey struct {
	Param  string
	Lo, Hi int64
}

// NumberKey is one numeric value. Quantities are indexed under their parameter and, with
// their unit, under param␟system␟code and param␟␟code (see QuantityParam).
type NumberKey struct {
	Param string
	V     float64
}

// ExtractKeys computes the search keys of a resource given as decoded JSON (objects as
// map[string]any, numbers as json.Number or float64).
func ExtractKeys(typ string, doc map[string]any) Keys { return ExtractKeysAt(typ, doc, "") }

// ExtractKeysAt is ExtractKeys on a server whose FHIR base is base: absolute references to
// it are indexed as the local references they are.
func ExtractKeysAt(typ string, doc map[string]any, base string) Keys {
	return extractKeysFor(typ, doc, base, nil)
}

// extractKeysFor is ExtractKeysAt for the parameters in only (every parameter, composites
// included, when only is nil).
func extractKeysFor(typ string, doc map[string]any, base string, only map[string]bool) Keys {
	var k Keys
	prefix := ""
	if base != "" {
		prefix = strings.TrimSuffix(base, "/") + "/"
	}
	for _, p := range Params(typ) {
		if only != nil && !only[p.Name] {
			continue
		}
		before := k.count()
		eq, str, dates, nums := len(k.Eq), len(k.Strings), len(k.Dates), len(k.Numbers)
		for _, path := range p.Paths {
			walk(doc, strings.Split(path, "."), func(v any) {
				k.add(p, v, prefix)
			})
		}
		if k.count() > before {
			k.Eq = append(k.Eq, PresentKey(p.Name))
			k.addSort(p, k.Eq[eq:], k.Strings[str:], k.Dates[dates:], k.Numbers[nums:])
		}
	}
	for _, name := range CompositeNames(typ) {
		if only != nil && !only[name] {
			continue
		}
		before := k.count()
		for _, c := range compositeParams[typ] {
			if c.Name == name {
				k.addComposite(c, doc, prefix)
			}
		}
		if k.count() > before {
			k.Eq = append(k.Eq, PresentKey(name))
		}
	}
	slices.Sort(k.Eq)
	k.Eq = slices.Compact(k.Eq)
	slices.SortFunc(k.Strings, func(a, b StringKey) int { return strings.Compare(a.Param+keySep+a.Value, b.Param+keySep+b.Value) })
	k.Strings = slices.Compact(k.Strings)
	return k
}

// addSort records the lowest and highest sortable value of a parameter from the keys just
// extracted for it.
func (k *Keys) addSort(p Param, eq []string, strs []StringKey, dates []DateKey, nums []NumberKey) {
	var vals []string
	var lo, hi string
	switch p.Type {
	case ParamString:
		for _, s := range strs {
			if s.Param == p.Name {
				vals = append(vals, s.Value)
			}
		}
	case ParamToken:
		codePrefix := p.Name + keySep + keyAny + keySep
		for _, e := range eq {
			if code, ok := strings.CutPrefix(e, codePrefix); ok {
				vals = append(vals, code)
			}
		}
	case ParamReference, ParamURI:
		for _, e := range eq {
			if v, ok := strings.CutPrefix(e, p.Name+keySep); ok && !strings.HasPrefix(v, keyAny) && !strings.HasPrefix(v, "\x1c") && !strings.HasPrefix(v, "\x1d") {
				vals = append(vals, v)
			}
		}
	case ParamDate:
		for _, d := range dates {
			if lo == "" || SortValueInt(d.Lo) < lo {
				lo = SortValueInt(d.Lo)
			}
			if SortValueInt(d.Hi) > hi {
				hi = SortValueInt(d.Hi)
			}
		}
	case ParamNumber, ParamQuantity:
		for _, n := range nums {
			if n.Param == p.Name {
				vals = append(vals, SortValueFloat(n.V))
			}
		}
	}
	for _, v := range vals {
		if lo == "" || v < lo {
			lo = v
		}
		if v > hi {
			hi = v
		}
	}
	if lo != "" || hi != "" {
		k.Sort = append(k.Sort, SortKey{Param: p.Name, Asc: lo, Desc: hi})
	}
}

func (k *Keys) count() int { return len(k.Eq) + len(k.Strings) + len(k.Dates) + len(k.Numbers) }

func (k *Keys) add(p Param, v any, base string) {
	switch p.Type {
	case ParamToken:
		k.Eq = appendTokenKeys(k.Eq, p.Name, v)
		k.addText(p.Name+":text", v)
		if p.Name == "identifier" {
			k.Eq = appendOfType(k.Eq, v)
		}
	case ParamReference:
		k.Eq = appendRefKeys(k.Eq, p, v, base)
		if m, ok := v.(map[string]any); ok {
			if id, ok := m["identifier"].(map[string]any); ok {
				k.Eq = appendTokenKeys(k.Eq, p.Name+":identifier", id)
			}
		}
	case ParamURI:
		if s, ok := v.(string); ok && s != "" {
			k.Eq = append(k.Eq, RefURLKey(p.Name, s))
			// uri:below is a prefix search on the value as written (case matters in URIs).
			k.Strings = append(k.Strings, StringKey{Param: p.Name + ":below", Value: s})
		}
	case ParamSpecial: // Location near: the position's coordinates
		m, _ := v.(map[string]any)
		lat, okLat := number(m["latitude"])
		long, okLong := number(m["longitude"])
		if okLat && okLong {
			k.Numbers = append(k.Numbers, NumberKey{Param: NearLatitude, V: lat}, NumberKey{Param: NearLongitude, V: long})
		}
	case ParamString:
		for _, s := range stringParts(v) {
			k.Strings = append(k.Strings, StringKey{Param: p.Name, Value: NormalizeString(s)})
			k.Eq = append(k.Eq, TokenKey(p.Name+":exact", "", s))
		}
	case ParamDate:
		if lo, hi, ok := dateValueRange(v); ok {
			k.Dates = append(k.Dates, DateKey{Param: p.Name, Lo: lo, Hi: hi})
		}
	case ParamNumber:
		if n, ok := number(v); ok {
			k.Numbers = append(k.Numbers, NumberKey{Param: p.Name, V: n})
		}
	case ParamQuantity:
		m, _ := v.(map[string]any)
		if n, ok := number(m["value"]); ok {
			k.Numbers = append(k.Numbers, NumberKey{Param: p.Name, V: n})
			system, _ := m["system"].(string)
			code, _ := m["code"].(string)
			if code == "" {
				code, _ = m["unit"].(string)
			}
			if code != "" {
				k.Numbers = append(k.Numbers, NumberKey{Param: QuantityParam(p.Name, system, code), V: n},
					NumberKey{Param: QuantityParam(p.Name, "", code), V: n})
			}
		}
	}
}

// QuantityParam is the number parameter under which quantities with a unit are indexed:
// quantity=5.4|http://unitsofmeasure.org|mg searches param␟system␟code, and 5.4||mg searches
// param␟␟code (any system).
func QuantityParam(param, system, code string) string {
	if system == "" {
		return param + keySep + keyAny + keySep + code
	}
	return param + keySep + system + keySep + code
}

// addText indexes the display texts of a CodeableConcept or Coding for :text searches.
func (k *Keys) addText(param string, v any) {
	m, ok := v.(map[string]any)
	if !ok {
		return
	}
	add := func(s any) {
		if str, ok := s.(string); ok && str != "" {
			k.Strings = append(k.Strings, StringKey{Param: param, Value: NormalizeString(str)})
		}
	}
	add(m["text"])
	add(m["display"])
	if codings, ok := m["coding"].([]any); ok {
		for _, c := range codings {
			if cm, ok := c.(map[string]any); ok {
				add(cm["display"])
			}
		}
	}
}

// appendOfType indexes Identifier.type codings with the value for identifier:of-type.
func appendOfType(keys []string, v any) []string {
	m, ok := v.(map[string]any)
	if !ok {
		return keys
	}
	value, _ := m["value"].(string)
	typ, _ := m["type"].(map[string]any)
	codings, _ := typ["coding"].([]any)
	for _, c := range codings {
		cm, _ := c.(map[string]any)
		system, _ := cm["system"].(string)
		code, _ := cm["code"].(string)
		if code != "" && value != "" {
			keys = append(keys, OfTypeKey(system, code, value))
		}
	}
	return keys
}

// OfTypeKey matches identifier:of-type=system|code|value.
func OfTypeKey(system, code, value string) string {
	return "identifier:of-type" + keySep + system + keySep + code + keySep + value
}

// stringParts returns the searchable strings of a string, HumanName or Address value.
func stringParts(v any) []string {
	switch t := v.(type) {
	case string:
		return []string{t}
	case map[string]any:
		var out []string
		for _, f := range []string{"text", "family", "given", "prefix", "suffix", "line", "city", "district", "state", "postalCode", "country"} {
			switch x := t[f].(type) {
			case string:
				out = append(out, x)
			case []any:
				for _, e := range x {
					if s, ok := e.(string); ok {
						out = append(out, s)
					}
				}
			}
		}
		return out
	}
	return nil
}

func number(v any) (float64, bool) {
	switch n := v.(type) {
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	case float64:
		return n, true
	}
	return 0, false
}

// dateValueRange gives the microsecond range of a date/dateTime/instant string or a Period.
func dateValueRange(v any) (lo, hi int64, ok bool) {
	switch t := v.(type) {
	case string:
		from, to, err := ParseDateRange(t)
		if err != nil {
			return 0, 0, false
		}
		return from.UnixMicro(), to.UnixMicro(), true
	case map[string]any: // Period
		lo, hi = math.MinInt64, math.MaxInt64
		start, _ := t["start"].(string)
		end, _ := t["end"].(string)
		if start == "" && end == "" {
			return 0, 0, false
		}
		if start != "" {
			from, _, err := ParseDateRange(start)
			if err != nil {
				return 0, 0, false
			}
			lo = from.UnixMicro()
		}
		if end != "" {
			_, to, err := ParseDateRange(end)
			if err != nil {
				return 0, 0, false
			}
			hi = to.UnixMicro()
		}
		return lo, hi, true
	}
	return 0, 0, false
}

// NormalizeString folds case and strips accents, so "José" is found by "jose" (FHIR string
// search is case- and accent-insensitive).
func NormalizeString(s string) string {
	// Most values (codes, ids, most names) are ASCII, which has no accents to strip; the
	// Unicode chain below allocates ≈ 20 KB per call, most of a Patient's key extraction.
	if isASCII(s) {
		return strings.ToLower(s)
	}
	// A transform chain keeps state, so one is used by one call at a time (String resets it).
	t := foldChains.Get().(transform.Transformer)
	out, _, err := transform.String(t, s)
	foldChains.Put(t)
	if err != nil {
		out = s
	}
	return strings.ToLower(out)
}

var foldChains = sync.Pool{New: func() any {
	return transform.Chain(norm.NFD, runes.Remove(runes.In(unicode.Mn)), norm.NFC)
}}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// walk calls fn for every value at path below v, descending into arrays at every step. A
// step "name[key=value]" follows only the entries of name whose key is value (the
// where(system='phone') of the spec's expressions).
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
		name, cond, filtered := strings.Cut(path[0], "[")
		if !filtered {
			if next, ok := t[name]; ok {
				walk(next, path[1:], fn)
			}
			return
		}
		key, want, _ := strings.Cut(strings.TrimSuffix(cond, "]"), "=")
		walk(t[name], nil, func(e any) {
			if m, ok := e.(map[string]any); ok && m[key] == want {
				walk(m, path[1:], fn)
			}
		})
	default:
		if len(path) == 0 && v != nil {
			fn(v)
		}
	}
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
	keys = append(keys, RefKey(p.Name, typ, id))
	if bareRefIndexed(p) {
		keys = append(keys, RefIDKey(p.Name, id))
	}
	return keys
}

// bareRefIndexed reports whether p's references are also indexed by id alone, for `p=id`.
// Only a parameter that may refer to any type needs that key: for one with a list of target
// types, `p=id` is asked as `p=T/id` for each of them (refQueryKeys), the same resources,
// since a reference to another type is not indexed. Every key row costs a B-tree insert on
// each write and a page in its commit; the id-alone keys of owner, requester and patient
// were three of a Task's seventeen.
func bareRefIndexed(p Param) bool { return len(p.Targets) == 0 }

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

// addComposite indexes a composite from every element holding both parts. token$token and
// token$reference pairs become equality keys (every pairing of the two parts' keys); a
// quantity, date or string second part is indexed as a value of the parameter
// CompositeValueParam(name, first part's key), so that the value searches of that type apply.
func (k *Keys) addComposite(c composite, doc map[string]any, base string) {
	var elems []any
	if c.Element == "" {
		elems = []any{doc}
	} else {
		walk(doc, []string{c.Element}, func(v any) { elems = append(elems, v) })
	}
	for _, e := range elems {
		var first []string
		walk(e, strings.Split(c.First, "."), func(v any) { first = appendTokenKeys(first, "", v) })
		if len(first) == 0 {
			continue
		}
		walk(e, strings.Split(c.Second, "."), func(v any) {
			var second []string
			switch c.Kind {
			case "", ParamToken:
				second = appendTokenKeys(nil, "", v)
			case ParamReference:
				second = appendRefKeys(nil, Param{}, v, base)
			}
			for _, a := range first {
				for _, b := range second {
					k.Eq = append(k.Eq, CompositeKey(c.Name, a, b))
				}
				if c.Kind == ParamQuantity || c.Kind == ParamDate || c.Kind == ParamString {
					k.add(Param{Name: CompositeValueParam(c.Name, a), Type: c.Kind}, v, base)
				}
			}
		})
	}
}

// CompositeValueParam is the parameter under which the value part of a token$quantity,
// token$date or token$string composite is indexed, for one key of its token part.
func CompositeValueParam(name, tokenKey string) string {
	return name + "$" + tokenKey
}

// The number parameters Location.position is indexed under, for near.
const (
	NearLatitude  = "near:latitude"
	NearLongitude = "near:longitude"
)

// CompositeKey joins the token keys (built for the empty parameter) of a composite's parts.
func CompositeKey(param, first, second string) string {
	return param + first + "$" + second
}
