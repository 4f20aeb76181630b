package resources

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestReferences_PartialDecodeMatchesWholeDecode: references decodes only the elements a
// parameter reads; it must find exactly what decoding the whole resource finds, for every
// reference parameter of every official example (skipped without ../shared).
func TestReferences_PartialDecodeMatchesWholeDecode(t *testing.T) {
	dir := filepath.Join("..", "..", "shared", "fhir-examples", "r4")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Skipf("official examples not found at %s: %v", dir, err)
	}
	s := &Service{Base: "http://example.org/fhir"}
	checked := 0
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		var head struct{ ResourceType, ID string }
		if json.Unmarshal(raw, &head) != nil || !Supported(head.ResourceType) {
			continue
		}
		r := &Resource{Type: head.ResourceType, ID: head.ID, JSON: raw}
		for _, p := range Params(r.Type) {
			if p.Type != ParamReference {
				continue
			}
			got := s.references(r, p.Name)
			want := wholeDecodeReferences(s, r, p.Name)
			if !slices.Equal(got, want) {
				t.Errorf("%s %s: partial %v, whole %v", e.Name(), p.Name, got, want)
			}
			checked++
		}
	}
	if checked == 0 {
		t.Skip("no examples of the supported types")
	}
}

// wholeDecodeReferences is references as it was before decodeFields: the whole resource.
func wholeDecodeReferences(s *Service, r *Resource, param string) []string {
	dec := json.NewDecoder(bytes.NewReader(r.JSON))
	dec.UseNumber()
	var doc map[string]any
	if dec.Decode(&doc) != nil {
		return nil
	}
	return s.refsIn(doc, r.Type, param)
}

func BenchmarkReferences(b *testing.B) {
	task := []byte(`{"resourceType":"Task","id":"t1","meta":{"versionId":"3","lastUpdated":"2026-01-01T00:00:00Z","tag":[{"system":"https://calaimfhir.org/fhir/sid/tenant","code":"Organization/p"}]},` +
		`"status":"in-progress","intent":"order","code":{"coding":[{"system":"http://hl7.org/fhir/CodeSystem/task-code","code":"fulfill"}]},` +
		`"focus":{"reference":"ServiceRequest/sr1"},"for":{"reference":"Patient/p1"},"authoredOn":"2026-01-01T00:00:00Z",` +
		`"requester":{"reference":"Organization/prov"},"owner":{"reference":"Organization/cbo"},"note":[{"text":"` + strings.Repeat("x", 400) + `"}]}`)
	r := &Resource{Type: "Task", ID: "t1", JSON: task}
	s := &Service{}
	b.Run("partial", func(b *testing.B) {
		for b.Loop() {
			s.references(r, "patient")
		}
	})
	b.Run("whole", func(b *testing.B) {
		for b.Loop() {
			wholeDecodeReferences(s, r, "patient")
		}
	})
}

// TestAccessKeys_MatchWholeExtraction: accessKeys decodes only what the scope's parameters
// read; for those parameters it must give exactly the keys extracting the whole resource
// gives, on every official example (skipped without ../shared). Every parameter is tried
// alone, and the set tenancy scopes use together.
func TestAccessKeys_MatchWholeExtraction(t *testing.T) {
	dir := filepath.Join("..", "..", "shared", "fhir-examples", "r4")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Skipf("official examples not found at %s: %v", dir, err)
	}
	s := &Service{Base: "http://example.org/fhir"}
	checked := 0
	for _, e := range entries {
		raw, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil || !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		var head struct{ ResourceType, ID string }
		if json.Unmarshal(raw, &head) != nil || !Supported(head.ResourceType) {
			continue
		}
		r := &Resource{Type: head.ResourceType, ID: head.ID, JSON: raw}
		whole := s.keysOf(r)
		sets := []map[string]bool{{"_tag": true, "_security": true, "patient": true, "owner": true, "requester": true, "performer": true, "payor": true, "provider": true}}
		for _, p := range Params(r.Type) {
			sets = append(sets, map[string]bool{p.Name: true})
		}
		for _, params := range sets {
			got := s.accessKeys(r, params)
			if got == nil {
				t.Fatalf("%s: accessKeys failed", e.Name())
			}
			var want []string
			for _, k := range whole.Eq {
				p, _, _ := strings.Cut(k, keySep)
				if p, _, _ = strings.Cut(p, ":"); params[p] { // patient:identifier keys are patient's
					want = append(want, k)
				}
			}
			if !slices.Equal(got.Eq, want) {
				t.Errorf("%s %v:\n partial %q\n whole   %q", e.Name(), params, got.Eq, want)
			}
			checked++
		}
	}
	if checked == 0 {
		t.Skip("no examples of the supported types")
	}
}
