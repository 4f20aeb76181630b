package sqlitestore

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/calaimfhir/calaimfhir/internal/bench"
	"github.com/calaimfhir/calaimfhir/resources"
)

// TestUnindexedSQL: the SQL forms of resources.Unindexed (which rows updates delete, which
// the migration drops) agree with it on every key of the benchmark's documents and of a
// screening Observation (composites), and on hand-made keys of every form.
func TestUnindexedSQL(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	keys := []string{
		resources.PresentKey("owner"), resources.TokenKey("identifier", "urn:x", "1"),
		resources.TokenKey("status", "", "final"), resources.TokenCodeKey("status", "final"),
		resources.TokenSystemKey("identifier", "urn:x"), resources.TokenCodeKey("code", ""),
		resources.RefKey("subject", "Patient", "p1"), resources.RefIDKey("subject", "p1"),
		resources.OfTypeKey("http://terminology.hl7.org/CodeSystem/v2-0203", "MA", "9"),
		resources.TokenKey("family:exact", "", "Rivera"),
		resources.CompositeKey("code-value-concept", resources.TokenSystemKey("", "http://loinc.org"), resources.TokenCodeKey("", "LA1")),
		resources.CompositeKey("code-value-concept", resources.TokenCodeKey("", "1-1"), resources.TokenSystemKey("", "http://loinc.org")),
		resources.CompositeKey("code-value-concept", resources.TokenKey("", "http://loinc.org", "1-1"), resources.TokenCodeKey("", "LA1")),
		resources.CompositeKey("code-value-concept", resources.TokenKey("", "", "1-1"), resources.TokenCodeKey("", "LA1")),
		resources.CompositeKey("code-value-concept", resources.TokenCodeKey("", "1-1"), resources.TokenKey("", "", "LA1")),
		resources.OfTypeKey("", "MA", "9"), resources.TokenKey("a:exact", "", "x"), resources.TokenKey("exact", "", "x"),
		resources.TokenKey("x:exactly", "", "y"), resources.TokenKey("subject:identifier", "", "m1"),
		resources.TokenKey("subject:identifier", "urn:x", "m1"), resources.TokenKey("active", "", "true"),
	}
	docs := bench.SampleDocuments(1)
	docs["Observation"] = []byte(`{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"88124-3"}]},
		"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"survey"}]}],
		"subject":{"reference":"Patient/p1"},"valueCodeableConcept":{"coding":[{"system":"http://loinc.org","code":"LA19952-3"}]}}`)
	for typ, body := range docs {
		var doc map[string]any
		if err := json.Unmarshal(body, &doc); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, resources.ExtractKeys(typ, doc).Eq...)
	}
	var both [2]int
	for _, k := range keys {
		want := resources.Unindexed(k)
		var byValue, byKey bool
		if err := s.r.QueryRowContext(ctx, `SELECT `+unindexedSQL("value")+` FROM json_each(json_array(?))`, k).Scan(&byValue); err != nil {
			t.Fatal(err)
		}
		if err := s.r.QueryRowContext(ctx, `SELECT `+unindexedSQL("key")+` FROM (SELECT ? AS key)`, k).Scan(&byKey); err != nil {
			t.Fatal(err)
		}
		if byValue != want || byKey != want {
			t.Errorf("%q: Unindexed %v, SQL on json_each %v, on search_keys.key %v", k, want, byValue, byKey)
		}
		if want {
			both[1]++
		} else {
			both[0]++
		}
	}
	if both[0] == 0 || both[1] == 0 {
		t.Fatalf("keys indexed and not: %v; the test needs both", both)
	}
}
