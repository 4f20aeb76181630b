package profiles_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/calaimfhir/calaimfhir/internal/r4"
	"github.com/calaimfhir/calaimfhir/profiles"
)

func TestValidNPI(t *testing.T) {
	tests := []struct {
		npi  string
		want bool
	}{
		{"1234567893", true}, // the CMS example
		{"1234567894", false},
		{"1987654328", true},
		{"123456789", false},
		{"12345678930", false},
		{"123456789A", false},
		{"", false},
	}
	for _, tc := range tests {
		if got := profiles.ValidNPI(tc.npi); got != tc.want {
			t.Errorf("ValidNPI(%q) = %v, want %v", tc.npi, got, tc.want)
		}
	}
}

// Every StructureDefinition carries a differential and a snapshot that holds every base
// element of its type with the differential laid over it.
func TestDefinitions_Snapshot(t *testing.T) {
	for _, d := range profiles.Default().Definitions() {
		var sd struct {
			URL, Type, BaseDefinition, Derivation string
			Differential, Snapshot                struct {
				Element []map[string]any
			}
		}
		if err := json.Unmarshal(d.JSON, &sd); err != nil {
			t.Fatal(err)
		}
		if sd.URL != profiles.Base+"/StructureDefinition/"+d.ID || sd.Derivation != "constraint" || sd.BaseDefinition != "http://hl7.org/fhir/StructureDefinition/"+sd.Type {
			t.Errorf("%s: url %s derivation %s base %s", d.ID, sd.URL, sd.Derivation, sd.BaseDefinition)
		}
		snap := map[string]map[string]any{}
		for _, e := range sd.Snapshot.Element {
			snap[e["id"].(string)] = e
			_, hasType := e["type"]
			_, isRef := e["contentReference"]
			if e["min"] == nil || e["max"] == nil || e["base"] == nil || !hasType && !isRef && e["id"] != sd.Type {
				t.Errorf("%s: snapshot element %s lacks min, max, base or type: %v", d.ID, e["id"], e)
			}
		}
		for _, e := range sd.Differential.Element {
			s, ok := snap[e["id"].(string)]
			if !ok {
				t.Errorf("%s: %s missing from the snapshot", d.ID, e["id"])
				continue
			}
			for k, v := range e {
				if a, b := jsonOf(v), jsonOf(s[k]); a != b {
					t.Errorf("%s %s: snapshot %s = %s, differential says %s", d.ID, e["id"], k, b, a)
				}
			}
		}
		if len(sd.Snapshot.Element) <= len(sd.Differential.Element) {
			t.Errorf("%s: snapshot (%d) is no larger than the differential (%d)", d.ID, len(sd.Snapshot.Element), len(sd.Differential.Element))
		}
	}
	// Base facts come through: Task.status is 1..1 in R4, Task.input 0..*.
	var sd struct {
		Snapshot struct{ Element []map[string]any }
	}
	d, _ := profiles.Default().DefinitionByID("calaim-task")
	json.Unmarshal(d.JSON, &sd)
	got := map[string]string{}
	for _, e := range sd.Snapshot.Element {
		got[e["id"].(string)] = jsonOf(e["min"]) + ".." + e["max"].(string)
	}
	for id, want := range map[string]string{"Task.status": "1..1", "Task.input": "0..*", "Task.focus": "1..1", "Task.restriction.period": "0..1",
		"Task.output.value[x]": "1..1"} {
		if got[id] != want {
			t.Errorf("snapshot %s = %s, want %s", id, got[id], want)
		}
	}
}

func jsonOf(v any) string { b, _ := json.Marshal(v); return string(b) }

func TestValidate_BadInput(t *testing.T) {
	tests := []struct {
		name, body, profile, code string
	}{
		{"not JSON", `{`, profiles.PatientProfile, "structure"},
		{"null", `null`, profiles.PatientProfile, "structure"},
		{"unknown profile", `{"resourceType":"Patient"}`, profiles.Base + "/StructureDefinition/nope", "not-supported"},
		{"extension as profile", `{"resourceType":"Patient"}`, profiles.ExtProgram, "not-supported"},
		{"other type", `{"resourceType":"Group"}`, profiles.PatientProfile, "structure"},
	}
	for _, tc := range tests {
		issues := profiles.Validate(context.Background(), []byte(tc.body), tc.profile)
		if len(issues) != 1 || issues[0].Code != tc.code || issues[0].Severity != "error" {
			t.Errorf("%s: %+v", tc.name, issues)
		}
	}
	// A versioned canonical is accepted.
	b, _ := os.ReadFile(filepath.Join("..", "testdata", "profiles", "calaim-patient", "valid-minimal.json"))
	if issues := profiles.Validate(context.Background(), b, profiles.PatientProfile+"|0.1.0"); len(issues) != 0 {
		t.Errorf("versioned canonical: %+v", issues)
	}
}

// BenchmarkReferralTransaction validates the resources of a referral transaction (Patient,
// Consent, Condition, screening Observation, ServiceRequest, Task) against base R4 and their
// CalAIM profiles, as a write does. The time per op divided by 6 is the cost per resource.
func BenchmarkReferralTransaction(b *testing.B) {
	raw, err := os.ReadFile(filepath.Join("..", "testdata", "profiles", "referral-bundle.json"))
	if err != nil {
		b.Fatal(err)
	}
	var bundle struct {
		Entry []struct{ Resource json.RawMessage }
	}
	if err := json.Unmarshal(raw, &bundle); err != nil {
		b.Fatal(err)
	}
	e := profiles.Default()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		for _, entry := range bundle.Entry {
			typ, err := r4.Validate(entry.Resource)
			if err != nil {
				b.Fatal(err)
			}
			doc, err := profiles.Decode(entry.Resource)
			if err != nil {
				b.Fatal(err)
			}
			for _, url := range profiles.ApplicableDoc(doc, "") {
				if issues := e.ValidateDoc(context.Background(), doc, url); len(issues) != 0 {
					b.Fatal(typ, issues)
				}
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*len(bundle.Entry)), "µs/resource")
}

// BenchmarkProfileOnly is the profile part alone, per resource.
func BenchmarkProfileOnly(b *testing.B) {
	body, _ := os.ReadFile(filepath.Join("..", "testdata", "profiles", "calaim-claim", "valid-chw.json"))
	e := profiles.Default()
	b.ReportAllocs()
	for range b.N {
		if issues := e.Validate(context.Background(), body, profiles.ClaimProfile); len(issues) != 0 {
			b.Fatal(issues)
		}
	}
}

// BenchmarkBaseR4Only is the base R4 part alone over the same resources, to tell the two costs apart.
func BenchmarkBaseR4Only(b *testing.B) {
	raw, _ := os.ReadFile(filepath.Join("..", "testdata", "profiles", "referral-bundle.json"))
	var bundle struct {
		Entry []struct{ Resource json.RawMessage }
	}
	json.Unmarshal(raw, &bundle)
	b.ReportAllocs()
	for range b.N {
		for _, e := range bundle.Entry {
			if _, err := r4.Validate(e.Resource); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*len(bundle.Entry)), "µs/resource")
}
