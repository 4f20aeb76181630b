package server_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/calaimfhir/calaimfhir/internal/claims"
	"github.com/calaimfhir/calaimfhir/internal/fhirtest"
	"github.com/calaimfhir/calaimfhir/internal/storetest"
)

// Claim submission and exports through the HTTP API on real stores, with the fixtures of
// testdata/claims (the checks one by one are tested in internal/claims).

func claimsFile(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fhirtest.RepoRoot(), "testdata", "claims", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// seedClaims stores the seed Bundle: every resource as given, except that the referral
// Tasks are created as requested by the plan and then accepted by their owner, as the
// workflow requires.
func seedClaims(t testing.TB, s *fhirtest.Server) {
	t.Helper()
	var bundle map[string]any
	json.Unmarshal(claimsFile(t, "seed.json"), &bundle)
	var tasks []map[string]any
	for _, e := range bundle["entry"].([]any) {
		r := e.(map[string]any)["resource"].(map[string]any)
		if r["resourceType"] == "Task" {
			accepted := map[string]any{}
			for k, v := range r {
				accepted[k] = v
			}
			tasks = append(tasks, accepted)
			r["status"] = "requested"
		}
	}
	b, _ := json.Marshal(bundle)
	if resp := s.Do("POST", "/fhir", b); resp.Status != 200 {
		t.Fatalf("seed: %d %s", resp.Status, resp.Body)
	}
	owner := s.Token("cbo", "Organization/cbo-1", "system/*.cruds")
	for _, task := range tasks {
		b, _ := json.Marshal(task)
		if resp := s.Do("PUT", "/fhir/Task/"+task["id"].(string), b, "Authorization", "Bearer "+owner); resp.Status != 200 {
			t.Fatalf("accept %s: %d %s", task["id"], resp.Status, resp.Body)
		}
	}
}

func claimFixture(t testing.TB, name string) map[string]any {
	var m map[string]any
	if err := json.Unmarshal(claimsFile(t, name), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func claimItem(doc map[string]any, i int) map[string]any {
	return doc["item"].([]any)[i].(map[string]any)
}

func setClaimID(doc map[string]any, id string) {
	doc["identifier"].([]any)[0].(map[string]any)["value"] = id
}

func claimsBundle(typ string, resources ...any) []byte {
	var entries []any
	for _, r := range resources {
		entries = append(entries, map[string]any{"resource": r})
	}
	b, _ := json.Marshal(map[string]any{"resourceType": "Bundle", "type": typ, "entry": entries})
	return b
}

// submitted is one entry of a $submit answer.
type submitted struct {
	FullURL  string `json:"fullUrl"`
	Resource struct {
		ResourceType string `json:"resourceType"`
		ID           string `json:"id"`
		Outcome      string `json:"outcome"`
		Disposition  string `json:"disposition"`
		PreAuthRef   string `json:"preAuthRef"`
		Request      *struct {
			Reference string `json:"reference"`
		} `json:"request"`
		Error []struct {
			ItemSequence int                    `json:"itemSequence"`
			Code         claims.CodeableConcept `json:"code"`
		} `json:"error"`
		ProcessNote []struct {
			Text string `json:"text"`
		} `json:"processNote"`
	} `json:"resource"`
	Response struct {
		Status   string          `json:"status"`
		Location string          `json:"location"`
		Outcome  json.RawMessage `json:"outcome"`
	} `json:"response"`
}

func (e submitted) codes() []string {
	var out []string
	for _, er := range e.Resource.Error {
		c := er.Code.Code(claims.ErrorSystem)
		if er.ItemSequence > 0 {
			c += fmt.Sprintf("@%d", er.ItemSequence)
		}
		out = append(out, c)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func submit(t testing.TB, s *fhirtest.Server, body []byte, headers ...string) []submitted {
	t.Helper()
	resp := s.Do("POST", "/fhir/Claim/$submit", body, headers...)
	if resp.Status != 200 {
		t.Fatalf("$submit: %d %s", resp.Status, resp.Body)
	}
	var b struct {
		ResourceType string      `json:"resourceType"`
		Type         string      `json:"type"`
		Entry        []submitted `json:"entry"`
	}
	if err := json.Unmarshal(resp.Body, &b); err != nil {
		t.Fatal(err)
	}
	if b.ResourceType != "Bundle" || b.Type != "batch-response" {
		t.Fatalf("answer is a %s %s", b.ResourceType, b.Type)
	}
	for _, e := range b.Entry {
		if e.Resource.ResourceType != "ClaimResponse" {
			t.Fatalf("the answer holds a %s: only ClaimResponses may be returned", e.Resource.ResourceType)
		}
	}
	return b.Entry
}

func count(t testing.TB, s *fhirtest.Server, query string) int {
	t.Helper()
	resp := s.Do("GET", "/fhir/"+query+"&_total=accurate", nil)
	if resp.Status != 200 {
		t.Fatalf("%s: %d %s", query, resp.Status, resp.Body)
	}
	var b struct{ Total int }
	json.Unmarshal(resp.Body, &b)
	return b.Total
}

func TestClaimSubmit_MixedBundle(t *testing.T) {
	fhirtest.ForEachStore(t, func(t *testing.T, h storetest.Harness) {
		store, _ := h.OpenFresh(t)
		s := fhirtest.Start(t, store, fhirtest.Options{})
		seedClaims(t, s)

		good := claimFixture(t, "claim-chw.json")
		partial := claimFixture(t, "claim-chw.json")
		setClaimID(partial, "VCHW-2025-0010")
		claimItem(partial, 0)["servicedDate"] = "2025-02-19"
		claimItem(partial, 1)["productOrService"] = map[string]any{"coding": []any{map[string]any{"system": "http://www.ama-assn.org/go/cpt", "code": "99213"}}}
		nonconformant := claimFixture(t, "claim-cs.json")
		setClaimID(nonconformant, "VCHW-2025-0011")
		delete(claimItem(nonconformant, 0), "locationCodeableConcept") // valid R4, not CalAIMClaim
		unknownPatient := claimFixture(t, "claim-cs.json")
		setClaimID(unknownPatient, "VCHW-2025-0012")
		unknownPatient["patient"] = map[string]any{"reference": "Patient/nobody"}
		noReferral := claimFixture(t, "claim-cs.json")
		setClaimID(noReferral, "VCHW-2025-0013")
		claimItem(noReferral, 0)["servicedDate"] = "2025-09-01"
		cs := claimFixture(t, "claim-cs.json")
		notAClaim := map[string]any{"resourceType": "Patient"}

		entries := submit(t, s, claimsBundle("batch", good, partial, nonconformant, unknownPatient, noReferral, notAClaim, cs))
		want := []struct {
			status  string
			outcome string
			codes   []string
		}{
			{"201 Created", "complete", nil},
			{"201 Created", "partial", []string{"code-not-allowed@2"}},
			{"201 Created", "error", []string{"claim-nonconformant"}},
			{"422 Unprocessable Entity", "error", []string{"coverage-mismatch", "patient-not-found", "referral-missing@1"}},
			{"201 Created", "error", []string{"referral-missing@1"}},
			{"422 Unprocessable Entity", "error", []string{"claim-invalid"}},
			{"201 Created", "complete", nil},
		}
		if len(entries) != len(want) {
			t.Fatalf("%d entries for %d claims", len(entries), len(want))
		}
		for i, w := range want {
			e := entries[i]
			if e.Response.Status != w.status || e.Resource.Outcome != w.outcome || !slices.Equal(e.codes(), w.codes) {
				t.Errorf("entry %d: %s %s %v, want %s %s %v (%s)", i, e.Response.Status, e.Resource.Outcome, e.codes(), w.status, w.outcome, w.codes, e.Response.Outcome)
			}
			if w.status == "201 Created" {
				// Stored, linked to its stored Claim, and readable.
				if e.Resource.ID == "" || e.FullURL != s.Base+"/ClaimResponse/"+e.Resource.ID || e.Resource.Request == nil {
					t.Fatalf("entry %d: id %q fullUrl %q request %v", i, e.Resource.ID, e.FullURL, e.Resource.Request)
				}
				if r := s.Do("GET", "/fhir/"+e.Resource.Request.Reference, nil); r.Status != 200 || !bytes.Contains(r.Body, []byte(`"resourceType":"Claim"`)) {
					t.Errorf("entry %d: request %s: %d", i, e.Resource.Request.Reference, r.Status)
				}
				if r := s.Do("GET", "/fhir/ClaimResponse/"+e.Resource.ID, nil); r.Status != 200 {
					t.Errorf("entry %d: ClaimResponse not stored: %d", i, r.Status)
				}
			} else if e.Resource.ID != "" || len(e.Response.Outcome) == 0 {
				t.Errorf("entry %d: an unstored claim has id %q and outcome %s", i, e.Resource.ID, e.Response.Outcome)
			}
		}
		if entries[0].Resource.PreAuthRef != "PA-7781" || entries[6].Resource.PreAuthRef != "AUTH-HTN-55" {
			t.Errorf("preAuthRef not echoed: %q %q", entries[0].Resource.PreAuthRef, entries[6].Resource.PreAuthRef)
		}
		if got := count(t, s, "Claim?_count=1"); got != 5 {
			t.Errorf("%d Claims stored, want 5", got)
		}
		if got := count(t, s, "ClaimResponse?outcome=error"); got != 2 {
			t.Errorf("%d error ClaimResponses stored, want 2", got)
		}
	})
}

func TestClaimSubmit_ResubmissionIsIdempotent(t *testing.T) {
	store, _ := fhirtest.SQLite.OpenFresh(t)
	s := fhirtest.Start(t, store, fhirtest.Options{})
	seedClaims(t, s)
	body, _ := json.Marshal(claimFixture(t, "claim-chw.json"))
	first := submit(t, s, body)[0]
	if first.Response.Status != "201 Created" || first.Resource.Outcome != "complete" {
		t.Fatalf("first: %s %s %v", first.Response.Status, first.Resource.Outcome, first.codes())
	}
	for range 2 {
		again := submit(t, s, body)[0]
		if again.Response.Status != "200 OK" || again.Resource.ID != first.Resource.ID || again.Response.Location != first.FullURL {
			t.Errorf("resubmission: %s %s, want 200 with %s", again.Response.Status, again.Resource.ID, first.Resource.ID)
		}
	}
	// In a Bundle with a new claim too.
	other := claimFixture(t, "claim-cs.json")
	entries := submit(t, s, claimsBundle("collection", json.RawMessage(body), other))
	if entries[0].Resource.ID != first.Resource.ID || entries[1].Response.Status != "201 Created" {
		t.Errorf("bundle: %s %s / %s", entries[0].Response.Status, entries[0].Resource.ID, entries[1].Response.Status)
	}
	if n := count(t, s, "Claim?identifier=https://valley-chw.example.org/claims|VCHW-2025-0001"); n != 1 {
		t.Errorf("%d Claims stored for one identifier", n)
	}
	// Another organization with the same claim number (a plan forwarding it) is not a
	// resubmission: its items are duplicates of the accepted ones.
	plan := s.Token("plan", "Organization/plan-1", "system/*.cruds")
	e := submit(t, s, body, "Authorization", "Bearer "+plan)[0]
	if e.Resource.ID == first.Resource.ID || !slices.Equal(e.codes(), []string{"duplicate@1", "duplicate@2"}) {
		t.Errorf("other submitter: %s %v", e.Resource.ID, e.codes())
	}
	// A CBO bills only as itself.
	cbo2 := s.Token("cbo", "Organization/cbo-2", "system/*.cruds")
	e = submit(t, s, body, "Authorization", "Bearer "+cbo2)[0]
	if !slices.Contains(e.codes(), "provider-not-submitter") || e.Resource.Outcome != "error" {
		t.Errorf("CBO billing as another: %s %v", e.Resource.Outcome, e.codes())
	}
}

func TestClaimSubmit_Duplicates(t *testing.T) {
	store, _ := fhirtest.SQLite.OpenFresh(t)
	s := fhirtest.Start(t, store, fhirtest.Options{})
	seedClaims(t, s)
	submit(t, s, claimsFile(t, "claim-chw.json"))
	again := claimFixture(t, "claim-chw.json")
	setClaimID(again, "VCHW-2025-0002-X")
	claimItem(again, 1)["servicedDate"] = "2025-02-26"
	e := submit(t, s, mustJSON(t, again))[0]
	if e.Resource.Outcome != "partial" || !slices.Equal(e.codes(), []string{"duplicate@1"}) {
		t.Errorf("got %s %v, want partial duplicate@1", e.Resource.Outcome, e.codes())
	}
	// The item accepted now is a duplicate next time.
	setClaimID(again, "VCHW-2025-0002-Y")
	if e := submit(t, s, mustJSON(t, again))[0]; !slices.Equal(e.codes(), []string{"duplicate@1", "duplicate@2"}) || e.Resource.Outcome != "error" {
		t.Errorf("third: %s %v", e.Resource.Outcome, e.codes())
	}
}

func mustJSON(t testing.TB, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestClaimSubmit_ConcurrentResubmissions: the same claim sent at once by several clients
// is stored once; the store's conditional creates decide, not a search before an insert.
func TestClaimSubmit_ConcurrentResubmissions(t *testing.T) {
	store, _ := fhirtest.SQLite.OpenFresh(t)
	s := fhirtest.Start(t, store, fhirtest.Options{})
	seedClaims(t, s)
	body := claimsFile(t, "claim-chw.json")
	const n = 6
	ids := make([]string, n)
	statuses := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e := submit(t, s, body)[0]
			ids[i], statuses[i] = e.Resource.ID, e.Response.Status
		}()
	}
	wg.Wait()
	created := 0
	for i := range n {
		if statuses[i] == "201 Created" {
			created++
		}
		if ids[i] != ids[0] || ids[i] == "" {
			t.Errorf("answers name different ClaimResponses: %v (%v)", ids, statuses)
			break
		}
	}
	if created != 1 {
		t.Errorf("%d submissions created the claim, want 1: %v", created, statuses)
	}
	if got := count(t, s, "Claim?_count=1"); got != 1 {
		t.Errorf("%d Claims stored", got)
	}
}

// TestClaimSubmit_LooksAcrossTenants: a CBO whose token may only create claims is checked
// against the member's Coverage and referrals it cannot read, and gets only ClaimResponses.
func TestClaimSubmit_LooksAcrossTenants(t *testing.T) {
	store, _ := fhirtest.SQLite.OpenFresh(t)
	s := fhirtest.Start(t, store, fhirtest.Options{})
	seedClaims(t, s)
	cbo := s.Token("cbo", "Organization/cbo-1", "system/Claim.c system/ClaimResponse.c")
	chw := claimFixture(t, "claim-chw.json")
	// A tenant tag sent by the client is not kept: it would hand the claim to another tenant.
	chw["meta"] = map[string]any{"tag": []any{map[string]any{"system": "https://calaimfhir.org/fhir/sid/tenant", "code": "Organization/plan-1"}}}
	entries := submit(t, s, claimsBundle("batch", chw, claimFixture(t, "claim-cs.json")), "Authorization", "Bearer "+cbo)
	for i, e := range entries {
		if e.Resource.Outcome != "complete" {
			t.Errorf("entry %d: %s %v", i, e.Resource.Outcome, e.codes())
		}
	}
	if r := s.Do("GET", "/fhir/Coverage/cov-1", nil, "Authorization", "Bearer "+cbo); r.Status != 403 {
		t.Errorf("the token reads Coverage directly: %d", r.Status)
	}
	// The submitter reads back its ClaimResponses (they carry its tenant tag); another CBO
	// does not see them.
	reader := s.Token("cbo", "Organization/cbo-1", "system/ClaimResponse.rs system/Claim.rs")
	if r := s.Do("GET", "/fhir/ClaimResponse/"+entries[0].Resource.ID, nil, "Authorization", "Bearer "+reader); r.Status != 200 {
		t.Errorf("the submitter cannot read its ClaimResponse: %d %s", r.Status, r.Body)
	}
	if r := s.Do("GET", "/fhir/"+entries[0].Resource.Request.Reference, nil, "Authorization", "Bearer "+reader); r.Status != 200 {
		t.Errorf("the submitter cannot read its Claim: %d %s", r.Status, r.Body)
	}
	if r := s.Do("GET", "/fhir/"+entries[0].Resource.Request.Reference, nil); bytes.Contains(r.Body, []byte(`"code":"Organization/plan-1"`)) || !bytes.Contains(r.Body, []byte(`"code":"Organization/cbo-1"`)) {
		t.Errorf("tenant tags of the stored Claim: %s", r.Body)
	}
	other := s.Token("cbo", "Organization/cbo-2", "system/ClaimResponse.rs system/Claim.rs")
	if r := s.Do("GET", "/fhir/ClaimResponse/"+entries[0].Resource.ID, nil, "Authorization", "Bearer "+other); r.Status != 404 {
		t.Errorf("another CBO reads the ClaimResponse: %d", r.Status)
	}
}

func TestClaimSubmit_ECMCHWOverlapWarning(t *testing.T) {
	store, _ := fhirtest.SQLite.OpenFresh(t)
	s := fhirtest.Start(t, store, fhirtest.Options{})
	seedClaims(t, s)
	d := claimFixture(t, "claim-chw.json")
	claimItem(d, 0)["servicedDate"] = "2025-04-10"
	claimItem(d, 0)["category"] = map[string]any{"coding": []any{map[string]any{"system": "https://calaimfhir.org/fhir/CodeSystem/chw-service-type", "code": "health-navigation"}}}
	e := submit(t, s, mustJSON(t, d))[0]
	if e.Resource.Outcome != "complete" || len(e.Resource.ProcessNote) != 1 || !strings.HasPrefix(e.Resource.ProcessNote[0].Text, "warning ecm-chw-overlap") {
		t.Errorf("got %s %v", e.Resource.Outcome, e.Resource.ProcessNote)
	}
}

func TestClaimSubmit_BadRequests(t *testing.T) {
	store, _ := fhirtest.SQLite.OpenFresh(t)
	s := fhirtest.Start(t, store, fhirtest.Options{})
	seedClaims(t, s)
	claim := claimsFile(t, "claim-chw.json")
	noResponses := s.Token("cbo", "Organization/cbo-1", "system/Claim.c")
	for _, tc := range []struct {
		name    string
		body    []byte
		headers []string
		status  int
	}{
		{"not JSON", []byte(`{"resourceType":`), nil, 400},
		{"a Patient", []byte(`{"resourceType":"Patient"}`), nil, 400},
		{"a transaction Bundle", claimsBundle("transaction", map[string]any{"resourceType": "Claim"}), nil, 400},
		{"an empty Bundle", claimsBundle("batch"), nil, 400},
		{"XML", []byte(`<Claim/>`), []string{"Content-Type", "application/fhir+xml"}, 415},
		{"XML wanted", claim, []string{"Accept", "application/fhir+xml"}, 406},
		{"no token", claim, []string{"Authorization", ""}, 401},
		{"no ClaimResponse create scope", claim, []string{"Authorization", "Bearer " + noResponses}, 403},
		{"GET is a read of no such Claim", nil, nil, 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			method := "POST"
			if tc.body == nil {
				method = "GET"
			}
			resp := s.Do(method, "/fhir/Claim/$submit", tc.body, tc.headers...)
			if resp.Status != tc.status || !bytes.Contains(resp.Body, []byte("OperationOutcome")) {
				t.Errorf("%d %s, want %d with an OperationOutcome", resp.Status, resp.Body, tc.status)
			}
		})
	}
	if got := count(t, s, "Claim?_count=1"); got != 0 {
		t.Errorf("bad requests stored %d Claims", got)
	}
}

func TestClaimSubmit_ReplacementCatalog(t *testing.T) {
	store, _ := fhirtest.SQLite.OpenFresh(t)
	s := fhirtest.Start(t, store, fhirtest.Options{})
	seedClaims(t, s)
	path := filepath.Join(t.TempDir(), "catalog.json")
	os.WriteFile(path, []byte(`{"version":"plan-x","programs":[{"code":"community-supports","referral":true}],
		"services":[{"program":"community-supports","service":"cs-housing-transition-navigation","system":"hcpcs","codes":["H0043"],"modifier":"U6"}]}`), 0o644)
	if err := s.Server.SetClaimsCatalog(path); err != nil {
		t.Fatal(err)
	}
	entries := submit(t, s, claimsBundle("batch", claimFixture(t, "claim-chw.json"), claimFixture(t, "claim-cs.json")))
	if !slices.Equal(entries[0].codes(), []string{"code-not-allowed@1", "code-not-allowed@2"}) || entries[1].Resource.Outcome != "complete" {
		t.Errorf("with the replacement catalog: %v / %s %v", entries[0].codes(), entries[1].Resource.Outcome, entries[1].codes())
	}
	if err := s.Server.SetClaimsCatalog(filepath.Join(t.TempDir(), "missing.json")); err == nil {
		t.Error("a missing catalog file was accepted")
	}
}

// submitExportFixtures stores the CHW claim (its item 2 rejected) and the CS claim.
func submitExportFixtures(t *testing.T, s *fhirtest.Server) (chwID, csID string) {
	chw := claimFixture(t, "claim-chw.json")
	claimItem(chw, 1)["productOrService"] = map[string]any{"coding": []any{map[string]any{"system": "http://www.ama-assn.org/go/cpt", "code": "99213"}}}
	entries := submit(t, s, claimsBundle("batch", chw, claimFixture(t, "claim-cs.json")))
	if entries[0].Resource.Outcome != "partial" || entries[1].Resource.Outcome != "complete" {
		t.Fatalf("fixtures: %s %s", entries[0].Resource.Outcome, entries[1].Resource.Outcome)
	}
	return entries[0].Resource.Request.Reference, entries[1].Resource.Request.Reference
}

func TestClaimExportInvoice(t *testing.T) {
	store, _ := fhirtest.SQLite.OpenFresh(t)
	s := fhirtest.Start(t, store, fhirtest.Options{})
	seedClaims(t, s)
	submitExportFixtures(t, s)
	golden := strings.SplitAfter(string(claimsFile(t, "invoice.csv.golden")), "\n")
	for _, tc := range []struct {
		provider, period string
		want             string
	}{
		{"Organization/cbo-1", "2025-02", golden[0] + golden[1]},
		{"1234567893", "2025-02", golden[0] + golden[1]},
		{"Organization/cbo-1", "2025-03", golden[0] + golden[2]},
		{"Organization/cbo-1", "2025-05", golden[0]},
		{"Organization/cbo-2", "2025-02", golden[0]},
	} {
		resp := s.Do("GET", "/fhir/Claim/$export-invoice?provider="+url.QueryEscape(tc.provider)+"&period="+tc.period, nil, "Accept", "text/csv")
		if resp.Status != 200 || resp.Header.Get("Content-Type") != "text/csv; charset=utf-8" {
			t.Fatalf("%s %s: %d %s", tc.provider, tc.period, resp.Status, resp.Body)
		}
		if string(resp.Body) != tc.want {
			t.Errorf("%s %s:\n%s\nwant\n%s", tc.provider, tc.period, resp.Body, tc.want)
		}
	}
	noPatients := s.Token("cbo", "Organization/cbo-1", "system/Claim.rs system/ClaimResponse.rs")
	for _, tc := range []struct {
		query   string
		headers []string
		status  int
	}{
		{"provider=Organization/cbo-1&period=2025-13", nil, 400},
		{"provider=Organization/cbo-1", nil, 400},
		{"provider=cbo-1&period=2025-02", nil, 400},
		{"provider=12345&period=2025-02", nil, 400},
		{"provider=Organization/cbo-1&period=2025-02", []string{"Authorization", "Bearer " + noPatients}, 403},
		{"provider=Organization/cbo-1&period=2025-02", []string{"Authorization", ""}, 401},
	} {
		if resp := s.Do("GET", "/fhir/Claim/$export-invoice?"+tc.query, nil, tc.headers...); resp.Status != tc.status || !bytes.Contains(resp.Body, []byte("OperationOutcome")) {
			t.Errorf("%s: %d %s, want %d", tc.query, resp.Status, resp.Body, tc.status)
		}
	}
}

func exportParams(claimRefs ...string) []byte {
	params := []any{map[string]any{"name": "controlNumber", "valuePositiveInt": 42}}
	for _, r := range claimRefs {
		params = append(params, map[string]any{"name": "claim", "valueReference": map[string]any{"reference": r}})
	}
	b, _ := json.Marshal(map[string]any{"resourceType": "Parameters", "parameter": params})
	return b
}

// The file's date and time elements (ISA09/10, GS04/05, BHT04/05) are set to the golden
// file's before comparing.
var x12Stamps = []struct {
	re   *regexp.Regexp
	repl string
}{
	{regexp.MustCompile(`\*[0-9]{6}\*[0-9]{4}\*\^\*`), "*250401*1430*^*"},
	{regexp.MustCompile(`(GS\*HC\*[^*]*\*[^*]*)\*[0-9]{8}\*[0-9]{4}\*`), "$1*20250401*1430*"},
	{regexp.MustCompile(`BHT\*0019\*00\*42\*[0-9]{8}\*[0-9]{4}\*`), "BHT*0019*00*42*20250401*1430*"},
}

func TestClaimExport837P(t *testing.T) {
	store, _ := fhirtest.SQLite.OpenFresh(t)
	s := fhirtest.Start(t, store, fhirtest.Options{})
	seedClaims(t, s)
	chw, cs := submitExportFixtures(t, s)
	resp := s.Do("POST", "/fhir/Claim/$export-837p", exportParams(chw, cs), "Accept", "application/EDI-X12")
	if resp.Status != 200 || resp.Header.Get("Content-Type") != "application/EDI-X12" {
		t.Fatalf("%d %s", resp.Status, resp.Body)
	}
	if err := claims.Verify837(string(resp.Body)); err != nil {
		t.Fatalf("structure: %v\n%s", err, resp.Body)
	}
	got := string(resp.Body)
	for _, st := range x12Stamps {
		got = st.re.ReplaceAllString(got, st.repl)
	}
	if want := string(claimsFile(t, "claims.837p.golden")); got != want {
		t.Errorf("837P differs from claims.837p.golden:\n%s\nwant\n%s", got, want)
	}

	// A rejected claim, an unknown one, bad parameters, missing scopes.
	bad := claimFixture(t, "claim-cs.json")
	setClaimID(bad, "REJ-1")
	delete(claimItem(bad, 0), "locationCodeableConcept")
	rejected := submit(t, s, mustJSON(t, bad))[0].Resource.Request.Reference
	noPractitioners := s.Token("cbo", "Organization/cbo-1", "system/Claim.rs system/ClaimResponse.rs system/Patient.r system/Coverage.r system/Organization.r")
	for _, tc := range []struct {
		name    string
		body    []byte
		headers []string
		status  int
	}{
		{"rejected claim", exportParams(rejected), nil, 422},
		{"unknown claim", exportParams("Claim/nope"), nil, 404},
		{"not a claim reference", exportParams("Patient/member-1"), nil, 400},
		{"no claims", exportParams(), nil, 400},
		{"not Parameters", []byte(`{"resourceType":"Bundle"}`), nil, 400},
		{"unknown parameter", []byte(`{"resourceType":"Parameters","parameter":[{"name":"x","valueString":"y"}]}`), nil, 400},
		{"control number too big", []byte(`{"resourceType":"Parameters","parameter":[{"name":"controlNumber","valueInteger":1000000000}]}`), nil, 400},
		{"missing scope", exportParams(chw), []string{"Authorization", "Bearer " + noPractitioners}, 403},
	} {
		if resp := s.Do("POST", "/fhir/Claim/$export-837p", tc.body, tc.headers...); resp.Status != tc.status || !bytes.Contains(resp.Body, []byte("OperationOutcome")) {
			t.Errorf("%s: %d %s, want %d", tc.name, resp.Status, resp.Body, tc.status)
		}
	}
}

// TestClaimOperationsInCapabilityStatement: clients (and calaimfhir bench) discover $submit
// and the exports from the CapabilityStatement.
func TestClaimOperationsInCapabilityStatement(t *testing.T) {
	store, _ := fhirtest.SQLite.OpenFresh(t)
	s := fhirtest.Start(t, store, fhirtest.Options{})
	r := s.Do("GET", "/fhir/metadata", nil)
	wantStatus(t, r, 200)
	var cs struct {
		Rest []struct {
			Resource []struct {
				Type      string                  `json:"type"`
				Operation []struct{ Name string } `json:"operation"`
			} `json:"resource"`
		} `json:"rest"`
	}
	if err := json.Unmarshal(r.Body, &cs); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, res := range cs.Rest[0].Resource {
		if res.Type == "Claim" {
			for _, op := range res.Operation {
				names = append(names, op.Name)
			}
		}
	}
	for _, want := range []string{"submit", "export-invoice", "export-837p", "validate"} {
		if !slices.Contains(names, want) {
			t.Errorf("Claim operations %v lack %s", names, want)
		}
	}
}
