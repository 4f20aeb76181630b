package r4

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/calaimfhir/calaimfhir/resources"
)

// examplesDir holds the official HL7 R4 examples, relative to this package's directory.
const examplesDir = "../../../shared/fhir-examples/r4"

type wantIssue struct {
	code resources.IssueType
	expr string // "" for issues without an expression
}

func TestValidate(t *testing.T) {
	deepExtension := `{"resourceType":"Patient","extension":[` +
		strings.Repeat(`{"url":"http://example.org/x","extension":[`, 80) +
		strings.Repeat(`]}`, 80) + `]}`
	deepArray := `{"resourceType":"Patient","foo":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}`

	tests := []struct {
		name     string
		body     string
		wantType string // on success
		wantKind resources.Kind
		want     []wantIssue // exact, in order; nil with wantKind BadRequest means "any one issue"
	}{
		{
			name:     "ValidMinimalPatient_ReturnsType",
			body:     `{"resourceType":"Patient"}`,
			wantType: "Patient",
		},
		{
			name:     "ValidObservationWithChoiceAndReference_ReturnsType",
			body:     `{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/1"},"valueQuantity":{"value":1.5,"unit":"kg"}}`,
			wantType: "Observation",
		},
		{
			name:     "NotJSON_Returns400",
			body:     `resourceType: Patient`,
			wantKind: resources.KindBadRequest,
			want:     []wantIssue{{resources.IssueInvalid, ""}},
		},
		{
			name:     "EmptyBody_Returns400",
			body:     ``,
			wantKind: resources.KindBadRequest,
			want:     []wantIssue{{resources.IssueInvalid, ""}},
		},
		{
			name:     "TrailingGarbage_Returns400",
			body:     `{"resourceType":"Patient"} x`,
			wantKind: resources.KindBadRequest,
			want:     []wantIssue{{resources.IssueInvalid, ""}},
		},
		{
			name:     "JSONArray_Returns400",
			body:     `[{"resourceType":"Patient"}]`,
			wantKind: resources.KindBadRequest,
			want:     []wantIssue{{resources.IssueStructure, ""}},
		},
		{
			name:     "JSONNull_Returns400",
			body:     `null`,
			wantKind: resources.KindBadRequest,
			want:     []wantIssue{{resources.IssueStructure, ""}},
		},
		{
			name:     "MissingResourceType_Returns400",
			body:     `{"id":"x","active":true}`,
			wantKind: resources.KindBadRequest,
			want:     []wantIssue{{resources.IssueStructure, ""}},
		},
		{
			name:     "NumericResourceType_Returns400",
			body:     `{"resourceType":7}`,
			wantKind: resources.KindBadRequest,
			want:     []wantIssue{{resources.IssueStructure, ""}},
		},
		{
			name:     "UnknownResourceType_Returns400",
			body:     `{"resourceType":"Foo"}`,
			wantKind: resources.KindBadRequest,
			want:     []wantIssue{{resources.IssueStructure, ""}},
		},
		{
			name:     "AbstractResourceType_Returns400",
			body:     `{"resourceType":"DomainResource"}`,
			wantKind: resources.KindBadRequest,
			want:     []wantIssue{{resources.IssueStructure, ""}},
		},
		{
			name:     "UnknownElement_Returns422WithPath",
			body:     `{"resourceType":"Patient","foo":"bar"}`,
			wantKind: resources.KindUnprocessable,
			want:     []wantIssue{{resources.IssueStructure, "Patient.foo"}},
		},
		{
			name:     "UnknownElementWithOddName_Returns422WithQuotedPath",
			body:     `{"resourceType":"Patient","bar baz":1}`,
			wantKind: resources.KindUnprocessable,
			want:     []wantIssue{{resources.IssueStructure, "Patient.`bar baz`"}},
		},
		{
			name:     "BadBirthDate_Returns422WithPath",
			body:     `{"resourceType":"Patient","birthDate":"1990-13-45"}`,
			wantKind: resources.KindUnprocessable,
			want:     []wantIssue{{resources.IssueValue, "Patient.birthDate"}},
		},
		{
			name:     "StringForBoolean_Returns422WithPath",
			body:     `{"resourceType":"Patient","active":"yes"}`,
			wantKind: resources.KindUnprocessable,
			want:     []wantIssue{{resources.IssueValue, "Patient.active"}},
		},
		{
			name:     "NullPrimitive_Returns422WithPath",
			body:     `{"resourceType":"Patient","birthDate":null}`,
			wantKind: resources.KindUnprocessable,
			want:     []wantIssue{{resources.IssueValue, "Patient.birthDate"}},
		},
		{
			name:     "ObjectForArray_Returns422WithPath",
			body:     `{"resourceType":"Patient","name":{"family":"Doe"}}`,
			wantKind: resources.KindUnprocessable,
			want:     []wantIssue{{resources.IssueStructure, "Patient.name"}},
		},
		{
			name:     "ArrayForSingleValue_Returns422WithPath",
			body:     `{"resourceType":"Patient","name":[{"family":["Doe"]}]}`,
			wantKind: resources.KindUnprocessable,
			want:     []wantIssue{{resources.IssueStructure, "Patient.name[0].family"}},
		},
		{
			name:     "ObservationWithoutStatusAndCode_Returns422PerMissingElement",
			body:     `{"resourceType":"Observation"}`,
			wantKind: resources.KindUnprocessable,
			want: []wantIssue{
				{resources.IssueRequired, "Observation.code"},
				{resources.IssueRequired, "Observation.status"},
			},
		},
		{
			name:     "ExtensionWithoutURL_Returns422WithPath",
			body:     `{"resourceType":"Patient","extension":[{"valueString":"x"}]}`,
			wantKind: resources.KindUnprocessable,
			want:     []wantIssue{{resources.IssueRequired, "Patient.extension[0].url"}},
		},
		{
			name:     "TwoProblems_ReturnsTwoIssues",
			body:     `{"resourceType":"Patient","foo":1,"birthDate":"1990-13-45"}`,
			wantKind: resources.KindUnprocessable,
			want: []wantIssue{
				{resources.IssueValue, "Patient.birthDate"},
				{resources.IssueStructure, "Patient.foo"},
			},
		},
		{
			name:     "NumberInGivenName_Returns422WithNestedPath",
			body:     `{"resourceType":"Patient","name":[{"given":[1]}]}`,
			wantKind: resources.KindUnprocessable,
			want:     []wantIssue{{resources.IssueValue, "Patient.name[0].given[0]"}},
		},
		{
			name:     "NumberInSecondGivenOfSecondName_Returns422WithIndexes",
			body:     `{"resourceType":"Patient","name":[{"family":"A"},{"given":["B",2]}]}`,
			wantKind: resources.KindUnprocessable,
			want:     []wantIssue{{resources.IssueValue, "Patient.name[1].given[1]"}},
		},
		{
			name:     "NumberForCodingSystem_Returns422WithPath",
			body:     `{"resourceType":"Observation","status":"final","code":{"coding":[{"system":1}]}}`,
			wantKind: resources.KindUnprocessable,
			want:     []wantIssue{{resources.IssueValue, "Observation.code.coding[0].system"}},
		},
		{
			name:     "BadValueInChoiceElement_Returns422WithChoicePath",
			body:     `{"resourceType":"Observation","status":"final","code":{},"valueQuantity":{"value":"heavy"}}`,
			wantKind: resources.KindUnprocessable,
			want:     []wantIssue{{resources.IssueValue, "Observation.valueQuantity.value"}},
		},
		{
			name:     "BadCodeFormatInChoiceElement_Returns422WithChoicePath",
			body:     `{"resourceType":"Observation","status":"final","code":{},"valueQuantity":{"code":"a  b"}}`,
			wantKind: resources.KindUnprocessable,
			want:     []wantIssue{{resources.IssueValue, "Observation.valueQuantity.code"}},
		},
		{
			name:     "TwoChoiceTypes_Returns422AtChoiceElement",
			body:     `{"resourceType":"Observation","status":"final","code":{},"valueString":"x","valueBoolean":true}`,
			wantKind: resources.KindUnprocessable,
			want:     []wantIssue{{resources.IssueStructure, "Observation.value"}},
		},
		{
			name:     "UnknownStatusCode_Returns422WithPath",
			body:     `{"resourceType":"Observation","status":"bogus","code":{}}`,
			wantKind: resources.KindUnprocessable,
			want:     []wantIssue{{resources.IssueValue, "Observation.status"}},
		},
		{
			name:     "BadID_Returns422WithPath",
			body:     `{"resourceType":"Patient","id":"a b"}`,
			wantKind: resources.KindUnprocessable,
			want:     []wantIssue{{resources.IssueValue, "Patient.id"}},
		},
		{
			name:     "WrongReferenceTarget_Returns422AtReference",
			body:     `{"resourceType":"Observation","status":"final","code":{},"subject":{"reference":"Medication/1"}}`,
			wantKind: resources.KindUnprocessable,
			want:     []wantIssue{{resources.IssueStructure, "Observation.subject"}},
		},
		{
			name:     "BadPrimitiveExtension_Returns422WithElementPath",
			body:     `{"resourceType":"Patient","_birthDate":{"extension":[{"url":"http://example.org/x","valueString":1}]}}`,
			wantKind: resources.KindUnprocessable,
			want:     []wantIssue{{resources.IssueValue, "Patient.birthDate.extension[0].valueString"}},
		},
		{
			name:     "ContainedResourceMissingElements_Returns422WithContainedPath",
			body:     `{"resourceType":"Patient","contained":[{"resourceType":"Observation","id":"o"}]}`,
			wantKind: resources.KindUnprocessable,
			want: []wantIssue{
				{resources.IssueRequired, "Patient.contained[0].code"},
				{resources.IssueRequired, "Patient.contained[0].status"},
			},
		},
		{
			name:     "NestedContainedResource_Returns422WithNestedContainedPath",
			body:     `{"resourceType":"Patient","contained":[{"resourceType":"Organization","contained":[{"resourceType":"Observation","status":"final"}]}]}`,
			wantKind: resources.KindUnprocessable,
			want:     []wantIssue{{resources.IssueRequired, "Patient.contained[0].contained[0].code"}},
		},
		{
			name:     "BundleEntryContainedResource_Returns422WithPath",
			body:     `{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Patient","contained":[{"resourceType":"Observation","code":{},"status":"final","subject":{"reference":"Medication/1"}}]}}]}`,
			wantKind: resources.KindUnprocessable,
			want:     []wantIssue{{resources.IssueStructure, "Bundle.entry[0].resource.contained[0].subject"}},
		},
		{
			name:     "ContainedResourceUnknownElement_Returns422WithContainedPath",
			body:     `{"resourceType":"Patient","contained":[{"resourceType":"Observation","foo":1}]}`,
			wantKind: resources.KindUnprocessable,
			want:     []wantIssue{{resources.IssueStructure, "Patient.contained[0].foo"}},
		},
		{
			name:     "ContainedUnknownResourceType_Returns422",
			body:     `{"resourceType":"Patient","contained":[{"resourceType":"Foo"}]}`,
			wantKind: resources.KindUnprocessable,
			want:     []wantIssue{{resources.IssueStructure, "Patient.contained[0]"}},
		},
		{
			name:     "BundleEntryProblems_Returns422WithEntryPaths",
			body:     `{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Patient"}},{"resource":{"resourceType":"Observation","component":[{"valueString":"x"}]}}]}`,
			wantKind: resources.KindUnprocessable,
			want: []wantIssue{
				{resources.IssueRequired, "Bundle.entry[1].resource.code"},
				{resources.IssueRequired, "Bundle.entry[1].resource.component[0].code"},
				{resources.IssueRequired, "Bundle.entry[1].resource.status"},
			},
		},
		{
			name:     "BundleEntryBadValue_Returns422WithEntryPath",
			body:     `{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Patient","active":1}}]}`,
			wantKind: resources.KindUnprocessable,
			want:     []wantIssue{{resources.IssueValue, "Bundle.entry[0].resource.active"}},
		},
		{
			name:     "ManyIndexes_AreSortedNumerically",
			body:     `{"resourceType":"Patient","name":[` + strings.Repeat(`{"given":[1]},`, 10) + `{"given":[1]}]}`,
			wantKind: resources.KindUnprocessable,
			want: []wantIssue{
				{resources.IssueValue, "Patient.name[0].given[0]"}, {resources.IssueValue, "Patient.name[1].given[0]"},
				{resources.IssueValue, "Patient.name[2].given[0]"}, {resources.IssueValue, "Patient.name[3].given[0]"},
				{resources.IssueValue, "Patient.name[4].given[0]"}, {resources.IssueValue, "Patient.name[5].given[0]"},
				{resources.IssueValue, "Patient.name[6].given[0]"}, {resources.IssueValue, "Patient.name[7].given[0]"},
				{resources.IssueValue, "Patient.name[8].given[0]"}, {resources.IssueValue, "Patient.name[9].given[0]"},
				{resources.IssueValue, "Patient.name[10].given[0]"},
			},
		},
		{
			name:     "DeeplyNestedExtensions_Returns422",
			body:     deepExtension,
			wantKind: resources.KindUnprocessable,
			want: []wantIssue{{resources.IssueStructure, "Patient.extension[0]" +
				strings.Repeat(".extension[0]", maxNestingDepth-1)}},
		},
		{
			name:     "DeeplyNestedArrays_Returns400",
			body:     deepArray,
			wantKind: resources.KindBadRequest,
			want:     []wantIssue{{resources.IssueInvalid, ""}},
		},
		{
			name:     "IntegerOutOfRange_Returns422",
			body:     `{"resourceType":"Patient","multipleBirthInteger":1e300}`,
			wantKind: resources.KindUnprocessable,
			want:     []wantIssue{{resources.IssueValue, "Patient.multipleBirthInteger"}},
		},
		{
			name:     "NumberBeyondFloat64_Returns400",
			body:     `{"resourceType":"Patient","multipleBirthInteger":1e400}`,
			wantKind: resources.KindBadRequest,
			want:     []wantIssue{{resources.IssueInvalid, ""}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			gotType, err := Validate([]byte(tc.body))
			if tc.wantType != "" {
				if err != nil {
					t.Fatalf("Validate() error = %v, want none", err)
				}
				if gotType != tc.wantType {
					t.Fatalf("Validate() type = %q, want %q", gotType, tc.wantType)
				}
				return
			}
			e := mustError(t, err)
			if e.Kind != tc.wantKind {
				t.Fatalf("Validate() kind = %d, want %d (%v)", e.Kind, tc.wantKind, e)
			}
			if gotType != "" {
				t.Errorf("Validate() type = %q on error, want \"\"", gotType)
			}
			var got []wantIssue
			for _, is := range e.Issues {
				if is.Severity != resources.SeverityError || is.Diagnostics == "" {
					t.Errorf("issue %+v: want severity error and a diagnostic", is)
				}
				wi := wantIssue{code: is.Code}
				if len(is.Expression) > 0 {
					wi.expr = is.Expression[0]
				}
				if len(is.Expression) > 1 {
					t.Errorf("issue %+v: want at most one expression", is)
				}
				got = append(got, wi)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("Validate() issues = %+v\nwant %+v\nerror: %v", got, tc.want, e.Issues)
			}
		})
	}
}

func TestValidate_Diagnostics_ArePlainLanguage(t *testing.T) {
	tests := []struct {
		name, body, want string
	}{
		{"BadDate", `{"resourceType":"Patient","birthDate":"1990-13-45"}`, `Expected date, found "1990-13-45"`},
		{"UnknownElement", `{"resourceType":"Patient","foo":1}`, `Unknown element "foo"`},
		{"Missing", `{"resourceType":"Encounter","status":"planned"}`, `Missing required element "class"`},
		{"Null", `{"resourceType":"Patient","birthDate":null}`, `Expected date, found null`},
		{"UnknownType", `{"resourceType":"Foo"}`, `"Foo" is not an R4 resource type`},
		{"Code", `{"resourceType":"Observation","status":"bogus","code":{}}`, `Unknown code "bogus" (not in ObservationStatusCode)`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Validate([]byte(tc.body))
			e := mustError(t, err)
			if len(e.Issues) != 1 || e.Issues[0].Diagnostics != tc.want {
				t.Fatalf("Validate() issues = %+v, want one with diagnostics %q", e.Issues, tc.want)
			}
		})
	}
}

func TestValidate_LongValues_AreClippedInDiagnostics(t *testing.T) {
	long := strings.Repeat("9", 10000)
	_, err := Validate([]byte(`{"resourceType":"Patient","birthDate":"` + long + `"}`))
	e := mustError(t, err)
	if n := len(e.Issues[0].Diagnostics); n > 200 {
		t.Fatalf("diagnostics length = %d, want it clipped", n)
	}
}

func TestValidate_ManyProblems_AreCapped(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"resourceType":"Patient"`)
	for i := range maxIssues + 50 {
		b.WriteString(`,"x`)
		b.WriteString(strings.Repeat("a", i%7) + string(rune('a'+i%26)) + strings.Repeat("b", i/26))
		b.WriteString(`":1`)
	}
	b.WriteString(`}`)
	_, err := Validate([]byte(b.String()))
	e := mustError(t, err)
	if len(e.Issues) != maxIssues {
		t.Fatalf("got %d issues, want %d", len(e.Issues), maxIssues)
	}
	if last := e.Issues[maxIssues-1]; len(last.Expression) != 0 || !strings.Contains(last.Diagnostics, "more problems") {
		t.Fatalf("last issue = %+v, want a summary of the problems left out", last)
	}
}

func TestValidate_Concurrent_SharesUnmarshaller(t *testing.T) {
	bodies := []string{
		`{"resourceType":"Patient","birthDate":"1990-01-01"}`,
		`{"resourceType":"Observation"}`,
		benchTask,
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				body := bodies[(g+i)%len(bodies)]
				_, err := Validate([]byte(body))
				if (body == bodies[1]) != (err != nil) {
					t.Errorf("Validate(%.40s) error = %v", body, err)
				}
			}
		})
	}
	wg.Wait()
}

// knownInvalidExamples are official R4 examples that genuinely violate base R4, with the reason.
var knownInvalidExamples = map[string]string{
	"Observation-clinical-gender.json": "performer references Encounter/example; " +
		"Observation.performer allows Practitioner, PractitionerRole, Organization, CareTeam, Patient, RelatedPerson only",
	"Questionnaire-qs1.json": "32 display items (item[0].item[n].item[0] ...) have no linkId; Questionnaire.item.linkId is 1..1",
}

func TestValidate_OfficialExamples_AllValidExceptKnownInvalid(t *testing.T) {
	files := exampleFiles(t)
	var failed []string
	for _, path := range files {
		name := filepath.Base(path)
		body, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		gotType, err := Validate(body)
		reason, known := knownInvalidExamples[name]
		if err != nil {
			var e *resources.Error
			errors.As(err, &e)
			var msgs []string
			if e != nil {
				for _, is := range e.Issues {
					msgs = append(msgs, strings.Join(is.Expression, ",")+": "+is.Diagnostics)
				}
			}
			t.Logf("%s fails Validate: %v\n\t%s", name, err, strings.Join(msgs, "\n\t"))
			if known {
				t.Logf("%s is known invalid: %s", name, reason)
				continue
			}
			failed = append(failed, name)
			continue
		}
		if known {
			t.Errorf("%s is in the known-invalid list (%s) but validates; remove it from the list", name, reason)
		}
		if wantType, _, _ := strings.Cut(name, "-"); gotType != wantType {
			t.Errorf("%s: type = %q, want %q", name, gotType, wantType)
		}
	}
	if len(failed) > 0 {
		t.Errorf("%d of %d official examples fail validation: %s", len(failed), len(files), strings.Join(failed, ", "))
	}
}

func exampleFiles(tb testing.TB) []string {
	tb.Helper()
	if _, err := os.Stat(examplesDir); err != nil {
		tb.Skipf("official R4 examples not available at %s: %v", examplesDir, err)
	}
	files, err := filepath.Glob(filepath.Join(examplesDir, "*.json"))
	if err != nil {
		tb.Fatal(err)
	}
	if len(files) == 0 {
		tb.Skipf("no *.json files in %s", examplesDir)
	}
	return files
}

func FuzzValidate(f *testing.F) {
	for _, name := range []string{
		"Patient-example.json", "Observation-blood-pressure.json", "Task-example1.json",
		"Bundle-bundle-transaction.json", "Questionnaire-qs1.json",
	} {
		if body, err := os.ReadFile(filepath.Join(examplesDir, name)); err == nil {
			f.Add(body)
		}
	}
	for _, s := range []string{
		``, `{}`, `[]`, `null`, `"x"`, `1e999`, `{"resourceType":"Patient"}`,
		`{"resourceType":"Patient","birthDate":"1990-13-45","foo":[1,{}]}`,
		`{"resourceType":"Observation","valueQuantity":{"value":1e400}}`,
		`{"resourceType":"Patient","contained":[{"resourceType":"Patient","contained":[{"resourceType":"Foo"}]}]}`,
		`{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Observation","_status":{}}}]}`,
		`{"resourceType":"Patient","name":[{"given":["a",null],"_given":[null,{"id":"x"}]}]}`,
		benchTask,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		// The fuzzer does not report hangs; crash the worker so that it saves the input.
		watchdog := time.AfterFunc(10*time.Second, func() { panic("FuzzValidate: Validate did not return within 10s") })
		defer watchdog.Stop()
		gotType, err := Validate(body)
		if err == nil {
			if !isResourceType(gotType) {
				t.Fatalf("Validate() type = %q without error", gotType)
			}
			return
		}
		var e *resources.Error
		if !errors.As(err, &e) {
			t.Fatalf("Validate() error %T %v, want *resources.Error", err, err)
		}
		var p *panicError
		if errors.As(err, &p) {
			t.Fatalf("Validate() panicked: %v\n%s", p.value, p.stack)
		}
		if e.Kind != resources.KindBadRequest && e.Kind != resources.KindUnprocessable {
			t.Fatalf("Validate() kind = %d (%v), want BadRequest or Unprocessable", e.Kind, err)
		}
		if gotType != "" {
			t.Fatalf("Validate() type = %q with error", gotType)
		}
		if len(e.Issues) == 0 || len(e.Issues) > maxIssues {
			t.Fatalf("Validate() returned %d issues", len(e.Issues))
		}
		root := ""
		for _, is := range e.Issues {
			if len(is.Expression) == 0 {
				continue
			}
			head, _, _ := strings.Cut(is.Expression[0], ".")
			if root == "" {
				root = head
			}
			if head != root || !isResourceType(head) {
				t.Fatalf("issue expression %q does not start with the resource type (%q)", is.Expression[0], root)
			}
		}
	})
}

func BenchmarkValidate(b *testing.B) {
	body := []byte(benchTask)
	if _, err := Validate(body); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Validate(body); err != nil {
			b.Fatal(err)
		}
	}
}

func mustError(t *testing.T, err error) *resources.Error {
	t.Helper()
	if err == nil {
		t.Fatal("Validate() error = nil, want one")
	}
	var e *resources.Error
	if !errors.As(err, &e) {
		t.Fatalf("Validate() error = %T %v, want *resources.Error", err, err)
	}
	return e
}

// benchTask is a typical care-coordination Task (about 2 KB).
const benchTask = `{
  "resourceType": "Task",
  "id": "referral-1234",
  "meta": {"versionId": "3", "lastUpdated": "2024-05-02T16:10:00Z"},
  "identifier": [{"system": "http://example.org/tasks", "value": "T-1234"}],
  "basedOn": [{"reference": "ServiceRequest/sr-77"}],
  "status": "in-progress",
  "businessStatus": {"text": "Awaiting member outreach"},
  "intent": "order",
  "priority": "urgent",
  "code": {
    "coding": [{"system": "http://hl7.org/fhir/CodeSystem/task-code", "code": "fulfill", "display": "Fulfill the focal request"}]
  },
  "description": "Enhanced Care Management outreach for referred member",
  "focus": {"reference": "ServiceRequest/sr-77", "display": "ECM referral"},
  "for": {"reference": "Patient/p-42", "display": "Jane Doe"},
  "encounter": {"reference": "Encounter/e-9"},
  "executionPeriod": {"start": "2024-05-01T09:00:00-07:00", "end": "2024-06-01T09:00:00-07:00"},
  "authoredOn": "2024-05-01T08:55:12-07:00",
  "lastModified": "2024-05-02T09:10:00-07:00",
  "requester": {"reference": "Organization/mcp-1", "display": "Managed Care Plan"},
  "performerType": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/task-performer-type", "code": "performer"}]}],
  "owner": {"reference": "Organization/cbo-5", "display": "Community Provider"},
  "reasonCode": {"text": "High utilizer"},
  "note": [{"authorString": "Care coordinator", "time": "2024-05-02T09:10:00-07:00", "text": "Left voicemail; second attempt scheduled."}],
  "restriction": {"repetitions": 1, "period": {"end": "2024-06-01"}},
  "input": [
    {"type": {"text": "Contact attempts"}, "valueInteger": 2},
    {"type": {"text": "Preferred language"}, "valueCodeableConcept": {"coding": [{"system": "urn:ietf:bcp:47", "code": "es"}]}}
  ],
  "output": [
    {"type": {"text": "Outreach outcome"}, "valueString": "pending"}
  ]
}`
