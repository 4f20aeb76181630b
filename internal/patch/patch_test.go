package patch

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/calaimfhir/calaimfhir/resources"
)

// decode parses JSON the way resources.Service does (numbers as json.Number).
func decode(t testing.TB, s string) map[string]any {
	t.Helper()
	m, err := decodeObject([]byte(s))
	if err != nil {
		t.Fatalf("bad test JSON %s: %v", s, err)
	}
	return m
}

func decodeObject(b []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	if m == nil {
		return nil, errors.New("not an object")
	}
	return m, nil
}

// mustReplace replaces the one occurrence of old in s; the test tables use it to derive an
// expected resource from a fixture, and a typo must not silently make them equal.
func mustReplace(s, old, replacement string) string {
	if strings.Count(s, old) != 1 {
		panic("mustReplace: the fixture does not contain exactly one " + old)
	}
	return strings.Replace(s, old, replacement, 1)
}

func encode(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return "<" + err.Error() + ">"
	}
	return string(b)
}

const taskJSON = `{
  "resourceType": "Task", "id": "t1", "meta": {"versionId": "3"},
  "status": "requested", "intent": "order", "priority": "routine",
  "for": {"reference": "Patient/p1"},
  "owner": {"reference": "Practitioner/a", "display": "Dr A"},
  "input": [
    {"type": {"text": "x"}, "valueString": "one"},
    {"type": {"text": "y"}, "valueInteger": 7}
  ]
}`

const patientJSON = `{
  "resourceType": "Patient", "id": "p1", "active": true,
  "name": [
    {"use": "official", "family": "Chalmers", "given": ["Peter", "James"], "_given": [null, {"id": "g2"}]},
    {"use": "usual", "given": ["Jim"]},
    {"use": "maiden", "family": "Windsor"}
  ],
  "telecom": [
    {"system": "phone", "value": "(03) 5555 6473", "use": "work", "rank": 1},
    {"system": "email", "value": "p@example.org"},
    {"system": "phone", "value": "(03) 3410 5613", "use": "mobile", "rank": 2}
  ],
  "birthDate": "1974-12-25", "_birthDate": {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime", "valueDateTime": "1974-12-25T14:35:45-05:00"}]},
  "multipleBirthInteger": 2
}`

const observationJSON = `{
  "resourceType": "Observation", "id": "o1", "status": "final",
  "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
  "valueQuantity": {"value": 72.50, "unit": "kg"}
}`

type jsonCase struct {
	name     string
	doc      string
	patch    string
	want     string         // the patched document, when the patch applies
	wantKind resources.Kind // otherwise the error kind
}

var jsonCases = []jsonCase{
	// FHIR resources
	{name: "task accepted with a business status", doc: taskJSON,
		patch: `[{"op":"test","path":"/status","value":"requested"},
		         {"op":"replace","path":"/status","value":"accepted"},
		         {"op":"add","path":"/businessStatus","value":{"text":"Accepted by the lab"}}]`,
		want: `{"resourceType":"Task","id":"t1","meta":{"versionId":"3"},"status":"accepted","intent":"order","priority":"routine",
		        "businessStatus":{"text":"Accepted by the lab"},"for":{"reference":"Patient/p1"},
		        "owner":{"reference":"Practitioner/a","display":"Dr A"},
		        "input":[{"type":{"text":"x"},"valueString":"one"},{"type":{"text":"y"},"valueInteger":7}]}`},
	{name: "task gets its first and second output", doc: taskJSON,
		patch: `[{"op":"add","path":"/output","value":[{"type":{"text":"report"},"valueReference":{"reference":"DiagnosticReport/d1"}}]},
		         {"op":"add","path":"/output/-","value":{"type":{"text":"note"},"valueString":"done"}}]`,
		want: `{"resourceType":"Task","id":"t1","meta":{"versionId":"3"},"status":"requested","intent":"order","priority":"routine",
		        "for":{"reference":"Patient/p1"},"owner":{"reference":"Practitioner/a","display":"Dr A"},
		        "input":[{"type":{"text":"x"},"valueString":"one"},{"type":{"text":"y"},"valueInteger":7}],
		        "output":[{"type":{"text":"report"},"valueReference":{"reference":"DiagnosticReport/d1"}},{"type":{"text":"note"},"valueString":"done"}]}`},
	{name: "task owner reference replaced and display removed", doc: taskJSON,
		patch: `[{"op":"replace","path":"/owner/reference","value":"Organization/lab"},{"op":"remove","path":"/owner/display"}]`,
		want: `{"resourceType":"Task","id":"t1","meta":{"versionId":"3"},"status":"requested","intent":"order","priority":"routine",
		        "for":{"reference":"Patient/p1"},"owner":{"reference":"Organization/lab"},
		        "input":[{"type":{"text":"x"},"valueString":"one"},{"type":{"text":"y"},"valueInteger":7}]}`},
	{name: "patient given name appended", doc: `{"resourceType":"Patient","name":[{"given":["Peter"]}]}`,
		patch: `[{"op":"add","path":"/name/0/given/-","value":"Jim"}]`,
		want:  `{"resourceType":"Patient","name":[{"given":["Peter","Jim"]}]}`},
	{name: "patient given name inserted before the second", doc: `{"resourceType":"Patient","name":[{"given":["Peter","James"]}]}`,
		patch: `[{"op":"add","path":"/name/0/given/1","value":"Jim"}]`,
		want:  `{"resourceType":"Patient","name":[{"given":["Peter","Jim","James"]}]}`},
	{name: "patient second telecom removed", doc: `{"resourceType":"Patient","telecom":[{"value":"a"},{"value":"b"},{"value":"c"}]}`,
		patch: `[{"op":"remove","path":"/telecom/1"}]`,
		want:  `{"resourceType":"Patient","telecom":[{"value":"a"},{"value":"c"}]}`},
	{name: "patient mobile moved to the front", doc: `{"resourceType":"Patient","telecom":[{"value":"a"},{"value":"b"},{"value":"c"}]}`,
		patch: `[{"op":"move","from":"/telecom/2","path":"/telecom/0"}]`,
		want:  `{"resourceType":"Patient","telecom":[{"value":"c"},{"value":"a"},{"value":"b"}]}`},
	{name: "patient family copied into a new name", doc: `{"resourceType":"Patient","name":[{"family":"Chalmers"}]}`,
		patch: `[{"op":"copy","from":"/name/0","path":"/name/-"},{"op":"add","path":"/name/1/use","value":"old"}]`,
		want:  `{"resourceType":"Patient","name":[{"family":"Chalmers"},{"family":"Chalmers","use":"old"}]}`},
	{name: "numbers stay exact json.Number values", doc: `{"resourceType":"Observation","valueQuantity":{"value":72.50}}`,
		patch: `[{"op":"test","path":"/valueQuantity/value","value":72.5},
		         {"op":"replace","path":"/valueQuantity/value","value":1234567890123456789.10}]`,
		want: `{"resourceType":"Observation","valueQuantity":{"value":1234567890123456789.10}}`},
	{name: "test compares numbers exactly, not as float64", doc: `{"n":12345678901234567890}`,
		patch:    `[{"op":"test","path":"/n","value":12345678901234567891}]`,
		wantKind: resources.KindUnprocessable},
	{name: "test treats 1, 1.0 and 1e0 as equal", doc: `{"a":[1,{"b":1.0}]}`,
		patch: `[{"op":"test","path":"/a","value":[1e0,{"b":10e-1}]}]`,
		want:  `{"a":[1,{"b":1.0}]}`},
	{name: "test compares objects regardless of member order", doc: `{"o":{"x":1,"y":[true,null]}}`,
		patch: `[{"op":"test","path":"/o","value":{"y":[true,null],"x":1}}]`,
		want:  `{"o":{"x":1,"y":[true,null]}}`},
	{name: "empty patch returns an equal copy", doc: patientJSON, patch: `[]`, want: patientJSON},
	{name: "add to an existing member replaces its value", doc: `{"resourceType":"Task","status":"draft"}`,
		patch: `[{"op":"add","path":"/status","value":"ready"}]`, want: `{"resourceType":"Task","status":"ready"}`},
	{name: "the whole document can be replaced by an object", doc: `{"a":1}`,
		patch: `[{"op":"replace","path":"","value":{"b":2}}]`, want: `{"b":2}`},
	{name: "the empty member name is a valid key", doc: `{"":1}`,
		patch: `[{"op":"replace","path":"/","value":2}]`, want: `{"":2}`},
	{name: "a value can be copied into its own child", doc: `{"a":{"b":1}}`,
		patch: `[{"op":"copy","from":"/a","path":"/a/c"}]`, want: `{"a":{"b":1,"c":{"b":1}}}`},
	{name: "moving a value onto itself changes nothing", doc: `{"a":{"b":1}}`,
		patch: `[{"op":"move","from":"/a","path":"/a"}]`, want: `{"a":{"b":1}}`},

	// RFC 6902 Appendix A, written from the RFC's semantics
	{name: "A.1 adding an object member", doc: `{"foo":"bar"}`,
		patch: `[{"op":"add","path":"/baz","value":"qux"}]`, want: `{"baz":"qux","foo":"bar"}`},
	{name: "A.2 adding an array element", doc: `{"foo":["bar","baz"]}`,
		patch: `[{"op":"add","path":"/foo/1","value":"qux"}]`, want: `{"foo":["bar","qux","baz"]}`},
	{name: "A.3 removing an object member", doc: `{"baz":"qux","foo":"bar"}`,
		patch: `[{"op":"remove","path":"/baz"}]`, want: `{"foo":"bar"}`},
	{name: "A.4 removing an array element", doc: `{"foo":["bar","qux","baz"]}`,
		patch: `[{"op":"remove","path":"/foo/1"}]`, want: `{"foo":["bar","baz"]}`},
	{name: "A.5 replacing a value", doc: `{"baz":"qux","foo":"bar"}`,
		patch: `[{"op":"replace","path":"/baz","value":"boo"}]`, want: `{"baz":"boo","foo":"bar"}`},
	{name: "A.6 moving a value", doc: `{"foo":{"bar":"baz","waldo":"fred"},"qux":{"corge":"grault"}}`,
		patch: `[{"op":"move","from":"/foo/waldo","path":"/qux/thud"}]`,
		want:  `{"foo":{"bar":"baz"},"qux":{"corge":"grault","thud":"fred"}}`},
	{name: "A.7 moving an array element", doc: `{"foo":["all","grass","cows","eat"]}`,
		patch: `[{"op":"move","from":"/foo/1","path":"/foo/3"}]`, want: `{"foo":["all","cows","eat","grass"]}`},
	{name: "A.8 testing a value succeeds", doc: `{"baz":"qux","foo":["a",2,"c"]}`,
		patch: `[{"op":"test","path":"/baz","value":"qux"},{"op":"test","path":"/foo/1","value":2}]`,
		want:  `{"baz":"qux","foo":["a",2,"c"]}`},
	{name: "A.9 testing a value fails", doc: `{"baz":"qux"}`,
		patch: `[{"op":"test","path":"/baz","value":"bar"}]`, wantKind: resources.KindUnprocessable},
	{name: "A.10 adding a nested member object", doc: `{"foo":"bar"}`,
		patch: `[{"op":"add","path":"/child","value":{"grandchild":{}}}]`, want: `{"foo":"bar","child":{"grandchild":{}}}`},
	{name: "A.11 unrecognized members are ignored", doc: `{"foo":"bar"}`,
		patch: `[{"op":"add","path":"/baz","value":"qux","xyz":123}]`, want: `{"foo":"bar","baz":"qux"}`},
	{name: "A.12 adding to a nonexistent target fails", doc: `{"foo":"bar"}`,
		patch: `[{"op":"add","path":"/baz/bat","value":"qux"}]`, wantKind: resources.KindUnprocessable},
	{name: "A.13 an operation with op twice is malformed", doc: `{"foo":"bar"}`,
		patch: `[{"op":"add","path":"/baz","value":"qux","op":"remove"}]`, wantKind: resources.KindBadRequest},
	{name: "A.14 ~ escapes are decoded in order", doc: `{"/":9,"~1":10}`,
		patch: `[{"op":"test","path":"/~01","value":10}]`, want: `{"/":9,"~1":10}`},
	{name: "A.15 a string never equals a number", doc: `{"/":9,"~1":10}`,
		patch: `[{"op":"test","path":"/~01","value":"10"}]`, wantKind: resources.KindUnprocessable},
	{name: "A.16 adding an array value appends it as one item", doc: `{"foo":["bar"]}`,
		patch: `[{"op":"add","path":"/foo/-","value":["abc","def"]}]`, want: `{"foo":["bar",["abc","def"]]}`},
	{name: "~1 addresses a member with a slash", doc: `{"a/b":1}`,
		patch: `[{"op":"remove","path":"/a~1b"}]`, want: `{}`},

	// Malformed patch documents: 400 whatever the resource
	{name: "not JSON is a bad request", doc: patientJSON, patch: `[{"op":`, wantKind: resources.KindBadRequest},
	{name: "an empty body is a bad request", doc: patientJSON, patch: ``, wantKind: resources.KindBadRequest},
	{name: "an object instead of an array is a bad request", doc: patientJSON,
		patch: `{"op":"remove","path":"/id"}`, wantKind: resources.KindBadRequest},
	{name: "null is a bad request", doc: patientJSON, patch: `null`, wantKind: resources.KindBadRequest},
	{name: "an operation that is not an object is a bad request", doc: patientJSON,
		patch: `["remove"]`, wantKind: resources.KindBadRequest},
	{name: "an unknown op is a bad request", doc: patientJSON,
		patch: `[{"op":"delete","path":"/id"}]`, wantKind: resources.KindBadRequest},
	{name: "a missing op is a bad request", doc: patientJSON,
		patch: `[{"path":"/id"}]`, wantKind: resources.KindBadRequest},
	{name: "a missing path is a bad request", doc: patientJSON,
		patch: `[{"op":"remove"}]`, wantKind: resources.KindBadRequest},
	{name: "a path that is not a string is a bad request", doc: patientJSON,
		patch: `[{"op":"remove","path":1}]`, wantKind: resources.KindBadRequest},
	{name: "add without a value is a bad request", doc: patientJSON,
		patch: `[{"op":"add","path":"/gender"}]`, wantKind: resources.KindBadRequest},
	{name: "move without from is a bad request", doc: patientJSON,
		patch: `[{"op":"move","path":"/gender"}]`, wantKind: resources.KindBadRequest},
	{name: "a pointer without a leading slash is a bad request", doc: patientJSON,
		patch: `[{"op":"remove","path":"id"}]`, wantKind: resources.KindBadRequest},
	{name: "a bad ~ escape is a bad request", doc: patientJSON,
		patch: `[{"op":"remove","path":"/a~2b"}]`, wantKind: resources.KindBadRequest},
	{name: "data after the array is a bad request", doc: patientJSON,
		patch: `[] []`, wantKind: resources.KindBadRequest},
	{name: "a malformed later operation wins over a failing earlier one", doc: patientJSON,
		patch: `[{"op":"remove","path":"/nope"},{"op":"frobnicate","path":"/id"}]`, wantKind: resources.KindBadRequest},

	// Operations that cannot apply to this document: 422
	{name: "removing a missing member is unprocessable", doc: patientJSON,
		patch: `[{"op":"remove","path":"/gender"}]`, wantKind: resources.KindUnprocessable},
	{name: "replacing a missing member is unprocessable", doc: patientJSON,
		patch: `[{"op":"replace","path":"/gender","value":"male"}]`, wantKind: resources.KindUnprocessable},
	{name: "testing a missing member is unprocessable", doc: patientJSON,
		patch: `[{"op":"test","path":"/gender","value":"male"}]`, wantKind: resources.KindUnprocessable},
	{name: "moving from a missing member is unprocessable", doc: patientJSON,
		patch: `[{"op":"move","from":"/gender","path":"/sex"}]`, wantKind: resources.KindUnprocessable},
	{name: "copying from a missing member is unprocessable", doc: patientJSON,
		patch: `[{"op":"copy","from":"/name/9","path":"/name/-"}]`, wantKind: resources.KindUnprocessable},
	{name: "a failed test is unprocessable", doc: taskJSON,
		patch:    `[{"op":"test","path":"/status","value":"draft"},{"op":"replace","path":"/status","value":"accepted"}]`,
		wantKind: resources.KindUnprocessable},
	{name: "removing an index past the end is unprocessable", doc: patientJSON,
		patch: `[{"op":"remove","path":"/telecom/3"}]`, wantKind: resources.KindUnprocessable},
	{name: "adding past the end of an array is unprocessable", doc: patientJSON,
		patch: `[{"op":"add","path":"/telecom/4","value":{}}]`, wantKind: resources.KindUnprocessable},
	{name: "an index with a leading zero is unprocessable", doc: patientJSON,
		patch: `[{"op":"remove","path":"/telecom/01"}]`, wantKind: resources.KindUnprocessable},
	{name: "a negative index is unprocessable", doc: patientJSON,
		patch: `[{"op":"remove","path":"/telecom/-1"}]`, wantKind: resources.KindUnprocessable},
	{name: "a huge index is unprocessable", doc: patientJSON,
		patch: `[{"op":"replace","path":"/telecom/99999999999999999999999","value":{}}]`, wantKind: resources.KindUnprocessable},
	{name: "removing the end marker is unprocessable", doc: patientJSON,
		patch: `[{"op":"remove","path":"/telecom/-"}]`, wantKind: resources.KindUnprocessable},
	{name: "a member of a string is unprocessable", doc: patientJSON,
		patch: `[{"op":"add","path":"/birthDate/x","value":1}]`, wantKind: resources.KindUnprocessable},
	{name: "moving a value into its own child is unprocessable", doc: patientJSON,
		patch: `[{"op":"move","from":"/name","path":"/name/0/x"}]`, wantKind: resources.KindUnprocessable},
	{name: "removing the document is unprocessable", doc: patientJSON,
		patch: `[{"op":"remove","path":""}]`, wantKind: resources.KindUnprocessable},
	{name: "replacing the document with an array is unprocessable", doc: patientJSON,
		patch: `[{"op":"replace","path":"","value":[]}]`, wantKind: resources.KindUnprocessable},
	{name: "a failing later operation returns no document", doc: taskJSON,
		patch:    `[{"op":"replace","path":"/status","value":"accepted"},{"op":"remove","path":"/nope"}]`,
		wantKind: resources.KindUnprocessable},
}

func TestJSON(t *testing.T) {
	for _, tc := range jsonCases {
		t.Run(tc.name, func(t *testing.T) {
			doc := decode(t, tc.doc)
			before := clone(doc).(map[string]any)
			got, err := JSON(doc, []byte(tc.patch))
			if !reflect.DeepEqual(doc, before) {
				t.Fatalf("the input document was modified:\n%s", encode(doc))
			}
			if tc.want == "" {
				if err == nil {
					t.Fatalf("got %s, want an error of kind %d", encode(got), tc.wantKind)
				}
				checkKind(t, err, tc.wantKind)
				if got != nil {
					t.Errorf("a failed patch returned a document")
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if want := decode(t, tc.want); !reflect.DeepEqual(got, want) {
				t.Errorf("got  %s\nwant %s", encode(got), encode(want))
			}
			assertUnshared(t, got, doc, before)
		})
	}
}

func checkKind(t *testing.T, err error, want resources.Kind) {
	t.Helper()
	var e *resources.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not a *resources.Error", err, err)
	}
	if e.Kind != want {
		t.Fatalf("error %q has kind %d (HTTP %d), want %d (HTTP %d)", e.Message, e.Kind, e.Kind.Status(), want, want.Status())
	}
}

// assertUnshared wipes every object and array of the result and checks that the input did not
// change, proving the result shares no mutable value with it.
func assertUnshared(t *testing.T, result any, input, before map[string]any) {
	t.Helper()
	scrub(result)
	if !reflect.DeepEqual(input, before) {
		t.Fatalf("the result shares values with the input document")
	}
}

func scrub(v any) {
	switch t := v.(type) {
	case map[string]any:
		for k, x := range t {
			scrub(x)
			delete(t, k)
		}
	case []any:
		for i, x := range t {
			scrub(x)
			t[i] = "scrubbed"
		}
	}
}

func TestJSONKeepsNumbersAsJSONNumber(t *testing.T) {
	doc := decode(t, `{"resourceType":"Patient","multipleBirthInteger":2}`)
	got, err := JSON(doc, []byte(`[{"op":"replace","path":"/multipleBirthInteger","value":3},{"op":"add","path":"/x","value":[1.50]}]`))
	if err != nil {
		t.Fatal(err)
	}
	if n, ok := got["multipleBirthInteger"].(json.Number); !ok || n != "3" {
		t.Errorf("multipleBirthInteger = %#v, want json.Number(\"3\")", got["multipleBirthInteger"])
	}
	if n, ok := got["x"].([]any)[0].(json.Number); !ok || n != "1.50" {
		t.Errorf("x[0] = %#v, want json.Number(\"1.50\") with its trailing zero", got["x"].([]any)[0])
	}
}

func TestJSONNilDocumentIsEmptyObject(t *testing.T) {
	got, err := JSON(nil, []byte(`[{"op":"add","path":"/resourceType","value":"Basic"}]`))
	if err != nil {
		t.Fatal(err)
	}
	if got["resourceType"] != "Basic" {
		t.Errorf("got %s", encode(got))
	}
}

func TestJSONErrorNamesTheOperation(t *testing.T) {
	_, err := JSON(decode(t, taskJSON), []byte(`[{"op":"test","path":"/status","value":"requested"},{"op":"test","path":"/status","value":"draft"}]`))
	if err == nil || !strings.Contains(err.Error(), "patch operation 1 (test /status)") {
		t.Errorf("error %v does not name operation 1", err)
	}
}

// FHIRPath Patch

// operation builds one "operation" parameter from its type, path and further parts (JSON).
func operation(typ, path string, parts ...string) string {
	q, _ := json.Marshal(path)
	all := append([]string{`{"name":"type","valueCode":"` + typ + `"}`, `{"name":"path","valueString":` + string(q) + `}`}, parts...)
	return `{"name":"operation","part":[` + strings.Join(all, ",") + `]}`
}

func parameters(ops ...string) string {
	return `{"resourceType":"Parameters","parameter":[` + strings.Join(ops, ",") + `]}`
}

func name(n string) string  { return `{"name":"name","valueString":"` + n + `"}` }
func index(i int) string    { return `{"name":"index","valueInteger":` + strconv.Itoa(i) + `}` }
func value(v string) string { return `{"name":"value",` + v + `}` }

type fhirCase struct {
	name     string
	doc      string
	params   string
	schema   Schema
	want     string
	wantKind resources.Kind
}

var testSchema = Schema{
	Repeats: func(p string) bool {
		switch p {
		case "Task.output", "Patient.contact", "Patient.contact.relationship", "Patient.contact.telecom", "HumanName.given", "Patient.contact.name.given":
			return true
		}
		return false
	},
	IsChoice: func(p string) bool { return p == "Patient.deceased" || p == "Task.output.value" },
}

var fhirCases = []fhirCase{
	// Task
	{name: "task accepted with a business status", doc: taskJSON,
		params: parameters(
			operation("replace", "Task.status", value(`"valueCode":"accepted"`)),
			operation("add", "Task", name("businessStatus"), value(`"valueCodeableConcept":{"text":"Accepted by the lab"}`))),
		want: `{"resourceType":"Task","id":"t1","meta":{"versionId":"3"},"status":"accepted","intent":"order","priority":"routine",
		        "businessStatus":{"text":"Accepted by the lab"},"for":{"reference":"Patient/p1"},
		        "owner":{"reference":"Practitioner/a","display":"Dr A"},
		        "input":[{"type":{"text":"x"},"valueString":"one"},{"type":{"text":"y"},"valueInteger":7}]}`},
	{name: "task output built from parts becomes a list with a schema", doc: taskJSON, schema: testSchema,
		params: parameters(operation("add", "Task", name("output"),
			`{"name":"value","part":[{"name":"type","valueCodeableConcept":{"text":"report"}},{"name":"valueReference","valueReference":{"reference":"DiagnosticReport/d1"}}]}`)),
		want: `{"resourceType":"Task","id":"t1","meta":{"versionId":"3"},"status":"requested","intent":"order","priority":"routine",
		        "for":{"reference":"Patient/p1"},"owner":{"reference":"Practitioner/a","display":"Dr A"},
		        "input":[{"type":{"text":"x"},"valueString":"one"},{"type":{"text":"y"},"valueInteger":7}],
		        "output":[{"type":{"text":"report"},"valueReference":{"reference":"DiagnosticReport/d1"}}]}`},
	{name: "task output inserted at 0 creates the list without a schema", doc: taskJSON,
		params: parameters(operation("insert", "Task.output", index(0),
			`{"name":"value","part":[{"name":"type","valueCodeableConcept":{"text":"note"}},{"name":"valueString","valueString":"done"}]}`)),
		want: `{"resourceType":"Task","id":"t1","meta":{"versionId":"3"},"status":"requested","intent":"order","priority":"routine",
		        "for":{"reference":"Patient/p1"},"owner":{"reference":"Practitioner/a","display":"Dr A"},
		        "input":[{"type":{"text":"x"},"valueString":"one"},{"type":{"text":"y"},"valueInteger":7}],
		        "output":[{"type":{"text":"note"},"valueString":"done"}]}`},
	{name: "task input appended to the existing list", doc: taskJSON,
		params: parameters(operation("add", "Task", name("input"),
			`{"name":"value","part":[{"name":"type","valueCodeableConcept":{"text":"z"}},{"name":"valueBoolean","valueBoolean":false}]}`)),
		want: `{"resourceType":"Task","id":"t1","meta":{"versionId":"3"},"status":"requested","intent":"order","priority":"routine",
		        "for":{"reference":"Patient/p1"},"owner":{"reference":"Practitioner/a","display":"Dr A"},
		        "input":[{"type":{"text":"x"},"valueString":"one"},{"type":{"text":"y"},"valueInteger":7},{"type":{"text":"z"},"valueBoolean":false}]}`},
	{name: "task owner reference replaced", doc: taskJSON,
		params: parameters(operation("replace", "Task.owner", value(`"valueReference":{"reference":"Organization/lab"}`))),
		want: `{"resourceType":"Task","id":"t1","meta":{"versionId":"3"},"status":"requested","intent":"order","priority":"routine",
		        "for":{"reference":"Patient/p1"},"owner":{"reference":"Organization/lab"},
		        "input":[{"type":{"text":"x"},"valueString":"one"},{"type":{"text":"y"},"valueInteger":7}]}`},
	{name: "task input chosen by where gets a new value of the same type", doc: taskJSON,
		params: parameters(operation("replace", "Task.input.where(type.text='x').value", value(`"valueString":"two"`))),
		want: `{"resourceType":"Task","id":"t1","meta":{"versionId":"3"},"status":"requested","intent":"order","priority":"routine",
		        "for":{"reference":"Patient/p1"},"owner":{"reference":"Practitioner/a","display":"Dr A"},
		        "input":[{"type":{"text":"x"},"valueString":"two"},{"type":{"text":"y"},"valueInteger":7}]}`},
	{name: "task input choice value takes the type of the new value", doc: taskJSON,
		params: parameters(operation("replace", "Task.input[1].value", value(`"valueDecimal":7.50`))),
		want: `{"resourceType":"Task","id":"t1","meta":{"versionId":"3"},"status":"requested","intent":"order","priority":"routine",
		        "for":{"reference":"Patient/p1"},"owner":{"reference":"Practitioner/a","display":"Dr A"},
		        "input":[{"type":{"text":"x"},"valueString":"one"},{"type":{"text":"y"},"valueDecimal":7.50}]}`},
	{name: "task input deleted by where with a number literal", doc: taskJSON,
		params: parameters(operation("delete", "Task.input.where(value=7)")),
		want: `{"resourceType":"Task","id":"t1","meta":{"versionId":"3"},"status":"requested","intent":"order","priority":"routine",
		        "for":{"reference":"Patient/p1"},"owner":{"reference":"Practitioner/a","display":"Dr A"},
		        "input":[{"type":{"text":"x"},"valueString":"one"}]}`},

	// Patient
	{name: "patient given name added to the first name", doc: `{"resourceType":"Patient","name":[{"given":["Peter"]},{"family":"W"}]}`,
		params: parameters(operation("add", "Patient.name[0]", name("given"), value(`"valueString":"Jim"`))),
		want:   `{"resourceType":"Patient","name":[{"given":["Peter","Jim"]},{"family":"W"}]}`},
	{name: "a given name added next to extended ones keeps the extensions aligned", doc: patientJSON,
		params: parameters(operation("add", "Patient.name.where(use='official')", name("given"), value(`"valueString":"Jim"`))),
		want: mustReplace(patientJSON, `"given": ["Peter", "James"], "_given": [null, {"id": "g2"}]`,
			`"given": ["Peter", "James", "Jim"], "_given": [null, {"id": "g2"}, null]`)},
	{name: "patient first given name becomes a list", doc: `{"resourceType":"Patient","name":[{"given":["Peter"]},{"family":"W"}]}`,
		params: parameters(operation("add", "Patient.name.where(family='W')", name("given"), value(`"valueString":"Ann"`))),
		want:   `{"resourceType":"Patient","name":[{"given":["Peter"]},{"family":"W","given":["Ann"]}]}`},
	{name: "patient extension added as a list", doc: `{"resourceType":"Patient","id":"p"}`,
		params: parameters(operation("add", "Patient", name("extension"),
			`{"name":"value","part":[{"name":"url","valueUri":"http://example.org/x"},{"name":"valueCode","valueCode":"y"}]}`)),
		want: `{"resourceType":"Patient","id":"p","extension":[{"url":"http://example.org/x","valueCode":"y"}]}`},
	{name: "patient second telecom deleted", doc: patientJSON,
		params: parameters(operation("delete", "Patient.telecom[1]")),
		want:   mustReplace(patientJSON, `{"system": "email", "value": "p@example.org"},`, "")},
	{name: "patient telecom selected by where deleted", doc: patientJSON,
		params: parameters(operation("delete", "Patient.telecom.where(system='email')")),
		want:   mustReplace(patientJSON, `{"system": "email", "value": "p@example.org"},`, "")},
	{name: "deleting what is not there is a no-op", doc: patientJSON,
		params: parameters(operation("delete", "Patient.telecom.where(system='fax')"), operation("delete", "Patient.gender")),
		want:   patientJSON},
	{name: "deleting the last item removes the array", doc: `{"resourceType":"Patient","name":[{"given":["Jim"]}]}`,
		params: parameters(operation("delete", "Patient.name[0].given[0]")),
		want:   `{"resourceType":"Patient","name":[{}]}`},
	{name: "deleting a given name keeps its extensions aligned", doc: patientJSON,
		params: parameters(operation("delete", "Patient.name[0].given[0]")),
		want: mustReplace(patientJSON, `"given": ["Peter", "James"], "_given": [null, {"id": "g2"}]`,
			`"given": ["James"], "_given": [{"id": "g2"}]`)},
	{name: "deleting the only extended given name drops the extension array", doc: patientJSON,
		params: parameters(operation("delete", "Patient.name[0].given[1]")),
		want:   mustReplace(patientJSON, `"given": ["Peter", "James"], "_given": [null, {"id": "g2"}]`, `"given": ["Peter"]`)},
	{name: "patient given name inserted in the middle", doc: patientJSON,
		params: parameters(operation("insert", "Patient.name[0].given", index(1), value(`"valueString":"Jim"`))),
		want: mustReplace(patientJSON, `"given": ["Peter", "James"], "_given": [null, {"id": "g2"}]`,
			`"given": ["Peter", "Jim", "James"], "_given": [null, null, {"id": "g2"}]`)},
	{name: "patient given name inserted at the end", doc: `{"resourceType":"Patient","name":[{"given":["Peter"]}]}`,
		params: parameters(operation("insert", "Patient.name.first().given", index(1), value(`"valueString":"Jim"`))),
		want:   `{"resourceType":"Patient","name":[{"given":["Peter","Jim"]}]}`},
	{name: "patient identifier inserted into an absent list", doc: `{"resourceType":"Patient"}`,
		params: parameters(operation("insert", "Patient.identifier", index(0), value(`"valueIdentifier":{"system":"urn:x","value":"1"}`))),
		want:   `{"resourceType":"Patient","identifier":[{"system":"urn:x","value":"1"}]}`},
	{name: "patient mobile moved to the front", doc: patientJSON,
		params: parameters(operation("move", "Patient.telecom", `{"name":"source","valueInteger":2}`, `{"name":"destination","valueInteger":0}`)),
		want: mustReplace(patientJSON,
			`{"system": "phone", "value": "(03) 5555 6473", "use": "work", "rank": 1},
    {"system": "email", "value": "p@example.org"},
    {"system": "phone", "value": "(03) 3410 5613", "use": "mobile", "rank": 2}`,
			`{"system": "phone", "value": "(03) 3410 5613", "use": "mobile", "rank": 2},
    {"system": "phone", "value": "(03) 5555 6473", "use": "work", "rank": 1},
    {"system": "email", "value": "p@example.org"}`)},
	{name: "patient given names moved with their extensions", doc: patientJSON,
		params: parameters(operation("move", "Patient.name[0].given", `{"name":"source","valueInteger":0}`, `{"name":"destination","valueInteger":1}`)),
		want: mustReplace(patientJSON, `"given": ["Peter", "James"], "_given": [null, {"id": "g2"}]`,
			`"given": ["James", "Peter"], "_given": [{"id": "g2"}, null]`)},
	{name: "patient birth date replaced with its birth time extension", doc: patientJSON,
		params: parameters(operation("replace", "Patient.birthDate", value(`"valueDate":"1974-12-24"`))),
		want: mustReplace(patientJSON,
			`"birthDate": "1974-12-25", "_birthDate": {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime", "valueDateTime": "1974-12-25T14:35:45-05:00"}]}`,
			`"birthDate": "1974-12-24"`)},
	{name: "a path may start at an element and use last() and backticks", doc: patientJSON,
		params: parameters(operation("replace", "telecom.last().`value`", value(`"valueString":"000"`))),
		want:   mustReplace(patientJSON, `"(03) 3410 5613"`, `"000"`)},
	{name: "where compares booleans and numbers", doc: patientJSON,
		params: parameters(operation("replace", "Patient.where(active=true).telecom.where(rank=2.0).use", value(`"valueCode":"home"`))),
		want:   mustReplace(patientJSON, `"use": "mobile"`, `"use": "home"`)},
	{name: "where compares strings with escapes", doc: `{"resourceType":"Patient","name":[{"family":"O'Hara"},{"family":"X"}]}`,
		params: parameters(operation("delete", `Patient.name.where(family = 'O\'Hara')`)),
		want:   `{"resourceType":"Patient","name":[{"family":"X"}]}`},
	{name: "a contact built from nested parts follows the schema", doc: `{"resourceType":"Patient"}`, schema: testSchema,
		params: parameters(operation("add", "Patient", name("contact"),
			`{"name":"value","part":[
			   {"name":"relationship","valueCodeableConcept":{"text":"mother"}},
			   {"name":"name","part":[{"name":"family","valueString":"Chalmers"},{"name":"given","valueString":"Ann"}]},
			   {"name":"telecom","valueContactPoint":{"system":"phone","value":"1"}},
			   {"name":"telecom","valueContactPoint":{"system":"email","value":"a@b"}}]}`)),
		want: `{"resourceType":"Patient","contact":[{"relationship":[{"text":"mother"}],"name":{"family":"Chalmers","given":["Ann"]},
		        "telecom":[{"system":"phone","value":"1"},{"system":"email","value":"a@b"}]}]}`},
	{name: "a choice element is added under its typed name with a schema", doc: `{"resourceType":"Patient"}`, schema: testSchema,
		params: parameters(operation("add", "Patient", name("deceased"), value(`"valueBoolean":true`))),
		want:   `{"resourceType":"Patient","deceasedBoolean":true}`},
	{name: "decimals keep their json.Number text", doc: observationJSON,
		params: parameters(operation("replace", "Observation.value.value", value(`"valueDecimal":72.40`))),
		want:   mustReplace(observationJSON, "72.50", "72.40")},
	{name: "a choice value found by its name is replaced across types", doc: observationJSON,
		params: parameters(operation("replace", "Observation.value", value(`"valueString":"heavy"`))),
		want:   mustReplace(observationJSON, `"valueQuantity": {"value": 72.50, "unit": "kg"}`, `"valueString": "heavy"`)},
	{name: "a contained resource is patched", doc: `{"resourceType":"Patient","contained":[{"resourceType":"Organization","id":"o","name":"A"}]}`,
		params: parameters(operation("replace", "Patient.contained[0].name", value(`"valueString":"B"`))),
		want:   `{"resourceType":"Patient","contained":[{"resourceType":"Organization","id":"o","name":"B"}]}`},
	{name: "a resource value is added from a resource part", doc: `{"resourceType":"Patient"}`,
		params: parameters(operation("add", "Patient", name("contained"), `{"name":"value","resource":{"resourceType":"Organization","id":"o"}}`)),
		want:   `{"resourceType":"Patient","contained":[{"resourceType":"Organization","id":"o"}]}`},
	{name: "operations apply in order", doc: `{"resourceType":"Task","status":"draft"}`,
		params: parameters(
			operation("replace", "Task.status", value(`"valueCode":"requested"`)),
			operation("replace", "Task.status", value(`"valueCode":"accepted"`)),
			operation("add", "Task", name("priority"), value(`"valueCode":"urgent"`))),
		want: `{"resourceType":"Task","status":"accepted","priority":"urgent"}`},
	{name: "no operations return an equal copy", doc: taskJSON, params: `{"resourceType":"Parameters"}`, want: taskJSON},

	// Malformed patches: 400
	{name: "a resource that is not Parameters is a bad request", doc: taskJSON,
		params: `{"resourceType":"Task","parameter":[]}`, wantKind: resources.KindBadRequest},
	{name: "a parameter other than operation is a bad request", doc: taskJSON,
		params: `{"resourceType":"Parameters","parameter":[{"name":"op","part":[]}]}`, wantKind: resources.KindBadRequest},
	{name: "parameter that is not a list is a bad request", doc: taskJSON,
		params: `{"resourceType":"Parameters","parameter":{}}`, wantKind: resources.KindBadRequest},
	{name: "an operation without parts is a bad request", doc: taskJSON,
		params: `{"resourceType":"Parameters","parameter":[{"name":"operation"}]}`, wantKind: resources.KindBadRequest},
	{name: "an unknown type is a bad request", doc: taskJSON,
		params: parameters(operation("patch", "Task.status", value(`"valueCode":"x"`))), wantKind: resources.KindBadRequest},
	{name: "a missing type is a bad request", doc: taskJSON,
		params: `{"resourceType":"Parameters","parameter":[{"name":"operation","part":[{"name":"path","valueString":"Task"}]}]}`, wantKind: resources.KindBadRequest},
	{name: "a missing path is a bad request", doc: taskJSON,
		params: `{"resourceType":"Parameters","parameter":[{"name":"operation","part":[{"name":"type","valueCode":"delete"}]}]}`, wantKind: resources.KindBadRequest},
	{name: "replace without a value is a bad request", doc: taskJSON,
		params: parameters(operation("replace", "Task.status")), wantKind: resources.KindBadRequest},
	{name: "add without a name is a bad request", doc: taskJSON,
		params: parameters(operation("add", "Task", value(`"valueCode":"x"`))), wantKind: resources.KindBadRequest},
	{name: "insert without an index is a bad request", doc: taskJSON,
		params: parameters(operation("insert", "Task.input", value(`"valueString":"x"`))), wantKind: resources.KindBadRequest},
	{name: "move without a destination is a bad request", doc: taskJSON,
		params: parameters(operation("move", "Task.input", `{"name":"source","valueInteger":0}`)), wantKind: resources.KindBadRequest},
	{name: "a negative index is a bad request", doc: taskJSON,
		params: parameters(operation("insert", "Task.input", index(-1), value(`"valueString":"x"`))), wantKind: resources.KindBadRequest},
	{name: "an index that is a string is a bad request", doc: taskJSON,
		params: parameters(operation("insert", "Task.input", `{"name":"index","valueString":"1"}`, value(`"valueString":"x"`))), wantKind: resources.KindBadRequest},
	{name: "a part given twice is a bad request", doc: taskJSON,
		params: parameters(operation("delete", "Task.status", `{"name":"path","valueString":"Task.intent"}`)), wantKind: resources.KindBadRequest},
	{name: "an unknown part is a bad request", doc: taskJSON,
		params: parameters(operation("delete", "Task.status", `{"name":"where","valueString":"x"}`)), wantKind: resources.KindBadRequest},
	{name: "a value with two value[x] is a bad request", doc: taskJSON,
		params: parameters(operation("replace", "Task.status", value(`"valueCode":"a","valueString":"b"`))), wantKind: resources.KindBadRequest},
	{name: "a value with no content is a bad request", doc: taskJSON,
		params: parameters(operation("replace", "Task.status", `{"name":"value"}`)), wantKind: resources.KindBadRequest},
	{name: "an add name that is not an element name is a bad request", doc: taskJSON,
		params: parameters(operation("add", "Task", name("a.b"), value(`"valueCode":"x"`))), wantKind: resources.KindBadRequest},
	{name: "insert on a path ending with an index is a bad request", doc: patientJSON,
		params: parameters(operation("insert", "Patient.name[0]", index(0), value(`"valueString":"x"`))), wantKind: resources.KindBadRequest},
	{name: "a malformed later operation wins over a failing earlier one", doc: taskJSON,
		params:   parameters(operation("replace", "Task.nope", value(`"valueCode":"x"`)), operation("replace", "Task.status.exists()", value(`"valueCode":"x"`))),
		wantKind: resources.KindBadRequest},

	// Unsupported FHIRPath: 400
	{name: "exists() is unsupported FHIRPath", doc: taskJSON,
		params: parameters(operation("delete", "Task.input.exists()")), wantKind: resources.KindBadRequest},
	{name: "resolve() is unsupported FHIRPath", doc: taskJSON,
		params: parameters(operation("delete", "Task.owner.resolve().name")), wantKind: resources.KindBadRequest},
	{name: "a union is unsupported FHIRPath", doc: taskJSON,
		params: parameters(operation("delete", "Task.input | Task.output")), wantKind: resources.KindBadRequest},
	{name: "!= in where is unsupported FHIRPath", doc: taskJSON,
		params: parameters(operation("delete", "Task.input.where(type.text != 'x')")), wantKind: resources.KindBadRequest},
	{name: "and in where is unsupported FHIRPath", doc: taskJSON,
		params: parameters(operation("delete", "Task.input.where(type.text = 'x' and value = 'one')")), wantKind: resources.KindBadRequest},
	{name: "a function inside where is unsupported FHIRPath", doc: taskJSON,
		params: parameters(operation("delete", "Task.input.where(type.first() = 'x')")), wantKind: resources.KindBadRequest},
	{name: "an environment variable is unsupported FHIRPath", doc: taskJSON,
		params: parameters(operation("delete", "%resource.status")), wantKind: resources.KindBadRequest},
	{name: "a non-numeric index is unsupported FHIRPath", doc: taskJSON,
		params: parameters(operation("delete", "Task.input[x]")), wantKind: resources.KindBadRequest},
	{name: "an unterminated string is unsupported FHIRPath", doc: taskJSON,
		params: parameters(operation("delete", "Task.input.where(type.text='x)")), wantKind: resources.KindBadRequest},
	{name: "an empty path is unsupported FHIRPath", doc: taskJSON,
		params: parameters(operation("delete", " ")), wantKind: resources.KindBadRequest},

	// Operations that cannot apply to this resource: 422
	{name: "replacing a missing element is unprocessable", doc: patientJSON,
		params: parameters(operation("replace", "Patient.gender", value(`"valueCode":"male"`))), wantKind: resources.KindUnprocessable},
	{name: "replacing at an out-of-range index is unprocessable", doc: patientJSON,
		params: parameters(operation("replace", "Patient.name[5].family", value(`"valueString":"X"`))), wantKind: resources.KindUnprocessable},
	{name: "replacing several elements at once is unprocessable", doc: patientJSON,
		params: parameters(operation("replace", "Patient.telecom.system", value(`"valueCode":"phone"`))), wantKind: resources.KindUnprocessable},
	{name: "deleting several elements at once is unprocessable", doc: patientJSON,
		params: parameters(operation("delete", "Patient.name[0].given")), wantKind: resources.KindUnprocessable},
	{name: "adding a single-valued element that exists is unprocessable", doc: patientJSON,
		params: parameters(operation("add", "Patient", name("birthDate"), value(`"valueDate":"2000-01-01"`))), wantKind: resources.KindUnprocessable},
	{name: "adding a choice element that exists under another type is unprocessable", doc: `{"resourceType":"Patient","deceasedDateTime":"2020"}`, schema: testSchema,
		params: parameters(operation("add", "Patient", name("deceased"), value(`"valueBoolean":true`))), wantKind: resources.KindUnprocessable},
	{name: "adding to a primitive is unprocessable", doc: patientJSON,
		params: parameters(operation("add", "Patient.birthDate", name("x"), value(`"valueString":"y"`))), wantKind: resources.KindUnprocessable},
	{name: "adding below a missing element is unprocessable", doc: patientJSON,
		params: parameters(operation("add", "Patient.maritalStatus", name("text"), value(`"valueString":"y"`))), wantKind: resources.KindUnprocessable},
	{name: "a path for another resource type is unprocessable", doc: patientJSON,
		params: parameters(operation("delete", "Observation.status")), wantKind: resources.KindUnprocessable},
	{name: "inserting past the end is unprocessable", doc: patientJSON,
		params: parameters(operation("insert", "Patient.telecom", index(4), value(`"valueContactPoint":{"value":"x"}`))), wantKind: resources.KindUnprocessable},
	{name: "inserting into a single-valued element is unprocessable", doc: patientJSON,
		params: parameters(operation("insert", "Patient.birthDate", index(0), value(`"valueDate":"2000"`))), wantKind: resources.KindUnprocessable},
	{name: "inserting below several elements is unprocessable", doc: patientJSON,
		params: parameters(operation("insert", "Patient.name.given", index(0), value(`"valueString":"x"`))), wantKind: resources.KindUnprocessable},
	{name: "moving from an out-of-range source is unprocessable", doc: patientJSON,
		params: parameters(operation("move", "Patient.telecom", `{"name":"source","valueInteger":3}`, `{"name":"destination","valueInteger":0}`)), wantKind: resources.KindUnprocessable},
	{name: "moving to an out-of-range destination is unprocessable", doc: patientJSON,
		params: parameters(operation("move", "Patient.telecom", `{"name":"source","valueInteger":0}`, `{"name":"destination","valueInteger":3}`)), wantKind: resources.KindUnprocessable},
	{name: "moving within an absent list is unprocessable", doc: patientJSON,
		params: parameters(operation("move", "Patient.address", `{"name":"source","valueInteger":0}`, `{"name":"destination","valueInteger":0}`)), wantKind: resources.KindUnprocessable},
	{name: "deleting the resource is unprocessable", doc: patientJSON,
		params: parameters(operation("delete", "Patient")), wantKind: resources.KindUnprocessable},
	{name: "replacing the resource is unprocessable", doc: patientJSON,
		params: parameters(operation("replace", "Patient", value(`"valueString":"x"`))), wantKind: resources.KindUnprocessable},
	{name: "a failing later operation returns no document", doc: taskJSON,
		params:   parameters(operation("replace", "Task.status", value(`"valueCode":"accepted"`)), operation("replace", "Task.note", value(`"valueString":"x"`))),
		wantKind: resources.KindUnprocessable},
}

func TestFHIRPath(t *testing.T) {
	for _, tc := range fhirCases {
		t.Run(tc.name, func(t *testing.T) {
			doc := decode(t, tc.doc)
			params := decode(t, tc.params)
			before, paramsBefore := clone(doc).(map[string]any), clone(params)
			got, err := FHIRPathWithSchema(doc, params, tc.schema)
			if !reflect.DeepEqual(doc, before) {
				t.Fatalf("the input document was modified:\n%s", encode(doc))
			}
			if !reflect.DeepEqual(params, paramsBefore) {
				t.Fatalf("the Parameters were modified:\n%s", encode(params))
			}
			if tc.want == "" {
				if err == nil {
					t.Fatalf("got %s, want an error of kind %d", encode(got), tc.wantKind)
				}
				checkKind(t, err, tc.wantKind)
				if got != nil {
					t.Errorf("a failed patch returned a document")
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if want := decode(t, tc.want); !reflect.DeepEqual(got, want) {
				t.Errorf("got  %s\nwant %s", encode(got), encode(want))
			}
			assertUnshared(t, got, doc, before)
			if !reflect.DeepEqual(params, paramsBefore) {
				t.Fatalf("the result shares values with the Parameters")
			}
		})
	}
}

func TestFHIRPathDefaultSchema(t *testing.T) {
	// Without a Schema, an absent element that repeats only in some types is added as a single
	// value (validation of the result reports it); the name-based defaults make lists.
	doc := decode(t, `{"resourceType":"Task","code":{"text":"x"}}`)
	params := decode(t, parameters(
		operation("add", "Task", name("note"), value(`"valueAnnotation":{"text":"n"}`)),
		operation("add", "Task.code", name("coding"), value(`"valueCoding":{"code":"c"}`))))
	got, err := FHIRPath(doc, params)
	if err != nil {
		t.Fatal(err)
	}
	want := decode(t, `{"resourceType":"Task","code":{"text":"x","coding":[{"code":"c"}]},"note":{"text":"n"}}`)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %s\nwant %s", encode(got), encode(want))
	}
}

func TestFHIRPathKeepsNumbersAsJSONNumber(t *testing.T) {
	doc := decode(t, `{"resourceType":"Patient","multipleBirthInteger":2}`)
	params := decode(t, parameters(operation("replace", "Patient.multipleBirth", value(`"valueInteger":3`))))
	got, err := FHIRPath(doc, params)
	if err != nil {
		t.Fatal(err)
	}
	if n, ok := got["multipleBirthInteger"].(json.Number); !ok || n != "3" {
		t.Errorf("multipleBirthInteger = %#v, want json.Number(\"3\")", got["multipleBirthInteger"])
	}
}

func TestFHIRPathUnprocessableCarriesTheExpression(t *testing.T) {
	doc := decode(t, patientJSON)
	params := decode(t, parameters(operation("delete", "Patient.gender"), operation("replace", "Patient.name[5].family", value(`"valueString":"X"`))))
	_, err := FHIRPath(doc, params)
	var e *resources.Error
	if !errors.As(err, &e) || e.Kind != resources.KindUnprocessable {
		t.Fatalf("error %v, want unprocessable", err)
	}
	issues := e.OutcomeIssues()
	if len(issues) != 1 || len(issues[0].Expression) != 1 || issues[0].Expression[0] != "Patient.name[5].family" {
		t.Fatalf("issues %+v do not carry the path", issues)
	}
	if !strings.Contains(issues[0].Diagnostics, "patch operation 1 (replace Patient.name[5].family)") {
		t.Errorf("diagnostics %q do not name the operation", issues[0].Diagnostics)
	}
}

func TestFHIRPathUnsupportedPathMessage(t *testing.T) {
	params := decode(t, parameters(operation("delete", "Task.input.exists()")))
	_, err := FHIRPath(decode(t, taskJSON), params)
	if err == nil || !strings.Contains(err.Error(), "unsupported FHIRPath") {
		t.Errorf("error %v does not say unsupported FHIRPath", err)
	}
}

func TestCanonicalNumber(t *testing.T) {
	equal := [][2]string{{"1", "1.0"}, {"1", "1e0"}, {"100", "1e2"}, {"0.5", "5E-1"}, {"-0", "0"}, {"0.000", "0e5"}, {"-12.50", "-1.25e+1"}}
	for _, p := range equal {
		if !equalNumbers(p[0], p[1]) {
			t.Errorf("%s and %s should be equal", p[0], p[1])
		}
	}
	differ := [][2]string{{"1", "-1"}, {"12345678901234567890", "12345678901234567891"}, {"0.1", "0.10000000000000001"}, {"1e400", "1e401"}}
	for _, p := range differ {
		if equalNumbers(p[0], p[1]) {
			t.Errorf("%s and %s should differ", p[0], p[1])
		}
	}
}

// Fuzzing: run with
//
//	go test ./internal/patch -run '^$' -fuzz '^FuzzJSON$' -fuzztime 30s
//	go test ./internal/patch -run '^$' -fuzz '^FuzzFHIRPath$' -fuzztime 30s
//	go test ./internal/patch -run '^$' -fuzz '^FuzzFHIRPathOperation$' -fuzztime 30s

// checkFuzzResult checks the invariants every call must keep: a *resources.Error of a patch
// kind or a document that encodes, holds numbers only as json.Number, and shares nothing with
// the input.
func checkFuzzResult(t *testing.T, got map[string]any, err error, doc, before map[string]any) {
	t.Helper()
	if !reflect.DeepEqual(doc, before) {
		t.Fatalf("the input document was modified")
	}
	if err != nil {
		var e *resources.Error
		if !errors.As(err, &e) {
			t.Fatalf("error %v is %T, not *resources.Error", err, err)
		}
		if e.Kind != resources.KindBadRequest && e.Kind != resources.KindUnprocessable {
			t.Fatalf("error %q has kind %d", e.Message, e.Kind)
		}
		if got != nil {
			t.Fatalf("a failed patch returned a document")
		}
		return
	}
	if got == nil {
		t.Fatalf("no error and no document")
	}
	if _, err := resources.EncodeResource(got); err != nil {
		t.Fatalf("the result does not encode: %v", err)
	}
	if _, err := decodeObject([]byte(encode(got))); err != nil {
		t.Fatalf("the result does not round-trip: %v", err)
	}
	checkNumbers(t, got)
	assertUnshared(t, got, doc, before)
}

func checkNumbers(t *testing.T, v any) {
	switch x := v.(type) {
	case map[string]any:
		for _, y := range x {
			checkNumbers(t, y)
		}
	case []any:
		for _, y := range x {
			checkNumbers(t, y)
		}
	case nil, string, bool, json.Number:
	default:
		t.Fatalf("the result holds a %T", v)
	}
}

func FuzzJSON(f *testing.F) {
	for _, tc := range jsonCases {
		f.Add([]byte(tc.doc), []byte(tc.patch))
	}
	f.Fuzz(func(t *testing.T, docJSON, patch []byte) {
		doc, err := decodeObject(docJSON)
		if err != nil {
			return
		}
		before := clone(doc).(map[string]any)
		got, err := JSON(doc, patch)
		checkFuzzResult(t, got, err, doc, before)
	})
}

func FuzzFHIRPath(f *testing.F) {
	for _, tc := range fhirCases {
		f.Add([]byte(tc.doc), []byte(tc.params))
	}
	f.Fuzz(func(t *testing.T, docJSON, paramsJSON []byte) {
		doc, err := decodeObject(docJSON)
		if err != nil {
			return
		}
		params, err := decodeObject(paramsJSON)
		if err != nil {
			return
		}
		before, paramsBefore := clone(doc).(map[string]any), clone(params)
		for _, s := range []Schema{{}, testSchema} {
			got, err := FHIRPathWithSchema(doc, params, s)
			if !reflect.DeepEqual(params, paramsBefore) {
				t.Fatalf("the Parameters were modified")
			}
			checkFuzzResult(t, got, err, doc, before)
		}
	})
}

// FuzzFHIRPathOperation drives one operation with an arbitrary path, name and value against a
// realistic resource, to explore the FHIRPath parser and evaluator.
func FuzzFHIRPathOperation(f *testing.F) {
	seeds := []struct {
		typ, path, name, value string
		a, b                   int
	}{
		{"add", "Patient.name[0]", "given", `"x"`, 0, 0},
		{"insert", "Patient.name.first().given", "", `"x"`, 1, 0},
		{"delete", "Patient.telecom.where(system='email')", "", ``, 0, 0},
		{"replace", "Patient.telecom.where(rank=2).value", "", `{"a":[1.5]}`, 0, 0},
		{"move", "Patient.name[0].given", "", ``, 1, 0},
		{"replace", "Patient.where(active=true).birthDate", "", `"2000"`, 0, 0},
		{"delete", "name.last().`given`[1]", "", ``, 0, 0},
		{"replace", `Patient.name.where(family = 'O\'Hara' ).use`, "", `true`, 0, 0},
	}
	for _, s := range seeds {
		f.Add(s.typ, s.path, s.name, []byte(s.value), s.a, s.b)
	}
	base := decode(f, patientJSON)
	f.Fuzz(func(t *testing.T, typ, path, elemName string, valueJSON []byte, a, b int) {
		parts := []any{
			map[string]any{"name": "type", "valueCode": typ},
			map[string]any{"name": "path", "valueString": path},
		}
		if elemName != "" {
			parts = append(parts, map[string]any{"name": "name", "valueString": elemName})
		}
		dec := json.NewDecoder(bytes.NewReader(valueJSON))
		dec.UseNumber()
		var v any
		if dec.Decode(&v) == nil && v != nil {
			key := "valueString"
			switch v.(type) {
			case map[string]any:
				key = "valueCoding"
			case json.Number:
				key = "valueDecimal"
			case bool:
				key = "valueBoolean"
			}
			parts = append(parts, map[string]any{"name": "value", key: v})
		}
		parts = append(parts,
			map[string]any{"name": "index", "valueInteger": json.Number(strconv.Itoa(a))},
			map[string]any{"name": "source", "valueInteger": json.Number(strconv.Itoa(a))},
			map[string]any{"name": "destination", "valueInteger": json.Number(strconv.Itoa(b))})
		params := map[string]any{"resourceType": "Parameters", "parameter": []any{map[string]any{"name": "operation", "part": parts}}}
		doc := clone(base).(map[string]any)
		before := clone(base).(map[string]any)
		got, err := FHIRPath(doc, params)
		checkFuzzResult(t, got, err, doc, before)
	})
}
