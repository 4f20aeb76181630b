package profiles

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	apb "github.com/google/fhir/go/proto/google/fhir/proto/annotations_go_proto"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Schema returns a JSON Schema (draft 2020-12) generated from a profile's differential. It
// states what a schema can: required elements and array sizes, slices (contains with
// minContains/maxContains), fixed and pattern values, the regex extension, required bindings
// (the value set's codes), reference target types and extension definitions. It leaves to the
// Engine what it cannot: invariants (cross-field rules, dates of service, Luhn) and the type
// restriction of choice elements. It is meant for clients and for checking that the Engine and
// the StructureDefinitions agree (profiles tests run every fixture through both); the server
// enforces profiles with the Engine.
func (e *Engine) Schema(url string) ([]byte, error) {
	d, ok := e.Definition(url)
	if !ok {
		return nil, fmt.Errorf("unknown profile %s", url)
	}
	root, err := e.schemaOf(d, 0)
	if err != nil {
		return nil, err
	}
	root["$schema"] = "https://json-schema.org/draft/2020-12/schema"
	root["$id"] = d.URL + ".schema.json"
	root["title"] = d.Title
	return json.MarshalIndent(root, "", " ")
}

type schema = map[string]any

func (e *Engine) schemaOf(d *Definition, depth int) (schema, error) {
	if depth > 4 {
		return nil, fmt.Errorf("%s: extension definitions nest too deeply", d.ID)
	}
	var all []any
	for _, el := range d.elements {
		if len(el.segs) == 0 {
			continue
		}
		parts, err := e.elementSchemas(d, el, depth)
		if err != nil {
			return nil, err
		}
		for _, p := range parts {
			all = append(all, wrap(d, el.segs[:len(el.segs)-1], p))
		}
	}
	s := schema{"type": "object"}
	if d.Type != "Extension" {
		s["properties"] = schema{"resourceType": schema{"const": d.Type}}
		s["required"] = []any{"resourceType"}
	}
	if len(all) > 0 {
		s["allOf"] = all
	}
	return s, nil
}

// wrap places an object-level schema for the parent at segs inside the root schema.
func wrap(d *Definition, segs []seg, inner schema) schema {
	for i := len(segs) - 1; i >= 0; i-- {
		sg := segs[i]
		prop := inner
		if isArray(d.Type, segs[:i+1]) {
			prop = schema{"items": inner}
			if sg.slice != "" {
				id := idOf(d, segs[:i+1])
				prop = schema{"items": schema{"if": sliceMatch(d, d.byID[id]), "then": inner}}
			}
		}
		inner = schema{"properties": schema{sg.name: prop}}
	}
	return inner
}

func idOf(d *Definition, segs []seg) string {
	id := d.Type
	for _, s := range segs {
		id += "." + s.name
		if s.slice != "" {
			id += ":" + s.slice
		}
	}
	return id
}

// elementSchemas lists object-level schemas, for the parent object, that state el's rules.
func (e *Engine) elementSchemas(d *Definition, el *element, depth int) ([]schema, error) {
	last := el.segs[len(el.segs)-1]
	names := []string{last.name}
	if prefix, ok := strings.CutSuffix(last.name, "[x]"); ok {
		names = nil
		for _, t := range el.types {
			names = append(names, prefix+strings.ToUpper(t.Code[:1])+t.Code[1:])
		}
	}
	array := isArray(d.Type, el.segs)
	value, err := e.valueSchema(d, el, depth)
	if err != nil {
		return nil, err
	}
	var out []schema
	if last.slice != "" {
		match := sliceMatch(d, el)
		c := schema{"contains": match}
		if el.hasMin {
			c["minContains"] = el.min
		} else {
			c["minContains"] = 0
		}
		if el.hasMax && el.max >= 0 {
			c["maxContains"] = el.max
		}
		s := schema{"properties": schema{last.name: c}}
		if el.hasMin && el.min > 0 {
			s["required"] = []any{last.name}
		} else {
			// No minimum: the contains rule only limits how many, and only when present.
			s = schema{"properties": schema{last.name: schema{"if": schema{"type": "array"}, "then": c}}}
		}
		out = append(out, s)
		if value != nil {
			out = append(out, schema{"properties": schema{last.name: schema{"items": schema{"if": match, "then": value}}}})
		}
		return out, nil
	}
	if el.hasMin && el.min > 0 {
		var alts []any
		for _, n := range names {
			alts = append(alts, schema{"required": []any{n}})
		}
		if len(alts) == 1 {
			out = append(out, alts[0].(schema))
		} else {
			out = append(out, schema{"anyOf": alts})
		}
	}
	for _, n := range names {
		p := schema{}
		if array {
			if el.hasMin && el.min > 1 {
				p["minItems"] = el.min
			}
			if el.hasMax && el.max >= 0 {
				p["maxItems"] = el.max
			}
			if value != nil {
				p["items"] = value
			}
		} else if value != nil {
			p = value
		}
		if len(p) > 0 {
			out = append(out, schema{"properties": schema{n: p}})
		}
	}
	return out, nil
}

// valueSchema states the rules on each value of el (nil when there are none).
func (e *Engine) valueSchema(d *Definition, el *element, depth int) (schema, error) {
	var all []any
	if el.fixed != nil {
		all = append(all, schema{"const": el.fixed})
	}
	if el.pattern != nil {
		all = append(all, patternSchema(el.pattern))
	}
	if el.regex != nil {
		all = append(all, schema{"type": "string", "pattern": "^(?:" + el.regexText + ")$"})
	}
	if el.binding != nil && el.binding.Strength == "required" {
		b, err := e.bindingSchema(el.binding.ValueSet)
		if err != nil {
			return nil, err
		}
		all = append(all, b)
	}
	for _, t := range el.types {
		if t.Code == "Reference" && len(t.TargetProfile) > 0 {
			var names []string
			for _, tp := range t.TargetProfile {
				if n, ok := strings.CutPrefix(tp, r4Base); ok {
					names = append(names, n)
				} else if pd, ok := e.byURL[tp]; ok {
					names = append(names, pd.Type)
				}
			}
			// Relative or absolute URLs must name an allowed type; contained (#) and
			// Bundle-local (urn:) references cannot be told apart here.
			all = append(all, schema{"properties": schema{"reference": schema{
				"pattern": `^(#.*|urn:.*|(.*/)?(` + strings.Join(names, "|") + `)/[A-Za-z0-9\-.]{1,64}(/_history/.*)?)$`}}})
		}
		if t.Code == "Extension" && len(t.Profile) == 1 {
			if xd, ok := e.byURL[t.Profile[0]]; ok {
				xs, err := e.schemaOf(xd, depth+1)
				if err != nil {
					return nil, err
				}
				all = append(all, xs)
			}
		}
	}
	switch len(all) {
	case 0:
		return nil, nil
	case 1:
		return all[0].(schema), nil
	}
	return schema{"allOf": all}, nil
}

// patternSchema states ElementDefinition.pattern[x]: objects must hold the pattern's
// elements, arrays must contain an item matching each of the pattern's items.
func patternSchema(p any) schema {
	switch x := p.(type) {
	case map[string]any:
		props := schema{}
		var req []any
		for k, v := range x {
			props[k] = patternSchema(v)
			req = append(req, k)
		}
		slices.SortFunc(req, func(a, b any) int { return strings.Compare(a.(string), b.(string)) })
		return schema{"type": "object", "properties": props, "required": req}
	case []any:
		var all []any
		for _, item := range x {
			all = append(all, schema{"contains": patternSchema(item)})
		}
		return schema{"type": "array", "allOf": all}
	}
	return schema{"const": p}
}

// bindingSchema accepts a code, Coding or CodeableConcept from the value set.
func (e *Engine) bindingSchema(vsURL string) (schema, error) {
	codes, err := e.terms.Expand(vsURL, time.Time{}, "")
	if err != nil {
		return nil, err
	}
	bySystem := map[string][]any{}
	var systems []string
	var plain []any
	for _, c := range codes {
		if _, ok := bySystem[c.System]; !ok {
			systems = append(systems, c.System)
		}
		bySystem[c.System] = append(bySystem[c.System], c.Code)
		plain = append(plain, c.Code)
	}
	var coding []any
	for _, sys := range systems {
		coding = append(coding, schema{"type": "object", "required": []any{"code"},
			"properties": schema{"system": schema{"const": sys}, "code": schema{"enum": bySystem[sys]}}})
	}
	codingSchema := schema{"anyOf": coding}
	if len(coding) == 1 {
		codingSchema = coding[0].(schema)
	}
	return schema{"anyOf": []any{
		schema{"type": "string", "enum": plain},
		schema{"type": "object", "not": schema{"required": []any{"coding"}}, "allOf": []any{codingSchema}},
		schema{"type": "object", "required": []any{"coding"}, "properties": schema{"coding": schema{"contains": codingSchema}}},
	}}, nil
}

// sliceMatch is the schema an item must satisfy to belong to a slice (its discriminators).
func sliceMatch(d *Definition, sliceEl *element) schema {
	if sliceEl == nil {
		return schema{}
	}
	sliced := d.byID[strings.TrimSuffix(sliceEl.id, ":"+sliceEl.sliceName)]
	discs := []string{"url"}
	if sliced != nil && sliced.slicing != nil {
		discs = nil
		for _, dc := range sliced.slicing.Discriminator {
			discs = append(discs, dc.Path)
		}
	}
	var all []any
	for _, path := range discs {
		want, ok := sliceValue(d, sliceEl, path)
		if !ok {
			return schema{"not": schema{}} // nothing can match an undefined slice
		}
		s := patternSchema(want)
		if path != "$this" {
			parts := strings.Split(path, ".")
			for i := len(parts) - 1; i >= 0; i-- {
				s = schema{"type": "object", "required": []any{parts[i]}, "properties": schema{parts[i]: s}}
			}
		}
		all = append(all, s)
	}
	if len(all) == 1 {
		return all[0].(schema)
	}
	return schema{"allOf": all}
}

// isArray tells from the R4 definitions (the google/fhir protos) whether the element at segs
// under typ repeats.
func isArray(typ string, segs []seg) bool {
	fd := fieldAt(typ, segs)
	return fd != nil && fd.Cardinality() == protoreflect.Repeated
}

// fieldAt finds the proto field of the element at segs under typ, following data types
// (Patient.identifier.type is Identifier.type); nil for a choice element named with its type
// (valueCoding) or a path the R4 definitions do not have.
func fieldAt(typ string, segs []seg) protoreflect.FieldDescriptor {
	md := resourceDescriptor(typ)
	var fd protoreflect.FieldDescriptor
	for _, s := range segs {
		if md == nil {
			return nil
		}
		fd = md.Fields().ByJSONName(strings.TrimSuffix(s.name, "[x]"))
		if fd == nil {
			return nil
		}
		md = fd.Message()
		if md != nil && proto.GetExtension(md.Options(), apb.E_IsChoiceType).(bool) {
			md = nil
		}
	}
	return fd
}
