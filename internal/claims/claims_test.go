package claims_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/calaimfhir/calaimfhir/internal/claims"
)

// The checks run here over the project's fixtures (testdata/claims/seed.json) held in
// memory; server/claims_test.go runs the same rules through the HTTP API on a real store.

func testdata(name string) string { return filepath.Join("..", "..", "testdata", "claims", name) }

// memLookup answers the checks from the seed Bundle and the ClaimResponses "stored" so far.
type memLookup struct {
	res       map[string]json.RawMessage
	responses []json.RawMessage
	calls     int
}

func newMemLookup(t testing.TB) *memLookup {
	t.Helper()
	b, err := os.ReadFile(testdata("seed.json"))
	if err != nil {
		t.Fatal(err)
	}
	var bundle struct {
		Entry []struct {
			Resource json.RawMessage `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(b, &bundle); err != nil {
		t.Fatal(err)
	}
	m := &memLookup{res: map[string]json.RawMessage{}}
	for _, e := range bundle.Entry {
		var p struct{ ResourceType, ID string }
		json.Unmarshal(e.Resource, &p)
		m.res[p.ResourceType+"/"+p.ID] = e.Resource
	}
	return m
}

func (m *memLookup) Read(_ context.Context, refs []string) (map[string]json.RawMessage, error) {
	m.calls++
	out := map[string]json.RawMessage{}
	for _, r := range refs {
		if raw, ok := m.res[r]; ok {
			out[r] = raw
		}
	}
	return out, nil
}

func (m *memLookup) OrganizationsByNPI(_ context.Context, npis []string) (map[string]json.RawMessage, error) {
	m.calls++
	out := map[string]json.RawMessage{}
	for ref, raw := range m.res {
		if !strings.HasPrefix(ref, "Organization/") {
			continue
		}
		var o claims.Organization
		json.Unmarshal(raw, &o)
		if slices.Contains(npis, claims.NPI(o.Identifier)) {
			out[claims.NPI(o.Identifier)] = raw
		}
	}
	return out, nil
}

func (m *memLookup) Referrals(_ context.Context, patients []string) ([]json.RawMessage, []json.RawMessage, error) {
	m.calls++
	var srs, tasks []json.RawMessage
	ids := map[string]bool{}
	for ref, raw := range m.res {
		if strings.HasPrefix(ref, "ServiceRequest/") {
			var sr claims.ServiceRequest
			json.Unmarshal(raw, &sr)
			if slices.Contains(patients, sr.Subject.Reference) {
				srs = append(srs, raw)
				ids["ServiceRequest/"+sr.ID] = true
			}
		}
	}
	for ref, raw := range m.res {
		if strings.HasPrefix(ref, "Task/") {
			var t claims.Task
			json.Unmarshal(raw, &t)
			if t.Focus != nil && ids[t.Focus.Reference] {
				tasks = append(tasks, raw)
			}
		}
	}
	return srs, tasks, nil
}

func (m *memLookup) Responses(_ context.Context, identifiers []string) ([]json.RawMessage, error) {
	m.calls++
	var out []json.RawMessage
	for _, raw := range m.responses {
		var cr struct{ Identifier []claims.Identifier }
		json.Unmarshal(raw, &cr)
		for _, id := range cr.Identifier {
			if slices.Contains(identifiers, id.System+"|"+id.Value) {
				out = append(out, raw)
				break
			}
		}
	}
	return out, nil
}

// store records the ClaimResponse of an accepted result, as the server would.
func (m *memLookup) store(r *claims.Result) {
	cr := claims.Response(r, time.Date(2025, 5, 1, 0, 0, 0, 0, time.UTC))
	cr["id"] = "cr-" + r.Claim.Identifier[0].Value
	b, _ := json.Marshal(cr)
	m.responses = append(m.responses, b)
}

// claimDoc loads a claim fixture as a generic document.
func claimDoc(t testing.TB, name string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(testdata(name))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func item(doc map[string]any, i int) map[string]any { return doc["item"].([]any)[i].(map[string]any) }

func coding(system, code string) map[string]any {
	return map[string]any{"coding": []any{map[string]any{"system": system, "code": code}}}
}

const (
	cpt   = "http://www.ama-assn.org/go/cpt"
	hcpcs = "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
	icd   = "http://hl7.org/fhir/sid/icd-10-cm"
)

func setCode(doc map[string]any, i int, system, code string, modifiers ...string) {
	it := item(doc, i)
	it["productOrService"] = coding(system, code)
	if len(modifiers) == 0 {
		delete(it, "modifier")
		return
	}
	var mods []any
	for _, m := range modifiers {
		mods = append(mods, coding(hcpcs, m))
	}
	it["modifier"] = mods
}

func setDx(doc map[string]any, code string) {
	doc["diagnosis"].([]any)[0].(map[string]any)["diagnosisCodeableConcept"] = coding(icd, code)
}

func body(t testing.TB, doc map[string]any) []byte {
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func checker() *claims.Checker { return &claims.Checker{Codes: claims.DefaultRules()} }

func check(t *testing.T, lk *memLookup, bodies ...[]byte) []*claims.Result {
	t.Helper()
	subs := make([]claims.Submission, len(bodies))
	for i, b := range bodies {
		subs[i] = claims.Submission{Body: b, Submitter: "Organization/cbo-1"}
	}
	res, err := checker().Check(context.Background(), lk, subs)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// codes lists "code" (claim level) and "code@item" (item level) of a result.
func codes(r *claims.Result) []string {
	var out []string
	for _, p := range r.Problems {
		if p.Item > 0 {
			out = append(out, p.Code+"@"+string(rune('0'+p.Item)))
		} else {
			out = append(out, p.Code)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func TestCheck(t *testing.T) {
	tests := []struct {
		name    string
		fixture string
		mutate  func(doc map[string]any)
		want    []string // problem codes
		outcome string
	}{
		{"chw claim passes", "claim-chw.json", nil, nil, "complete"},
		{"community supports with referral passes", "claim-cs.json", nil, nil, "complete"},
		{"ecm with program referral passes", "claim-ecm.json", nil, nil, "complete"},
		{"not CalAIMClaim: no priority", "claim-chw.json", func(d map[string]any) { delete(d, "priority") }, []string{claims.ClaimNonconformant}, "error"},
		{"not CalAIMClaim: institutional", "claim-chw.json", func(d map[string]any) {
			d["type"] = coding("http://terminology.hl7.org/CodeSystem/claim-type", "institutional")
		}, []string{claims.ClaimNonconformant}, "error"},
		{"not CalAIMClaim: no place of service", "claim-chw.json", func(d map[string]any) { delete(item(d, 0), "locationCodeableConcept") }, []string{claims.ClaimNonconformant}, "error"},
		{"not CalAIMClaim: pointer to no diagnosis", "claim-chw.json", func(d map[string]any) { item(d, 0)["diagnosisSequence"] = []any{7} }, []string{claims.ClaimNonconformant}, "error"},
		{"patient unknown", "claim-chw.json", func(d map[string]any) { d["patient"] = map[string]any{"reference": "Patient/nobody"} },
			[]string{claims.CoverageMismatch, claims.PatientNotFound}, "error"},
		{"coverage unknown", "claim-chw.json", func(d map[string]any) {
			d["insurance"].([]any)[0].(map[string]any)["coverage"] = map[string]any{"reference": "Coverage/none"}
		}, []string{claims.CoverageNotFound}, "error"},
		{"coverage of another member", "claim-chw.json", func(d map[string]any) { d["patient"] = map[string]any{"reference": "Patient/member-2"} },
			[]string{claims.CoverageMismatch}, "error"},
		{"coverage cancelled", "claim-chw.json", func(d map[string]any) {
			d["patient"] = map[string]any{"reference": "Patient/member-2"}
			d["insurance"].([]any)[0].(map[string]any)["coverage"] = map[string]any{"reference": "Coverage/cov-2"}
		}, []string{claims.CoverageInactive}, "error"},
		{"coverage ended before the item's date", "claim-chw.json", func(d map[string]any) { item(d, 0)["servicedDate"] = "2027-01-05" },
			[]string{claims.CoverageInactive + "@1"}, "partial"},
		{"provider NPI fails Luhn", "claim-chw.json", func(d map[string]any) { d["provider"] = map[string]any{"reference": "Organization/cbo-bad-npi"} },
			[]string{claims.ProviderNPIInvalid}, "error"},
		{"provider unknown", "claim-chw.json", func(d map[string]any) { d["provider"] = map[string]any{"reference": "Organization/nope"} },
			[]string{claims.ProviderUnknown}, "error"},
		{"provider by NPI identifier", "claim-chw.json", func(d map[string]any) {
			d["provider"] = map[string]any{"identifier": map[string]any{"system": "http://hl7.org/fhir/sid/us-npi", "value": "1234567893"}}
		}, nil, "complete"},
		{"provider NPI valid but no such Organization", "claim-chw.json", func(d map[string]any) {
			d["provider"] = map[string]any{"identifier": map[string]any{"system": "http://hl7.org/fhir/sid/us-npi", "value": "1111111112"}}
		}, []string{claims.ProviderUnknown}, "error"},
		{"provider NPI malformed and unknown", "claim-chw.json", func(d map[string]any) {
			d["provider"] = map[string]any{"identifier": map[string]any{"system": "http://hl7.org/fhir/sid/us-npi", "value": "12345"}}
		}, []string{claims.ProviderNPIInvalid, claims.ProviderUnknown}, "error"},
		{"code outside the catalog", "claim-chw.json", func(d map[string]any) { setCode(d, 0, cpt, "99213") }, []string{claims.CodeNotAllowed + "@1"}, "partial"},
		{"community supports code without its modifier", "claim-cs.json", func(d map[string]any) { setCode(d, 0, hcpcs, "H0043") },
			[]string{claims.ModifierNotAllowed + "@1"}, "error"},
		{"community supports code with a foreign modifier", "claim-cs.json", func(d map[string]any) { setCode(d, 0, hcpcs, "H2016", "U3") },
			[]string{claims.ModifierNotAllowed + "@1"}, "error"},
		{"chw code with an unknown modifier", "claim-chw.json", func(d map[string]any) { setCode(d, 0, cpt, "98960", "U9") },
			[]string{claims.ModifierNotAllowed + "@1"}, "partial"},
		{"G0019 before 2025-04-01", "claim-chw.json", func(d map[string]any) { setCode(d, 1, hcpcs, "G0019") },
			[]string{claims.ServiceNotEffective + "@2"}, "partial"},
		{"G0022 from 2025-04-01", "claim-chw.json", func(d map[string]any) {
			setCode(d, 1, hcpcs, "G0022")
			item(d, 1)["servicedDate"] = "2025-04-02"
		}, nil, "complete"},
		{"transitional rent before 2025-07-01", "claim-cs.json", func(d map[string]any) { setCode(d, 0, hcpcs, "H0040", "U1") },
			[]string{claims.ServiceNotEffective + "@1"}, "error"},
		{"referral does not cover the date", "claim-cs.json", func(d map[string]any) { item(d, 0)["servicedDate"] = "2025-09-01" },
			[]string{claims.ReferralMissing + "@1"}, "error"},
		{"referral owned by another CBO", "claim-cs.json", func(d map[string]any) { d["provider"] = map[string]any{"reference": "Organization/cbo-2"} },
			[]string{claims.ReferralMissing + "@1"}, "error"},
		{"referral for another service", "claim-cs.json", func(d map[string]any) { setCode(d, 0, hcpcs, "T2033", "U6") },
			[]string{claims.ReferralMissing + "@1"}, "error"},
		{"chw without supervisor", "claim-chw.json", func(d map[string]any) { d["careTeam"] = d["careTeam"].([]any)[:1] },
			[]string{claims.SupervisorMissing}, "error"},
		{"chw supervisor without valid NPI", "claim-chw.json", func(d map[string]any) {
			d["careTeam"].([]any)[1].(map[string]any)["provider"] = map[string]any{"identifier": map[string]any{"system": "http://hl7.org/fhir/sid/us-npi", "value": "1987654321"}}
		}, []string{claims.SupervisorMissing}, "error"},
		{"chw supervisor by NPI identifier", "claim-chw.json", func(d map[string]any) {
			d["careTeam"].([]any)[1].(map[string]any)["provider"] = map[string]any{"identifier": map[string]any{"system": "http://hl7.org/fhir/sid/us-npi", "value": "1987654328"}}
		}, nil, "complete"},
		{"zero units", "claim-chw.json", func(d map[string]any) { item(d, 1)["quantity"] = map[string]any{"value": 0} }, []string{claims.UnitsInvalid + "@2"}, "partial"},
		{"fractional units", "claim-chw.json", func(d map[string]any) { item(d, 1)["quantity"] = map[string]any{"value": 1.5} }, []string{claims.UnitsInvalid + "@2"}, "partial"},
		{"98961 without group size", "claim-chw.json", func(d map[string]any) { setCode(d, 0, cpt, "98961") }, []string{claims.GroupSizeMismatch + "@1"}, "partial"},
		{"98961 for a group of 3", "claim-chw.json", func(d map[string]any) {
			setCode(d, 0, cpt, "98961")
			d["supportingInfo"] = []any{map[string]any{"sequence": 1, "category": coding("http://terminology.hl7.org/CodeSystem/claiminformationcategory", "info"),
				"code": coding(claims.InfoSystem, claims.GroupSize), "valueQuantity": map[string]any{"value": 3}}}
			item(d, 0)["informationSequence"] = []any{1}
		}, nil, "complete"},
		{"98962 for a group of 3", "claim-chw.json", func(d map[string]any) {
			setCode(d, 0, cpt, "98962")
			d["supportingInfo"] = []any{map[string]any{"sequence": 1, "category": coding("http://terminology.hl7.org/CodeSystem/claiminformationcategory", "info"),
				"code": coding(claims.InfoSystem, claims.GroupSize), "valueQuantity": map[string]any{"value": 3}}}
			item(d, 0)["informationSequence"] = []any{1}
		}, []string{claims.GroupSizeMismatch + "@1"}, "partial"},
		{"98960 for a group of 3", "claim-chw.json", func(d map[string]any) {
			d["supportingInfo"] = []any{map[string]any{"sequence": 1, "category": coding("http://terminology.hl7.org/CodeSystem/claiminformationcategory", "info"),
				"code": coding(claims.InfoSystem, claims.GroupSize), "valueQuantity": map[string]any{"value": 3}}}
			item(d, 0)["informationSequence"] = []any{1}
		}, []string{claims.GroupSizeMismatch + "@1"}, "partial"},
		{"diagnosis not ICD-10-CM", "claim-chw.json", func(d map[string]any) { setDx(d, "hungry") }, []string{claims.DiagnosisInvalid}, "error"},
		{"header code Z59.0", "claim-chw.json", func(d map[string]any) { setDx(d, "Z59.0") }, []string{claims.DiagnosisNotBillable}, "error"},
		{"header code Z59.4", "claim-chw.json", func(d map[string]any) { setDx(d, "Z59.4") }, []string{claims.DiagnosisNotBillable}, "error"},
		{"Z59.1 is a header since 2023-04-01", "claim-chw.json", func(d map[string]any) { setDx(d, "Z59.1") }, []string{claims.DiagnosisNotBillable}, "error"},
		{"Z59.861 not yet effective in 2025-02", "claim-chw.json", func(d map[string]any) { setDx(d, "Z59.861") }, []string{claims.DiagnosisNotBillable}, "error"},
		{"Z59.86 billable before FY26", "claim-chw.json", func(d map[string]any) { setDx(d, "Z59.86") }, nil, "complete"},
		{"codes outside the Z table are not judged", "claim-chw.json", func(d map[string]any) { setDx(d, "E11.9") }, nil, "complete"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			doc := claimDoc(t, tc.fixture)
			if tc.mutate != nil {
				tc.mutate(doc)
			}
			r := check(t, newMemLookup(t), body(t, doc))[0]
			if got := codes(r); !slices.Equal(got, tc.want) {
				t.Errorf("problems = %v, want %v", got, tc.want)
				for _, p := range r.Problems {
					t.Log(p)
				}
			}
			if r.Outcome != tc.outcome {
				t.Errorf("outcome = %s, want %s", r.Outcome, tc.outcome)
			}
			if r.Outcome == "error" && (len(r.ConditionalKeys) > 0 || len(r.Identifiers) > 0) {
				t.Errorf("a rejected claim carries keys %v", r.ConditionalKeys)
			}
		})
	}
}

func TestCheck_InvalidBodies(t *testing.T) {
	for name, b := range map[string]string{
		"not JSON":        `{"resourceType":`,
		"not a Claim":     `{"resourceType":"Patient"}`,
		"wrong shape":     `{"resourceType":"Claim","item":"x"}`,
		"empty entry":     ``,
		"wrong item type": `{"resourceType":"Claim","item":[{"quantity":{"value":"two"}}]}`,
	} {
		t.Run(name, func(t *testing.T) {
			r := check(t, newMemLookup(t), []byte(b))[0]
			if got := codes(r); !slices.Equal(got, []string{claims.ClaimInvalid}) || r.Outcome != "error" {
				t.Errorf("got %v %s, want claim-invalid error", got, r.Outcome)
			}
		})
	}
}

func TestCheck_DuplicateInSubmission(t *testing.T) {
	a := claimDoc(t, "claim-chw.json")
	b := claimDoc(t, "claim-chw.json")
	b["identifier"].([]any)[0].(map[string]any)["value"] = "VCHW-2025-0001-B"
	res := check(t, newMemLookup(t), body(t, a), body(t, b))
	if res[0].Outcome != "complete" {
		t.Fatalf("first: %s %v", res[0].Outcome, codes(res[0]))
	}
	if got, want := codes(res[1]), []string{claims.Duplicate + "@1", claims.Duplicate + "@2"}; !slices.Equal(got, want) || res[1].Outcome != "error" {
		t.Errorf("second = %v %s, want %v error", got, res[1].Outcome, want)
	}
}

func TestCheck_DuplicateOfAcceptedAndResubmission(t *testing.T) {
	lk := newMemLookup(t)
	first := check(t, lk, body(t, claimDoc(t, "claim-chw.json")))[0]
	if first.Outcome != "complete" || len(first.ConditionalKeys) != 3 {
		t.Fatalf("first: %s keys %v", first.Outcome, first.ConditionalKeys)
	}
	lk.store(first)

	// Same identifier: the original answer, nothing checked.
	again := check(t, lk, body(t, claimDoc(t, "claim-chw.json")))[0]
	if again.Replay == nil {
		t.Fatal("resubmission was not recognized")
	}
	var cr struct{ ID string }
	json.Unmarshal(again.Replay, &cr)
	if cr.ID != "cr-VCHW-2025-0001" {
		t.Errorf("replayed %s", cr.ID)
	}

	// Another submitter with the same identifier is not a resubmission (but a duplicate).
	other, err := checker().Check(context.Background(), lk, []claims.Submission{{Body: body(t, claimDoc(t, "claim-chw.json")), Submitter: "Organization/cbo-2"}})
	if err != nil {
		t.Fatal(err)
	}
	if other[0].Replay != nil {
		t.Error("another submitter got the first submitter's ClaimResponse")
	}

	// New identifier, one item the same: that item is a duplicate.
	d := claimDoc(t, "claim-chw.json")
	d["identifier"].([]any)[0].(map[string]any)["value"] = "VCHW-2025-0099"
	item(d, 1)["servicedDate"] = "2025-02-26"
	dup := check(t, lk, body(t, d))[0]
	if got, want := codes(dup), []string{claims.Duplicate + "@1"}; !slices.Equal(got, want) || dup.Outcome != "partial" {
		t.Errorf("got %v %s, want %v partial", got, dup.Outcome, want)
	}

	// A different modifier makes a different line.
	setCode(d, 0, cpt, "98960")
	if r := check(t, lk, body(t, d))[0]; r.Outcome != "complete" {
		t.Errorf("different modifiers: %s %v", r.Outcome, codes(r))
	}
}

func TestCheck_ECMCHWOverlapWarning(t *testing.T) {
	lk := newMemLookup(t)
	// CHW navigation in April 2025, while the ECM referral (task-ecm) is in force.
	d := claimDoc(t, "claim-chw.json")
	d["created"] = "2025-04-20"
	for i := range 2 {
		item(d, i)["servicedDate"] = "2025-04-1" + string(rune('0'+i))
	}
	item(d, 0)["category"] = coding("https://calaimfhir.org/fhir/CodeSystem/chw-service-type", "health-navigation")
	r := check(t, lk, body(t, d))[0]
	if r.Outcome != "complete" || len(r.Warnings) != 1 || r.Warnings[0].Code != claims.ECMCHWOverlap || r.Warnings[0].Item != 1 {
		t.Fatalf("outcome %s warnings %v", r.Outcome, r.Warnings)
	}
	cr := claims.Response(r, time.Now())
	if notes, _ := cr["processNote"].([]any); len(notes) != 1 || !strings.Contains(notes[0].(map[string]any)["text"].(string), "ecm-chw-overlap") {
		t.Errorf("processNote = %v", cr["processNote"])
	}
	// Health education (not navigation) in the same month: no warning.
	delete(item(d, 0), "category")
	d["identifier"].([]any)[0].(map[string]any)["value"] = "other"
	if r := check(t, newMemLookup(t), body(t, d))[0]; len(r.Warnings) != 0 {
		t.Errorf("warnings without navigation: %v", r.Warnings)
	}
	// Before the ECM referral (February): no warning.
	d = claimDoc(t, "claim-chw.json")
	item(d, 0)["category"] = coding("https://calaimfhir.org/fhir/CodeSystem/chw-service-type", "health-navigation")
	if r := check(t, newMemLookup(t), body(t, d))[0]; len(r.Warnings) != 0 {
		t.Errorf("warnings before ECM enrollment: %v", r.Warnings)
	}
	// ECM billed after CHW navigation was accepted in the month: warning on the ECM claim.
	lk = newMemLookup(t)
	d = claimDoc(t, "claim-chw.json")
	item(d, 0)["category"] = coding("https://calaimfhir.org/fhir/CodeSystem/chw-service-type", "health-navigation")
	item(d, 0)["servicedDate"] = "2025-04-03"
	nav := check(t, lk, body(t, d))[0]
	lk.store(nav)
	ecm := check(t, lk, body(t, claimDoc(t, "claim-ecm.json")))[0]
	if ecm.Outcome != "complete" || len(ecm.Warnings) != 1 {
		t.Errorf("ECM after navigation: %s %v", ecm.Outcome, ecm.Warnings)
	}
}

func TestCheck_LookupsAreBatched(t *testing.T) {
	lk := newMemLookup(t)
	var bodies [][]byte
	for i := range 200 {
		d := claimDoc(t, "claim-chw.json")
		d["identifier"].([]any)[0].(map[string]any)["value"] = "B-" + string(rune('A'+i%26)) + string(rune('A'+i/26))
		item(d, 0)["servicedDate"] = time.Date(2025, 2, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, i%28).Format(time.DateOnly)
		item(d, 1)["servicedDate"] = time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, i).Format(time.DateOnly)
		bodies = append(bodies, body(t, d))
	}
	res := check(t, lk, bodies...)
	if lk.calls > 5 {
		t.Errorf("%d lookup calls for 200 claims, want at most 5", lk.calls)
	}
	partial := 0
	for _, r := range res {
		if r.Outcome == "partial" {
			partial++
		}
	}
	// Item 1 repeats every 28 claims (same date), so 172 of them are duplicates.
	if partial != 172 {
		t.Errorf("%d partial, want 172", partial)
	}
}

func TestResponse(t *testing.T) {
	d := claimDoc(t, "claim-chw.json")
	setCode(d, 0, cpt, "99213")
	r := check(t, newMemLookup(t), body(t, d))[0]
	cr := claims.Response(r, time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC))
	if cr["outcome"] != "partial" || cr["preAuthRef"] != "PA-7781" || cr["created"] != "2025-03-01T12:00:00Z" {
		t.Errorf("outcome %v preAuthRef %v created %v", cr["outcome"], cr["preAuthRef"], cr["created"])
	}
	errs := cr["error"].([]any)
	e := errs[0].(map[string]any)
	if e["itemSequence"] != 1 || e["code"].(map[string]any)["coding"].([]any)[0].(map[string]any)["code"] != claims.CodeNotAllowed {
		t.Errorf("error = %v", e)
	}
	if cr["insurer"].(map[string]any)["reference"] != "Organization/plan-1" || cr["requestor"].(map[string]any)["reference"] != "Organization/cbo-1" {
		t.Errorf("insurer %v requestor %v", cr["insurer"], cr["requestor"])
	}
	if !strings.Contains(cr["disposition"].(string), "item 1 rejected") {
		t.Errorf("disposition %v", cr["disposition"])
	}
}

func TestCheck_CBOBillsOnlyAsItself(t *testing.T) {
	body := body(t, claimDoc(t, "claim-chw.json"))
	for _, tc := range []struct {
		submitter string
		ownOnly   bool
		want      []string
	}{
		{"Organization/cbo-1", true, nil},
		{"Organization/cbo-2", true, []string{claims.ProviderNotSubmitter}},
		{"Organization/plan-1", false, nil}, // a plan or clearinghouse submits for others
	} {
		res, err := checker().Check(context.Background(), newMemLookup(t), []claims.Submission{{Body: body, Submitter: tc.submitter, OwnClaimsOnly: tc.ownOnly}})
		if err != nil {
			t.Fatal(err)
		}
		if got := codes(res[0]); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.submitter, got, tc.want)
		}
	}
}
