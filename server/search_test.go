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

// bundleIDs returns the ids of the match entries, the total, and the links of a searchset.
func bundleIDs(t testing.TB, r *fhirtest.Response) (ids []string, total string, links map[string]string, outcomes int) {
	t.Helper()
	wantStatus(t, r, http.StatusOK)
	b := r.JSON(t)
	if b["resourceType"] != "Bundle" || b["type"] != "searchset" {
		t.Fatalf("not a searchset: %s", r.Body)
	}
	total = fmt.Sprint(b["total"])
	links = map[string]string{}
	if ls, ok := b["link"].([]any); ok {
		for _, l := range ls {
			m := l.(map[string]any)
			links[m["relation"].(string)] = m["url"].(string)
		}
	}
	entries, _ := b["entry"].([]any)
	for _, e := range entries {
		m := e.(map[string]any)
		mode := m["search"].(map[string]any)["mode"]
		res := m["resource"].(map[string]any)
		if mode == "outcome" {
			outcomes++
			continue
		}
		ids = append(ids, res["id"].(string))
	}
	return
}

type referralData struct {
	tasks    map[string]string // name → id
	patients map[string]string
	firstLU  string // lastUpdated of the first Task
	lastLU   string
}

// seedReferrals stores two patients and five Tasks for two CBOs.
func seedReferrals(t *testing.T, s *fhirtest.Server) *referralData {
	t.Helper()
	d := &referralData{tasks: map[string]string{}, patients: map[string]string{}}
	for _, p := range []struct{ name, cin string }{{"ana", "11111111A"}, {"ben", "22222222B"}} {
		res := create(t, s, "Patient", []byte(fmt.Sprintf(`{"resourceType":"Patient","identifier":[{"system":"https://calaimfhir.example.org/sid/medi-cal-cin","value":%q}]}`, p.cin)))
		d.patients[p.name] = res["id"].(string)
	}
	tasks := []struct{ name, patient, owner, status string }{
		{"t1", "ana", "Organization/cbo-a", "requested"},
		{"t2", "ana", "Organization/cbo-a", "accepted"},
		{"t3", "ben", "Organization/cbo-a", "completed"},
		{"t4", "ben", "Organization/cbo-b", "requested"},
		{"t5", "ben", "Organization/cbo-b", "rejected"},
	}
	for i, tk := range tasks {
		body := fmt.Sprintf(`{"resourceType":"Task","identifier":[{"system":"urn:referral","value":%q}],
			"status":%q,"intent":"order","for":{"reference":"Patient/%s"},"owner":{"reference":%q},
			"requester":{"reference":"Organization/plan-1"}%s}`,
			tk.name, tk.status, d.patients[tk.patient], tk.owner, statusReason(tk.status))
		res := create(t, s, "Task", []byte(body))
		d.tasks[tk.name] = res["id"].(string)
		_, lu := meta(res)
		if i == 0 {
			d.firstLU = lu
		}
		d.lastLU = lu
	}
	return d
}

// statusReason adds what the referral workflow requires of a status (resources.CheckTask).
func statusReason(status string) string {
	switch status {
	case "rejected", "cancelled", "failed":
		return `,"statusReason":{"text":"no capacity"}`
	case "completed":
		return `,"output":[{"type":{"text":"result"},"valueString":"meals delivered"}]`
	}
	return ""
}

func names(d *referralData, ids []string) []string {
	var out []string
	for _, id := range ids {
		for name, tid := range d.tasks {
			if tid == id {
				out = append(out, name)
			}
		}
		for name, pid := range d.patients {
			if pid == id {
				out = append(out, name)
			}
		}
	}
	slices.Sort(out)
	return out
}

func TestSearch_BasicParameters(t *testing.T) {
	fhirtest.ForEachStore(t, func(t *testing.T, h storetest.Harness) {
		s := start(t, h)
		d := seedReferrals(t, s)
		cin := url.QueryEscape("https://calaimfhir.example.org/sid/medi-cal-cin|22222222B")
		cases := []struct {
			query string
			want  []string
		}{
			{"Task", []string{"t1", "t2", "t3", "t4", "t5"}},
			{"Task?owner=Organization/cbo-a", []string{"t1", "t2", "t3"}},
			{"Task?owner=cbo-b", []string{"t4", "t5"}},
			{"Task?owner=" + url.QueryEscape(s.Base+"/Organization/cbo-b"), []string{"t4", "t5"}},
			{"Task?owner=Organization/cbo-c", nil},
			{"Task?requester=Organization/plan-1&status=requested", []string{"t1", "t4"}},
			{"Task?status=requested,accepted", []string{"t1", "t2", "t4"}},
			{"Task?owner=Organization/cbo-a&status=requested", []string{"t1"}},
			{"Task?patient=Patient/" + d.patients["ana"], []string{"t1", "t2"}},
			{"Task?subject=" + d.patients["ben"], []string{"t3", "t4", "t5"}},
			// patient refers to Patient alone: an id alone is asked as Patient/id.
			{"Task?patient=" + d.patients["ana"], []string{"t1", "t2"}},
			{"Task?owner=cbo-b,cbo-c", []string{"t4", "t5"}},
			{"Task?identifier=urn:referral|t3", []string{"t3"}},
			{"Task?identifier=t3", []string{"t3"}},
			{"Task?identifier=urn:other|t3", nil},
			{"Task?identifier=|t3", nil},
			{"Task?identifier=urn:referral|", []string{"t1", "t2", "t3", "t4", "t5"}},
			{"Task?_id=" + d.tasks["t2"] + "," + d.tasks["t5"], []string{"t2", "t5"}},
			{"Task?_lastUpdated=gt" + url.QueryEscape(d.firstLU), []string{"t2", "t3", "t4", "t5"}},
			{"Task?_lastUpdated=le" + url.QueryEscape(d.firstLU), []string{"t1"}},
			{"Task?_lastUpdated=lt" + url.QueryEscape(d.lastLU) + "&_lastUpdated=ge" + url.QueryEscape(d.firstLU), []string{"t1", "t2", "t3", "t4"}},
			{"Task?_lastUpdated=2020", nil},
			{"Task?_lastUpdated=gt2020-01-01", []string{"t1", "t2", "t3", "t4", "t5"}},
			{"Patient?identifier=" + cin, []string{"ben"}},
			{"Patient?identifier=11111111A", []string{"ana"}},
		}
		for _, tc := range cases {
			t.Run(tc.query, func(t *testing.T) {
				ids, total, links, _ := bundleIDs(t, s.Do("GET", "/fhir/"+tc.query, nil))
				if got := names(d, ids); !slices.Equal(got, tc.want) {
					t.Fatalf("got %v, want %v", got, tc.want)
				}
				if total != fmt.Sprint(len(tc.want)) {
					t.Fatalf("total %s, want %d", total, len(tc.want))
				}
				if !strings.HasPrefix(links["self"], s.Base+"/") {
					t.Fatalf("self link %q", links["self"])
				}
			})
		}
	})
}

func TestSearch_CountAndNextLinks(t *testing.T) {
	fhirtest.ForEachStore(t, func(t *testing.T, h storetest.Harness) {
		s := start(t, h)
		var want []string
		for i := 0; i < 7; i++ {
			res := create(t, s, "Task", []byte(`{"resourceType":"Task","status":"requested","intent":"order","owner":{"reference":"Organization/cbo-a"}}`))
			want = append(want, res["id"].(string))
		}
		var got []string
		next := s.Base + "/Task?owner=Organization/cbo-a&_count=3&_total=accurate"
		pages := 0
		for next != "" {
			pages++
			ids, total, links, _ := bundleIDs(t, s.Do("GET", next, nil))
			if total != "7" {
				t.Fatalf("total %s on page %d, want 7", total, pages)
			}
			got = append(got, ids...)
			next = links["next"]
			// Writes between pages do not disturb the pages already promised.
			create(t, s, "Task", []byte(`{"resourceType":"Task","status":"requested","intent":"order","owner":{"reference":"Organization/cbo-b"}}`))
		}
		if pages != 3 || !slices.Equal(got, want) {
			t.Fatalf("%d pages, ids %v; want 3 pages with %v in creation order", pages, got, want)
		}
		desc, _, _, _ := bundleIDs(t, s.Do("GET", "/fhir/Task?owner=Organization/cbo-a&_sort=-_lastUpdated&_count=2", nil))
		if !slices.Equal(desc, []string{want[6], want[5]}) {
			t.Fatalf("_sort=-_lastUpdated gave %v", desc)
		}
		_, total, _, _ := bundleIDs(t, s.Do("GET", "/fhir/Task?_summary=count", nil))
		if total != "10" {
			t.Fatalf("_summary=count total %s, want 10", total)
		}
		r := s.Do("GET", "/fhir/Task?_total=none", nil)
		if _, has := r.JSON(t)["total"]; has {
			t.Fatal("_total=none still reports a total")
		}
		r = s.Do("GET", "/fhir/Task?_count=2", nil)
		if _, has := r.JSON(t)["total"]; has {
			t.Fatal("a partial page reports a total nobody asked for")
		}
	})
}

func TestSearch_UnknownParameters_LenientOrStrict(t *testing.T) {
	fhirtest.ForEachStore(t, func(t *testing.T, h storetest.Harness) {
		s := start(t, h)
		seedReferrals(t, s)
		ids, _, links, outcomes := bundleIDs(t, s.Do("GET", "/fhir/Task?owner=Organization/cbo-b&shoe-size=12", nil))
		if len(ids) != 2 || outcomes != 1 {
			t.Fatalf("lenient: %d matches and %d outcome entries, want 2 and 1", len(ids), outcomes)
		}
		if strings.Contains(links["self"], "shoe-size") || !strings.Contains(links["self"], "owner=") {
			t.Fatalf("self link %q should show what was applied", links["self"])
		}
		wantOutcome(t, s.Do("GET", "/fhir/Task?owner=Organization/cbo-b&shoe-size=12", nil, "Prefer", "handling=strict"), http.StatusBadRequest, "")
		wantOutcome(t, s.Do("GET", "/fhir/Task?owner:exact=Organization/cbo-b", nil, "Prefer", "handling=strict"), http.StatusBadRequest, "")
	})
}

func TestSearch_PostEqualsGet(t *testing.T) {
	fhirtest.ForEachStore(t, func(t *testing.T, h storetest.Harness) {
		s := start(t, h)
		seedReferrals(t, s)
		get, total, _, _ := bundleIDs(t, s.Do("GET", "/fhir/Task?owner=Organization/cbo-a&status=requested,completed", nil))
		post := s.Do("POST", "/fhir/Task/_search?owner=Organization/cbo-a", []byte("status=requested,completed"),
			"Content-Type", "application/x-www-form-urlencoded")
		ids, ptotal, _, _ := bundleIDs(t, post)
		if !slices.Equal(ids, get) || total != ptotal || len(ids) != 2 {
			t.Fatalf("POST _search %v (total %s), GET %v (total %s)", ids, ptotal, get, total)
		}
		wantOutcome(t, s.Do("POST", "/fhir/Task/_search", []byte(`{"owner":"x"}`)), http.StatusUnsupportedMediaType, "")
	})
}

func TestSearch_HostileValuesAreLiteral(t *testing.T) {
	fhirtest.ForEachStore(t, func(t *testing.T, h storetest.Harness) {
		s := start(t, h)
		seedReferrals(t, s)
		for _, v := range []string{`{"$ne":null}`, `$where`, `{}`, `.*`, `'||1=1--`, `%`, `Organization/cbo-a' OR '1'='1`} {
			ids, _, _, _ := bundleIDs(t, s.Do("GET", "/fhir/Task?owner="+url.QueryEscape(v), nil))
			if len(ids) != 0 {
				t.Fatalf("owner=%s matched %d tasks", v, len(ids))
			}
			ids, _, _, _ = bundleIDs(t, s.Do("GET", "/fhir/Task?identifier="+url.QueryEscape(v), nil))
			if len(ids) != 0 {
				t.Fatalf("identifier=%s matched %d tasks", v, len(ids))
			}
		}
	})
}

func TestHistory_TypeLevelPaging(t *testing.T) {
	fhirtest.ForEachStore(t, func(t *testing.T, h storetest.Harness) {
		s := start(t, h)
		for i := 0; i < 3; i++ {
			body := []byte(fmt.Sprintf(`{"resourceType":"Organization","id":"o%d","name":"Org %d"}`, i, i))
			wantStatus(t, s.Do("PUT", fmt.Sprintf("/fhir/Organization/o%d", i), body), http.StatusCreated)
			wantStatus(t, s.Do("PUT", fmt.Sprintf("/fhir/Organization/o%d", i), body), http.StatusOK)
		}
		seen := 0
		next := s.Base + "/Organization/_history?_count=4"
		for next != "" {
			r := s.Do("GET", next, nil)
			wantStatus(t, r, http.StatusOK)
			b := r.JSON(t)
			if b["type"] != "history" || fmt.Sprint(b["total"]) != "6" {
				t.Fatalf("history bundle: %s", r.Body)
			}
			seen += len(b["entry"].([]any))
			next = ""
			for _, l := range b["link"].([]any) {
				if m := l.(map[string]any); m["relation"] == "next" {
					next = m["url"].(string)
				}
			}
		}
		if seen != 6 {
			t.Fatalf("history pages held %d entries, want 6", seen)
		}
	})
}
