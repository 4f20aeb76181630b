package server_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/calaimfhir/calaimfhir/internal/fhirtest"
	"github.com/calaimfhir/calaimfhir/profiles"
)

func startConformance(t *testing.T, opts fhirtest.Options) *fhirtest.Server {
	t.Helper()
	store, _ := fhirtest.SQLite.OpenFresh(t)
	opts.AnyReferences = true
	return fhirtest.Start(t, store, opts)
}

func profileFixture(t testing.TB, profile, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fhirtest.RepoRoot(), "testdata", "profiles", profile, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// parameter finds a named parameter of a Parameters answer.
func parameter(t testing.TB, r *fhirtest.Response, name string) map[string]any {
	t.Helper()
	var p struct{ Parameter []map[string]any }
	if err := json.Unmarshal(r.Body, &p); err != nil {
		t.Fatal(err)
	}
	for _, x := range p.Parameter {
		if x["name"] == name {
			return x
		}
	}
	t.Fatalf("no parameter %s in %s", name, r.Body)
	return nil
}

func expressions(t testing.TB, r *fhirtest.Response, severity string) []string {
	t.Helper()
	var oo struct {
		ResourceType string
		Issue        []struct {
			Severity   string
			Expression []string
		}
	}
	if err := json.Unmarshal(r.Body, &oo); err != nil || oo.ResourceType != "OperationOutcome" {
		t.Fatalf("not an OperationOutcome: %s", r.Body)
	}
	var out []string
	for _, is := range oo.Issue {
		if is.Severity == severity {
			out = append(out, is.Expression...)
		}
	}
	slices.Sort(out)
	return out
}

func TestStructureDefinition_ReadAndSearchByURL(t *testing.T) {
	s := startConformance(t, fhirtest.Options{})
	r := s.Do("GET", "/fhir/StructureDefinition/calaim-patient", nil)
	wantStatus(t, r, http.StatusOK)
	sd := r.JSON(t)
	if sd["url"] != profiles.PatientProfile || sd["snapshot"] == nil || sd["differential"] == nil {
		t.Fatalf("StructureDefinition lacks url, snapshot or differential: %.300s", r.Body)
	}
	snap := sd["snapshot"].(map[string]any)["element"].([]any)
	var identifierMin any
	for _, e := range snap {
		if e.(map[string]any)["id"] == "Patient.identifier" {
			identifierMin = e.(map[string]any)["min"]
		}
	}
	if identifierMin != json.Number("1") {
		t.Errorf("snapshot Patient.identifier min = %v, want 1 (from the differential)", identifierMin)
	}
	if len(snap) < 30 {
		t.Errorf("snapshot has %d elements; want every base Patient element", len(snap))
	}

	r = s.Do("GET", "/fhir/StructureDefinition?url="+url.QueryEscape(profiles.ClaimProfile), nil)
	wantStatus(t, r, http.StatusOK)
	if b := r.JSON(t); b["total"] != json.Number("1") {
		t.Fatalf("search by url: total %v, want 1", b["total"])
	}
	r = s.Do("GET", "/fhir/StructureDefinition?type=Extension", nil)
	if b := r.JSON(t); b["total"] != json.Number("3") {
		t.Fatalf("search by type=Extension: total %v, want 3", b["total"])
	}
	wantOutcome(t, s.Do("GET", "/fhir/StructureDefinition/nope", nil), http.StatusNotFound, "not-found")
	wantOutcome(t, s.Do("GET", "/fhir/StructureDefinition?name=x", nil), http.StatusBadRequest, "")
	wantOutcome(t, s.Do("GET", "/fhir/ValueSet?type=x", nil), http.StatusBadRequest, "")
	wantOutcome(t, s.Do("GET", "/fhir/ValueSet/calaim-services", nil, "Authorization", ""), http.StatusUnauthorized, "")
	wantStatus(t, s.Do("GET", "/fhir/CodeSystem/icd10cm-sdoh", nil), http.StatusOK)
	// The definitions are read-only.
	sdBody := []byte(`{"resourceType":"StructureDefinition"}`)
	for _, req := range [][2]string{{"POST", "/fhir/StructureDefinition"}, {"PUT", "/fhir/StructureDefinition/calaim-patient"},
		{"DELETE", "/fhir/ValueSet/calaim-services"}, {"PUT", "/fhir/CodeSystem?url=x"}} {
		r := s.Do(req[0], req[1], sdBody)
		if r.Status != http.StatusNotFound && r.Status != http.StatusMethodNotAllowed {
			t.Errorf("%s %s: %d %s", req[0], req[1], r.Status, r.Body)
		}
	}
}

func TestValueSetExpand(t *testing.T) {
	s := startConformance(t, fhirtest.Options{})
	cs := url.QueryEscape(profiles.Base + "/ValueSet/community-supports")
	tests := []struct {
		name, method, path string
		body               string
		total              int
		has, lacks         string
	}{
		{"community supports", "GET", "/fhir/ValueSet/$expand?url=" + cs, "", 15, "cs-recuperative-care", "chw-health-navigation"},
		{"instance", "GET", "/fhir/ValueSet/chw-billing-codes/$expand", "", 5, "G0019", "H0043"},
		{"versioned url", "GET", "/fhir/ValueSet/$expand?url=" + cs + url.QueryEscape("|2026.1"), "", 15, "cs-sobering-centers", "chw-"},
		{"filter", "GET", "/fhir/ValueSet/$expand?url=" + cs + "&filter=housing", "", 4, "cs-housing-deposits", "cs-sobering-centers"},
		{"Z-codes in force on 2021-06-01", "GET", "/fhir/ValueSet/sdoh-zcodes/$expand?date=2021-06-01", "", 27, `"Z59.0"`, "Z59.41"},
		{"POST Parameters", "POST", "/fhir/ValueSet/$expand",
			`{"resourceType":"Parameters","parameter":[{"name":"url","valueUri":"` + profiles.Base + `/ValueSet/ecm-populations-of-focus"}]}`, 10, `"1a"`, "cs-"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var body []byte
			if tc.body != "" {
				body = []byte(tc.body)
			}
			r := s.Do(tc.method, tc.path, body)
			wantStatus(t, r, http.StatusOK)
			var vs struct {
				ResourceType string
				Expansion    struct {
					Total    int
					Contains []map[string]any
				}
			}
			json.Unmarshal(r.Body, &vs)
			if vs.ResourceType != "ValueSet" || vs.Expansion.Total != tc.total || len(vs.Expansion.Contains) != tc.total {
				t.Fatalf("total %d (%d listed), want %d: %.400s", vs.Expansion.Total, len(vs.Expansion.Contains), tc.total, r.Body)
			}
			if !strings.Contains(string(r.Body), tc.has) || strings.Contains(string(r.Body), tc.lacks) {
				t.Errorf("expansion should hold %s and not %s", tc.has, tc.lacks)
			}
		})
	}
	wantOutcome(t, s.Do("GET", "/fhir/ValueSet/$expand", nil), http.StatusBadRequest, "")
	wantOutcome(t, s.Do("GET", "/fhir/ValueSet/$expand?url=http://example.org/none", nil), http.StatusNotFound, "not-found")
	wantOutcome(t, s.Do("GET", "/fhir/ValueSet/nope/$expand", nil), http.StatusNotFound, "not-found")
	wantOutcome(t, s.Do("GET", "/fhir/ValueSet/sdoh-zcodes/$expand?count=-1", nil), http.StatusBadRequest, "")
	wantOutcome(t, s.Do("POST", "/fhir/ValueSet/$expand", []byte(`{"resourceType":"Patient"}`)), http.StatusBadRequest, "")
}

func TestValueSetValidateCode_DateOfService(t *testing.T) {
	s := startConformance(t, fhirtest.Options{})
	z := "/fhir/ValueSet/sdoh-zcodes/$validate-code?system=" + url.QueryEscape(profiles.ICD10CMSystem)
	tests := []struct {
		name, method, path, body string
		want                     bool
	}{
		{"Z59.41 after FY22", "GET", z + "&code=Z59.41&date=2022-01-05", "", true},
		{"Z59.41 before FY22", "GET", z + "&code=Z59.41&date=2021-09-30", "", false},
		{"Z59.0 header since FY22", "GET", z + "&code=Z59.0&date=2024-01-01", "", false},
		{"Z59.0 before FY22", "GET", z + "&code=Z59.0&date=2021-01-01", "", true},
		{"no date", "GET", z + "&code=Z59.86", "", true},
		{"not a Z-code", "GET", z + "&code=E11.9", "", false},
		{"coding via POST", "POST", "/fhir/ValueSet/$validate-code", `{"resourceType":"Parameters","parameter":[
			{"name":"url","valueUri":"` + profiles.Base + `/ValueSet/chw-billing-codes"},
			{"name":"coding","valueCoding":{"system":"` + profiles.HCPCSSystem + `","code":"G0022"}},
			{"name":"date","valueDate":"2025-04-01"}]}`, true},
		{"G0022 before 2025-04-01", "POST", "/fhir/ValueSet/$validate-code", `{"resourceType":"Parameters","parameter":[
			{"name":"url","valueUri":"` + profiles.Base + `/ValueSet/chw-billing-codes"},
			{"name":"coding","valueCoding":{"system":"` + profiles.HCPCSSystem + `","code":"G0022"}},
			{"name":"date","valueDate":"2025-03-31"}]}`, false},
		{"codeableConcept", "POST", "/fhir/ValueSet/calaim-services/$validate-code", `{"resourceType":"Parameters","parameter":[
			{"name":"codeableConcept","valueCodeableConcept":{"coding":[{"system":"http://snomed.info/sct","code":"1"},{"system":"` + profiles.ServiceSystem + `","code":"ecm"}]}}]}`, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var body []byte
			if tc.body != "" {
				body = []byte(tc.body)
			}
			r := s.Do(tc.method, tc.path, body)
			wantStatus(t, r, http.StatusOK)
			if got := parameter(t, r, "result")["valueBoolean"]; got != tc.want {
				t.Fatalf("result %v, want %v: %s", got, tc.want, r.Body)
			}
			if !tc.want {
				parameter(t, r, "message")
			}
		})
	}
	wantOutcome(t, s.Do("GET", "/fhir/ValueSet/sdoh-zcodes/$validate-code", nil), http.StatusBadRequest, "")
	wantOutcome(t, s.Do("GET", z+"&code=Z59.41&date=yesterday", nil), http.StatusBadRequest, "")
}

func TestCodeSystemLookup(t *testing.T) {
	s := startConformance(t, fhirtest.Options{})
	r := s.Do("GET", "/fhir/CodeSystem/$lookup?system="+url.QueryEscape(profiles.ServiceSystem)+"&code=cs-recuperative-care", nil)
	wantStatus(t, r, http.StatusOK)
	if got := parameter(t, r, "display")["valueString"]; got != "Recuperative Care (Medical Respite)" {
		t.Errorf("display %v", got)
	}
	for _, want := range []string{`"valueString":"T2033-U6"`, `"valueCode":"unverified"`, `"valueBoolean":true`, `"valueCode":"community-supports"`} {
		if !strings.Contains(string(r.Body), want) {
			t.Errorf("lookup lacks %s: %s", want, r.Body)
		}
	}
	r = s.Do("POST", "/fhir/CodeSystem/$lookup", []byte(`{"resourceType":"Parameters","parameter":[
		{"name":"coding","valueCoding":{"system":"`+profiles.ICD10CMSystem+`","code":"Z59.86"}},{"name":"date","valueDate":"2025-10-01"}]}`))
	wantStatus(t, r, http.StatusOK)
	if !strings.Contains(string(r.Body), `"valueCode":"active-on-date"},{"name":"value","valueBoolean":false}`) ||
		!strings.Contains(string(r.Body), `"valueDateTime":"2025-09-30"`) {
		t.Errorf("Z59.86 is a header from FY26: %s", r.Body)
	}
	wantOutcome(t, s.Do("GET", "/fhir/CodeSystem/$lookup?system="+url.QueryEscape(profiles.ServiceSystem)+"&code=nope", nil), http.StatusNotFound, "not-found")
	wantOutcome(t, s.Do("GET", "/fhir/CodeSystem/$lookup?system=http://example.org/x&code=1", nil), http.StatusNotFound, "not-found")
	wantOutcome(t, s.Do("GET", "/fhir/CodeSystem/$lookup?code=1", nil), http.StatusBadRequest, "")
}

func TestValidateOperation(t *testing.T) {
	s := startConformance(t, fhirtest.Options{})
	// An invalid fixture names the profile in meta.profile: $validate reports it, 200.
	r := s.Do("POST", "/fhir/Patient/$validate", profileFixture(t, "calaim-patient", "invalid-cin-format.json"))
	wantStatus(t, r, http.StatusOK)
	if got := expressions(t, r, "error"); !slices.Equal(got, []string{"Patient.identifier[0].value"}) {
		t.Fatalf("error expressions %v: %s", got, r.Body)
	}
	if !strings.Contains(string(r.Body), "calaim-patient Patient.identifier:cin.value") {
		t.Errorf("diagnostics should name the profile and rule: %s", r.Body)
	}
	// A plain R4 Patient with the profile as a parameter, in a Parameters body.
	plain := `{"resourceType":"Patient","gender":"male"}`
	r = s.Do("POST", "/fhir/Patient/$validate", []byte(`{"resourceType":"Parameters","parameter":[{"name":"resource","resource":`+plain+`},
		{"name":"profile","valueUri":"`+profiles.PatientProfile+`"}]}`))
	wantStatus(t, r, http.StatusOK)
	if got := expressions(t, r, "error"); !slices.Equal(got, []string{"Patient.birthDate", "Patient.identifier", "Patient.identifier", "Patient.name"}) {
		t.Fatalf("error expressions %v: %s", got, r.Body)
	}
	// Without a profile a plain resource is only R4-checked; a valid one gets one information issue.
	r = s.Do("POST", "/fhir/Patient/$validate", []byte(plain))
	wantStatus(t, r, http.StatusOK)
	if got := expressions(t, r, "error"); len(got) != 0 || !strings.Contains(string(r.Body), `"severity":"information"`) {
		t.Fatalf("plain valid Patient: %s", r.Body)
	}
	// Base R4 problems and profile problems in one outcome.
	r = s.Do("POST", "/fhir/Patient/$validate?profile="+url.QueryEscape(profiles.PatientProfile), []byte(`{"resourceType":"Patient","gender":"robot"}`))
	wantStatus(t, r, http.StatusOK)
	if got := expressions(t, r, "error"); !slices.Contains(got, "Patient.gender") || !slices.Contains(got, "Patient.identifier") {
		t.Fatalf("want the R4 gender issue and the profile issues: %s", r.Body)
	}
	// Warnings are listed too.
	r = s.Do("POST", "/fhir/Consent/$validate", profileFixture(t, "calaim-consent", "invalid-no-source-warning.json"))
	if got := expressions(t, r, "warning"); !slices.Equal(got, []string{"Consent"}) {
		t.Fatalf("warnings %v: %s", got, r.Body)
	}
	// Instance level: the id must match.
	r = s.Do("POST", "/fhir/Patient/p1/$validate", []byte(`{"resourceType":"Patient","id":"p2"}`))
	if got := expressions(t, r, "error"); !slices.Equal(got, []string{"Patient.id"}) {
		t.Fatalf("instance id mismatch: %s", r.Body)
	}
	wantStatus(t, s.Do("POST", "/fhir/Patient/p1/$validate?mode=delete", []byte(`{"resourceType":"Patient"}`)), http.StatusOK)
	wantOutcome(t, s.Do("POST", "/fhir/Patient/$validate?mode=erase", []byte(plain)), http.StatusBadRequest, "")
	wantOutcome(t, s.Do("POST", "/fhir/Observation/$validate", []byte(plain)), http.StatusBadRequest, "")
	wantOutcome(t, s.Do("POST", "/fhir/Patient/$validate", []byte(`not json`)), http.StatusBadRequest, "")
	wantOutcome(t, s.Do("POST", "/fhir/Nope/$validate", []byte(plain)), http.StatusNotFound, "")
	r = s.Do("POST", "/fhir/Patient/$validate?profile="+url.QueryEscape(profiles.Base+"/StructureDefinition/nope"), []byte(plain))
	if !strings.Contains(string(r.Body), "unknown profile") {
		t.Fatalf("unknown profile: %s", r.Body)
	}
}

func TestWrite_ClaimedProfileEnforced(t *testing.T) {
	s := startConformance(t, fhirtest.Options{})
	for _, dir := range []string{"calaim-patient", "calaim-servicerequest", "calaim-task", "calaim-claim"} {
		create(t, s, typeOfFixture(t, profileFixture(t, dir, firstFixture(t, dir, "valid-"))), profileFixture(t, dir, firstFixture(t, dir, "valid-")))
	}
	r := s.Do("POST", "/fhir/Claim", profileFixture(t, "calaim-claim", "invalid-bad-npi.json"))
	wantOutcome(t, r, http.StatusUnprocessableEntity, "invariant")
	if got := expressions(t, r, "error"); !slices.Equal(got, []string{"Claim.provider.identifier.value"}) {
		t.Fatalf("expressions %v", got)
	}
	// The same resource without meta.profile is plain R4 and is stored.
	var doc map[string]any
	json.Unmarshal(profileFixture(t, "calaim-patient", "invalid-no-birthdate.json"), &doc)
	wantOutcome(t, s.Do("POST", "/fhir/Patient", asJSON(t, doc)), http.StatusUnprocessableEntity, "required")
	delete(doc, "meta")
	wantStatus(t, s.Do("POST", "/fhir/Patient", asJSON(t, doc)), http.StatusCreated)
	// Warnings do not stop a write; Prefer: return=OperationOutcome shows them.
	r = s.Do("POST", "/fhir/Consent", profileFixture(t, "calaim-consent", "invalid-no-source-warning.json"), "Prefer", "return=OperationOutcome")
	wantStatus(t, r, http.StatusCreated)
	if got := expressions(t, r, "warning"); !slices.Equal(got, []string{"Consent"}) || !strings.Contains(string(r.Body), "calaim-cons-1") {
		t.Fatalf("warnings %v: %s", got, r.Body)
	}
	r = s.Do("POST", "/fhir/Consent", profileFixture(t, "calaim-consent", "valid-hipaa.json"), "Prefer", "return=OperationOutcome")
	if got := expressions(t, r, "warning"); len(got) != 0 {
		t.Fatalf("a conformant Consent has warnings: %s", r.Body)
	}
	// A CalAIM profile that does not exist is refused; other profiles are not checked here.
	doc["meta"] = map[string]any{"profile": []any{profiles.Base + "/StructureDefinition/nope"}}
	wantOutcome(t, s.Do("POST", "/fhir/Patient", asJSON(t, doc)), http.StatusUnprocessableEntity, "not-supported")
	doc["meta"] = map[string]any{"profile": []any{"http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"}}
	wantStatus(t, s.Do("POST", "/fhir/Patient", asJSON(t, doc)), http.StatusCreated)
	// Updates and transaction entries go through the same check.
	created := create(t, s, "Patient", profileFixture(t, "calaim-patient", "valid-minimal.json"))
	bad := profileFixture(t, "calaim-patient", "invalid-two-cins.json")
	var badDoc map[string]any
	json.Unmarshal(bad, &badDoc)
	badDoc["id"] = created["id"]
	wantOutcome(t, s.Do("PUT", "/fhir/Patient/"+created["id"].(string), asJSON(t, badDoc)), http.StatusUnprocessableEntity, "structure")
	r = s.Do("PATCH", "/fhir/Patient/"+created["id"].(string), []byte(`[{"op":"remove","path":"/birthDate"}]`), "Content-Type", "application/json-patch+json")
	wantOutcome(t, r, http.StatusUnprocessableEntity, "required")
	if got := expressions(t, r, "error"); !slices.Equal(got, []string{"Patient.birthDate"}) {
		t.Fatalf("patch: %s", r.Body)
	}
	tx := `{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"urn:uuid:6b1a3f9e-1c55-4c5e-9a0e-2f1f4f8a0001","resource":` +
		string(profileFixture(t, "calaim-task", "invalid-rejected-no-reason.json")) + `,"request":{"method":"POST","url":"Task"}}]}`
	r = s.Do("POST", "/fhir", []byte(tx))
	if r.Status < 400 || !strings.Contains(string(r.Body), `"Bundle.entry[0].resource.statusReason"`) {
		t.Fatalf("transaction with a non-conformant Task: %d %s", r.Status, r.Body)
	}
}

func TestWrite_RequiredProfiles(t *testing.T) {
	s := startConformance(t, fhirtest.Options{RequireProfiles: []string{"Patient", "ServiceRequest"}})
	r := s.Do("POST", "/fhir/Patient", []byte(`{"resourceType":"Patient","gender":"female"}`))
	wantOutcome(t, r, http.StatusUnprocessableEntity, "required")
	if got := expressions(t, r, "error"); !slices.Equal(got, []string{"Patient.birthDate", "Patient.identifier", "Patient.identifier", "Patient.name"}) {
		t.Fatalf("expressions %v", got)
	}
	var doc map[string]any
	json.Unmarshal(profileFixture(t, "calaim-patient", "valid-minimal.json"), &doc)
	delete(doc, "meta") // conformant without claiming it
	wantStatus(t, s.Do("POST", "/fhir/Patient", asJSON(t, doc)), http.StatusCreated)
	// Types not required stay plain R4.
	wantStatus(t, s.Do("POST", "/fhir/Task", []byte(`{"resourceType":"Task","status":"draft","intent":"order"}`)), http.StatusCreated)

	r = s.Do("GET", "/fhir/metadata", nil)
	if !strings.Contains(string(r.Body), "Writes must conform to "+profiles.PatientProfile) {
		t.Errorf("CapabilityStatement should say Patient writes must conform")
	}
}

func TestCapabilityStatement_ProfilesAndOperations(t *testing.T) {
	s := startConformance(t, fhirtest.Options{})
	r := s.Do("GET", "/fhir/metadata", nil)
	wantStatus(t, r, http.StatusOK)
	var cs struct {
		Rest []struct {
			Resource []struct {
				Type             string
				SupportedProfile []string
				Operation        []struct{ Name string }
			}
			Operation []struct{ Name string }
		}
	}
	if err := json.Unmarshal(r.Body, &cs); err != nil {
		t.Fatal(err)
	}
	profilesOf := map[string][]string{}
	opsOf := map[string][]string{}
	for _, res := range cs.Rest[0].Resource {
		profilesOf[res.Type] = res.SupportedProfile
		for _, op := range res.Operation {
			opsOf[res.Type] = append(opsOf[res.Type], op.Name)
		}
	}
	for typ, want := range map[string]string{"Patient": profiles.PatientProfile, "ServiceRequest": profiles.ServiceRequestProfile,
		"Task": profiles.TaskProfile, "Consent": profiles.ConsentProfile, "Claim": profiles.ClaimProfile, "Encounter": profiles.EncounterProfile,
		"Condition": profiles.ConditionProfile, "Observation": profiles.ScreeningProfile, "Coverage": profiles.CoverageProfile} {
		if !slices.Equal(profilesOf[typ], []string{want}) {
			t.Errorf("%s supportedProfile %v, want %s", typ, profilesOf[typ], want)
		}
		if !slices.Contains(opsOf[typ], "validate") {
			t.Errorf("%s lacks $validate", typ)
		}
	}
	if !slices.Equal(opsOf["ValueSet"], []string{"expand", "validate-code"}) || !slices.Equal(opsOf["CodeSystem"], []string{"lookup"}) {
		t.Errorf("terminology operations: %v", opsOf)
	}
}

func TestReferralTransaction_ConformsToProfiles(t *testing.T) {
	s := startConformance(t, fhirtest.Options{})
	tx, err := os.ReadFile(filepath.Join(fhirtest.RepoRoot(), "testdata", "profiles", "referral-bundle.json"))
	if err != nil {
		t.Fatal(err)
	}
	r := s.Do("POST", "/fhir", tx)
	wantStatus(t, r, http.StatusOK)
	if n := strings.Count(string(r.Body), `"status":"201 Created"`); n != 6 {
		t.Fatalf("%d entries created, want 6: %s", n, r.Body)
	}
}

func firstFixture(t testing.TB, dir, prefix string) string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(fhirtest.RepoRoot(), "testdata", "profiles", dir, prefix+"*.json"))
	if len(m) == 0 {
		t.Fatalf("no %s fixture in %s", prefix, dir)
	}
	return filepath.Base(m[0])
}

func typeOfFixture(t testing.TB, b []byte) string {
	var h struct{ ResourceType string }
	json.Unmarshal(b, &h)
	return h.ResourceType
}

func asJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
