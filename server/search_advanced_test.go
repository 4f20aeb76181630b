package server_test

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/calaimfhir/calaimfhir/internal/fhirtest"
	"github.com/calaimfhir/calaimfhir/internal/storetest"
)

// referralNetwork stores a small CalAIM referral network with fixed ids:
// plan-1 covers ana (CIN 11111111A) and ben (22222222B); cbo-a and cbo-b receive Tasks.
func referralNetwork(t *testing.T, s *fhirtest.Server) {
	t.Helper()
	put := func(typ, id, body string) {
		t.Helper()
		r := s.Do("PUT", "/fhir/"+typ+"/"+id, []byte(fmt.Sprintf(`{"resourceType":%q,"id":%q,%s}`, typ, id, body)))
		if r.Status != http.StatusCreated && r.Status != http.StatusOK {
			t.Fatalf("PUT %s/%s: %d %s", typ, id, r.Status, r.Body)
		}
	}
	put("Organization", "plan-1", `"name":"Inland Health Plan","active":true`)
	put("Organization", "cbo-a", `"name":"Casa de Esperanza","partOf":{"reference":"Organization/hub-1"}`)
	put("Organization", "cbo-b", `"name":"Bridges Food Bank"`)
	put("Organization", "hub-1", `"name":"Riverside Community Care Hub"`)
	put("Patient", "ana", `"identifier":[{"system":"urn:cin","value":"11111111A"}],"name":[{"family":"Álvarez","given":["Ana"]}],"birthDate":"1980-04-02","managingOrganization":{"reference":"Organization/plan-1"}`)
	put("Patient", "ben", `"identifier":[{"system":"urn:cin","value":"22222222B"}],"name":[{"family":"Brown","given":["Ben"]}],"birthDate":"1955-11-30"`)
	// ana is a member of plan-1, which lets the plan see her and her referrals (tenancy).
	put("Coverage", "cov-ana", `"status":"active","beneficiary":{"reference":"Patient/ana"},"payor":[{"reference":"Organization/plan-1"}]`)
	put("ServiceRequest", "sr-1", `"status":"active","intent":"order","subject":{"reference":"Patient/ana"},"code":{"text":"Medically tailored meals"},"requester":{"reference":"Organization/plan-1"}`)
	put("ServiceRequest", "sr-2", `"status":"active","intent":"order","subject":{"reference":"Patient/ben"},"code":{"text":"Housing navigation"},"requester":{"reference":"Organization/plan-1"}`)
	tasks := []struct{ id, sr, patient, owner, status string }{
		{"t-1", "sr-1", "ana", `"owner":{"reference":"Organization/cbo-a"},`, "requested"},
		{"t-2", "sr-2", "ben", `"owner":{"reference":"Organization/cbo-b"},`, "accepted"},
		{"t-3", "sr-2", "ben", ``, "requested"},
		{"t-4", "sr-1", "ana", ``, "cancelled"},
	}
	for _, tk := range tasks {
		reason := ""
		if tk.status == "cancelled" {
			reason = `"statusReason":{"text":"duplicate"},`
		}
		put("Task", tk.id, fmt.Sprintf(`"status":%q,"intent":"order",%s%s"focus":{"reference":"ServiceRequest/%s"},"for":{"reference":"Patient/%s"},"requester":{"reference":"Organization/plan-1"},"authoredOn":"2025-03-0%sT09:00:00Z"`,
			tk.status, reason, tk.owner, tk.sr, tk.patient, tk.id[2:]))
	}
	put("Claim", "c-1", `"status":"active","type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/claim-type","code":"professional"}]},"use":"claim","patient":{"reference":"Patient/ana"},"created":"2025-04-01","provider":{"reference":"Organization/cbo-a"},"priority":{"coding":[{"code":"normal"}]},"insurance":[{"sequence":1,"focal":true,"coverage":{"display":"Medi-Cal"}}]`)
}

// searchNames returns the resource ids of match entries and of include entries.
func searchNames(t *testing.T, s *fhirtest.Server, query string) (matches, included []string) {
	t.Helper()
	r := s.Do("GET", "/fhir/"+query, nil, "Prefer", "handling=strict")
	wantStatus(t, r, http.StatusOK)
	b := r.JSON(t)
	entries, _ := b["entry"].([]any)
	for _, e := range entries {
		m := e.(map[string]any)
		res := m["resource"].(map[string]any)
		name := res["resourceType"].(string) + "/" + res["id"].(string)
		switch m["search"].(map[string]any)["mode"] {
		case "match":
			matches = append(matches, name)
		case "include":
			included = append(included, name)
		}
	}
	slices.Sort(matches)
	slices.Sort(included)
	return matches, included
}

func TestSearch_SDOHCCPollingQueries(t *testing.T) {
	fhirtest.ForEachStore(t, func(t *testing.T, h storetest.Harness) {
		s := start(t, h)
		referralNetwork(t, s)
		// The watermark is the last Task write a CBO saw; later writes must show up, earlier not.
		t2 := s.Do("GET", "/fhir/Task/t-2", nil).JSON(t)
		_, watermark := meta(t2)
		cases := map[string][]string{
			"Task?owner=Organization/cbo-a":                                              {"Task/t-1"},
			"Task?owner=Organization/cbo-b&_lastUpdated=gt" + url.QueryEscape(watermark): nil,
			"Task?owner:missing=true&status=requested":                                   {"Task/t-3"},
			"Task?owner:missing=true":                                                    {"Task/t-3", "Task/t-4"},
			"Task?owner:missing=false&status=requested,accepted":                         {"Task/t-1", "Task/t-2"},
		}
		for q, want := range cases {
			if got, _ := searchNames(t, s, q); !slices.Equal(got, want) {
				t.Errorf("%s: got %v, want %v", q, got, want)
			}
		}
		// The CBO accepts t-2 after the watermark: polling from the watermark sees exactly it.
		body := s.Do("GET", "/fhir/Task/t-2", nil).Body
		wantStatus(t, s.Do("PUT", "/fhir/Task/t-2", body), http.StatusOK)
		got, _ := searchNames(t, s, "Task?owner=Organization/cbo-b&_lastUpdated=gt"+url.QueryEscape(watermark)+"&_sort=_lastUpdated")
		if !slices.Equal(got, []string{"Task/t-2"}) {
			t.Fatalf("poll after update: %v", got)
		}
	})
}

func TestSearch_ChainsHasIncludes(t *testing.T) {
	fhirtest.ForEachStore(t, func(t *testing.T, h storetest.Harness) {
		s := start(t, h)
		referralNetwork(t, s)
		cases := []struct {
			query             string
			matches, included []string
		}{
			{"Task?patient.identifier=urn:cin|22222222B", []string{"Task/t-2", "Task/t-3"}, nil},
			{"Task?patient.identifier=11111111A&status=requested", []string{"Task/t-1"}, nil},
			{"Claim?patient.identifier=urn:cin|11111111A", []string{"Claim/c-1"}, nil},
			{"Task?focus:ServiceRequest.code:text=housing", []string{"Task/t-2", "Task/t-3"}, nil},
			{"Task?owner.partof.name=riverside", []string{"Task/t-1"}, nil},
			{"Task?patient.name=alvarez", []string{"Task/t-1", "Task/t-4"}, nil},
			{"Task?patient.identifier=urn:cin|99999999Z", nil, nil},
			{"Patient?_has:Task:patient:owner=Organization/cbo-a", []string{"Patient/ana"}, nil},
			{"Patient?_has:Task:patient:status=requested", []string{"Patient/ana", "Patient/ben"}, nil},
			{"Patient?_has:Claim:patient:created=2025-04", []string{"Patient/ana"}, nil},
			{"Organization?_has:Task:owner:status=accepted", []string{"Organization/cbo-b"}, nil},
			{"Task?_id=t-1&_include=Task:patient", []string{"Task/t-1"}, []string{"Patient/ana"}},
			{"Task?_id=t-1,t-2&_include=Task:focus&_include=Task:owner", []string{"Task/t-1", "Task/t-2"},
				[]string{"Organization/cbo-a", "Organization/cbo-b", "ServiceRequest/sr-1", "ServiceRequest/sr-2"}},
			{"Task?_id=t-1&_include=Task:owner&_include:iterate=Organization:partof", []string{"Task/t-1"},
				[]string{"Organization/cbo-a", "Organization/hub-1"}},
			{"Task?_id=t-1&_include=*", []string{"Task/t-1"},
				[]string{"Organization/cbo-a", "Organization/plan-1", "Patient/ana", "ServiceRequest/sr-1"}},
			{"Task?_id=t-1&_include=Task:owner:Patient", []string{"Task/t-1"}, nil},
			{"Patient?_id=ana&_revinclude=Task:patient", []string{"Patient/ana"}, []string{"Task/t-1", "Task/t-4"}},
			{"ServiceRequest?_id=sr-2&_revinclude=Task:focus&_include:iterate=Task:owner", []string{"ServiceRequest/sr-2"},
				[]string{"Organization/cbo-b", "Task/t-2", "Task/t-3"}},
			{"Patient?birthdate=lt1960&_revinclude=Claim:patient", []string{"Patient/ben"}, nil},
		}
		for _, tc := range cases {
			t.Run(tc.query, func(t *testing.T) {
				matches, included := searchNames(t, s, tc.query)
				if !slices.Equal(matches, tc.matches) || !slices.Equal(included, tc.included) {
					t.Fatalf("matches %v included %v; want %v and %v", matches, included, tc.matches, tc.included)
				}
			})
		}
		for _, bad := range []string{
			"Task?patient.identifier.system=x",       // identifier is not a reference
			"Task?focus.subject.organization.name=x", // three levels
			"Patient?_has:Task:status:owner=x",       // status is not a reference
			"Patient?_has:Task",
		} {
			wantOutcome(t, s.Do("GET", "/fhir/"+bad, nil, "Prefer", "handling=strict"), http.StatusBadRequest, "")
		}
	})
}

func TestSearch_Elements(t *testing.T) {
	fhirtest.ForEachStore(t, func(t *testing.T, h storetest.Harness) {
		s := start(t, h)
		referralNetwork(t, s)
		r := s.Do("GET", "/fhir/Patient?_id=ana&_elements=identifier,birthDate", nil)
		wantStatus(t, r, http.StatusOK)
		res := r.JSON(t)["entry"].([]any)[0].(map[string]any)["resource"].(map[string]any)
		var keys []string
		for k := range res {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		if want := []string{"birthDate", "id", "identifier", "meta", "resourceType"}; !slices.Equal(keys, want) {
			t.Fatalf("elements %v, want %v", keys, want)
		}
		if !strings.Contains(fmt.Sprint(res["meta"]), "SUBSETTED") {
			t.Fatalf("subsetted resource without the SUBSETTED tag: %v", res["meta"])
		}
		if !strings.Contains(r.JSON(t)["link"].([]any)[0].(map[string]any)["url"].(string), "_elements=") {
			t.Fatal("self link does not show _elements")
		}
	})
}

func TestSearch_SystemWide(t *testing.T) {
	fhirtest.ForEachStore(t, func(t *testing.T, h storetest.Harness) {
		s := start(t, h)
		referralNetwork(t, s)
		got, _ := searchNames(t, s, "?_type=Patient,Claim&_id=ana,ben,c-1,t-1")
		if want := []string{"Claim/c-1", "Patient/ana", "Patient/ben"}; !slices.Equal(got, want) {
			t.Fatalf("_type=Patient,Claim: %v, want %v", got, want)
		}
		// Paging through every resource, two at a time, in lastUpdated order.
		var all []string
		next := s.Base + "?_count=2&_total=accurate"
		for next != "" {
			r := s.Do("GET", next, nil)
			wantStatus(t, r, http.StatusOK)
			b := r.JSON(t)
			if fmt.Sprint(b["total"]) != "14" {
				t.Fatalf("total %v, want 14", b["total"])
			}
			entries, _ := b["entry"].([]any)
			for _, e := range entries {
				res := e.(map[string]any)["resource"].(map[string]any)
				all = append(all, res["resourceType"].(string)+"/"+res["id"].(string))
			}
			next = ""
			for _, l := range b["link"].([]any) {
				if m := l.(map[string]any); m["relation"] == "next" {
					next = m["url"].(string)
				}
			}
		}
		if len(all) != 14 || all[0] != "Organization/plan-1" || all[13] != "Claim/c-1" {
			t.Fatalf("system paging gave %v", all)
		}
		wantOutcome(t, s.Do("GET", "/fhir?_type=Spaceship", nil), http.StatusBadRequest, "")
		wantOutcome(t, s.Do("GET", "/fhir?_type=Patient,Task&owner=x", nil, "Prefer", "handling=strict"), http.StatusBadRequest, "")
	})
}

func TestSearch_SummaryData_DropsNarrative(t *testing.T) {
	fhirtest.ForEachStore(t, func(t *testing.T, h storetest.Harness) {
		s := start(t, h)
		wantStatus(t, s.Do("PUT", "/fhir/Organization/o1", []byte(`{"resourceType":"Organization","id":"o1","name":"A",
			"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">A</div>"}}`)), http.StatusCreated)
		r := s.Do("GET", "/fhir/Organization?_summary=data", nil)
		res := r.JSON(t)["entry"].([]any)[0].(map[string]any)["resource"].(map[string]any)
		if res["text"] != nil || res["name"] != "A" || !strings.Contains(fmt.Sprint(res["meta"]), "SUBSETTED") {
			t.Fatalf("_summary=data: %v", res)
		}
		wantOutcome(t, s.Do("GET", "/fhir/Organization?_summary=maybe", nil, "Prefer", "handling=strict"), http.StatusBadRequest, "")
	})
}
