package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/calaimfhir/calaimfhir/internal/fhirtest"
	"github.com/calaimfhir/calaimfhir/internal/r4"
	"github.com/calaimfhir/calaimfhir/internal/storetest"
	"github.com/calaimfhir/calaimfhir/mapping"
	"github.com/calaimfhir/calaimfhir/profiles"
	"github.com/calaimfhir/calaimfhir/resources"
	"github.com/calaimfhir/calaimfhir/server"
)

func mappingFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fhirtest.RepoRoot(), "testdata", "mapping", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// importFile posts a fixture to $import with the Content-Type its extension says.
func importFile(s *fhirtest.Server, format, name string, body []byte, query string, headers ...string) *fhirtest.Response {
	ct := "application/json"
	if strings.HasSuffix(name, ".csv") {
		ct = "text/csv"
	}
	path := "/fhir/$import?format=" + format
	if query != "" {
		path += "&" + query
	}
	return s.Do("POST", path, body, append([]string{"Content-Type", ct}, headers...)...)
}

// summary reads the counts from the import report's extension.
func summary(t testing.TB, r *fhirtest.Response) map[string]int {
	t.Helper()
	var o struct {
		ResourceType string `json:"resourceType"`
		Extension    []struct {
			URL       string `json:"url"`
			Extension []struct {
				URL          string `json:"url"`
				ValueInteger *int   `json:"valueInteger"`
			} `json:"extension"`
		} `json:"extension"`
	}
	if err := json.Unmarshal(r.Body, &o); err != nil || o.ResourceType != "OperationOutcome" {
		t.Fatalf("not an import report (%v): %s", err, r.Body)
	}
	out := map[string]int{}
	for _, e := range o.Extension {
		if e.URL != server.ImportSummaryURL {
			continue
		}
		for _, x := range e.Extension {
			if x.ValueInteger != nil {
				out[x.URL] = *x.ValueInteger
			}
		}
	}
	return out
}

// errorExpressions lists the expressions of the report's error issues.
func errorExpressions(t testing.TB, r *fhirtest.Response) []string {
	t.Helper()
	var o struct {
		Issue []struct {
			Severity    string   `json:"severity"`
			Diagnostics string   `json:"diagnostics"`
			Expression  []string `json:"expression"`
		} `json:"issue"`
	}
	if err := json.Unmarshal(r.Body, &o); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, is := range o.Issue {
		if is.Severity == "error" {
			out = append(out, strings.Join(is.Expression, ","))
		}
	}
	return out
}

// matches returns the number of matches of a search.
func matches(t testing.TB, s *fhirtest.Server, query string) int {
	t.Helper()
	r := s.Do("GET", "/fhir/"+query+sep(query)+"_total=accurate&_count=1", nil)
	wantStatus(t, r, http.StatusOK)
	var b struct {
		Total *int `json:"total"`
	}
	if err := json.Unmarshal(r.Body, &b); err != nil || b.Total == nil {
		t.Fatalf("no total in %s", r.Body)
	}
	return *b.Total
}

func sep(q string) string {
	if strings.Contains(q, "?") {
		return "&"
	}
	return "?"
}

func total(t testing.TB, s *fhirtest.Server) int {
	n := 0
	for _, typ := range []string{"Patient", "Organization", "Practitioner", "Coverage", "Condition", "Consent", "ServiceRequest", "Task",
		"QuestionnaireResponse", "Observation", "Encounter", "Procedure", "Claim"} {
		n += matches(t, s, typ)
	}
	return n
}

func tokenParam(system, value string) string { return url.QueryEscape(system + "|" + value) }

// TestImport_Referral_StoresAndIsIdempotent imports the referral fixtures over HTTP on each
// store: the resources land, linked as the mapping says, and importing again adds nothing.
func TestImport_Referral_StoresAndIsIdempotent(t *testing.T) {
	fhirtest.ForEachStore(t, func(t *testing.T, h storetest.Harness) {
		s := start(t, h)
		r := importFile(s, "referral", "referral.json", mappingFixture(t, "referral.json"), "")
		wantStatus(t, r, http.StatusOK)
		got := summary(t, r)
		if got["rows"] != 2 || got["stored"] != 2 || got["rejected"] != 0 || got["created"] < 10 {
			t.Fatalf("summary %v; report %s", got, r.Body)
		}
		created := got["created"]
		if n := total(t, s); n != created {
			t.Fatalf("%d resources stored, the report says %d created", n, created)
		}
		// The Task is owned by the receiving CBO and points at the ServiceRequest for the member.
		tr := s.Do("GET", "/fhir/Task?identifier="+tokenParam(profiles.ExternalReferralIDSystem, "IEHP-2026-0001")+
			"&_include=Task:focus&_include=Task:patient&_include=Task:owner", nil)
		wantStatus(t, tr, http.StatusOK)
		var bundle struct {
			Entry []struct {
				Resource map[string]any `json:"resource"`
			} `json:"entry"`
		}
		json.Unmarshal(tr.Body, &bundle)
		types := map[string]map[string]any{}
		for _, e := range bundle.Entry {
			types[e.Resource["resourceType"].(string)] = e.Resource
		}
		for _, typ := range []string{"Task", "ServiceRequest", "Patient", "Organization"} {
			if types[typ] == nil {
				t.Fatalf("Task search with includes lacks a %s: %s", typ, tr.Body)
			}
		}
		if st := types["Task"]["status"]; st != "requested" {
			t.Errorf("Task status %v", st)
		}
		if id := types["Organization"]["identifier"].([]any)[0].(map[string]any)["value"]; id != "1987654328" {
			t.Errorf("Task owner NPI %v, want the receiving CBO 1987654328", id)
		}
		if n := matches(t, s, "Condition?patient.identifier="+tokenParam(profiles.CINSystem, "91234567A")); n != 2 {
			t.Errorf("member has %d Conditions, want 2 (Z59.41, E11.9)", n)
		}
		if n := matches(t, s, "Consent?patient.identifier="+tokenParam(profiles.CINSystem, "91234567A")); n != 1 {
			t.Errorf("member has %d Consents, want 1", n)
		}
		if n := matches(t, s, "Consent?patient.identifier="+tokenParam(profiles.CINSystem, "98765432B")); n != 0 {
			t.Errorf("member who gave no consent has %d Consents", n)
		}

		again := importFile(s, "referral", "referral.json", mappingFixture(t, "referral.json"), "")
		wantStatus(t, again, http.StatusOK)
		if got := summary(t, again); got["stored"] != 2 || got["created"] != 0 {
			t.Fatalf("re-import summary %v, want 2 stored and 0 created", got)
		}
		if n := total(t, s); n != created {
			t.Fatalf("after re-import %d resources, want still %d", n, created)
		}
	})
}

// TestImport_BadRows_RejectedOthersLand: each bad row is reported with its row number and
// field; the good row is stored; nothing of a bad row is.
func TestImport_BadRows_RejectedOthersLand(t *testing.T) {
	s := start(t, fhirtest.SQLite)
	r := importFile(s, "referral", "referral_bad.csv", mappingFixture(t, "referral_bad.csv"), "")
	wantStatus(t, r, http.StatusOK)
	if got := summary(t, r); got["rows"] != 7 || got["stored"] != 1 || got["rejected"] != 6 {
		t.Fatalf("summary %v: %s", got, r.Body)
	}
	want := []string{"row[1].member_cin", "row[2].referring_npi", "row[3].service_code", "row[4].referral_date",
		"row[5].diagnosis_codes", "row[7].consent_date", "row[7].population_of_focus", "row[7].priority"}
	if got := errorExpressions(t, r); !slices.Equal(got, want) {
		t.Errorf("error expressions\n got %v\nwant %v", got, want)
	}
	for _, msg := range []string{"not a Medi-Cal CIN", "check digit", "not a CalAIM service", "not valid date", "Z59.0 is a header"} {
		if !strings.Contains(string(r.Body), msg) {
			t.Errorf("report lacks %q: %s", msg, r.Body)
		}
	}
	if n := matches(t, s, "ServiceRequest"); n != 1 {
		t.Errorf("%d ServiceRequests stored, want the one good row's", n)
	}
	for _, cin := range []string{"32345678E", "42345678F", "52345678G", "62345678H", "82345678K"} {
		if n := matches(t, s, "Patient?identifier="+tokenParam(profiles.CINSystem, cin)); n != 0 {
			t.Errorf("member %s of a rejected row was stored", cin)
		}
	}
}

func TestImport_Atomic(t *testing.T) {
	s := start(t, fhirtest.SQLite)
	r := importFile(s, "referral", "referral_bad.csv", mappingFixture(t, "referral_bad.csv"), "atomic=true")
	wantOutcome(t, r, http.StatusUnprocessableEntity, "")
	if n := total(t, s); n != 0 {
		t.Fatalf("a refused atomic import stored %d resources", n)
	}
	r = importFile(s, "referral", "referral.csv", mappingFixture(t, "referral.csv"), "atomic=true")
	wantStatus(t, r, http.StatusOK)
	if got := summary(t, r); got["stored"] != 2 {
		t.Fatalf("summary %v", got)
	}
}

func TestImport_DryRun_ReturnsBundleStoresNothing(t *testing.T) {
	s := start(t, fhirtest.SQLite)
	r := importFile(s, "referral", "referral.json", mappingFixture(t, "referral.json"), "dryRun=true")
	wantStatus(t, r, http.StatusOK)
	b := r.JSON(t)
	if b["resourceType"] != "Bundle" || b["type"] != "transaction" {
		t.Fatalf("dryRun answered %s", r.Body)
	}
	if n := total(t, s); n != 0 {
		t.Fatalf("dryRun stored %d resources", n)
	}
	// The Bundle it returns is what $import would store: posting it works.
	wantStatus(t, s.Do("POST", "/fhir", r.Body), http.StatusOK)
	if n := matches(t, s, "Task"); n != 2 {
		t.Fatalf("%d Tasks after posting the dryRun Bundle", n)
	}
}

// TestImport_AllFormats imports every fixture over HTTP (after the referrals that introduce
// the members) and checks what each format adds.
func TestImport_AllFormats(t *testing.T) {
	s := start(t, fhirtest.SQLite)
	steps := []struct {
		format, file string
		stored       int
		check        string // a search that must find want resources afterwards
		want         int
	}{
		{"referral", "referral.json", 2, "Task?status=requested", 2},
		{"referral", "referral.csv", 2, "Task?status=requested", 4},
		{"screening", "screening.json", 3, "Condition?code=" + tokenParam(profiles.ICD10CMSystem, "Z59.41"), 2},
		{"screening", "screening.csv", 2, "QuestionnaireResponse", 5},
		{"chw-encounter", "chw-encounter.json", 2, "Claim?status=draft", 2},
		{"chw-encounter", "chw-encounter.csv", 3, "Encounter", 5},
		{"dhcs-mif", "dhcs-mif.csv", 2, "Task?owner.identifier=" + tokenParam(profiles.NPISystem, "1333444556"), 2},
		{"dhcs-mif", "dhcs-mif.json", 1, "Coverage", 5}, // IEHP/98765432B came with its referral
	}
	for _, st := range steps {
		r := importFile(s, st.format, st.file, mappingFixture(t, st.file), "")
		wantStatus(t, r, http.StatusOK)
		if got := summary(t, r); got["stored"] != st.stored {
			t.Fatalf("%s: summary %v, want %d stored: %s", st.file, got, st.stored, r.Body)
		}
		if n := matches(t, s, st.check); n != st.want {
			t.Errorf("after %s: %s finds %d, want %d", st.file, st.check, n, st.want)
		}
	}
	// Every format is idempotent: importing everything again creates nothing.
	before := total(t, s)
	for _, st := range steps {
		r := importFile(s, st.format, st.file, mappingFixture(t, st.file), "")
		wantStatus(t, r, http.StatusOK)
		if got := summary(t, r); got["stored"] != st.stored || got["created"] != 0 {
			t.Errorf("re-import of %s: %v, want %d stored and 0 created", st.file, got, st.stored)
		}
	}
	if after := total(t, s); after != before {
		t.Errorf("re-importing every fixture went from %d to %d resources", before, after)
	}
	// Negative Hunger Vital Sign (HVS-1002) gives no Condition; the positive one (HVS-1001) does,
	// with the Observations as evidence.
	r := s.Do("GET", "/fhir/Condition?identifier="+tokenParam(mapping.SourceKeySystem, "screening/HVS-1001/condition/Z59.41"), nil)
	wantStatus(t, r, http.StatusOK)
	if !strings.Contains(string(r.Body), `"evidence"`) || !strings.Contains(string(r.Body), "733423003") {
		t.Errorf("HVS-1001 Condition lacks SNOMED code or evidence: %s", r.Body)
	}
	if n := matches(t, s, "Condition?identifier="+tokenParam(mapping.SourceKeySystem, "screening/HVS-1002/condition/Z59.41")); n != 0 {
		t.Errorf("a negative screen produced a Condition")
	}
	// CHW claim E-5002: 90 minutes with 5 patients → 98962 × 3 units.
	r = s.Do("GET", "/fhir/Claim?identifier="+tokenParam(mapping.SourceKeySystem, "chw-encounter/1543210987/E-5002/claim"), nil)
	wantStatus(t, r, http.StatusOK)
	if !strings.Contains(string(r.Body), `"98962"`) || !strings.Contains(string(r.Body), `"quantity":{"value":3}`) {
		t.Errorf("claim E-5002 is not 98962 x 3: %s", r.Body)
	}
}

// TestImport_NonAdminCallerIsTheTaskRequester: a plan's token imports referrals; its
// organization becomes the Tasks' requester, which the workflow requires of a Task's creator.
func TestImport_NonAdminCallerIsTheTaskRequester(t *testing.T) {
	s := start(t, fhirtest.SQLite)
	tok := s.Token("plan", "Organization/plan-iehp", "system/*.cruds")
	r := importFile(s, "referral", "referral.json", mappingFixture(t, "referral.json"), "", "Authorization", "Bearer "+tok)
	wantStatus(t, r, http.StatusOK)
	if n := matches(t, s, "Task?requester=Organization/plan-iehp"); n != 2 {
		t.Fatalf("%d Tasks requested by the importing plan, want 2", n)
	}
	// A token without create scopes cannot import.
	ro := s.Token("cbo", "Organization/cbo-a", "system/*.rs")
	r = importFile(s, "referral", "referral.csv", mappingFixture(t, "referral.csv"), "", "Authorization", "Bearer "+ro)
	wantOutcome(t, r, http.StatusForbidden, "")
}

func TestImport_BadRequests(t *testing.T) {
	store, _ := fhirtest.SQLite.OpenFresh(t)
	s := fhirtest.Start(t, store, fhirtest.Options{MaxBodyBytes: 64 << 10})
	good := mappingFixture(t, "referral.csv")
	huge := []byte("referral_id,referral_date\n" + strings.Repeat("R-1,2026-01-01\n", 10_000))
	tests := []struct {
		name, query, ct string
		body            []byte
		status          int
		says            string
	}{
		{"no format", "", "text/csv", good, 400, "say which format"},
		{"unknown format", "format=fax", "text/csv", good, 400, "unknown format"},
		{"wrong header", "format=referral", "text/csv", []byte("cin,name\n91234567A,Maria\n"), 400, "is not a referral field"},
		{"missing required column", "format=referral", "text/csv", []byte("referral_id,member_cin\nR-1,91234567A\n"), 400, "lacks required columns"},
		{"header only", "format=referral", "text/csv", []byte(strings.SplitN(string(good), "\n", 2)[0] + "\n"), 400, "no records"},
		{"ragged csv", "format=referral", "text/csv", append(good, []byte("a,b\n")...), 400, "not valid CSV"},
		{"not json", "format=referral", "application/json", []byte("{oops"), 400, "not JSON"},
		{"json scalar", "format=referral", "application/json", []byte(`"hello"`), 400, "JSON array"},
		{"xml", "format=referral", "application/xml", []byte("<a/>"), 415, "text/csv or application/json"},
		{"bad flag", "format=referral&atomic=maybe", "text/csv", good, 400, "atomic must be"},
		{"too large", "format=referral", "text/csv", huge, 413, "larger than the limit"},
		{"all rows bad", "format=referral", "application/json", []byte(`[{"referral_id":"x"}]`), 422, "is required"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := s.Do("POST", "/fhir/$import?"+tc.query, tc.body, "Content-Type", tc.ct)
			wantStatus(t, r, tc.status)
			if !strings.Contains(string(r.Body), tc.says) || !strings.Contains(string(r.Body), "OperationOutcome") {
				t.Errorf("answer lacks %q: %s", tc.says, r.Body)
			}
		})
	}
	if n := total(t, s); n != 0 {
		t.Fatalf("bad requests stored %d resources", n)
	}
}

// TestImport_TooManyRows: the row bound holds for files under the body limit too.
func TestImport_TooManyRows(t *testing.T) {
	var sb strings.Builder
	sb.WriteString("[")
	for i := range mapping.DefaultMaxRows + 1 {
		if i > 0 {
			sb.WriteString(",")
		}
		sb.WriteString("{}")
	}
	sb.WriteString("]")
	_, err := mapping.ReadJSON("referral", strings.NewReader(sb.String()), 0)
	if fe, ok := err.(*mapping.FileError); !ok || !fe.TooLarge {
		t.Fatalf("ReadJSON of %d records: %v, want a too-large FileError", mapping.DefaultMaxRows+1, err)
	}
	cols, _ := mapping.Columns("referral")
	csv := strings.Join(cols, ",") + "\n" + strings.Repeat("x"+strings.Repeat(",", len(cols)-1)+"\n", 11)
	_, err = mapping.ReadCSV("referral", strings.NewReader(csv), 10)
	if err == nil || !strings.Contains(fmt.Sprint(err), "limit is 10") {
		t.Fatalf("ReadCSV over maxRows: %v", err)
	}
}

// TestExportDHCSFiles imports referrals, MIF assignments and CHW encounters over HTTP, lets the
// CBO accept one referral, and reads the plan's RTF and OTF back as CSV.
func TestExportDHCSFiles(t *testing.T) {
	s := start(t, fhirtest.SQLite)
	for _, f := range []struct{ format, file string }{
		{"referral", "referral.json"}, {"referral", "referral.csv"}, {"dhcs-mif", "dhcs-mif.csv"}, {"chw-encounter", "chw-encounter.csv"},
	} {
		wantStatus(t, importFile(s, f.format, f.file, mappingFixture(t, f.file), ""), http.StatusOK)
	}
	// The CBO (NPI 1987654328, stored with a server id) accepts LAC-77.
	r := s.Do("GET", "/fhir/Task?identifier="+tokenParam(profiles.ExternalReferralIDSystem, "LAC-77"), nil)
	var b struct {
		Entry []struct {
			Resource map[string]any `json:"resource"`
		} `json:"entry"`
	}
	json.Unmarshal(r.Body, &b)
	if len(b.Entry) != 1 {
		t.Fatalf("LAC-77 Task: %s", r.Body)
	}
	task := b.Entry[0].Resource
	owner := task["owner"].(map[string]any)["reference"].(string)
	task["status"] = "accepted"
	body, _ := json.Marshal(task)
	cbo := s.Token("cbo", owner, "system/*.cruds")
	wantStatus(t, s.Do("PUT", "/fhir/Task/"+task["id"].(string), body, "Authorization", "Bearer "+cbo), http.StatusOK)

	r = s.Do("GET", "/fhir/$export-rtf?plan=LACARE&period=2026-02", nil, "Accept", "text/csv")
	wantStatus(t, r, http.StatusOK)
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/csv") {
		t.Fatalf("Content-Type %q", ct)
	}
	lines := strings.Split(strings.TrimSpace(string(r.Body)), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "payer_id,payer_name,member_cin") {
		t.Fatalf("RTF for LACARE 2026-02:\n%s", r.Body)
	}
	var accepted, pending bool
	for _, l := range lines[1:] {
		accepted = accepted || strings.Contains(l, "LAC-77,2026-02-10,accepted")
		pending = pending || strings.Contains(l, "LAC-78,2026-02-11,pending")
	}
	if !accepted || !pending {
		t.Errorf("RTF lacks LAC-77 accepted or LAC-78 pending:\n%s", r.Body)
	}
	r = s.Do("GET", "/fhir/$export-rtf?plan=LACARE&period=2026-03", nil)
	wantStatus(t, r, http.StatusOK)
	if !strings.Contains(string(r.Body), "dhcs-mif/LACARE/32345678E/1333444556,2026-03-01,pending") {
		t.Errorf("RTF for March lacks the MIF assignment:\n%s", r.Body)
	}

	r = s.Do("GET", "/fhir/$export-otf?plan=LACARE&period=2026-02", nil)
	wantStatus(t, r, http.StatusOK)
	if got := strings.Count(strings.TrimSpace(string(r.Body)), "\n"); got != 3 {
		t.Errorf("OTF has %d rows, want the 3 CHW contacts:\n%s", got, r.Body)
	}
	if !strings.Contains(string(r.Body), "12345678C,CHW,2026-02-13,telephonic,Y,45") {
		t.Errorf("OTF lacks the phone contact:\n%s", r.Body)
	}

	for _, q := range []string{"plan=LACARE", "plan=LACARE&period=2026-13", "period=2026-02", "plan=a%20b&period=2026-02"} {
		wantOutcome(t, s.Do("GET", "/fhir/$export-rtf?"+q, nil), http.StatusBadRequest, "")
	}
	wantOutcome(t, s.Do("GET", "/fhir/$export-otf?plan=LACARE&period=2026-02", nil, "Authorization", ""), http.StatusUnauthorized, "")
	noTasks := s.Token("plan", "Organization/p", "system/Coverage.rs system/Encounter.rs")
	wantOutcome(t, s.Do("GET", "/fhir/$export-rtf?plan=LACARE&period=2026-02", nil, "Authorization", "Bearer "+noTasks), http.StatusForbidden, "")
}

// TestRunImport_ChunkFallback: a row that fails only when stored (its member is not known
// here, so the conditional reference finds nothing) fails alone; the rows of its chunk land.
func TestRunImport_ChunkFallback(t *testing.T) {
	store, _ := fhirtest.SQLite.OpenFresh(t)
	svc := &resources.Service{Store: store, Validate: r4.Validate, RequiredReferences: resources.DefaultRequiredReferences}
	rows, err := mapping.ReadJSON("screening", strings.NewReader(`[
		{"screening_id":"A","member_cin":"11111111A","member_given_name":"A","member_family_name":"A","member_birth_date":"1980-01-01","member_sex":"female",
		 "instrument":"hunger-vital-sign","screening_date":"2026-01-05","answers":{"88122-7":"LA6729-3","88123-5":"LA6729-3"}},
		{"screening_id":"B","member_cin":"22222222B","instrument":"hunger-vital-sign","screening_date":"2026-01-05","answers":{"88122-7":"LA28398-8","88123-5":"LA28398-8"}},
		{"screening_id":"C","member_cin":"33333333C","member_given_name":"C","member_family_name":"C","member_birth_date":"1980-01-01","member_sex":"male",
		 "instrument":"prapare","screening_date":"2026-01-05","answers":{"67875-5":"LA17956-6"}}]`), 0)
	if err != nil {
		t.Fatal(err)
	}
	var progress []int
	rep, err := server.RunImport(context.Background(), server.ServiceExecutor(svc), 0, rows,
		server.ImportOptions{Format: "screening", Progress: func(done, total int) { progress = append(progress, done) }})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Stored != 2 || rep.Rejected() != 1 || len(rep.Rows[1].Errors) != 1 || !strings.Contains(rep.Rows[1].Errors[0].Message, "not stored") {
		t.Fatalf("report: %+v", rep.Rows)
	}
	if !slices.Equal(progress, []int{3}) {
		t.Errorf("progress %v", progress)
	}
	// Atomic: the same file is refused whole, and a file over the entry limit is 413.
	store2, _ := fhirtest.SQLite.OpenFresh(t)
	svc2 := &resources.Service{Store: store2, Validate: r4.Validate, RequiredReferences: resources.DefaultRequiredReferences}
	_, err = server.RunImport(context.Background(), server.ServiceExecutor(svc2), 0, rows, server.ImportOptions{Format: "screening", Atomic: true})
	if resources.KindOf(err) != resources.KindNotFound || !strings.Contains(err.Error(), "nothing was stored") {
		t.Fatalf("atomic import with an unknown member: %v", err)
	}
	if is := err.(*resources.Error).Issues; len(is) == 0 || !strings.HasPrefix(is[0].Diagnostics, "row 2: ") {
		t.Errorf("the failure does not name row 2: %+v", is)
	}
	_, err = server.RunImport(context.Background(), server.ServiceExecutor(svc2), 5, rows[:1], server.ImportOptions{Format: "screening", Atomic: true})
	if resources.KindOf(err) != resources.KindTooLarge {
		t.Fatalf("atomic import over the entry limit: %v", err)
	}
	page, err := svc2.Search(context.Background(), mustSearch(t, "Patient"))
	if err != nil || len(page.Resources) != 0 {
		t.Fatalf("failed atomic imports stored %d Patients (%v)", len(page.Resources), err)
	}
	// Small transactions (7 + 5 entries over a limit of 10): chunks split at the limit, every row lands.
	rep, err = server.RunImport(context.Background(), server.ServiceExecutor(svc2), 10, []mapping.Row{rows[0], rows[2]}, server.ImportOptions{Format: "screening"})
	if err != nil || rep.Stored != 2 {
		t.Fatalf("import with 10-entry transactions: %v, %+v", err, rep)
	}
}

func mustSearch(t *testing.T, typ string) *resources.SearchRequest {
	t.Helper()
	sr, err := resources.ParseSearch(typ, url.Values{}, "", true)
	if err != nil {
		t.Fatal(err)
	}
	return sr
}

// TestImport_CBO_RefersToMembersItMayNotCreate: under tenancy a CBO creates no Patient,
// Organization or Coverage, so its CHW log and screenings refer to the ones the plan's
// referral import stored; a row for a member the CBO cannot see fails alone.
func TestImport_CBO_RefersToMembersItMayNotCreate(t *testing.T) {
	s := start(t, fhirtest.SQLite)
	plan := s.Token("plan", "Organization/plan-lacare", "system/*.cruds")
	wantStatus(t, importFile(s, "referral", "referral.csv", mappingFixture(t, "referral.csv"), "", "Authorization", "Bearer "+plan), http.StatusOK)
	// The receiving CBO (NPI 1987654328) as the plan's import stored it.
	r := s.Do("GET", "/fhir/Organization?identifier="+tokenParam(profiles.NPISystem, "1987654328"), nil)
	var b struct {
		Entry []struct {
			Resource map[string]any `json:"resource"`
		} `json:"entry"`
	}
	json.Unmarshal(r.Body, &b)
	if len(b.Entry) != 1 {
		t.Fatalf("CBO organization: %s", r.Body)
	}
	cbo := s.Token("cbo", "Organization/"+b.Entry[0].Resource["id"].(string), "system/*.cruds")

	log := []byte("encounter_id,member_cin,member_given_name,member_family_name,member_birth_date,member_sex,plan_id,chw_id,supervising_npi,billing_npi,encounter_date,minutes,modality,service_type,needs_addressed\n" +
		"K-1,12345678C,Lin,Nguyen,1990-11-02,female,LACARE,chw-9,1122334455,1987654328,2026-02-20,40,in-person,health-navigation,Z59.01\n" +
		"K-2,99999999Z,,,,,LACARE,chw-9,1122334455,1987654328,2026-02-20,40,in-person,health-navigation,Z59.01\n")
	before := matches(t, s, "Patient") + matches(t, s, "Organization") + matches(t, s, "Coverage")
	r = importFile(s, "chw-encounter", "log.csv", log, "", "Authorization", "Bearer "+cbo)
	wantStatus(t, r, http.StatusOK)
	if got := summary(t, r); got["stored"] != 1 || got["rejected"] != 1 {
		t.Fatalf("CBO import: %v\n%s", got, r.Body)
	}
	if after := matches(t, s, "Patient") + matches(t, s, "Organization") + matches(t, s, "Coverage"); after != before {
		t.Errorf("the CBO's import created members, organizations or coverage: %d → %d", before, after)
	}
	if n := matches(t, s, "Claim?identifier="+tokenParam(mapping.SourceKeySystem, "chw-encounter/1987654328/K-1/claim")); n != 1 {
		t.Errorf("the CBO's claim for K-1 was not stored")
	}
	// A CBO refers nobody: a referral file about members it cannot see stores nothing.
	srs := matches(t, s, "ServiceRequest")
	r = importFile(s, "referral", "referral.json", mappingFixture(t, "referral.json"), "", "Authorization", "Bearer "+cbo)
	wantOutcome(t, r, http.StatusUnprocessableEntity, "")
	if n := matches(t, s, "ServiceRequest"); n != srs {
		t.Errorf("a CBO's referral import stored ServiceRequests")
	}
}
