package server_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/calaimfhir/calaimfhir/internal/auth"
	"github.com/calaimfhir/calaimfhir/internal/fhirtest"
	"github.com/calaimfhir/calaimfhir/internal/r4"
	"github.com/calaimfhir/calaimfhir/internal/storetest"
	"github.com/calaimfhir/calaimfhir/resources"
)

// auditSummary is what a test compares of one AuditEvent.
type auditSummary struct {
	RequestID string
	Subtype   string
	Action    string
	Outcome   string
	Status    string // from outcomeDesc: "HTTP 201 Created" → "201"
	Who       string // agent.who.identifier.value of the requestor
	Client    string // its altId
	Role      string
	Org       string // the second agent's who.reference
	Entities  []string
	Type      string // entity.type of the query entity
	Query     string // decoded entity.query
	Detail    string // entity.description
}

func summarize(t *testing.T, ev map[string]any) auditSummary {
	t.Helper()
	var s auditSummary
	s.Action, _ = ev["action"].(string)
	s.Outcome, _ = ev["outcome"].(string)
	desc, _ := ev["outcomeDesc"].(string)
	if f := strings.Fields(desc); len(f) > 1 {
		s.Status = f[1]
	}
	if st, _ := ev["subtype"].([]any); len(st) == 1 {
		s.Subtype, _ = st[0].(map[string]any)["code"].(string)
	}
	for _, a := range ev["agent"].([]any) {
		agent := a.(map[string]any)
		who, _ := agent["who"].(map[string]any)
		if agent["requestor"] == true {
			if id, ok := who["identifier"].(map[string]any); ok {
				s.Who, _ = id["value"].(string)
			}
			s.Client, _ = agent["altId"].(string)
			if roles, _ := agent["role"].([]any); len(roles) == 1 {
				s.Role, _ = roles[0].(map[string]any)["text"].(string)
			}
			if net, _ := agent["network"].(map[string]any); net["address"] != "127.0.0.1" {
				t.Errorf("agent.network %v, want the loopback address", net)
			}
		} else {
			s.Org, _ = who["reference"].(string)
		}
	}
	entities, _ := ev["entity"].([]any)
	for _, e := range entities {
		entity := e.(map[string]any)
		what, _ := entity["what"].(map[string]any)
		typ, _ := entity["type"].(map[string]any)
		switch {
		case typ["code"] == "XrequestId":
			s.RequestID, _ = what["identifier"].(map[string]any)["value"].(string)
		case what["reference"] != nil:
			s.Entities = append(s.Entities, what["reference"].(string))
		default:
			s.Type, _ = typ["code"].(string)
			if q, ok := entity["query"].(string); ok {
				b, err := base64.StdEncoding.DecodeString(q)
				if err != nil {
					t.Errorf("entity.query is not base64: %q", q)
				}
				s.Query = string(b)
			}
			s.Detail, _ = entity["description"].(string)
		}
	}
	slices.Sort(s.Entities)
	return s
}

// auditTrail returns every AuditEvent the server serves, following next links, as raw JSON.
func auditTrail(t *testing.T, s *fhirtest.Server, query string) []json.RawMessage {
	t.Helper()
	var out []json.RawMessage
	next := "/fhir/AuditEvent?" + query
	for pages := 0; next != ""; pages++ {
		if pages > 200 {
			t.Fatal("AuditEvent paging does not end")
		}
		r := s.Do("GET", next, nil)
		wantStatus(t, r, http.StatusOK)
		var b struct {
			Type string `json:"type"`
			Link []struct {
				Relation, URL string
			} `json:"link"`
			Entry []struct {
				Resource json.RawMessage `json:"resource"`
			} `json:"entry"`
		}
		if err := json.Unmarshal(r.Body, &b); err != nil || b.Type != "searchset" {
			t.Fatalf("not a searchset Bundle (%v): %s", err, r.Body)
		}
		next = ""
		for _, l := range b.Link {
			if l.Relation == "next" {
				next = l.URL
			}
		}
		for _, e := range b.Entry {
			out = append(out, e.Resource)
		}
	}
	return out
}

func summaries(t *testing.T, events []json.RawMessage) map[string]auditSummary {
	t.Helper()
	out := map[string]auditSummary{}
	for _, raw := range events {
		var ev map[string]any
		if err := json.Unmarshal(raw, &ev); err != nil {
			t.Fatal(err)
		}
		s := summarize(t, ev)
		if _, dup := out[s.RequestID]; dup {
			t.Errorf("two audit events for request %s", s.RequestID)
		}
		out[s.RequestID] = s
	}
	return out
}

func outcomeOf(status int) string { return fmt.Sprint(resources.AuditOutcome(status)) }

// TestAudit_RequestSequence_TrailIsExactlyAsExpected sends one request of each kind, success
// and failure, and checks the audit trail holds exactly one event per request with the
// expected who, what, action and outcome; every event is valid R4.
func TestAudit_RequestSequence_TrailIsExactlyAsExpected(t *testing.T) {
	fhirtest.ForEachStore(t, func(t *testing.T, h storetest.Harness) {
		store, _ := h.OpenFresh(t)
		s := fhirtest.Start(t, store, fhirtest.Options{})
		nurse, _ := s.Key.Mint(auth.MintOptions{Role: "plan", Org: "Organization/plan-1", Subject: "nurse-7", ClientID: "plan-app"})
		chw, _ := s.Key.Mint(auth.MintOptions{Role: "cbo", Org: "Organization/cbo-a", Subject: "chw-3", ClientID: "cbo-app", Scopes: "system/Task.rs"})
		as := func(tok string) string { return "Bearer " + tok }
		marker := "Qxzvy" + resources.NewID()[:10] // in resource bodies only
		send := func(id, method, path, body string, headers ...string) *fhirtest.Response {
			t.Helper()
			var b []byte
			if body != "" {
				b = []byte(body)
			}
			return s.Do(method, path, b, append([]string{"X-Request-Id", id}, headers...)...)
		}

		r := send("r01-create", "POST", "/fhir/Patient", `{"resourceType":"Patient","birthDate":"1980-04-02","name":[{"family":"`+marker+`"}]}`, "Authorization", as(nurse))
		wantStatus(t, r, http.StatusCreated)
		pid := r.JSON(t)["id"].(string)
		wantStatus(t, send("r02-read", "GET", "/fhir/Patient/"+pid, "", "Authorization", as(nurse)), http.StatusOK)
		wantStatus(t, send("r03-search", "GET", "/fhir/Patient?birthdate=1980-04-02&_count=5", "", "Authorization", as(nurse)), http.StatusOK)
		wantStatus(t, send("r04-no-token", "GET", "/fhir/Patient/"+pid, "", "Authorization", ""), http.StatusUnauthorized)
		wantStatus(t, send("r05-forbidden", "GET", "/fhir/Patient/"+pid, "", "Authorization", as(chw)), http.StatusForbidden)
		wantStatus(t, send("r06-not-found", "GET", "/fhir/Patient/no-such-patient", "", "Authorization", as(nurse)), http.StatusNotFound)
		txn := `{"resourceType":"Bundle","type":"transaction","entry":[
			{"fullUrl":"urn:uuid:9a3c1f2e-1b1d-4c1e-8f00-000000000001","resource":{"resourceType":"Patient","name":[{"family":"` + marker + `"}]},"request":{"method":"POST","url":"Patient"}},
			{"resource":{"resourceType":"Organization","id":"org-x","name":"` + marker + `"},"request":{"method":"PUT","url":"Organization/org-x"}}]}`
		r = send("r07-transaction", "POST", "/fhir", txn, "Authorization", as(nurse))
		wantStatus(t, r, http.StatusOK)
		var txr struct {
			Entry []struct{ Response struct{ Location string } }
		}
		json.Unmarshal(r.Body, &txr)
		var txnEntities []string
		for _, e := range txr.Entry {
			loc := strings.TrimPrefix(e.Response.Location, s.Base+"/")
			txnEntities = append(txnEntities, loc)
		}
		slices.Sort(txnEntities)
		wantStatus(t, send("r08-batch", "POST", "/fhir", `{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"Patient/`+pid+`"}}]}`, "Authorization", as(nurse)), http.StatusOK)
		wantStatus(t, send("r09-search-post", "POST", "/fhir/Patient/_search?_count=3", "birthdate=1980-04-02", "Authorization", as(nurse), "Content-Type", "application/x-www-form-urlencoded"), http.StatusOK)
		wantStatus(t, send("r10-conditional-create", "POST", "/fhir/Organization", `{"resourceType":"Organization","name":"`+marker+`"}`, "Authorization", as(nurse), "If-None-Exist", "_id=org-x"), http.StatusOK)
		wantStatus(t, send("r11-invalid", "POST", "/fhir/Patient", `{"resourceType":"Patient","birthDate":"`+marker+`"}`, "Authorization", as(nurse)), http.StatusUnprocessableEntity)
		wantStatus(t, send("r12-update", "PUT", "/fhir/Patient/"+pid, `{"resourceType":"Patient","id":"`+pid+`","name":[{"family":"`+marker+`"}]}`, "Authorization", as(nurse)), http.StatusOK)
		wantStatus(t, send("r12a-history", "GET", "/fhir/Patient/"+pid+"/_history?_count=2", "", "Authorization", as(nurse)), http.StatusOK)
		wantStatus(t, send("r12b-vread", "GET", "/fhir/Patient/"+pid+"/_history/1", "", "Authorization", as(nurse)), http.StatusOK)
		wantStatus(t, send("r13-delete", "DELETE", "/fhir/Patient/"+pid, "", "Authorization", as(nurse)), http.StatusNoContent)
		wantStatus(t, send("r14-audit-write", "POST", "/fhir/AuditEvent", `{"resourceType":"AuditEvent"}`), http.StatusMethodNotAllowed)
		wantStatus(t, send("r15-nowhere", "GET", "/nowhere/"+pid, "", "Authorization", as(nurse)), http.StatusNotFound)
		wantStatus(t, send("r16-metadata", "GET", "/fhir/metadata", "", "Authorization", ""), http.StatusOK)
		s.Do("GET", "/health/ready", nil, "X-Request-Id", "r19-health") // not audited
		opStatus := send("r20-operation", "GET", "/fhir/Claim/$export-invoice?status=active", "").Status
		tokenStatus := send("r21-token", "POST", "/auth/token", "grant_type=client_credentials", "Content-Type", "application/x-www-form-urlencoded", "Authorization", "").Status

		nurseWho := auditSummary{Who: "nurse-7", Client: "plan-app", Role: "plan", Org: "Organization/plan-1"}
		who := func(w auditSummary, sum auditSummary) auditSummary {
			sum.Who, sum.Client, sum.Role, sum.Org = w.Who, w.Client, w.Role, w.Org
			return sum
		}
		admin := auditSummary{Who: auth.DefaultDevClientID, Client: auth.DefaultDevClientID, Role: "admin", Org: "Organization/calaimfhir-test"}
		want := map[string]auditSummary{
			"r01-create":   who(nurseWho, auditSummary{Subtype: "create", Action: "C", Outcome: "0", Status: "201", Entities: []string{"Patient/" + pid + "/_history/1"}, Type: "", Query: ""}),
			"r02-read":     who(nurseWho, auditSummary{Subtype: "read", Action: "R", Outcome: "0", Status: "200", Entities: []string{"Patient/" + pid}}),
			"r03-search":   who(nurseWho, auditSummary{Subtype: "search-type", Action: "E", Outcome: "0", Status: "200", Type: "Patient", Query: "birthdate=1980-04-02&_count=5"}),
			"r04-no-token": {Subtype: "read", Action: "R", Outcome: "4", Status: "401", Entities: []string{"Patient/" + pid}},
			"r05-forbidden": who(auditSummary{Who: "chw-3", Client: "cbo-app", Role: "cbo", Org: "Organization/cbo-a"},
				auditSummary{Subtype: "read", Action: "R", Outcome: "4", Status: "403", Entities: []string{"Patient/" + pid}}),
			"r06-not-found":          who(nurseWho, auditSummary{Subtype: "read", Action: "R", Outcome: "4", Status: "404", Entities: []string{"Patient/no-such-patient"}}),
			"r07-transaction":        who(nurseWho, auditSummary{Subtype: "transaction", Action: "E", Outcome: "0", Status: "200", Entities: txnEntities}),
			"r08-batch":              who(nurseWho, auditSummary{Subtype: "batch", Action: "E", Outcome: "0", Status: "200"}),
			"r09-search-post":        who(nurseWho, auditSummary{Subtype: "search-type", Action: "E", Outcome: "0", Status: "200", Type: "Patient", Query: "_count=3&birthdate=1980-04-02"}),
			"r10-conditional-create": who(nurseWho, auditSummary{Subtype: "create", Action: "C", Outcome: "0", Status: "200", Type: "Organization", Query: "_id=org-x"}),
			"r11-invalid":            who(nurseWho, auditSummary{Subtype: "create", Action: "C", Outcome: "4", Status: "422", Type: "Patient"}),
			"r12-update":             who(nurseWho, auditSummary{Subtype: "update", Action: "U", Outcome: "0", Status: "200", Entities: []string{"Patient/" + pid + "/_history/2"}}),
			"r13-delete":             who(nurseWho, auditSummary{Subtype: "delete", Action: "D", Outcome: "0", Status: "204", Entities: []string{"Patient/" + pid + "/_history/3"}}),
			"r14-audit-write":        who(admin, auditSummary{Subtype: "create", Action: "C", Outcome: "4", Status: "405", Type: "AuditEvent"}),
			"r15-nowhere":            {Action: "R", Outcome: "4", Status: "404", Detail: "GET /nowhere/" + pid},
			"r16-metadata":           {Subtype: "capabilities", Action: "R", Outcome: "0", Status: "200"},
			"r12a-history":           who(nurseWho, auditSummary{Subtype: "history-instance", Action: "R", Outcome: "0", Status: "200", Entities: []string{"Patient/" + pid}, Type: "Patient", Query: "_count=2"}),
			"r20-operation": who(admin, auditSummary{Subtype: "operation", Action: "E", Outcome: outcomeOf(opStatus), Status: fmt.Sprint(opStatus),
				Type: "Claim", Query: "status=active", Detail: "GET $export-invoice"}),
			"r21-token":  {Action: "E", Outcome: outcomeOf(tokenStatus), Status: fmt.Sprint(tokenStatus), Detail: "POST /auth/token"},
			"r12b-vread": who(nurseWho, auditSummary{Subtype: "vread", Action: "R", Outcome: "0", Status: "200", Entities: []string{"Patient/" + pid + "/_history/1"}}),
		}
		for id, w := range want {
			w.RequestID = id
			want[id] = w
		}
		events := auditTrail(t, s, "_count=1000")
		got := summaries(t, events)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("audit trail (-want +got):\n%s", diff)
		}
		for _, raw := range events {
			if typ, err := r4.Validate(raw); err != nil || typ != "AuditEvent" {
				t.Errorf("not a valid R4 AuditEvent (%v): %s", err, raw)
			}
			if strings.Contains(string(raw), marker) {
				t.Errorf("an AuditEvent holds resource contents: %s", raw)
			}
		}
		// The stored records themselves, not only their rendering, hold no resource contents.
		page, err := store.(resources.AuditLog).SearchAudit(context.Background(), &resources.AuditQuery{Count: 1000})
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Records) < len(want) {
			t.Fatalf("the store holds %d records, want at least %d", len(page.Records), len(want))
		}
		for _, rec := range page.Records {
			b, _ := json.Marshal(rec)
			if strings.Contains(string(b), marker) {
				t.Errorf("an audit record holds resource contents: %s", b)
			}
		}
		if logs := s.LogText(); strings.Contains(logs, marker) || strings.Contains(logs, "1980-04-02") {
			t.Errorf("the logs hold request data")
		}
		// Reading the trail is audited too: the searches above are there now.
		after := summaries(t, auditTrail(t, s, "subtype=search-type&entity-type=AuditEvent"))
		if len(after) == 0 {
			t.Errorf("the administrator's AuditEvent searches are not in the trail")
		}
	})
}

// TestAudit_OnlyAdministratorsReadTheTrail: other roles, other scopes and no token are refused;
// nobody writes AuditEvents; system-wide search never includes them.
func TestAudit_OnlyAdministratorsReadTheTrail(t *testing.T) {
	store, _ := fhirtest.SQLite.OpenFresh(t)
	s := fhirtest.Start(t, store, fhirtest.Options{})
	wantStatus(t, s.Do("GET", "/fhir/metadata", nil), http.StatusOK)
	events := auditTrail(t, s, "")
	if len(events) != 1 {
		t.Fatalf("%d audit events, want 1", len(events))
	}
	var ev struct{ ID string }
	json.Unmarshal(events[0], &ev)
	wantStatus(t, s.Do("GET", "/fhir/AuditEvent/"+ev.ID, nil), http.StatusOK)

	tokens := map[string]string{
		"plan":                      s.Token("plan", "Organization/plan-1", ""),
		"cbo":                       s.Token("cbo", "Organization/cbo-a", ""),
		"provider":                  s.Token("provider", "Organization/clinic-1", ""),
		"admin with Patient scopes": s.Token("admin", "Organization/x", "system/Patient.rs"),
	}
	reads := []struct{ method, path, body string }{
		{"GET", "/fhir/AuditEvent", ""},
		{"GET", "/fhir/AuditEvent?agent=" + auth.DefaultDevClientID, ""},
		{"GET", "/fhir/AuditEvent/" + ev.ID, ""},
		{"POST", "/fhir/AuditEvent/_search", "action=R"},
	}
	for name, tok := range tokens {
		for _, rq := range reads {
			r := s.Do(rq.method, rq.path, []byte(rq.body), "Authorization", "Bearer "+tok, "Content-Type", "application/x-www-form-urlencoded")
			if r.Status != http.StatusForbidden || strings.Contains(string(r.Body), ev.ID+`"`) {
				t.Errorf("%s: %s %s → %d %s, want 403 without the trail", name, rq.method, rq.path, r.Status, r.Body)
			}
		}
	}
	for _, rq := range reads {
		wantOutcome(t, s.Do(rq.method, rq.path, nil, "Authorization", ""), http.StatusUnauthorized, "login")
	}
	writes := []struct{ method, path string }{
		{"POST", "/fhir/AuditEvent"}, {"PUT", "/fhir/AuditEvent/" + ev.ID}, {"PATCH", "/fhir/AuditEvent/" + ev.ID},
		{"DELETE", "/fhir/AuditEvent/" + ev.ID}, {"DELETE", "/fhir/AuditEvent?action=R"}, {"PUT", "/fhir/AuditEvent?action=R"},
	}
	for _, w := range writes {
		for _, tok := range []string{s.AdminToken, tokens["plan"]} {
			r := s.Do(w.method, w.path, []byte(`{"resourceType":"AuditEvent"}`), "Authorization", "Bearer "+tok)
			wantOutcome(t, r, http.StatusMethodNotAllowed, "not-supported")
		}
	}
	bundle := `{"resourceType":"Bundle","type":"batch","entry":[{"resource":{"resourceType":"AuditEvent"},"request":{"method":"POST","url":"AuditEvent"}},{"request":{"method":"GET","url":"AuditEvent/` + ev.ID + `"}}]}`
	r := s.Do("POST", "/fhir", []byte(bundle))
	wantStatus(t, r, http.StatusOK)
	if strings.Contains(string(r.Body), `"resourceType":"AuditEvent"`) {
		t.Errorf("a batch reads or writes AuditEvents: %s", r.Body)
	}
	wantOutcome(t, s.Do("GET", "/fhir?_type=AuditEvent", nil), http.StatusBadRequest, "")
	r = s.Do("GET", "/fhir?_count=1000", nil)
	wantStatus(t, r, http.StatusOK)
	if strings.Contains(string(r.Body), `"AuditEvent"`) {
		t.Errorf("system-wide search returns AuditEvents")
	}
	// The refused attempts are on record, with who tried.
	got := auditTrail(t, s, "outcome=4&agent=Organization/plan-1&_count=1000")
	if want := len(reads) + len(writes); len(got) != want {
		t.Errorf("%d refused plan requests on record, want %d", len(got), want)
	}
}

// TestAudit_SearchParameters checks each search parameter over HTTP against the full trail.
func TestAudit_SearchParameters(t *testing.T) {
	store, _ := fhirtest.SQLite.OpenFresh(t)
	s := fhirtest.Start(t, store, fhirtest.Options{})
	plan := s.Token("plan", "Organization/plan-1", "")
	before := time.Now().UTC()
	for i := 0; i < 3; i++ {
		create(t, s, "Organization", []byte(`{"resourceType":"Organization","name":"org"}`))
	}
	s.Do("GET", "/fhir/Organization?name=org", nil, "Authorization", "Bearer "+plan)
	s.Do("GET", "/fhir/Organization/missing", nil, "Authorization", "Bearer "+plan)
	s.Do("GET", "/fhir/Patient", nil, "Authorization", "")
	// Every query is bounded by the instant before the first search: searches are audited too.
	cutoff := "&date=lt" + time.Now().UTC().Format(time.RFC3339Nano)
	all := summaries(t, auditTrail(t, s, "_count=1000"+cutoff))
	if len(all) != 6 {
		t.Fatalf("%d events, want 6", len(all))
	}
	count := func(f func(auditSummary) bool) int {
		n := 0
		for _, e := range all {
			if f(e) {
				n++
			}
		}
		return n
	}
	var someOrg string
	for _, e := range all {
		if len(e.Entities) == 1 && strings.HasSuffix(e.Entities[0], "/_history/1") {
			someOrg, _, _ = strings.Cut(e.Entities[0], "/_history/")
		}
	}
	tests := []struct {
		query string
		want  int
	}{
		{"agent=Organization/plan-1", 2},
		{"agent=" + auth.DefaultDevClientID, count(func(e auditSummary) bool { return e.Client == auth.DefaultDevClientID })}, // admin and plan tokens share the dev client id
		{"agent=nobody", 0},
		{"entity=" + someOrg, 1},
		{"entity=" + s.Base + "/" + someOrg, 1},
		{"entity-type=Organization", 5},
		{"action=C", 3},
		{"action=R,E", 3},
		{"action=R,E&action=E", 2},
		{"outcome=4", 2},
		{"outcome=http://hl7.org/fhir/audit-event-outcome|0", 4},
		{"subtype=create", 3},
		{"subtype=read,search-type&agent=Organization/plan-1", 2},
		{"date=ge" + before.Add(-time.Minute).Format(time.RFC3339), 6},
		{"date=lt" + before.Add(-time.Minute).Format(time.RFC3339), 0},
		{"date=ge" + before.Add(-time.Minute).Format(time.RFC3339) + "&date=lt" + before.Add(time.Hour).Format(time.RFC3339), 6},
		{"date=" + before.Format("2006"), 6},
	}
	for _, tc := range tests {
		for _, page := range []string{"", "&_count=1"} {
			if got := len(auditTrail(t, s, tc.query+page+cutoff)); got != tc.want {
				t.Errorf("%s%s: %d events, want %d", tc.query, page, got, tc.want)
			}
		}
	}
	// Paging one at a time returns the same events, newest first.
	var ids, paged []string
	for _, raw := range auditTrail(t, s, "_count=1000"+cutoff) {
		var ev struct{ ID string }
		json.Unmarshal(raw, &ev)
		ids = append(ids, ev.ID)
	}
	for _, raw := range auditTrail(t, s, "_count=2"+cutoff) {
		var ev struct{ ID string }
		json.Unmarshal(raw, &ev)
		paged = append(paged, ev.ID)
	}
	if len(ids) != 6 || !slices.Equal(ids, paged) {
		t.Errorf("paged by 2: %v, want %v", paged, ids)
	}
	for _, bad := range []string{"name=x", "action=X", "outcome=5", "date=ne2024", "date=yesterday", "_count=0", "_cursor=zzz", "agent="} {
		wantOutcome(t, s.Do("GET", "/fhir/AuditEvent?"+bad, nil), http.StatusBadRequest, "")
	}
	wantOutcome(t, s.Do("GET", "/fhir/AuditEvent/no-such-event", nil), http.StatusNotFound, "not-found")
}

// TestAudit_RetentionPurge: records older than the retention go, newer ones stay.
func TestAudit_RetentionPurge(t *testing.T) {
	fhirtest.ForEachStore(t, func(t *testing.T, h storetest.Harness) {
		store, _ := h.OpenFresh(t)
		al := store.(resources.AuditLog)
		now := time.Now().UTC().Truncate(time.Microsecond)
		var old []*resources.AuditRecord
		for i, age := range []time.Duration{49 * time.Hour, 100 * time.Hour, 24 * 365 * time.Hour} {
			old = append(old, &resources.AuditRecord{ID: fmt.Sprintf("old-%d", i), Recorded: now.Add(-age), Start: now.Add(-age),
				Subtype: "read", Action: "R", Status: 200, Method: "GET", Subject: "someone"})
		}
		recent := &resources.AuditRecord{ID: "recent", Recorded: now.Add(-47 * time.Hour), Start: now.Add(-47 * time.Hour),
			Subtype: "read", Action: "R", Status: 200, Method: "GET", Subject: "someone"}
		if err := al.AppendAudit(context.Background(), append(old, recent)); err != nil {
			t.Fatal(err)
		}
		s := fhirtest.Start(t, store, fhirtest.Options{AuditRetention: 48 * time.Hour, AuditPurgeInterval: 20 * time.Millisecond})
		deadline := time.Now().Add(20 * time.Second)
		for {
			page, err := al.SearchAudit(context.Background(), &resources.AuditQuery{Count: 100, Keys: [][]string{{resources.AuditAgentKey + "someone"}}})
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, r := range page.Records {
				ids = append(ids, r.ID)
			}
			if slices.Equal(ids, []string{"recent"}) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("after the purge: %v, want [recent]", ids)
			}
			time.Sleep(20 * time.Millisecond)
		}
		// The server's own fresh records are kept.
		wantStatus(t, s.Do("GET", "/fhir/metadata", nil, "X-Request-Id", "fresh"), http.StatusOK)
		time.Sleep(100 * time.Millisecond) // a few purge rounds
		if got := summaries(t, auditTrail(t, s, "subtype=capabilities")); len(got) != 1 {
			t.Errorf("fresh record purged: %v", got)
		}
	})
}

// TestAudit_CloseFlushesTheQueue: records queued at shutdown reach the store.
func TestAudit_CloseFlushesTheQueue(t *testing.T) {
	store, _ := fhirtest.SQLite.OpenFresh(t)
	s := fhirtest.Start(t, store, fhirtest.Options{})
	for i := 0; i < 30; i++ {
		s.Do("GET", "/fhir/Patient/p"+fmt.Sprint(i), nil)
	}
	s.HTTP.Close()
	s.Server.Close()
	page, err := store.(resources.AuditLog).SearchAudit(context.Background(), &resources.AuditQuery{Count: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Records) != 30 {
		t.Errorf("%d records stored at shutdown, want 30", len(page.Records))
	}
}

// BenchmarkAudit measures what recording costs on the embedded store, to choose between a
// synchronous write per request and the batched background writer:
//
//	go test ./server -run '^$' -bench BenchmarkAudit -benchtime 2000x
//
// append-1 is a synchronous write (one transaction per record), append-256 one batch of the
// background writer (reported per record), read the whole request path of GET Patient/id
// with the batched writer on.
func BenchmarkAudit(b *testing.B) {
	store, _ := fhirtest.SQLite.OpenFresh(b)
	al := store.(resources.AuditLog)
	now := time.Now().UTC().Truncate(time.Microsecond)
	record := func(i int) *resources.AuditRecord {
		at := now.Add(time.Duration(i) * time.Microsecond)
		return &resources.AuditRecord{ID: fmt.Sprintf("%016x%s", at.UnixMicro(), resources.NewID()[:16]), Recorded: at, Start: now, // ids as the server makes them
			Subtype: "read", Action: "R", Status: 200, Method: "GET", Subject: "nurse-7", ClientID: "plan-app",
			Org: "Organization/plan-1", Role: "plan", Address: "10.1.2.3", RequestID: resources.NewID()[:16],
			Type: "Patient", Entities: []string{fmt.Sprintf("Patient/p-%d", i%1000)}}
	}
	b.Run("append-1", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if err := al.AppendAudit(context.Background(), []*resources.AuditRecord{record(i)}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("append-256", func(b *testing.B) {
		batch := make([]*resources.AuditRecord, 256)
		for i := 0; b.Loop(); i++ {
			for j := range batch {
				batch[j] = record(i*256 + j)
			}
			if err := al.AppendAudit(context.Background(), batch); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*256), "ns/record")
	})
	b.Run("read", func(b *testing.B) {
		s := fhirtest.Start(b, store, fhirtest.Options{})
		if rec := serve(b, s, "PUT", "/fhir/Patient/p-1", []byte(`{"resourceType":"Patient","id":"p-1"}`)); rec.Code != http.StatusCreated {
			b.Fatalf("%d %s", rec.Code, rec.Body)
		}
		for b.Loop() {
			if rec := serve(b, s, "GET", "/fhir/Patient/p-1", nil); rec.Code != http.StatusOK {
				b.Fatalf("%d %s", rec.Code, rec.Body)
			}
		}
	})
}

// metricValue reads one unlabelled metric from /metrics.
func metricValue(t *testing.T, s *fhirtest.Server, name string) float64 {
	t.Helper()
	r := s.Do("GET", "/metrics", nil)
	for _, line := range strings.Split(string(r.Body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			var f float64
			fmt.Sscan(v, &f)
			return f
		}
	}
	t.Fatalf("metric %s not exported", name)
	return 0
}

// TestAudit_StoreOutage_RecordsWaitOrAreCounted: while the store refuses writes the records
// wait in the queue; once it is full they are dropped and counted; after the outage every
// record is either stored or counted as dropped, none silently lost.
func TestAudit_StoreOutage_RecordsWaitOrAreCounted(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the audit writer's retries")
	}
	h := fhirtest.SQLite
	store, loc := h.OpenFresh(t)
	s := fhirtest.Start(t, store, fhirtest.Options{AuditQueue: 4})
	restore := h.Outage(t, loc)
	// A first record makes the writer fail and retry; meanwhile it takes nothing from the queue.
	wantStatus(t, s.Do("GET", "/fhir/metadata", nil), http.StatusOK)
	for deadline := time.Now().Add(30 * time.Second); metricValue(t, s, "calaimfhir_audit_write_failures_total") == 0; {
		if time.Now().After(deadline) {
			t.Fatal("the audit writer did not fail during the outage")
		}
		time.Sleep(50 * time.Millisecond)
	}
	const requests = 21
	for i := 1; i < requests; i++ {
		wantStatus(t, s.Do("GET", "/fhir/metadata", nil), http.StatusOK)
	}
	if d := metricValue(t, s, "calaimfhir_audit_dropped_total"); d == 0 {
		t.Errorf("no record counted as dropped while the queue of 4 was full")
	}
	restore()
	deadline := time.Now().Add(60 * time.Second)
	for {
		written := metricValue(t, s, "calaimfhir_audit_written_total")
		dropped := metricValue(t, s, "calaimfhir_audit_dropped_total")
		if written+dropped == requests {
			if written < 4 {
				t.Errorf("%v records written after the outage, want at least the 4 queued", written)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("written %v + dropped %v, want %d", written, dropped, requests)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if f := metricValue(t, s, "calaimfhir_audit_write_failures_total"); f == 0 {
		t.Errorf("no failed write counted during the outage")
	}
	if logs := s.LogText(); !strings.Contains(logs, "audit queue full") {
		t.Errorf("the drops were not logged")
	}
}
