package r4

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"regexp"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/google/fhir/go/fhirversion"
	"github.com/google/fhir/go/jsonformat"
	"github.com/google/fhir/go/jsonformat/fhirvalidate"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	rpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/bundle_and_contained_resource_go_proto"
	anypb "google.golang.org/protobuf/types/known/anypb"

	"github.com/calaimfhir/calaimfhir/resources"
)

const (
	// maxNestingDepth bounds how deep google/fhir descends (it counts the dots of its JSON path,
	// so "Bundle.entry[0].resource.Questionnaire.item[0].item[0]" is 5). Official examples and
	// real Questionnaires stay far below; the bound keeps parsing cost and recursion finite.
	maxNestingDepth = 64
	// maxIssues caps the issues returned for one resource; the last issue says how many were left out.
	maxIssues = 200
	// maxValueChars caps how much of an offending value is echoed in a diagnostic.
	maxValueChars = 80
)

// unmarshaller returns the shared google/fhir R4 unmarshaller. Unmarshaller holds only
// configuration fixed at construction and its methods keep no state between calls (the caches
// of the jsonpbhelper package are synchronised), so one instance serves all goroutines.
var unmarshaller = sync.OnceValues(func() (*jsonformat.Unmarshaller, error) {
	u, err := jsonformat.NewUnmarshaller("UTC", fhirversion.R4)
	if err != nil {
		return nil, err
	}
	u.MaxNestingDepth = maxNestingDepth
	return u, nil
})

// panicError marks a panic recovered inside google/fhir; Validate turns it into an internal error.
type panicError struct {
	value any
	stack []byte
}

func (p *panicError) Error() string { return fmt.Sprintf("panic in R4 validation: %v", p.value) }

// Validate parses body as one FHIR R4 (4.0.1) resource in JSON and validates it against the base
// specification with google/fhir's extended validation: unknown elements, JSON types, primitive
// formats, code values of required bindings, required elements, cardinality of arrays and
// reference target types. Contained resources are validated too.
//
// On success it returns the resource type named by resourceType; on error it returns "".
// Errors are *resources.Error: KindBadRequest when body is not a JSON object with a known R4
// resourceType, KindUnprocessable with one issue per problem (each with a FHIRPath expression
// starting with the resource type) when it is a resource that violates R4. google/fhir reports problems in two passes and stops
// after the first pass that fails: JSON-level problems (unknown elements, wrong JSON types, bad
// primitive values) are reported together, and only a resource free of those is checked for
// required elements, id formats and reference types.
func Validate(body []byte) (resourceType string, err error) {
	defer func() {
		if r := recover(); r != nil {
			resourceType = ""
			err = &resources.Error{
				Kind:    resources.KindInternal,
				Message: "internal error while validating the resource",
				Err:     &panicError{value: r, stack: debug.Stack()},
			}
		}
	}()
	u, err := unmarshaller()
	if err != nil {
		return "", resources.Wrap(resources.KindInternal, err, "R4 validator unavailable")
	}
	c := &collector{}
	msg, err := u.UnmarshalWithErrorReporter(body, c)
	if err != nil {
		return "", parseError(body, err)
	}
	cr, ok := msg.(*rpb.ContainedResource)
	if !ok {
		return "", resources.Errorf(resources.KindInternal, "R4 validator returned %T", msg)
	}
	if c.err == nil && bytes.Contains(body, []byte(`"contained"`)) {
		validateContained(cr.ProtoReflect(), "", c)
	}
	if c.err != nil {
		return "", unprocessable(c.issues, c.err)
	}
	rm := cr.ProtoReflect()
	f := rm.WhichOneof(rm.Descriptor().Oneofs().Get(0))
	if f == nil {
		return "", resources.Errorf(resources.KindInternal, "R4 validator returned an empty resource")
	}
	if len(c.issues) > 0 {
		return "", unprocessable(c.issues, nil)
	}
	return string(f.Message().Name()), nil
}

// collector is the errorreporter.ErrorReporter that gathers validation-stage problems.
type collector struct {
	issues []resources.Issue
	// prefix, when set, replaces the resource type at the start of reported paths; it is used
	// while validating a contained resource ("Patient.contained[0]").
	prefix string
	err    error // a failure that is not a validation problem
}

func (c *collector) ReportValidationError(elementPath string, err error) error {
	list, ok := unmarshalErrors(err)
	if !ok {
		// Not a problem with the resource: remember it, and carry on collecting.
		if c.err == nil {
			c.err = err
		}
		return nil
	}
	for _, ue := range list {
		issue := issueFor(ue, elementPath)
		if c.prefix != "" {
			expr := issue.Expression[0]
			if i := strings.IndexByte(expr, '.'); i >= 0 {
				expr = c.prefix + expr[i:]
			} else {
				expr = c.prefix
			}
			issue.Expression = []string{expr}
		}
		c.issues = append(c.issues, issue)
	}
	return nil
}

// ReportValidationWarning ignores warnings: google/fhir v0.7.4 reports none for R4.
func (c *collector) ReportValidationWarning(string, error) error { return nil }

// validateContained runs the extended validation on contained resources, which google/fhir skips
// because it stores them as google.protobuf.Any. path is the google/fhir style path of m.
func validateContained(m protoreflect.Message, path string, c *collector) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		md := fd.Message()
		if md == nil || !mayHoldAny(md) {
			return true
		}
		name := fd.JSONName()
		if path == "" {
			name = upperFirst(name)
		}
		fp := name
		if path != "" {
			fp = path + "." + name
		}
		visit := func(e protoreflect.Message, p string) {
			if md.FullName() != anyDesc.FullName() {
				validateContained(e, p, c)
				return
			}
			a, ok := e.Interface().(*anypb.Any)
			if !ok {
				return
			}
			inner := &rpb.ContainedResource{}
			if err := a.UnmarshalTo(inner); err != nil {
				if c.err == nil {
					c.err = err
				}
				return
			}
			sub := &collector{prefix: fhirPath(p)}
			if err := fhirvalidate.ValidateWithErrorReporter(inner, sub); err != nil && sub.err == nil {
				sub.err = err
			}
			c.issues = append(c.issues, sub.issues...)
			if sub.err != nil && c.err == nil {
				c.err = sub.err
			}
			// R4 forbids contained resources inside contained ones (dom-2), but google/fhir
			// parses them; validate them too.
			validateContained(inner.ProtoReflect(), p, c)
		}
		if fd.IsList() {
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				visit(l.Get(i).Message(), fp+"["+strconv.Itoa(i)+"]")
			}
		} else if !fd.IsMap() {
			visit(v.Message(), fp)
		}
		return true
	})
}

// parseError classifies an error returned by the google/fhir unmarshaller.
func parseError(body []byte, err error) error {
	list, ok := unmarshalErrors(err)
	if !ok || len(list) == 0 {
		// Anything else is a failure inside google/fhir that the input provoked.
		return &resources.Error{
			Kind:    resources.KindUnprocessable,
			Message: "the resource could not be parsed as FHIR R4",
			Issues: []resources.Issue{{
				Severity:    resources.SeverityError,
				Code:        resources.IssueInvalid,
				Diagnostics: "The resource could not be parsed as FHIR R4",
			}},
			Err: err,
		}
	}
	if len(list) == 1 {
		if e := topLevelError(body, list[0]); e != nil {
			return e
		}
	}
	issues := make([]resources.Issue, 0, len(list))
	var tooDeep *umError
	for _, ue := range list {
		if strings.HasPrefix(ue.Details, "field exceeded the maximum nesting depth") {
			// Report one element whose children cross the limit (the first in path order):
			// google/fhir reports each child, in map order.
			parent := *ue
			if i := strings.LastIndexByte(parent.Path, '.'); i > 0 {
				parent.Path = parent.Path[:i]
			}
			if tooDeep == nil || naturalCompare(parent.Path, tooDeep.Path) < 0 {
				tooDeep = &parent
			}
			continue
		}
		issues = append(issues, issueFor(ue, ue.Path))
	}
	if tooDeep != nil {
		issues = append(issues, issueFor(tooDeep, tooDeep.Path))
	}
	return unprocessable(issues, nil)
}

// topLevelError returns a 400 error when ue says the body is not a resource at all.
func topLevelError(body []byte, ue *umError) *resources.Error {
	bad := func(code resources.IssueType, msg string) *resources.Error {
		return &resources.Error{
			Kind:    resources.KindBadRequest,
			Message: msg,
			Issues:  []resources.Issue{{Severity: resources.SeverityError, Code: code, Diagnostics: msg}},
		}
	}
	switch {
	case ue.Path == "" && ue.Details == "invalid JSON":
		switch t := bytes.TrimSpace(body); {
		case !json.Valid(t):
			return bad(resources.IssueInvalid, "The request body is not valid JSON")
		case t[0] != '{':
			return bad(resources.IssueStructure, "The request body must be a JSON object (a FHIR resource)")
		case strings.Contains(ue.Diagnostics, "invalid number"):
			// json-iterator rejects numbers beyond the range of float64 anywhere in the document.
			return bad(resources.IssueInvalid, "The request body contains a number too large to process")
		default:
			return bad(resources.IssueInvalid, "The request body could not be parsed as JSON")
		}
	case ue.Path == "" && ue.Details == `missing required field "resourceType"`:
		if t := bytes.TrimSpace(body); len(t) == 0 || t[0] != '{' {
			return bad(resources.IssueStructure, "The request body must be a JSON object (a FHIR resource)")
		}
		return bad(resources.IssueStructure, "The resource has no resourceType")
	case ue.Path == "" && ue.Details == "invalid resource type":
		return bad(resources.IssueStructure, "resourceType must be a string")
	case ue.Details == "unknown resource type":
		if rt, err := strconv.Unquote(ue.Diagnostics); err == nil && rt == ue.Path {
			return bad(resources.IssueStructure, fmt.Sprintf("%q is not an R4 resource type", clip(rt, 64)))
		}
	}
	return nil
}

var (
	requiredRE  = regexp.MustCompile(`^missing required field "(.+)"$`)
	multipleRE  = regexp.MustCompile(`^cannot accept multiple values for (\w+) field$`)
	codeRE      = regexp.MustCompile(`^(".*") is not a (\w+)$`)
	referenceRE = regexp.MustCompile(`^invalid reference to a (\w+) resource, want (.+)$`)
)

// issueFor turns one google/fhir error into an issue. path is the google/fhir path it was
// reported at (UnmarshalError.Path, or the error reporter's elementPath).
func issueFor(ue *umError, path string) resources.Issue {
	issue := resources.Issue{Severity: resources.SeverityError, Code: resources.IssueValue}
	d := ue.Details
	diag := strings.TrimSpace(ue.Diagnostics)
	switch {
	case d == "unknown field":
		key, err := strconv.Unquote(diag)
		if err != nil {
			key = diag
		}
		issue.Code = resources.IssueStructure
		issue.Diagnostics = fmt.Sprintf("Unknown element %q", clip(key, maxValueChars))
		issue.Expression = []string{childPath(fhirPath(path), key)}
		return issue
	case d == "unknown resource type":
		rt, err := strconv.Unquote(diag)
		if err != nil {
			rt = diag
		}
		issue.Code = resources.IssueStructure
		issue.Diagnostics = fmt.Sprintf("%q is not an R4 resource type", clip(rt, maxValueChars))
		issue.Expression = []string{fhirPath(strings.TrimSuffix(strings.TrimSuffix(path, rt), "."))}
		return issue
	case requiredRE.MatchString(d):
		name := requiredRE.FindStringSubmatch(d)[1]
		issue.Code = resources.IssueRequired
		issue.Diagnostics = fmt.Sprintf("Missing required element %q", name)
		issue.Expression = []string{childPath(fhirPath(path), name)}
		return issue
	case multipleRE.MatchString(d):
		name := snakeToLowerCamel(multipleRE.FindStringSubmatch(d)[1])
		issue.Code = resources.IssueStructure
		issue.Diagnostics = fmt.Sprintf("Only one %s[x] element is allowed, but several were given", name)
		issue.Expression = []string{childPath(fhirPath(path), name)}
		return issue
	}
	issue.Expression = []string{fhirPath(path)}
	switch {
	case d == "invalid JSON":
		issue.Code = resources.IssueStructure
		issue.Diagnostics = wrongShape(diag)
	case d == "expected array":
		issue.Code = resources.IssueStructure
		issue.Diagnostics = "Expected an array (this element repeats)"
	case d == "invalid resource type":
		issue.Code = resources.IssueStructure
		issue.Diagnostics = "resourceType must be a string"
	case d == "invalid field", d == "invalid extension field", strings.HasPrefix(d, "invalid type:"):
		issue.Code = resources.IssueStructure
		issue.Diagnostics = "This element is not allowed here"
	case strings.HasPrefix(d, "array length mismatch"):
		issue.Code = resources.IssueStructure
		issue.Diagnostics = "The primitive value array and its \"_\" extension array differ in length (" +
			strings.TrimPrefix(d, "array length mismatch, ") + ")"
	case strings.HasPrefix(d, "field exceeded the maximum nesting depth"):
		issue.Code = resources.IssueStructure
		issue.Diagnostics = fmt.Sprintf("Elements are nested too deeply (more than %d levels)", maxNestingDepth)
	case ue.Type == "ReferenceTypeError":
		issue.Code = resources.IssueStructure
		if m := referenceRE.FindStringSubmatch(d); m != nil {
			issue.Diagnostics = fmt.Sprintf("A reference to a %s is not allowed here (allowed: %s)", m[1], m[2])
		} else {
			issue.Diagnostics = upperFirst(d)
		}
	case d == "code type mismatch":
		issue.Code = resources.IssueValue
		if m := codeRE.FindStringSubmatch(diag); m != nil {
			issue.Diagnostics = fmt.Sprintf("Unknown code %s (not in %s)", clip(m[1], maxValueChars), m[2])
		} else {
			issue.Diagnostics = "Unknown code"
		}
	default:
		// Primitive values: "expected date" + "found ...", "invalid Id format", "invalid time", ...
		issue.Code = resources.IssueValue
		issue.Diagnostics = upperFirst(d)
		if diag == "found" {
			// google/fhir prints "found " and the raw value, which is empty for a JSON null.
			diag = "found null"
		}
		if diag != "" {
			issue.Diagnostics += ", " + clip(diag, maxValueChars)
		}
	}
	return issue
}

// wrongShape explains an "invalid JSON" error google/fhir gives for a nested value of the wrong
// JSON type; diag holds the start of the offending value.
func wrongShape(diag string) string {
	switch {
	case diag == "", strings.HasPrefix(diag, "null"):
		// The raw value of a JSON null is empty.
		return "null is not allowed here"
	case diag[0] == '[':
		return "Expected a single value or object, found an array"
	case diag[0] == '{':
		return "Wrong JSON type for this element"
	default:
		return "Expected a JSON object, found " + clip(diag, maxValueChars)
	}
}

// unprocessable builds the 422 error: issues sorted by expression (google/fhir reports JSON-level
// problems in map order), duplicates removed, capped at maxIssues.
func unprocessable(issues []resources.Issue, cause error) *resources.Error {
	slices.SortStableFunc(issues, func(a, b resources.Issue) int {
		return cmp.Or(naturalCompare(firstExpr(a), firstExpr(b)), strings.Compare(a.Diagnostics, b.Diagnostics))
	})
	issues = slices.CompactFunc(issues, func(a, b resources.Issue) bool {
		return a.Code == b.Code && a.Diagnostics == b.Diagnostics && firstExpr(a) == firstExpr(b)
	})
	if len(issues) > maxIssues {
		more := len(issues) - maxIssues + 1
		issues = append(issues[:maxIssues-1], resources.Issue{
			Severity:    resources.SeverityError,
			Code:        resources.IssueInvalid,
			Diagnostics: fmt.Sprintf("%d more problems not listed", more),
		})
	}
	msg := "The resource is not valid FHIR R4"
	switch n := len(issues); {
	case n == 1:
		msg += ": " + issues[0].Diagnostics
		if e := firstExpr(issues[0]); e != "" {
			msg += " at " + e
		}
	case n > 1:
		msg += fmt.Sprintf(" (%d problems)", n)
	}
	if len(issues) == 0 {
		issues = []resources.Issue{{Severity: resources.SeverityError, Code: resources.IssueInvalid, Diagnostics: msg}}
	}
	return &resources.Error{Kind: resources.KindUnprocessable, Message: msg, Issues: issues, Err: cause}
}

func firstExpr(i resources.Issue) string {
	if len(i.Expression) == 0 {
		return ""
	}
	return i.Expression[0]
}

// naturalCompare orders strings with embedded numbers numerically, so that "name[2]" sorts
// before "name[10]".
func naturalCompare(a, b string) int {
	for a != "" && b != "" {
		if isDigit(a[0]) && isDigit(b[0]) {
			na, nb := digitRun(a), digitRun(b)
			x := strings.TrimLeft(a[:na], "0")
			y := strings.TrimLeft(b[:nb], "0")
			if c := cmp.Compare(len(x), len(y)); c != 0 {
				return c
			}
			if c := strings.Compare(x, y); c != 0 {
				return c
			}
			a, b = a[na:], b[nb:]
			continue
		}
		if a[0] != b[0] {
			return cmp.Compare(a[0], b[0])
		}
		a, b = a[1:], b[1:]
	}
	return cmp.Compare(len(a), len(b))
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func digitRun(s string) int {
	n := 0
	for n < len(s) && isDigit(s[n]) {
		n++
	}
	return n
}

// compile-time check that collector satisfies the google/fhir interface.
var _ interface {
	ReportValidationError(string, error) error
	ReportValidationWarning(string, error) error
} = (*collector)(nil)

var _ proto.Message = (*rpb.ContainedResource)(nil)

// holdsAny caches mayHoldAny per message type.
var holdsAny sync.Map // protoreflect.FullName -> bool

// mayHoldAny reports whether a message of type d can, at any depth, hold a google.protobuf.Any
// (a contained resource), so that validateContained need not walk data types.
func mayHoldAny(d protoreflect.MessageDescriptor) bool {
	if v, ok := holdsAny.Load(d.FullName()); ok {
		return v.(bool)
	}
	seen := map[protoreflect.FullName]bool{d.FullName(): true}
	queue := []protoreflect.MessageDescriptor{d}
	found := false
	for len(queue) > 0 && !found {
		m := queue[0]
		queue = queue[1:]
		if m.FullName() == anyDesc.FullName() {
			found = true
			break
		}
		fields := m.Fields()
		for i := 0; i < fields.Len(); i++ {
			if fm := fields.Get(i).Message(); fm != nil && !seen[fm.FullName()] {
				seen[fm.FullName()] = true
				queue = append(queue, fm)
			}
		}
	}
	holdsAny.Store(d.FullName(), found)
	return found
}
