package storetest

import (
	"testing"
)

// The parameter kinds added to match R4's definitions: token$quantity, token$date,
// token$string and token$reference composites, uri :above/:below, telecom filtered by system,
// and Location near, answered by each store from its indexes.
func init() {
	register("Search_R4Kinds_CompositesNearURIModifiers", func(t *testing.T, h Harness) {
		s, _ := h.OpenFresh(t)
		const loinc = `{"coding":[{"system":"http://loinc.org","code":"88122-7"}]}`
		for _, r := range []struct{ typ, id, body string }{
			{"Observation", "o3", `{"status":"final","code":` + loinc + `,"valueQuantity":{"value":3,"system":"http://unitsofmeasure.org","code":"{score}"}}`},
			{"Observation", "o1", `{"status":"final","code":` + loinc + `,"valueQuantity":{"value":1}}`},
			{"Observation", "od", `{"status":"final","code":` + loinc + `,"valueDateTime":"2024-05-02T10:00:00Z"}`},
			{"Observation", "os", `{"status":"final","code":` + loinc + `,"valueString":"Often true"}`},
			{"Observation", "oc", `{"status":"final","code":{"text":"panel"},"component":[{"code":` + loinc + `,"valueQuantity":{"value":3}},{"code":{"text":"other"},"valueQuantity":{"value":9}}]}`},
			{"DocumentReference", "d1", `{"status":"current","content":[{"attachment":{"url":"http://example.org/docs/1"}}],"relatesTo":[{"code":"replaces","target":{"reference":"DocumentReference/d0"}}]}`},
			{"Questionnaire", "q1", `{"status":"active","url":"http://example.org/fhir/Questionnaire/phq-9"}`},
			{"Patient", "p1", `{"telecom":[{"system":"phone","value":"555-0100"},{"system":"email","value":"a@example.org"}]}`},
			{"Location", "oakland", `{"position":{"latitude":37.8044,"longitude":-122.2712}}`},
			{"Location", "sacramento", `{"position":{"latitude":38.5816,"longitude":-121.4944}}`},
			{"Location", "auckland", `{"position":{"latitude":-36.85,"longitude":174.76}}`},
			{"Location", "nowhere", `{"name":"No position"}`},
		} {
			mustPut(t, s, fromJSON(t, r.typ, r.id, 1, r.body))
		}
		expect(t, s, "Observation", map[string][]string{
			"code-value-quantity=http://loinc.org|88122-7$gt2":                {"o3"},
			"code-value-quantity=88122-7$3|http://unitsofmeasure.org|{score}": {"o3"},
			"code-value-quantity=88122-7$le3":                                 {"o1", "o3"},
			"code-value-quantity=99999-9$3":                                   nil,
			"component-code-value-quantity=88122-7$3":                         {"oc"},
			"component-code-value-quantity=88122-7$9":                         nil,
			"combo-code-value-quantity=88122-7$3":                             {"o3", "oc"},
			"code-value-date=88122-7$2024-05":                                 {"od"},
			"code-value-date=88122-7$lt2024":                                  nil,
			"code-value-string=88122-7$often":                                 {"os"},
			"code-value-quantity:missing=false":                               {"o1", "o3"},
		})
		expect(t, s, "DocumentReference", map[string][]string{
			"relationship=replaces$DocumentReference/d0": {"d1"},
			"relationship=appends$DocumentReference/d0":  nil,
			"location=http://example.org/docs/1":         {"d1"},
			"location:below=http://example.org/docs/":    {"d1"},
		})
		expect(t, s, "Questionnaire", map[string][]string{
			"url:below=http://example.org/fhir/":                               {"q1"},
			"url:below=http://example.org/fhir/Questionnaire/phq-10":           nil,
			"url:above=http://example.org/fhir/Questionnaire/phq-9/_history/3": {"q1"},
			"url:above=http://example.org/fhir/Questionnaire":                  nil,
		})
		expect(t, s, "Patient", map[string][]string{
			"phone=555-0100": {"p1"}, "email=555-0100": nil, "email=a@example.org": {"p1"},
		})
		expect(t, s, "Location", map[string][]string{
			"near=37.8|-122.27|5|km":        {"oakland"},
			"near=37.8044|-122.2712|150|km": {"oakland", "sacramento"},
			"near=-36.85|-179.9|600|km":     {"auckland"},
			"near=-36.85|-179.9|300|km":     nil,
			"near:missing=true":             {"nowhere"},
		})
	})
}
