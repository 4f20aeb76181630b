package storetest

import (
	"bytes"
	"encoding/json"
	"net/url"
	"slices"
	"testing"

	"github.com/calaimfhir/calaimfhir/resources"
)

// fromJSON builds version v of a resource from JSON the way the service would.
func fromJSON(t testing.TB, typ, id string, v int64, body string) *resources.Resource {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader([]byte(body)))
	dec.UseNumber()
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("fixture %s/%s: %v", typ, id, err)
	}
	doc["resourceType"], doc["id"] = typ, id
	return build(typ, id, v, now(), doc)
}

// query parses a search in strict mode, so a test cannot silently lose a parameter.
func query(t testing.TB, typ, q string) *resources.Query {
	t.Helper()
	values, err := url.ParseQuery(q)
	if err != nil {
		t.Fatal(err)
	}
	sr, err := resources.ParseSearch(typ, values, "http://example.org/fhir", true)
	if err != nil {
		t.Fatalf("%s?%s: %v", typ, q, err)
	}
	sr.Query.Count = 100
	return &sr.Query
}

// expect runs each query and compares the sorted ids.
func expect(t *testing.T, s resources.Store, typ string, cases map[string][]string) {
	t.Helper()
	for q, want := range cases {
		page := search(t, s, query(t, typ, q))
		got := ids(page.Resources)
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s?%s: got %v, want %v", typ, q, got, want)
		}
	}
}

func init() {
	register("Search_Strings_PrefixContainsExact", func(t *testing.T, h Harness) {
		s, _ := h.OpenFresh(t)
		for id, body := range map[string]string{
			"jose":   `{"name":[{"family":"García","given":["José"]}],"address":[{"city":"San José"}]}`,
			"josie":  `{"name":[{"family":"Ray","given":["Josephine"]}]}`,
			"ann":    `{"name":[{"family":"Joseph","given":["Ann"]}]}`,
			"meta":   `{"name":[{"family":"a.*b(c","given":["$x\\y"]}]}`,
			"noname": `{"gender":"other"}`,
		} {
			mustPut(t, s, fromJSON(t, "Patient", id, 1, body))
		}
		expect(t, s, "Patient", map[string][]string{
			"name=jose":                {"jose", "josie", "ann"},
			"name=JOSÉ":                {"jose", "josie", "ann"},
			"given=jos":                {"jose", "josie"},
			"family=joseph":            {"ann"},
			"name:contains=seph":       {"josie", "ann"},
			"name:contains=ARCI":       {"jose"},
			"name:exact=José":          {"jose"},
			"name:exact=jose":          nil,
			"address-city=san":         {"jose"},
			"name=a.*":                 {"meta"},
			"name=.*":                  nil,
			"name:contains=*b(":        {"meta"},
			"given=$x\\":               {"meta"},
			"name=zz":                  nil,
			"name=jose,ray":            {"jose", "josie", "ann"},
			"name=gar,ray":             {"jose", "josie"},
			"name=jose&family=ray":     {"josie"},
			"name:missing=true":        {"noname"},
			"name:missing=false":       {"jose", "josie", "ann", "meta"},
			"gender:missing=true":      {"jose", "josie", "ann", "meta"},
			"gender:not=other":         {"jose", "josie", "ann", "meta"},
			"gender:not=other,unknown": {"jose", "josie", "ann", "meta"},
		})
	})

	register("Search_Dates_PrefixesAndPrecision", func(t *testing.T, h Harness) {
		s, _ := h.OpenFresh(t)
		for id, body := range map[string]string{
			"year":    `{"status":"final","code":{"text":"x"},"effectiveDateTime":"2024"}`,
			"instant": `{"status":"final","code":{"text":"x"},"effectiveDateTime":"2024-05-01T10:00:00-07:00"}`,
			"may":     `{"status":"final","code":{"text":"x"},"effectivePeriod":{"start":"2024-05-01","end":"2024-05-31"}}`,
			"open":    `{"status":"final","code":{"text":"x"},"effectivePeriod":{"start":"2024-06-15"}}`,
			"none":    `{"status":"final","code":{"text":"x"}}`,
		} {
			mustPut(t, s, fromJSON(t, "Observation", id, 1, body))
		}
		expect(t, s, "Observation", map[string][]string{
			"date=2024":                                  {"year", "instant", "may"},
			"date=2024-05":                               {"instant", "may"},
			"date=2024-05-01":                            {"instant"},
			"date=2024-05-01T17:00:00Z":                  {"instant"},
			"date=2024-05-01T10:00:00-07:00":             {"instant"},
			"date=2024-05-01T10:00:00Z":                  nil,
			"date=ne2024-05":                             {"year", "open"},
			"date=gt2024-05-31":                          {"year", "open"},
			"date=lt2024-05-01":                          {"year"},
			"date=ge2024-06":                             {"year", "open"},
			"date=le2024-05-01":                          {"year", "instant", "may"},
			"date=sa2024-05-31":                          {"open"},
			"date=eb2024-05-02":                          {"instant"},
			"date=gt2024-05-01&date=lt2024-06-01":        {"year", "may"},
			"date=2023,2024-05-01":                       {"instant"},
			"date=ap2024-05-01":                          {"instant", "may", "year", "open"}, // ±10% of 2.5 years
			"date=ap2024-05-01T10:00:00-07:00":           {"instant", "may", "year", "open"},
			"date:missing=true":                          {"none"},
			"date=2099":                                  nil,
			"date=ge2030-01-01":                          {"open"},
			"date=2024-05-01T10:00:00.000-07:00":         nil, // a second is not within a millisecond
			"date=gt2024-05-01T10:00:00-07:00&_id=may,x": {"may"},
		})
	})

	register("Search_Dates_MultipleValuesMatchOneByOne", func(t *testing.T, h Harness) {
		s, _ := h.OpenFresh(t)
		// Two location periods: January and March. February falls between them: no single
		// period is within February, though one starts after and one ends before it.
		mustPut(t, s, fromJSON(t, "Encounter", "e1", 1, `{"status":"finished","class":{"code":"AMB"},"location":[
			{"location":{"reference":"Location/a"},"period":{"start":"2024-01-01","end":"2024-01-02"}},
			{"location":{"reference":"Location/b"},"period":{"start":"2024-03-01","end":"2024-03-02"}}]}`))
		expect(t, s, "Encounter", map[string][]string{
			"location-period=2024-02": nil,
			"location-period=2024-01": {"e1"},
			"location-period=2024-03": {"e1"},
			"location-period=2024":    {"e1"},
		})
	})

	register("Search_NumbersAndQuantities", func(t *testing.T, h Harness) {
		s, _ := h.OpenFresh(t)
		for id, body := range map[string]string{
			"mg":  `{"status":"final","code":{"text":"x"},"valueQuantity":{"value":5.4,"system":"http://unitsofmeasure.org","code":"mg"}}`,
			"kg":  `{"status":"final","code":{"text":"x"},"valueQuantity":{"value":100,"system":"http://unitsofmeasure.org","code":"kg"}}`,
			"neg": `{"status":"final","code":{"text":"x"},"valueQuantity":{"value":-3,"unit":"mmol"}}`,
		} {
			mustPut(t, s, fromJSON(t, "Observation", id, 1, body))
		}
		expect(t, s, "Observation", map[string][]string{
			"value-quantity=5.4":                               {"mg"},
			"value-quantity=5":                                 {"mg"},
			"value-quantity=5.0":                               nil,
			"value-quantity=gt5":                               {"mg", "kg"},
			"value-quantity=lt0":                               {"neg"},
			"value-quantity=le100":                             {"mg", "neg", "kg"},
			"value-quantity=ge100.0":                           {"kg"},
			"value-quantity=ne5.4":                             {"kg", "neg"},
			"value-quantity=ap95":                              {"kg"},
			"value-quantity=5.4|http://unitsofmeasure.org|mg":  {"mg"},
			"value-quantity=5.4|http://unitsofmeasure.org|kg":  nil,
			"value-quantity=5.4||mg":                           {"mg"},
			"value-quantity=lt1||mmol":                         {"neg"},
			"value-quantity=gt1|http://unitsofmeasure.org|kg":  {"kg"},
			"value-quantity=gt1,lt0":                           {"mg", "kg", "neg"},
			"value-quantity=gt1&value-quantity=lt50":           {"mg"},
			"value-quantity:missing=true":                      nil,
			"value-quantity=100|http://unitsofmeasure.org|kg&": {"kg"},
		})
	})

	register("Search_TokenModifiers", func(t *testing.T, h Harness) {
		s, _ := h.OpenFresh(t)
		for id, body := range map[string]string{
			"dm": `{"clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"active"}]},
				"code":{"coding":[{"system":"http://hl7.org/fhir/sid/icd-10-cm","code":"Z59.41","display":"Food insecurity"}],"text":"Hungry often"},
				"subject":{"reference":"Patient/p1"}}`,
			"hs": `{"code":{"coding":[{"system":"http://hl7.org/fhir/sid/icd-10-cm","code":"Z59.01","display":"Sheltered homelessness"}]},
				"subject":{"reference":"Patient/p2"}}`,
		} {
			mustPut(t, s, fromJSON(t, "Condition", id, 1, body))
		}
		mustPut(t, s, fromJSON(t, "Patient", "p1", 1, `{"identifier":[{"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"MA"}]},"system":"urn:cin","value":"12345678A"}]}`))
		expect(t, s, "Condition", map[string][]string{
			"code=http://hl7.org/fhir/sid/icd-10-cm|Z59.41":     {"dm"},
			"code:not=http://hl7.org/fhir/sid/icd-10-cm|Z59.41": {"hs"},
			"code:text=food":               {"dm"},
			"code:text=hungry":             {"dm"},
			"code:text=shelt":              {"hs"},
			"clinical-status:missing=true": {"hs"},
			"subject:Patient=p1":           {"dm"},
			"patient=p2":                   {"hs"},
		})
		expect(t, s, "Patient", map[string][]string{
			"identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MA|12345678A": {"p1"},
			"identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|12345678A": nil,
		})
	})

	register("Search_ReferenceIdentifierAndComposite", func(t *testing.T, h Harness) {
		s, _ := h.OpenFresh(t)
		mustPut(t, s, fromJSON(t, "Claim", "c1", 1, `{"status":"active","use":"claim",
			"patient":{"identifier":{"system":"urn:cin","value":"12345678A"}},"created":"2025-01-05"}`))
		mustPut(t, s, fromJSON(t, "Observation", "o1", 1, `{"status":"final",
			"code":{"coding":[{"system":"http://loinc.org","code":"88122-7"}]},
			"valueCodeableConcept":{"coding":[{"system":"http://loinc.org","code":"LA28397-0"}]}}`))
		expect(t, s, "Claim", map[string][]string{
			"patient:identifier=urn:cin|12345678A": {"c1"},
			"patient:identifier=12345678A":         {"c1"},
			"patient:identifier=urn:x|12345678A":   nil,
			"created=2025-01":                      {"c1"},
		})
		expect(t, s, "Observation", map[string][]string{
			"code-value-concept=http://loinc.org|88122-7$http://loinc.org|LA28397-0": {"o1"},
			"code-value-concept=88122-7$LA28397-0":                                   {"o1"},
			"code-value-concept=88122-7$LA28398-8":                                   nil,
		})
	})

	register("Search_ValuesFollowUpdatesAndDeletes", func(t *testing.T, h Harness) {
		s, _ := h.OpenFresh(t)
		mustPut(t, s, fromJSON(t, "Patient", "p1", 1, `{"name":[{"family":"Alvarez"}],"birthDate":"1980-02-03"}`))
		mustPut(t, s, fromJSON(t, "Patient", "p1", 2, `{"name":[{"family":"Brown"}],"birthDate":"1990-02-03"}`))
		expect(t, s, "Patient", map[string][]string{
			"family=alv":          nil,
			"family=bro":          {"p1"},
			"birthdate=1980":      nil,
			"birthdate=1990":      {"p1"},
			"family:exact=Brown":  {"p1"},
			"family:missing=true": nil,
		})
		mustPut(t, s, tombstone("Patient", "p1", 3))
		expect(t, s, "Patient", map[string][]string{
			"family=bro":          nil,
			"birthdate=1990":      nil,
			"family:missing=true": nil,
		})
	})
}

func init() {
	// Updates keep the value rows the new version shares with the old one and replace the
	// rest (stores may do either): every search must see exactly the new version's values.
	register("Search_ValuesPartlyKeptAcrossUpdates", func(t *testing.T, h Harness) {
		s, _ := h.OpenFresh(t)
		mustPut(t, s, fromJSON(t, "Patient", "p1", 1, `{"name":[{"family":"Alvarez","given":["Ana","Bea"]}],"birthDate":"1980-02-03","address":[{"city":"Fresno"}]}`))
		mustPut(t, s, fromJSON(t, "Patient", "p2", 1, `{"name":[{"family":"Baker","given":["Bob"]}],"birthDate":"1970-01-01"}`))
		mustPut(t, s, fromJSON(t, "Observation", "o1", 1, `{"status":"final","code":{"text":"score"},"valueQuantity":{"value":5}}`))
		mustPut(t, s, fromJSON(t, "Patient", "p1", 2, `{"name":[{"family":"Alvarez","given":["Bea","Cruz"]}],"birthDate":"1980-02-03","address":[{"city":"Merced"}]}`))
		mustPut(t, s, fromJSON(t, "Observation", "o1", 2, `{"status":"final","code":{"text":"score"},"valueQuantity":{"value":7}}`))
		expect(t, s, "Patient", map[string][]string{
			"family=alv":          {"p1"},
			"given=ana":           nil,
			"given=bea":           {"p1"},
			"given=cruz":          {"p1"},
			"address-city=fresno": nil,
			"address-city=merced": {"p1"},
			"birthdate=1980":      {"p1"},
			"birthdate=1980&given=cruz&family:exact=Alvarez": {"p1"},
		})
		expect(t, s, "Observation", map[string][]string{
			"value-quantity=5": nil,
			"value-quantity=7": {"o1"},
		})
		order := func(q string) []string {
			t.Helper()
			return ids(search(t, s, query(t, "Patient", q)).Resources)
		}
		// p1's lowest given name is Bea (< Bob), its highest Cruz (> Bob).
		if got := order("_sort=given"); !slices.Equal(got, []string{"p1", "p2"}) {
			t.Errorf("_sort=given after the update: %v", got)
		}
		if got := order("_sort=-given"); !slices.Equal(got, []string{"p1", "p2"}) {
			t.Errorf("_sort=-given after the update: %v", got)
		}
		mustPut(t, s, fromJSON(t, "Patient", "p1", 3, `{"name":[{"family":"Alvarez","given":["Cruz"]}],"birthDate":"1980-02-03"}`))
		if got := order("_sort=given"); !slices.Equal(got, []string{"p2", "p1"}) {
			t.Errorf("_sort=given after the second update: %v", got)
		}
		expect(t, s, "Patient", map[string][]string{
			"given=bea":            nil,
			"address-city=merced":  nil,
			"address:missing=true": {"p1", "p2"},
			"birthdate=1980":       {"p1"},
		})
	})
}
