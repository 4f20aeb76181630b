package resources_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	annotationspb "github.com/google/fhir/go/proto/google/fhir/proto/annotations_go_proto"
	rpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/bundle_and_contained_resource_go_proto"

	"github.com/calaimfhir/calaimfhir/resources"
)

// r4Message returns the google/fhir R4 message of a resource type.
func r4Message(t *testing.T, typ string) protoreflect.MessageDescriptor {
	t.Helper()
	fields := (&rpb.ContainedResource{}).ProtoReflect().Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		if m := fields.Get(i).Message(); m != nil && string(m.Name()) == typ {
			return m
		}
	}
	t.Fatalf("no R4 message for %s", typ)
	return nil
}

func fieldByJSON(m protoreflect.MessageDescriptor, name string) protoreflect.FieldDescriptor {
	name = strings.TrimSuffix(name, "[x]")
	fields := m.Fields()
	for i := 0; i < fields.Len(); i++ {
		if f := fields.Get(i); f.JSONName() == name || string(f.Name()) == name {
			return f
		}
	}
	return nil
}

// The summary and mandatory lists are hand-written from the spec: every name must be an element
// of the type (a choice element exactly when written with [x]), and the mandatory lists must
// equal the elements google/fhir's R4 protos mark as required.
func TestSummaryLists_AreElementsOfTheirTypes(t *testing.T) {
	for _, typ := range resources.Types {
		m := r4Message(t, typ)
		sum := resources.SummaryElements(typ)
		if len(sum) == 0 {
			t.Errorf("%s: no summary elements", typ)
		}
		for _, name := range append(slices.Clone(sum), resources.MandatoryElements(typ)...) {
			f := fieldByJSON(m, name)
			if f == nil {
				t.Errorf("%s.%s is not an R4 element", typ, name)
				continue
			}
			choice := f.Message() != nil && f.Message().Oneofs().Len() > 0 && strings.HasSuffix(string(f.Message().Name()), "X")
			if choice != strings.HasSuffix(name, "[x]") {
				t.Errorf("%s.%s: choice element %v, but written %q", typ, name, choice, name)
			}
		}
		var required []string
		fields := m.Fields()
		for i := 0; i < fields.Len(); i++ {
			f := fields.Get(i)
			if proto.GetExtension(f.Options(), annotationspb.E_ValidationRequirement) == annotationspb.Requirement_REQUIRED_BY_FHIR {
				required = append(required, f.JSONName())
			}
		}
		var want []string
		for _, n := range resources.MandatoryElements(typ) {
			want = append(want, strings.TrimSuffix(n, "[x]"))
		}
		slices.Sort(required)
		slices.Sort(want)
		if !slices.Equal(required, want) {
			t.Errorf("%s: mandatory elements %v, R4 requires %v", typ, want, required)
		}
	}
}

func shaped(t *testing.T, raw, summary string, elements ...string) map[string]any {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(resources.ShapeResource([]byte(raw), summary, elements), &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

func keys(doc map[string]any) []string {
	var out []string
	for k := range doc {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func TestShapeResource_SummaryModes(t *testing.T) {
	const obs = `{"resourceType":"Observation","id":"o1","meta":{"versionId":"2"},"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"},
		"status":"final","category":[{"text":"social-history"}],"code":{"text":"Food insecurity"},"subject":{"reference":"Patient/p1"},
		"valueQuantity":{"value":3},"interpretation":[{"text":"high"}],"note":[{"text":"n"}],
		"component":[{"code":{"text":"a"},"valueString":"x","interpretation":[{"text":"low"}],"referenceRange":[{"text":"r"}]}]}`
	const task = `{"resourceType":"Task","id":"t1","meta":{"tag":[{"code":"keep"}]},"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">t</div>"},
		"status":"requested","intent":"order","priority":"urgent","owner":{"reference":"Organization/cbo"},"input":[{"type":{"text":"x"},"valueString":"y"}],"note":[{"text":"n"}]}`
	for _, tc := range []struct {
		name, raw, summary string
		elements           []string
		want               []string
	}{
		{"Observation true", obs, "true", nil, []string{"code", "component", "id", "meta", "resourceType", "status", "subject", "valueQuantity"}},
		{"Observation text", obs, "text", nil, []string{"code", "id", "meta", "resourceType", "status", "text"}},
		{"Observation data", obs, "data", nil, []string{"category", "code", "component", "id", "interpretation", "meta", "note", "resourceType", "status", "subject", "valueQuantity"}},
		{"Task true", task, "true", nil, []string{"id", "intent", "meta", "owner", "resourceType", "status"}},
		{"Task text", task, "text", nil, []string{"id", "intent", "meta", "resourceType", "status", "text"}},
		{"Task elements keep mandatory", task, "", []string{"owner"}, []string{"id", "intent", "meta", "owner", "resourceType", "status"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := shaped(t, tc.raw, tc.summary, tc.elements...)
			if got := keys(doc); !slices.Equal(got, tc.want) {
				t.Fatalf("elements %v, want %v", got, tc.want)
			}
			tags := doc["meta"].(map[string]any)["tag"].([]any)
			last := tags[len(tags)-1].(map[string]any)
			if last["code"] != "SUBSETTED" || last["system"] != "http://terminology.hl7.org/CodeSystem/v3-ObservationValue" {
				t.Fatalf("not marked SUBSETTED: %v", tags)
			}
		})
	}
	comp := shaped(t, obs, "true")["component"].([]any)[0].(map[string]any)
	if got := keys(comp); !slices.Equal(got, []string{"code", "valueString"}) {
		t.Fatalf("_summary=true component keeps %v, want its Σ children code and value[x]", got)
	}
	if tags := shaped(t, task, "true")["meta"].(map[string]any)["tag"].([]any); len(tags) != 2 || tags[0].(map[string]any)["code"] != "keep" {
		t.Fatalf("the resource's own tags must stay: %v", tags)
	}
	if got := resources.ShapeResource([]byte(task), "", nil); string(got) != task {
		t.Fatal("no _summary and no _elements must serve the stored bytes")
	}
}
