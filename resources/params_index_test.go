package resources_test

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"github.com/calaimfhir/calaimfhir/resources"
)

// setPath puts v at a dotted path of doc, building the objects on the way; a step
// "name[key=value]" becomes an array holding one object with that key.
func setPath(doc map[string]any, path string, v any) {
	steps := strings.Split(path, ".")
	cur := doc
	for i, step := range steps {
		name, cond, filtered := strings.Cut(step, "[")
		last := i == len(steps)-1
		if filtered {
			key, want, _ := strings.Cut(strings.TrimSuffix(cond, "]"), "=")
			elem := map[string]any{key: want}
			if last {
				if m, ok := v.(map[string]any); ok {
					for k, x := range m {
						elem[k] = x
					}
				}
			}
			cur[name] = []any{elem}
			cur = elem
			continue
		}
		if last {
			cur[name] = v
			return
		}
		next, _ := cur[name].(map[string]any)
		if next == nil {
			next = map[string]any{}
			cur[name] = next
		}
		cur = next
	}
}

// sample is a value of a parameter's type and a search value that finds it.
func sample(p resources.Param, path string) (value any, query string) {
	switch p.Type {
	case resources.ParamToken:
		if strings.Contains(path, "[") {
			return map[string]any{"value": "c1"}, "c1"
		}
		return map[string]any{"coding": []any{map[string]any{"system": "http://example.org/cs", "code": "c1"}}}, "http://example.org/cs|c1"
	case resources.ParamReference:
		target := "Patient"
		if len(p.Targets) > 0 {
			target = p.Targets[0]
		}
		return map[string]any{"reference": target + "/p1"}, target + "/p1"
	case resources.ParamURI:
		return "http://example.org/u/1", "http://example.org/u/1"
	case resources.ParamString:
		return "Álvaro", "alv"
	case resources.ParamDate:
		return "2024-05-01", "2024-05"
	case resources.ParamNumber:
		return json.Number("5"), "5"
	case resources.ParamQuantity:
		return map[string]any{"value": json.Number("5"), "system": "http://unitsofmeasure.org", "code": "mg"}, "5|http://unitsofmeasure.org|mg"
	case resources.ParamSpecial:
		return map[string]any{"latitude": json.Number("37.8"), "longitude": json.Number("-122.27")}, "37.81|-122.27|5|km"
	}
	return nil, ""
}

func matches(t *testing.T, typ string, doc map[string]any, query url.Values) bool {
	t.Helper()
	sr, err := resources.ParseSearch(typ, query, "", true)
	if err != nil {
		t.Fatalf("%s?%s: %v", typ, query.Encode(), err)
	}
	k := resources.ExtractKeys(typ, doc)
	return resources.Matches(sr.Query.Clauses, &resources.Resource{Type: typ, ID: "x"}, &k)
}

// TestParams_EveryParameterIsIndexed: for every parameter of every type (each of its paths), a
// resource holding a value there is found by searching for that value, and not by a search
// for another value: the value is extracted into the keys the query compiles to.
func TestParams_EveryParameterIsIndexed(t *testing.T) {
	for _, typ := range resources.Types {
		for _, p := range resources.Params(typ) {
			for _, path := range p.Paths {
				v, q := sample(p, path)
				doc := map[string]any{"resourceType": typ}
				setPath(doc, path, v)
				if !matches(t, typ, doc, url.Values{p.Name: {q}}) {
					t.Errorf("%s?%s=%s does not find a value at %s", typ, p.Name, q, path)
				}
				if !matches(t, typ, doc, url.Values{p.Name + ":missing": {"false"}}) {
					t.Errorf("%s?%s:missing=false does not find a value at %s", typ, p.Name, path)
				}
				other := map[string]any{"resourceType": typ}
				if matches(t, typ, other, url.Values{p.Name: {q}}) {
					t.Errorf("%s?%s=%s finds a resource without a value", typ, p.Name, q)
				}
			}
		}
	}
}

// TestParams_Composites: every composite finds the pair from one element and not a pair
// whose parts come from different elements.
func TestParams_Composites(t *testing.T) {
	code := func(c string) map[string]any {
		return map[string]any{"coding": []any{map[string]any{"system": "http://loinc.org", "code": c}}}
	}
	for _, tc := range []struct {
		typ, name, query string
		doc              string
		want             bool
	}{
		{"Observation", "code-value-quantity", "http://loinc.org|88122-7$gt2|http://unitsofmeasure.org|{score}",
			`{"code":CODE,"valueQuantity":{"value":3,"system":"http://unitsofmeasure.org","code":"{score}"}}`, true},
		{"Observation", "code-value-quantity", "http://loinc.org|88122-7$gt3", `{"code":CODE,"valueQuantity":{"value":3}}`, false},
		{"Observation", "code-value-quantity", "88122-7$3", `{"code":CODE,"valueQuantity":{"value":3}}`, true},
		{"Observation", "code-value-date", "http://loinc.org|88122-7$ge2024-05", `{"code":CODE,"valueDateTime":"2024-05-02"}`, true},
		{"Observation", "code-value-date", "88122-7$2024-05", `{"code":CODE,"valuePeriod":{"start":"2024-05-01","end":"2024-05-03"}}`, true},
		{"Observation", "code-value-date", "88122-7$lt2024", `{"code":CODE,"valueDateTime":"2024-05-02"}`, false},
		{"Observation", "code-value-string", "88122-7$often", `{"code":CODE,"valueString":"Often true"}`, true},
		{"Observation", "code-value-string", "99999-9$often", `{"code":CODE,"valueString":"Often true"}`, false},
		{"Observation", "component-code-value-quantity", "88122-7$3", `{"code":{"text":"x"},"component":[{"code":CODE,"valueQuantity":{"value":3}}]}`, true},
		{"Observation", "component-code-value-quantity", "88122-7$3",
			`{"component":[{"code":CODE,"valueQuantity":{"value":9}},{"code":{"text":"other"},"valueQuantity":{"value":3}}]}`, false},
		{"Observation", "combo-code-value-quantity", "88122-7$3", `{"code":CODE,"valueQuantity":{"value":3}}`, true},
		{"Observation", "combo-code-value-quantity", "88122-7$3", `{"code":{"text":"x"},"component":[{"code":CODE,"valueQuantity":{"value":3}}]}`, true},
		{"Questionnaire", "context-type-value", "http://terminology.hl7.org/CodeSystem/usage-context-type|focus$http://snomed.info/sct|1",
			`{"useContext":[{"code":{"system":"http://terminology.hl7.org/CodeSystem/usage-context-type","code":"focus"},"valueCodeableConcept":{"coding":[{"system":"http://snomed.info/sct","code":"1"}]}}]}`, true},
		{"Questionnaire", "context-type-quantity", "age$ge18",
			`{"useContext":[{"code":{"system":"http://terminology.hl7.org/CodeSystem/usage-context-type","code":"age"},"valueQuantity":{"value":21}}]}`, true},
		{"Questionnaire", "context-type-quantity", "age$ge18",
			`{"useContext":[{"code":{"code":"age"},"valueQuantity":{"value":10}},{"code":{"code":"other"},"valueQuantity":{"value":21}}]}`, false},
		{"DocumentReference", "relationship", "replaces$DocumentReference/d0",
			`{"relatesTo":[{"code":"replaces","target":{"reference":"DocumentReference/d0"}}]}`, true},
		{"DocumentReference", "relationship", "appends$DocumentReference/d0",
			`{"relatesTo":[{"code":"replaces","target":{"reference":"DocumentReference/d0"}}]}`, false},
	} {
		var doc map[string]any
		raw := strings.ReplaceAll(tc.doc, "CODE", mustJSON(code("88122-7")))
		dec := json.NewDecoder(strings.NewReader(raw))
		dec.UseNumber()
		if err := dec.Decode(&doc); err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
		doc["resourceType"] = tc.typ
		if got := matches(t, tc.typ, doc, url.Values{tc.name: {tc.query}}); got != tc.want {
			t.Errorf("%s?%s=%s on %s: %v, want %v", tc.typ, tc.name, tc.query, raw, got, tc.want)
		}
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestParams_URIAboveBelow_PhoneEmail_Near covers the modifiers and filters added for R4's
// uri and telecom expressions and Location near.
func TestParams_URIAboveBelow_PhoneEmail_Near(t *testing.T) {
	q := map[string]any{"resourceType": "Questionnaire", "url": "http://example.org/fhir/Questionnaire/phq-9"}
	for query, want := range map[string]bool{
		"url=http://example.org/fhir/Questionnaire/phq-9":                   true,
		"url:below=http://example.org/fhir/":                                true,
		"url:below=http://example.org/fhir/Questionnaire/phq":               true,
		"url:below=http://EXAMPLE.org/fhir/":                                false,
		"url:below=http://example.org/other/":                               false,
		"url:above=http://example.org/fhir/Questionnaire/phq-9/_history/2":  true,
		"url:above=http://example.org/fhir/Questionnaire/phq-9":             true,
		"url:above=http://example.org/fhir/Questionnaire":                   false,
		"url:above=http://example.org/fhir/Questionnaire/phq-10/_history/2": false,
		"_profile:below=http://example.org/nothing":                         false,
	} {
		v, _ := url.ParseQuery(query)
		if got := matches(t, "Questionnaire", q, v); got != want {
			t.Errorf("Questionnaire?%s: %v, want %v", query, got, want)
		}
	}
	p := map[string]any{"resourceType": "Patient", "telecom": []any{
		map[string]any{"system": "phone", "value": "555-0100"}, map[string]any{"system": "email", "value": "a@example.org"}}}
	for query, want := range map[string]bool{
		"phone=555-0100": true, "email=a@example.org": true, "phone=a@example.org": false, "email=555-0100": false,
		"telecom=555-0100": true, "telecom=a@example.org": true,
	} {
		v, _ := url.ParseQuery(query)
		if got := matches(t, "Patient", p, v); got != want {
			t.Errorf("Patient?%s: %v, want %v", query, got, want)
		}
	}
	// Oakland (37.8044, -122.2712); Sacramento is 110 km away; Auckland across the antimeridian.
	loc := func(lat, long string) map[string]any {
		return map[string]any{"resourceType": "Location", "position": map[string]any{"latitude": json.Number(lat), "longitude": json.Number(long)}}
	}
	for _, tc := range []struct {
		doc   map[string]any
		query string
		want  bool
	}{
		{loc("37.8044", "-122.2712"), "37.8|-122.27|1|km", true},
		{loc("38.5816", "-121.4944"), "37.8044|-122.2712|50|km", false},
		{loc("38.5816", "-121.4944"), "37.8044|-122.2712|120|km", true},
		{loc("38.5816", "-121.4944"), "37.8044|-122.2712|75|[mi_i]", true},
		{loc("38.5816", "-121.4944"), "37.8044|-122.2712", false}, // default 10 km
		{loc("-36.85", "174.76"), "-36.85|-179.9|300|km", false},
		{loc("-36.85", "174.76"), "-36.85|-179.9|600|km", true},
		{loc("-36.85", "179.95"), "-36.85|-179.95|20|km", true},
		{map[string]any{"resourceType": "Location"}, "37.8|-122.27|1000|km", false},
	} {
		if got := matches(t, "Location", tc.doc, url.Values{"near": {tc.query}}); got != tc.want {
			t.Errorf("near=%s on %v: %v, want %v", tc.query, tc.doc["position"], got, tc.want)
		}
	}
	if d := resources.DistanceKm(37.8044, -122.2712, 38.5816, -121.4944); d < 100 || d > 120 {
		t.Errorf("Oakland–Sacramento %f km", d)
	}
	for _, bad := range []string{"x|1", "91|0|1", "0|0|-1", "0|0|1|parsec", "0|0,1|1|1", "1"} {
		if _, err := resources.ParseSearch("Location", url.Values{"near": {bad}}, "", false); !resources.IsKind(err, resources.KindBadRequest) {
			t.Errorf("near=%s: %v, want a bad request", bad, err)
		}
	}
}
