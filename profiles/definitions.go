package profiles

import (
	"embed"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
)

//go:embed definitions/*.json
var definitionFiles embed.FS

// Definition is one loaded StructureDefinition: a CalAIM profile on a resource type or a
// CalAIM extension.
type Definition struct {
	URL   string
	ID    string
	Name  string
	Title string
	Type  string // the constrained type: Patient, ..., or Extension
	// JSON is the full StructureDefinition: the differential as written in definitions/ and
	// the snapshot generated from the base R4 elements.
	JSON []byte

	elements []*element // the differential, in order
	byID     map[string]*element
}

// element is the part of an ElementDefinition the validator interprets.
type element struct {
	id        string
	segs      []seg // id after the root, split at dots
	sliceName string
	min       int
	max       int // -1 for *
	hasMin    bool
	hasMax    bool
	types     []elemType
	fixed     any
	pattern   any
	valueName string // fixedUri, patternCodeableConcept, ... (for messages)
	binding   *binding
	regex     *regexp.Regexp
	regexText string
	slicing   *slicing
	rules     []rule
}

type seg struct{ name, slice string }

type elemType struct {
	Code          string   `json:"code"`
	Profile       []string `json:"profile"`
	TargetProfile []string `json:"targetProfile"`
	Extension     []struct {
		URL         string `json:"url"`
		ValueString string `json:"valueString"`
	} `json:"extension"`
}

type binding struct {
	Strength string `json:"strength"`
	ValueSet string `json:"valueSet"`
}

type slicing struct {
	Discriminator []struct {
		Type string `json:"type"`
		Path string `json:"path"`
	} `json:"discriminator"`
	Rules string `json:"rules"`
}

// rule is an ElementDefinition.constraint with the Go function that evaluates it.
type rule struct {
	Key        string `json:"key"`
	Severity   string `json:"severity"`
	Human      string `json:"human"`
	Expression string `json:"expression"`
	check      invariant
}

const regexExt = "http://hl7.org/fhir/StructureDefinition/regex"

func loadDefinitions() ([]*Definition, error) {
	entries, err := definitionFiles.ReadDir("definitions")
	if err != nil {
		return nil, err
	}
	var defs []*Definition
	for _, e := range entries {
		b, err := definitionFiles.ReadFile("definitions/" + e.Name())
		if err != nil {
			return nil, err
		}
		d, err := parseDefinition(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", e.Name(), err)
		}
		defs = append(defs, d)
	}
	sort.Slice(defs, func(i, j int) bool { return defs[i].ID < defs[j].ID })
	return defs, nil
}

func parseDefinition(b []byte) (*Definition, error) {
	var sd map[string]any
	if err := json.Unmarshal(b, &sd); err != nil {
		return nil, err
	}
	str := func(k string) string { s, _ := sd[k].(string); return s }
	if str("resourceType") != "StructureDefinition" {
		return nil, fmt.Errorf("not a StructureDefinition")
	}
	d := &Definition{URL: str("url"), ID: str("id"), Name: str("name"), Title: str("title"), Type: str("type"), byID: map[string]*element{}}
	if d.URL != Base+"/StructureDefinition/"+d.ID {
		return nil, fmt.Errorf("url %q does not match id %q under the canonical base", d.URL, d.ID)
	}
	diff, _ := sd["differential"].(map[string]any)
	raw, _ := diff["element"].([]any)
	if len(raw) == 0 {
		return nil, fmt.Errorf("no differential")
	}
	var diffMaps []map[string]any
	for _, r := range raw {
		m, ok := r.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("differential element is not an object")
		}
		el, err := parseElement(m, d)
		if err != nil {
			return nil, err
		}
		if _, dup := d.byID[el.id]; dup {
			return nil, fmt.Errorf("element %s defined twice", el.id)
		}
		d.elements = append(d.elements, el)
		d.byID[el.id] = el
		diffMaps = append(diffMaps, m)
	}
	snap, err := snapshot(d.Type, diffMaps)
	if err != nil {
		return nil, err
	}
	sd["snapshot"] = map[string]any{"element": snap}
	d.JSON, err = json.Marshal(sd)
	return d, err
}

func parseElement(m map[string]any, d *Definition) (*element, error) {
	b, _ := json.Marshal(m)
	var raw struct {
		ID         string     `json:"id"`
		Path       string     `json:"path"`
		SliceName  string     `json:"sliceName"`
		Min        *int       `json:"min"`
		Max        *string    `json:"max"`
		Type       []elemType `json:"type"`
		Binding    *binding   `json:"binding"`
		Slicing    *slicing   `json:"slicing"`
		Constraint []rule     `json:"constraint"`
		Extension  []struct {
			URL         string `json:"url"`
			ValueString string `json:"valueString"`
		} `json:"extension"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, err
	}
	el := &element{id: raw.ID, sliceName: raw.SliceName, types: raw.Type, binding: raw.Binding, slicing: raw.Slicing}
	if raw.ID == "" || raw.ID != d.Type && !strings.HasPrefix(raw.ID, d.Type+".") {
		return nil, fmt.Errorf("element id %q is not under %s", raw.ID, d.Type)
	}
	if want := pathOf(raw.ID); raw.Path != want {
		return nil, fmt.Errorf("element %s: path %q, want %q", raw.ID, raw.Path, want)
	}
	if raw.ID != d.Type {
		for _, part := range strings.Split(strings.TrimPrefix(raw.ID, d.Type+"."), ".") {
			name, slice, _ := strings.Cut(part, ":")
			el.segs = append(el.segs, seg{name: name, slice: slice})
		}
		if last := el.segs[len(el.segs)-1]; last.slice != raw.SliceName {
			return nil, fmt.Errorf("element %s: sliceName %q does not match its id", raw.ID, raw.SliceName)
		}
	}
	if raw.Min != nil {
		el.min, el.hasMin = *raw.Min, true
	}
	if raw.Max != nil {
		el.hasMax = true
		if *raw.Max == "*" {
			el.max = -1
		} else if _, err := fmt.Sscanf(*raw.Max, "%d", &el.max); err != nil {
			return nil, fmt.Errorf("element %s: max %q", raw.ID, *raw.Max)
		}
	}
	for k, v := range m {
		switch {
		case strings.HasPrefix(k, "fixed"):
			el.fixed, el.valueName = v, k
		case strings.HasPrefix(k, "pattern"):
			el.pattern, el.valueName = v, k
		}
	}
	regexes := raw.Extension
	for _, t := range raw.Type {
		regexes = append(regexes, t.Extension...)
	}
	for _, x := range regexes {
		if x.URL == regexExt {
			re, err := regexp.Compile("^(?:" + x.ValueString + ")$")
			if err != nil {
				return nil, fmt.Errorf("element %s: regex: %w", raw.ID, err)
			}
			el.regex, el.regexText = re, x.ValueString
		}
	}
	for _, r := range raw.Constraint {
		fn, ok := invariants[r.Key]
		if !ok {
			return nil, fmt.Errorf("element %s: constraint %s has no implementation", raw.ID, r.Key)
		}
		if r.Severity != "error" && r.Severity != "warning" {
			return nil, fmt.Errorf("element %s: constraint %s: severity %q", raw.ID, r.Key, r.Severity)
		}
		r.check = fn
		el.rules = append(el.rules, r)
	}
	return el, nil
}

// pathOf removes slice names from an element id.
func pathOf(id string) string {
	parts := strings.Split(id, ".")
	for i, p := range parts {
		parts[i], _, _ = strings.Cut(p, ":")
	}
	return strings.Join(parts, ".")
}

// parentID is the id of the element an element id sits in ("" for the root).
func parentID(id string) string {
	i := strings.LastIndexByte(id, '.')
	if i < 0 {
		return ""
	}
	return id[:i]
}

// snapshot lays the differential over the base elements of typ. An element of the
// differential replaces the keys it states on the base element with the same id; a slice
// starts as a copy of the element it slices; any other new element (a path into a data type)
// goes after its parent and the parent's descendants.
func snapshot(typ string, diff []map[string]any) ([]any, error) {
	base := baseElements(typ)
	if base == nil {
		return nil, fmt.Errorf("no R4 definition of %s", typ)
	}
	index := func(list []map[string]any, id string) int {
		return slices.IndexFunc(list, func(m map[string]any) bool { return m["id"] == id })
	}
	for _, d := range diff {
		id := d["id"].(string)
		if i := index(base, id); i >= 0 {
			for k, v := range d {
				base[i][k] = v
			}
			continue
		}
		el := map[string]any{}
		if f, ok := facts(typ, id); ok {
			for k, v := range f {
				el[k] = v
			}
		}
		if name, _ := d["sliceName"].(string); name != "" {
			sliced := strings.TrimSuffix(id, ":"+name)
			if i := index(base, sliced); i >= 0 {
				for k, v := range base[i] {
					if k != "slicing" {
						el[k] = v
					}
				}
			}
		}
		for k, v := range d {
			el[k] = v
		}
		if _, ok := el["base"]; !ok {
			el["base"] = map[string]any{"path": pathOf(id), "min": el["min"], "max": el["max"]}
		}
		parent := parentID(id)
		if name, _ := d["sliceName"].(string); name != "" {
			parent = strings.TrimSuffix(id, ":"+name)
		}
		at := -1
		for ; at < 0 && parent != ""; parent = parentID(parent) {
			for i, m := range base {
				mid := m["id"].(string)
				if mid == parent || strings.HasPrefix(mid, parent+".") || strings.HasPrefix(mid, parent+":") {
					at = i
				}
			}
		}
		if at < 0 {
			return nil, fmt.Errorf("element %s: no parent in the snapshot", id)
		}
		base = slices.Insert(base, at+1, el)
	}
	out := make([]any, len(base))
	for i, m := range base {
		out[i] = m
	}
	return out, nil
}
