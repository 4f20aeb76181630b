package profiles

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode"

	"github.com/calaimfhir/calaimfhir/terminology"
)

// Issue is one problem found by profile validation.
type Issue struct {
	Severity   string // error or warning (http://hl7.org/fhir/issue-severity)
	Code       string // http://hl7.org/fhir/issue-type: required, value, code-invalid, invariant, structure, not-supported
	Expression string // FHIRPath of the element concerned, e.g. Patient.identifier[0].value
	Message    string // plain language; may quote values from the resource (never log it)
	Profile    string // canonical URL of the profile that failed
	Key        string // the constraint key, or the id of the element whose rule failed
}

// Engine validates resources against the CalAIM StructureDefinitions, looking codes up in a
// terminology set. It is read-only after New and safe for concurrent use.
type Engine struct {
	terms *terminology.Set
	defs  []*Definition
	byURL map[string]*Definition
	byID  map[string]*Definition
}

// New loads the embedded StructureDefinitions and checks that every binding names a value
// set of terms and every constraint has an implementation.
func New(terms *terminology.Set) (*Engine, error) {
	defs, err := loadDefinitions()
	if err != nil {
		return nil, err
	}
	e := &Engine{terms: terms, defs: defs, byURL: map[string]*Definition{}, byID: map[string]*Definition{}}
	for _, d := range defs {
		e.byURL[d.URL], e.byID[d.ID] = d, d
	}
	for _, d := range defs {
		for _, el := range d.elements {
			if el.binding != nil && !terms.HasValueSet(el.binding.ValueSet) {
				return nil, fmt.Errorf("%s %s: binding to unknown value set %s", d.ID, el.id, el.binding.ValueSet)
			}
			for _, t := range el.types {
				for _, p := range append(slices.Clone(t.Profile), t.TargetProfile...) {
					if strings.HasPrefix(p, Base+"/") && e.byURL[p] == nil {
						return nil, fmt.Errorf("%s %s: unknown profile %s", d.ID, el.id, p)
					}
				}
			}
		}
	}
	return e, nil
}

var defaultEngine = sync.OnceValues(func() (*Engine, error) { return New(terminology.Default()) })

// Default returns the engine over the embedded definitions and terminology. It panics if they
// are broken, which the package's tests rule out.
func Default() *Engine {
	e, err := defaultEngine()
	if err != nil {
		panic(err)
	}
	return e
}

// Terminology is the set the engine checks codes against.
func (e *Engine) Terminology() *terminology.Set { return e.terms }

// Definitions lists the StructureDefinitions (profiles and extensions) in id order.
func (e *Engine) Definitions() []*Definition { return e.defs }

// Definition finds a StructureDefinition by canonical URL (a |version suffix is ignored).
func (e *Engine) Definition(url string) (*Definition, bool) {
	url, _, _ = strings.Cut(url, "|")
	d, ok := e.byURL[url]
	return d, ok
}

// DefinitionByID finds a StructureDefinition by id (calaim-patient, ...).
func (e *Engine) DefinitionByID(id string) (*Definition, bool) {
	d, ok := e.byID[id]
	return d, ok
}

// ProfileFor returns the CalAIM profile on a resource type, if there is one.
func (e *Engine) ProfileFor(typ string) (string, bool) {
	for _, d := range e.defs {
		if d.Type == typ {
			return d.URL, true
		}
	}
	return "", false
}

// Validate checks one resource (JSON) against the profile with the given canonical URL, using
// the default engine. A body that is not a JSON object, a profile the engine does not define,
// or a profile on another type give one issue saying so.
func Validate(ctx context.Context, body []byte, profileURL string) []Issue {
	return Default().Validate(ctx, body, profileURL)
}

// Validate checks one resource (JSON) against a profile; see the package function.
func (e *Engine) Validate(ctx context.Context, body []byte, profileURL string) []Issue {
	doc, err := decode(body)
	if err != nil {
		return []Issue{{Severity: "error", Code: "structure", Message: "the body is not a JSON object: " + err.Error(), Profile: profileURL}}
	}
	return e.ValidateDoc(ctx, doc, profileURL)
}

func decode(body []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		return nil, err
	}
	if doc == nil {
		return nil, fmt.Errorf("null")
	}
	return doc, nil
}

// ValidateDoc checks a decoded resource (numbers as float64 or json.Number) against a profile.
func (e *Engine) ValidateDoc(ctx context.Context, doc map[string]any, profileURL string) []Issue {
	d, ok := e.Definition(profileURL)
	typ, _ := doc["resourceType"].(string)
	switch {
	case !ok:
		return []Issue{{Severity: "error", Code: "not-supported", Expression: typ + ".meta.profile", Message: "unknown profile " + profileURL, Profile: profileURL}}
	case d.Type == "Extension":
		return []Issue{{Severity: "error", Code: "not-supported", Message: profileURL + " defines an extension, not a resource profile", Profile: profileURL}}
	case typ != d.Type:
		return []Issue{{Severity: "error", Code: "structure", Expression: typ, Message: fmt.Sprintf("%s is a profile on %s, not %s", d.ID, d.Type, typ), Profile: d.URL}}
	}
	v := &run{e: e, ctx: ctx, doc: doc}
	v.check(d, node{v: doc, path: typ})
	return v.issues
}

// Claims lists the profiles the resource names in meta.profile (without |version).
func Claims(doc map[string]any) []string {
	meta, _ := doc["meta"].(map[string]any)
	list, _ := meta["profile"].([]any)
	var out []string
	for _, p := range list {
		if s, ok := p.(string); ok {
			s, _, _ = strings.Cut(s, "|")
			out = append(out, s)
		}
	}
	return out
}

// node is a value in the resource with its FHIRPath location.
type node struct {
	v    any
	path string
}

type run struct {
	e      *Engine
	ctx    context.Context
	doc    map[string]any // the resource being validated
	issues []Issue
	d      *Definition
}

func (v *run) add(is Issue) {
	is.Profile = v.d.URL
	v.issues = append(v.issues, is)
}

// check applies every element of d to the tree under root.
func (v *run) check(d *Definition, root node) {
	outer := v.d
	v.d = d
	defer func() { v.d = outer }()
	memo := map[string][]node{d.Type: {root}}
	var nodesAt func(id string) []node
	nodesAt = func(id string) []node {
		if ns, ok := memo[id]; ok {
			return ns
		}
		el := d.byID[id]
		var segName, slice string
		if el != nil {
			last := el.segs[len(el.segs)-1]
			segName, slice = last.name, last.slice
		} else {
			last := id[strings.LastIndexByte(id, '.')+1:]
			segName, slice, _ = strings.Cut(last, ":")
		}
		var out []node
		for _, p := range nodesAt(parentID(id)) {
			out = append(out, v.children(d, p, segName, slice, id)...)
		}
		memo[id] = out
		return out
	}
	for _, el := range d.elements {
		if len(el.segs) == 0 {
			v.checkValues(d, el, []node{root})
			continue
		}
		last := el.segs[len(el.segs)-1]
		var all []node
		for _, p := range nodesAt(parentID(el.id)) {
			kids := v.children(d, p, last.name, last.slice, el.id)
			all = append(all, kids...)
			v.checkCount(el, p, last, len(kids))
		}
		memo[el.id] = all
		v.checkValues(d, el, all)
	}
}

func (v *run) checkCount(el *element, parent node, last seg, n int) {
	name := strings.TrimSuffix(last.name, "[x]")
	expr := parent.path + "." + name
	what := name
	if last.slice != "" {
		what = fmt.Sprintf("%s (slice %s)", name, last.slice)
	}
	if el.hasMin && n < el.min {
		v.add(Issue{Severity: "error", Code: "required", Expression: expr, Key: el.id,
			Message: fmt.Sprintf("%s is required: at least %d, found %d", what, el.min, n)})
	}
	if el.hasMax && el.max >= 0 && n > el.max {
		v.add(Issue{Severity: "error", Code: "structure", Expression: expr, Key: el.id,
			Message: fmt.Sprintf("%s allows at most %d, found %d", what, el.max, n)})
	}
}

// children lists the values of element name (a choice name ends in [x]) under parent, one node
// per array item; with a slice, only the items the slice's discriminators select.
func (v *run) children(d *Definition, parent node, name, slice, id string) []node {
	m, ok := parent.v.(map[string]any)
	if !ok {
		return nil
	}
	var out []node
	add := func(key string, val any) {
		if list, ok := val.([]any); ok {
			for i, item := range list {
				out = append(out, node{v: item, path: parent.path + "." + key + "[" + strconv.Itoa(i) + "]"})
			}
			return
		}
		out = append(out, node{v: val, path: parent.path + "." + key})
	}
	if prefix, ok := strings.CutSuffix(name, "[x]"); ok {
		keys := make([]string, 0, 1)
		for k := range m {
			if rest, ok := strings.CutPrefix(k, prefix); ok && rest != "" && unicode.IsUpper(rune(rest[0])) {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		for _, k := range keys {
			add(k, m[k])
		}
	} else if val, ok := m[name]; ok {
		add(name, val)
	}
	if slice == "" {
		return out
	}
	sliceEl := d.byID[id]
	if sliceEl == nil {
		// A path under a slice whose own element the differential leaves out: select by the
		// nearest defined slice element.
		return out
	}
	kept := out[:0]
	for _, n := range out {
		if v.inSlice(d, sliceEl, n.v) {
			kept = append(kept, n)
		}
	}
	return kept
}

// inSlice tells whether an item belongs to a slice: for each discriminator of the slicing,
// the value at the discriminator's path must match what the slice fixes there.
func (v *run) inSlice(d *Definition, sliceEl *element, item any) bool {
	sliced := d.byID[strings.TrimSuffix(sliceEl.id, ":"+sliceEl.sliceName)]
	var discs []string
	if sliced != nil && sliced.slicing != nil {
		for _, dc := range sliced.slicing.Discriminator {
			discs = append(discs, dc.Path)
		}
	} else if n := sliceEl.segs[len(sliceEl.segs)-1].name; n == "extension" || n == "modifierExtension" {
		discs = []string{"url"} // extensions are always sliced by url
	}
	if len(discs) == 0 {
		return false
	}
	for _, path := range discs {
		want, ok := sliceValue(d, sliceEl, path)
		if !ok {
			return false
		}
		if !anyMatches(valuesAt(item, path), want) {
			return false
		}
	}
	return true
}

// sliceValue is what a slice requires at a discriminator path: an extension slice's profile
// URL for "url", a fixed or pattern value of the child element at the path, or the part of the
// slice's own pattern at the path.
func sliceValue(d *Definition, sliceEl *element, path string) (any, bool) {
	if path == "url" && len(sliceEl.types) == 1 && len(sliceEl.types[0].Profile) == 1 {
		return sliceEl.types[0].Profile[0], true
	}
	if child := d.byID[sliceEl.id+"."+path]; child != nil {
		if child.fixed != nil {
			return child.fixed, true
		}
		if child.pattern != nil {
			return child.pattern, true
		}
	}
	val := sliceEl.pattern
	if val == nil {
		val = sliceEl.fixed
	}
	if val == nil {
		return nil, false
	}
	if path == "$this" {
		return val, true
	}
	vals := valuesAt(val, path)
	if len(vals) != 1 {
		return nil, false
	}
	return vals[0], true
}

// valuesAt follows a dotted path of element names through maps and arrays.
func valuesAt(v any, path string) []any {
	cur := []any{v}
	if path == "$this" {
		return cur
	}
	for _, name := range strings.Split(path, ".") {
		var next []any
		for _, c := range cur {
			m, ok := c.(map[string]any)
			if !ok {
				continue
			}
			switch x := m[name].(type) {
			case nil:
			case []any:
				next = append(next, x...)
			default:
				next = append(next, x)
			}
		}
		cur = next
	}
	return cur
}

func anyMatches(vals []any, pattern any) bool {
	for _, x := range vals {
		if matchesPattern(x, pattern) {
			return true
		}
	}
	return false
}

// matchesPattern implements ElementDefinition.pattern[x]: every element the pattern states
// must be present with the same value; a repeating element in the pattern must be matched by
// some item of the value.
func matchesPattern(v, pattern any) bool {
	switch p := pattern.(type) {
	case map[string]any:
		m, ok := v.(map[string]any)
		if !ok {
			return false
		}
		for k, pv := range p {
			if !matchesPattern(m[k], pv) {
				return false
			}
		}
		return true
	case []any:
		list, ok := v.([]any)
		if !ok {
			return false
		}
		for _, pi := range p {
			found := false
			for _, x := range list {
				if matchesPattern(x, pi) {
					found = true
					break
				}
			}
			if !found {
				return false
			}
		}
		return true
	default:
		return equalPrimitive(v, p)
	}
}

func equalPrimitive(a, b any) bool {
	if n, ok := a.(json.Number); ok {
		f, _ := n.Float64()
		a = f
	}
	if n, ok := b.(json.Number); ok {
		f, _ := n.Float64()
		b = f
	}
	return reflect.DeepEqual(a, b)
}

// checkValues applies the value rules of el to each of its values.
func (v *run) checkValues(d *Definition, el *element, nodes []node) {
	for _, n := range nodes {
		if el.fixed != nil && !equalFixed(n.v, el.fixed) {
			v.add(Issue{Severity: "error", Code: "value", Expression: n.path, Key: el.id,
				Message: fmt.Sprintf("must be exactly %s (%s)", show(el.fixed), el.valueName)})
		}
		if el.pattern != nil && !matchesPattern(n.v, el.pattern) {
			v.add(Issue{Severity: "error", Code: "value", Expression: n.path, Key: el.id,
				Message: fmt.Sprintf("must match %s (%s)", show(el.pattern), el.valueName)})
		}
		if el.regex != nil {
			if s, ok := n.v.(string); !ok || !el.regex.MatchString(s) {
				v.add(Issue{Severity: "error", Code: "value", Expression: n.path, Key: el.id,
					Message: fmt.Sprintf("%s does not match the pattern %s", show(n.v), el.regexText)})
			}
		}
		if el.binding != nil {
			v.checkBinding(el, n)
		}
		v.checkTypes(d, el, n)
		for _, r := range el.rules {
			for _, f := range r.check(v, n) {
				at := f.at
				if at == "" {
					at = n.path
				}
				msg := r.Human
				if f.detail != "" {
					msg += ": " + f.detail
				}
				v.add(Issue{Severity: r.Severity, Code: "invariant", Expression: at, Key: r.Key, Message: msg})
			}
		}
	}
}

func equalFixed(v, fixed any) bool {
	if _, ok := fixed.(map[string]any); ok {
		a, _ := json.Marshal(v)
		b, _ := json.Marshal(fixed)
		return bytes.Equal(a, b)
	}
	return equalPrimitive(v, fixed)
}

func show(v any) string {
	b, _ := json.Marshal(v)
	if len(b) > 120 {
		b = append(b[:117], "..."...)
	}
	return string(b)
}

type codeRef struct{ system, code string }

// codesOf returns the codes in a code, Coding or CodeableConcept value.
func codesOf(v any) []codeRef {
	switch x := v.(type) {
	case string:
		return []codeRef{{code: x}}
	case map[string]any:
		if list, ok := x["coding"].([]any); ok {
			var out []codeRef
			for _, c := range list {
				out = append(out, codesOf(c)...)
			}
			return out
		}
		code, _ := x["code"].(string)
		system, _ := x["system"].(string)
		if code != "" {
			return []codeRef{{system: system, code: code}}
		}
	}
	return nil
}

func (v *run) checkBinding(el *element, n node) {
	b := el.binding
	if b.Strength != "required" && b.Strength != "extensible" {
		return
	}
	codes := codesOf(n.v)
	var bad []string
	for _, c := range codes {
		res, err := v.e.terms.ValidateCode(b.ValueSet, c.system, c.code, zeroTime)
		if err == nil && res.Valid {
			return
		}
		if c.system != "" {
			bad = append(bad, c.system+"|"+c.code)
		} else {
			bad = append(bad, c.code)
		}
	}
	if len(codes) == 0 && b.Strength == "extensible" {
		return // text only: allowed by an extensible binding
	}
	sev := "error"
	if b.Strength == "extensible" {
		sev = "warning"
	}
	msg := "no code given"
	if len(bad) > 0 {
		msg = strings.Join(bad, ", ") + " is not"
	}
	v.add(Issue{Severity: sev, Code: "code-invalid", Expression: n.path, Key: el.id,
		Message: fmt.Sprintf("%s in value set %s (%s binding)", msg, b.ValueSet, b.Strength)})
	if len(bad) == 0 {
		v.issues[len(v.issues)-1].Message = fmt.Sprintf("no code given: a code from value set %s is required (%s binding)", b.ValueSet, b.Strength)
	}
}

// checkTypes enforces the types an element allows: the choice of a [x] element, the target
// types of a Reference, and the extension definitions an extension slice names.
func (v *run) checkTypes(d *Definition, el *element, n node) {
	if len(el.types) == 0 || len(el.segs) == 0 {
		return
	}
	last := el.segs[len(el.segs)-1]
	if prefix, ok := strings.CutSuffix(last.name, "[x]"); ok {
		key := n.path[strings.LastIndexByte(n.path, '.')+1:]
		key, _, _ = strings.Cut(key, "[")
		suffix := strings.TrimPrefix(key, prefix)
		allowed := false
		var names []string
		for _, t := range el.types {
			names = append(names, t.Code)
			if strings.EqualFold(t.Code, suffix) {
				allowed = true
			}
		}
		if !allowed {
			v.add(Issue{Severity: "error", Code: "structure", Expression: n.path, Key: el.id,
				Message: fmt.Sprintf("%s[x] must be one of %s here", prefix, strings.Join(names, ", "))})
			return
		}
	}
	for _, t := range el.types {
		if t.Code == "Reference" && len(t.TargetProfile) > 0 {
			v.checkReference(el, t, n)
		}
		if t.Code == "Extension" && len(t.Profile) == 1 {
			if ext, ok := v.e.byURL[t.Profile[0]]; ok {
				v.check(ext, n)
			}
		}
	}
}

func (v *run) checkReference(el *element, t elemType, n node) {
	m, ok := n.v.(map[string]any)
	if !ok {
		return
	}
	typ := referenceType(v.doc, m)
	if typ == "" {
		return // a logical reference or a bundle-local urn: nothing to check here
	}
	var allowed []string
	for _, tp := range t.TargetProfile {
		if name, ok := strings.CutPrefix(tp, r4Base); ok {
			allowed = append(allowed, name)
		} else if d, ok := v.e.byURL[tp]; ok {
			allowed = append(allowed, d.Type)
		}
	}
	if !slices.Contains(allowed, typ) {
		v.add(Issue{Severity: "error", Code: "structure", Expression: n.path, Key: el.id,
			Message: fmt.Sprintf("refers to a %s; allowed: %s", typ, strings.Join(allowed, ", "))})
	}
}

// referenceType tells which resource type a Reference points at: from its type element, its
// relative or absolute URL, or the contained resource it names. "" when it cannot tell.
func referenceType(doc, ref map[string]any) string {
	if t, ok := ref["type"].(string); ok && t != "" {
		return t
	}
	s, _ := ref["reference"].(string)
	switch {
	case s == "" || strings.HasPrefix(s, "urn:"):
		return ""
	case strings.HasPrefix(s, "#"):
		list, _ := doc["contained"].([]any)
		for _, c := range list {
			if cm, ok := c.(map[string]any); ok && cm["id"] == s[1:] {
				t, _ := cm["resourceType"].(string)
				return t
			}
		}
		return ""
	}
	if i := strings.Index(s, "/_history/"); i >= 0 {
		s = s[:i]
	}
	parts := strings.Split(strings.TrimSuffix(s, "/"), "/")
	if len(parts) < 2 {
		return ""
	}
	return parts[len(parts)-2]
}
