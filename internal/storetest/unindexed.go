package storetest

import (
	"testing"
)

// System-only and no-system token searches (param=system|, param=|code, alone or as a
// composite's part) and :missing
// match on keys a store may keep out of its index (resources.Unindexed): the answers must not
// depend on it, whether such a key is the search's only clause, beside a key that drives it,
// negated, or on a resource updated since.
func init() {
	register("Search_UnindexedKeys_SystemOnlyAndMissing", func(t *testing.T, h Harness) {
		s, _ := h.OpenFresh(t)
		const loinc = `"code":{"coding":[{"system":"http://loinc.org","code":"88124-3"}]}`
		for _, r := range []struct{ typ, id, body string }{
			{"Observation", "at-risk", `{"status":"final",` + loinc + `,"subject":{"reference":"Patient/p1"},"valueCodeableConcept":{"coding":[{"system":"http://loinc.org","code":"LA19952-3"}]}}`},
			{"Observation", "no-risk", `{"status":"final",` + loinc + `,"subject":{"reference":"Patient/p2"},"valueCodeableConcept":{"coding":[{"system":"http://loinc.org","code":"LA19983-8"}]}}`},
			{"Observation", "local", `{"status":"final","code":{"coding":[{"system":"urn:local","code":"x"}]},"subject":{"reference":"Patient/p1"},"valueCodeableConcept":{"coding":[{"system":"urn:local","code":"y"}]}}`},
			{"Observation", "text-only", `{"status":"preliminary","code":{"text":"no coding"}}`},
			{"Patient", "p1", `{"identifier":[{"system":"urn:cin","value":"1A"},{"system":"urn:mrn","value":"m1"}]}`},
			{"Patient", "p2", `{"identifier":[{"system":"urn:cin","value":"2B"}]}`},
			{"Patient", "p3", `{"identifier":[{"value":"no-system"}]}`},
			{"Patient", "p4", `{"gender":"female"}`},
		} {
			mustPut(t, s, fromJSON(t, r.typ, r.id, 1, r.body))
		}
		expect(t, s, "Patient", map[string][]string{
			"identifier=urn:cin|":                    {"p1", "p2"},
			"identifier=urn:mrn|":                    {"p1"},
			"identifier=urn:none|":                   nil,
			"identifier=urn:cin|,urn:mrn|":           {"p1", "p2"},
			"identifier=urn:cin|&identifier=2B":      {"p2"},
			"identifier=urn:cin|&_id=p1,p3":          {"p1"},
			"identifier:not=urn:cin|":                {"p3", "p4"},
			"identifier:missing=true":                {"p4"},
			"identifier:missing=false&gender=female": nil,
			"gender:missing=false":                   {"p4"},
			"identifier=|no-system":                  {"p3"},
			"identifier=|1A":                         nil,
			"gender=|female":                         {"p4"},
			"gender=|female&identifier:missing=true": {"p4"},
		})
		expect(t, s, "Observation", map[string][]string{
			"code=http://loinc.org|":                                        {"at-risk", "no-risk"},
			"code=http://loinc.org|&subject=Patient/p1":                     {"at-risk"},
			"value-concept=http://loinc.org|&status=final":                  {"at-risk", "no-risk"},
			"code-value-concept=http://loinc.org|$LA19952-3":                {"at-risk"},
			"code-value-concept=88124-3$http://loinc.org|":                  {"at-risk", "no-risk"},
			"code-value-concept=http://loinc.org|$http://loinc.org|":        {"at-risk", "no-risk"},
			"code-value-concept=urn:local|$http://loinc.org|":               nil,
			"code-value-concept=http://loinc.org|88124-3$http://loinc.org|": {"at-risk", "no-risk"},
			"value-concept:missing=true":                                    {"text-only"},
			"status=|final":                                                 {"at-risk", "no-risk", "local"},
			"status=|final&subject=Patient/p1":                              {"at-risk", "local"},
			"status:not=|final":                                             {"text-only"},
			"code-value-concept=http://loinc.org|88124-3$|LA19952-3":        nil,
		})
		// An update moves the keys: the old version's must stop matching, the new one's match.
		mustPut(t, s, fromJSON(t, "Patient", "p2", 2, `{"identifier":[{"system":"urn:mrn","value":"m2"}]}`))
		expect(t, s, "Patient", map[string][]string{
			"identifier=urn:cin|": {"p1"},
			"identifier=urn:mrn|": {"p1", "p2"},
		})
	})
}
