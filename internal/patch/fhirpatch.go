package patch

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/calaimfhir/calaimfhir/resources"
)

// Schema supplies what FHIR JSON alone cannot tell a FHIRPath Patch: whether an element that is
// not present yet repeats (so "add" creates a one-item array rather than a single value), and
// whether it is a choice element (so "add" of name "deceased" with valueBoolean creates
// "deceasedBoolean"). Element paths are the resource type and JSON member names without
// indexes, e.g. "Patient.name.given"; a contained or Bundle entry resource restarts at its own
// type ("Patient.telecom", not "Bundle.entry.resource.telecom"). A nil function falls back to
// the default described on FHIRPath.
type Schema struct {
	Repeats  func(elementPath string) bool
	IsChoice func(elementPath string) bool
}

// alwaysRepeating are element names that are 0..* wherever they occur in R4, so that without a
// Schema adding the first one still produces a valid array.
var alwaysRepeating = map[string]bool{
	"extension":         true,
	"modifierExtension": true,
	"contained":         true,
	"coding":            true, // CodeableConcept.coding
	"given":             true, // HumanName.given
}

func (s Schema) repeats(elementPath string) bool {
	if s.Repeats != nil {
		return s.Repeats(elementPath)
	}
	name := elementPath[strings.LastIndexByte(elementPath, '.')+1:]
	return alwaysRepeating[name]
}

func (s Schema) isChoice(elementPath string) bool {
	return s.IsChoice != nil && s.IsChoice(elementPath)
}

// fhirOp is one parsed operation of a FHIRPath Patch.
type fhirOp struct {
	typ        string
	pathText   string
	path       *fhirPath
	name       string
	value      map[string]any // the "value" part itself; built against the target element later
	index      int
	source     int
	dest       int
	hasIndex   bool
	hasSource  bool
	hasDest    bool
	valueFound bool
}

// FHIRPath applies a FHIRPath Patch (https://hl7.org/fhir/R4/fhirpatch.html), given as a
// decoded Parameters resource, to doc and returns the patched document; doc and params are
// never modified. Operations apply in order to a deep copy and the patch is atomic.
//
// It is FHIRPathWithSchema with an empty Schema: an absent element is added as an array only
// when its name is 0..* everywhere in R4 (extension, modifierExtension, contained, coding,
// given), and a choice element must be added under its full JSON name (deceasedBoolean).
//
// Errors are *resources.Error:
//   - KindBadRequest (400) when the Parameters are not a FHIRPath Patch: not a Parameters
//     resource, a parameter other than "operation", an unknown type, a missing, repeated,
//     unknown or mistyped part, a negative index, or a path outside the supported FHIRPath
//     subset ("unsupported FHIRPath", see the package documentation). The whole patch is
//     checked before anything is applied.
//   - KindUnprocessable (422) when an operation cannot be applied to this resource: the path
//     selects nothing (except for delete, where that is a no-op) or more than one element, the
//     path names another resource type, add of a single-valued element that already has a
//     value, insert/move on something that is not a list, an index, source or destination out
//     of range, or replacing/deleting the resource itself. The issue's expression is the path.
func FHIRPath(doc map[string]any, params map[string]any) (map[string]any, error) {
	return FHIRPathWithSchema(doc, params, Schema{})
}

// FHIRPathWithSchema is FHIRPath with structural knowledge from s.
func FHIRPathWithSchema(doc map[string]any, params map[string]any, s Schema) (map[string]any, error) {
	ops, err := parseFHIRPatch(params)
	if err != nil {
		return nil, err
	}
	out := cloneDoc(doc)
	for i, op := range ops {
		if err := applyFHIROp(out, op, s); err != nil {
			var e *resources.Error
			if errors.As(err, &e) {
				e.Message = fmt.Sprintf("patch operation %d (%s %s): %s", i, op.typ, clip(op.pathText), e.Message)
				for j := range e.Issues {
					e.Issues[j].Diagnostics = e.Message
				}
			}
			return nil, err
		}
	}
	return out, nil
}

// valueKey returns the value[x] member of a Parameters part ("valueString"), or "" when it has
// none; more than one is an error.
func valueKey(part map[string]any) (string, error) {
	key := ""
	for k := range part {
		if len(k) > len("value") && strings.HasPrefix(k, "value") && k[5] >= 'A' && k[5] <= 'Z' {
			if key != "" {
				return "", badRequest("a part has both %s and %s", clip(min(k, key)), clip(max(k, key)))
			}
			key = k
		}
	}
	return key, nil
}

func partName(part map[string]any) (string, error) {
	name, ok := part["name"].(string)
	if !ok || name == "" {
		return "", badRequest("every parameter and part needs a name")
	}
	return name, nil
}

func parseFHIRPatch(params map[string]any) ([]fhirOp, error) {
	if rt, _ := params["resourceType"].(string); rt != "Parameters" {
		return nil, badRequest("a FHIRPath Patch is a Parameters resource")
	}
	raw, ok := params["parameter"]
	if !ok {
		return nil, nil
	}
	list, ok := raw.([]any)
	if !ok {
		return nil, badRequest("Parameters.parameter must be an array")
	}
	ops := make([]fhirOp, 0, len(list))
	for i, item := range list {
		param, ok := item.(map[string]any)
		if !ok {
			return nil, badRequest("Parameters.parameter[%d] is not an object", i)
		}
		name, err := partName(param)
		if err != nil {
			return nil, err
		}
		if name != "operation" {
			return nil, badRequest("Parameters.parameter[%d] is %q; a FHIRPath Patch has only \"operation\" parameters", i, clip(name))
		}
		op, err := parseFHIROp(param)
		if err != nil {
			var e *resources.Error
			if errors.As(err, &e) {
				e.Message = fmt.Sprintf("patch operation %d: %s", i, e.Message)
			}
			return nil, err
		}
		ops = append(ops, op)
	}
	return ops, nil
}

func parseFHIROp(param map[string]any) (fhirOp, error) {
	var op fhirOp
	parts, ok := param["part"].([]any)
	if !ok {
		return op, badRequest("an operation needs its parts (type, path, ...)")
	}
	seen := map[string]bool{}
	for _, item := range parts {
		part, ok := item.(map[string]any)
		if !ok {
			return op, badRequest("a part is not an object")
		}
		name, err := partName(part)
		if err != nil {
			return op, err
		}
		if seen[name] {
			return op, badRequest("the part %q is given twice", clip(name))
		}
		seen[name] = true
		switch name {
		case "type":
			if op.typ, err = stringPart(part, name); err != nil {
				return op, err
			}
		case "path":
			if op.pathText, err = stringPart(part, name); err != nil {
				return op, err
			}
		case "name":
			if op.name, err = stringPart(part, name); err != nil {
				return op, err
			}
		case "value":
			op.value, op.valueFound = part, true
		case "index":
			op.index, err = intPart(part, name)
			op.hasIndex = true
		case "source":
			op.source, err = intPart(part, name)
			op.hasSource = true
		case "destination":
			op.dest, err = intPart(part, name)
			op.hasDest = true
		default:
			return op, badRequest("unknown part %q (type, path, name, value, index, source, destination)", clip(name))
		}
		if err != nil {
			return op, err
		}
	}
	var missing []string
	need := func(ok bool, part string) {
		if !ok {
			missing = append(missing, part)
		}
	}
	need(seen["path"], "path")
	switch op.typ {
	case "add":
		need(seen["name"], "name")
		need(op.valueFound, "value")
	case "insert":
		need(op.valueFound, "value")
		need(op.hasIndex, "index")
	case "delete":
	case "replace":
		need(op.valueFound, "value")
	case "move":
		need(op.hasSource, "source")
		need(op.hasDest, "destination")
	case "":
		return op, badRequest("an operation needs a type part (add, insert, delete, replace or move)")
	default:
		return op, badRequest("unknown operation type %q (add, insert, delete, replace or move)", clip(op.typ))
	}
	if len(missing) > 0 {
		return op, badRequest("a %s operation needs the part(s) %s", op.typ, strings.Join(missing, ", "))
	}
	if op.typ == "add" && !validElementName(op.name) {
		return op, badRequest("%q is not an element name", clip(op.name))
	}
	var err error
	if op.path, err = parsePath(op.pathText); err != nil {
		return op, badRequest("unsupported FHIRPath %q: %v", clip(op.pathText), err)
	}
	if (op.typ == "insert" || op.typ == "move") && !endsWithName(op.path) {
		return op, badRequest("the path of an %s names a list, so it must end with an element name: %q", op.typ, clip(op.pathText))
	}
	if op.valueFound {
		// Check the value's shape now, so that a malformed value is a 400 whatever the resource.
		if _, _, err := buildValue(op.value, "", Schema{}, 0); err != nil {
			return op, err
		}
	}
	return op, nil
}

func endsWithName(p *fhirPath) bool {
	return len(p.steps) > 0 && p.steps[len(p.steps)-1].kind == stepName
}

func validElementName(s string) bool {
	if s == "" || !isIdentStart(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if !isIdentPart(s[i]) {
			return false
		}
	}
	return true
}

// stringPart reads a part whose value is a string (type is valueCode, path and name are
// valueString; any string-valued value[x] is accepted).
func stringPart(part map[string]any, name string) (string, error) {
	key, err := valueKey(part)
	if err != nil {
		return "", err
	}
	s, ok := part[key].(string)
	if key == "" || !ok {
		return "", badRequest("the part %q needs a string value (valueString or valueCode)", name)
	}
	return s, nil
}

// intPart reads a part whose value is a non-negative integer (valueInteger).
func intPart(part map[string]any, name string) (int, error) {
	key, err := valueKey(part)
	if err != nil {
		return 0, err
	}
	text, ok := numberText(part[key])
	if key == "" || !ok {
		return 0, badRequest("the part %q needs an integer value (valueInteger)", name)
	}
	n, err := strconv.ParseInt(text, 10, 64)
	if err != nil {
		// Allow an integral float ("2.0", or 2 decoded as float64 by a caller).
		f, ferr := strconv.ParseFloat(text, 64)
		if ferr != nil || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
			return 0, badRequest("the part %q needs an integer value, not %s", name, clip(text))
		}
		n = int64(f)
	}
	if n < 0 {
		return 0, badRequest("the part %q must not be negative", name)
	}
	if n > math.MaxInt32 {
		n = math.MaxInt32 // out of range of any list; reported against the resource
	}
	return int(n), nil
}

// maxValueDepth bounds the nesting of parts in a value.
const maxValueDepth = 100

// buildValue turns a Parameters part into the JSON value it carries: value[x] as is (a
// primitive or a complex datatype object), resource as the resource, or nested parts as an
// object of their names. Nested parts that repeat a name, or name an element the schema says
// repeats, become arrays. typeSuffix is the type of value[x] ("Boolean" for valueBoolean), or
// "" when the value came from resource or parts.
func buildValue(part map[string]any, elem string, s Schema, depth int) (v any, typeSuffix string, err error) {
	if depth > maxValueDepth {
		return nil, "", badRequest("the value's parts are nested too deeply")
	}
	key, err := valueKey(part)
	if err != nil {
		return nil, "", err
	}
	if key != "" {
		if part[key] == nil {
			return nil, "", badRequest("%s is null", clip(key))
		}
		return clone(part[key]), key[len("value"):], nil
	}
	if res, ok := part["resource"]; ok {
		m, ok := res.(map[string]any)
		if !ok {
			return nil, "", badRequest("a part's resource must be an object")
		}
		return clone(m), "", nil
	}
	raw, ok := part["part"]
	if !ok {
		return nil, "", badRequest("the value needs a value[x], a resource or parts")
	}
	subs, ok := raw.([]any)
	if !ok || len(subs) == 0 {
		return nil, "", badRequest("a value's part must be a non-empty array")
	}
	obj := map[string]any{}
	var order []string
	counts := map[string]int{}
	for _, item := range subs {
		sub, ok := item.(map[string]any)
		if !ok {
			return nil, "", badRequest("a part is not an object")
		}
		name, err := partName(sub)
		if err != nil {
			return nil, "", err
		}
		if !validElementName(name) {
			return nil, "", badRequest("the part name %q is not an element name", clip(name))
		}
		v, _, err := buildValue(sub, elem+"."+name, s, depth+1)
		if err != nil {
			return nil, "", err
		}
		if counts[name] == 0 {
			order = append(order, name)
			obj[name] = v
		} else if counts[name] == 1 {
			obj[name] = []any{obj[name], v}
		} else {
			obj[name] = append(obj[name].([]any), v)
		}
		counts[name]++
	}
	for _, name := range order {
		if counts[name] == 1 && elem != "" && s.repeats(elem+"."+name) {
			obj[name] = []any{obj[name]}
		}
	}
	return obj, "", nil
}

// single checks that a path selected exactly one element.
func single(nodes []node, op fhirOp) (node, error) {
	switch len(nodes) {
	case 0:
		return node{}, unprocessableAt(op.pathText, "the path selects no element")
	case 1:
		return nodes[0], nil
	default:
		return node{}, unprocessableAt(op.pathText, "the path selects %d elements; it must select one", len(nodes))
	}
}

func applyFHIROp(doc map[string]any, op fhirOp, s Schema) error {
	switch op.typ {
	case "add":
		return applyAdd(doc, op, s)
	case "insert", "move":
		return applyListOp(doc, op, s)
	case "delete":
		return applyDelete(doc, op)
	case "replace":
		return applyReplace(doc, op, s)
	}
	return badRequest("unknown operation type %q", clip(op.typ))
}

func applyAdd(doc map[string]any, op fhirOp, s Schema) error {
	nodes, err := evaluate(doc, op.path, op.pathText)
	if err != nil {
		return err
	}
	n, err := single(nodes, op)
	if err != nil {
		return err
	}
	m, ok := n.value.(map[string]any)
	if !ok {
		return unprocessableAt(op.pathText, "the path selects a primitive value, which has no child elements to add %q to", op.name)
	}
	base := childElemBase(n, m)
	key := op.name
	v, suffix, err := buildValue(op.value, base+"."+key, s, 0)
	if err != nil {
		return err
	}
	if suffix != "" && s.isChoice(base+"."+key) {
		if present := memberKeys(m, key); len(present) > 0 {
			return unprocessableAt(op.pathText, "%s already has a value (%s); use replace to change it", clip(key), clip(present[0]))
		}
		key += suffix
	}
	switch cur := m[key].(type) {
	case nil:
		if _, present := m[key]; present || !s.repeats(base+"."+key) {
			m[key] = v
		} else {
			m[key] = []any{v}
		}
	case []any:
		m[key] = append(cur, v)
		if ext, ok := m["_"+key].([]any); ok && len(ext) == len(cur) {
			m["_"+key] = append(ext, nil)
		}
	default:
		return unprocessableAt(op.pathText, "%s already has a value; use replace to change it", clip(key))
	}
	return nil
}

// applyListOp carries out insert and move, whose path names a list: it must end with an
// element name, and the path before it must select one object.
func applyListOp(doc map[string]any, op fhirOp, s Schema) error {
	last := op.path.steps[len(op.path.steps)-1].name
	parentPath := &fhirPath{root: op.path.root, steps: op.path.steps[:len(op.path.steps)-1]}
	nodes, err := evaluate(doc, parentPath, op.pathText)
	if err != nil {
		return err
	}
	n, err := single(nodes, op)
	if err != nil {
		return err
	}
	m, ok := n.value.(map[string]any)
	if !ok {
		return unprocessableAt(op.pathText, "the path does not name a list")
	}
	cur, present := m[last]
	list, isList := cur.([]any)
	if present && cur != nil && !isList {
		return unprocessableAt(op.pathText, "%s is not a list", clip(last))
	}
	if op.typ == "insert" {
		if op.index > len(list) {
			return unprocessableAt(op.pathText, "index %d is out of range: the list has %d items", op.index, len(list))
		}
		v, _, err := buildValue(op.value, childElemBase(n, m)+"."+last, s, 0)
		if err != nil {
			return err
		}
		ext, alignedExt := m["_"+last].([]any)
		alignedExt = alignedExt && len(ext) == len(list)
		m[last] = slices.Insert(list, op.index, v)
		if alignedExt {
			m["_"+last] = slices.Insert(ext, op.index, nil)
		}
		return nil
	}
	// move
	if len(list) == 0 {
		return unprocessableAt(op.pathText, "%s has no items to move", clip(last))
	}
	if op.source >= len(list) || op.dest >= len(list) {
		return unprocessableAt(op.pathText, "source %d or destination %d is out of range: the list has %d items", op.source, op.dest, len(list))
	}
	moveItem(list, op.source, op.dest)
	if ext, ok := m["_"+last].([]any); ok && len(ext) == len(list) {
		moveItem(ext, op.source, op.dest)
	}
	return nil
}

// moveItem moves list[from] to index to, shifting the items between.
func moveItem(list []any, from, to int) {
	v := list[from]
	if from < to {
		copy(list[from:to], list[from+1:to+1])
	} else {
		copy(list[to+1:from+1], list[to:from])
	}
	list[to] = v
}

func applyDelete(doc map[string]any, op fhirOp) error {
	nodes, err := evaluate(doc, op.path, op.pathText)
	if err != nil {
		return err
	}
	switch len(nodes) {
	case 0:
		return nil // deleting what is not there succeeds
	case 1:
	default:
		return unprocessableAt(op.pathText, "the path selects %d elements; delete removes only one", len(nodes))
	}
	n := nodes[0]
	if n.parent == nil {
		return unprocessableAt(op.pathText, "the resource itself cannot be deleted by a patch")
	}
	m, key := n.parent, n.key
	if n.index < 0 {
		delete(m, key)
		delete(m, "_"+key)
		return nil
	}
	list := m[key].([]any)
	ext, alignedExt := m["_"+key].([]any)
	alignedExt = alignedExt && len(ext) == len(list)
	list = slices.Delete(list, n.index, n.index+1)
	if len(list) == 0 {
		delete(m, key) // FHIR JSON has no empty arrays
	} else {
		m[key] = list
	}
	if alignedExt {
		ext = slices.Delete(ext, n.index, n.index+1)
		if len(list) == 0 || !slices.ContainsFunc(ext, func(x any) bool { return x != nil }) {
			delete(m, "_"+key)
		} else {
			m["_"+key] = ext
		}
	}
	return nil
}

func applyReplace(doc map[string]any, op fhirOp, s Schema) error {
	nodes, err := evaluate(doc, op.path, op.pathText)
	if err != nil {
		return err
	}
	n, err := single(nodes, op)
	if err != nil {
		return err
	}
	if n.parent == nil {
		return unprocessableAt(op.pathText, "the resource itself cannot be replaced by a patch; use update")
	}
	v, suffix, err := buildValue(op.value, n.elem, s, 0)
	if err != nil {
		return err
	}
	m, key := n.parent, n.key
	if n.index >= 0 {
		m[key].([]any)[n.index] = v
		if ext, ok := m["_"+key].([]any); ok && n.index < len(ext) {
			ext[n.index] = nil
			if !slices.ContainsFunc(ext, func(x any) bool { return x != nil }) {
				delete(m, "_"+key)
			}
		}
		return nil
	}
	// The whole element is replaced, including the id and extensions of a primitive.
	delete(m, "_"+key)
	if key != n.name && suffix != "" {
		// A choice element found through its name ("value" for "valueString") takes the
		// type of the new value ("valueQuantity").
		delete(m, key)
		key = n.name + suffix
	}
	m[key] = v
	return nil
}
