package server_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/calaimfhir/calaimfhir/internal/fhirtest"
	"github.com/calaimfhir/calaimfhir/internal/storetest"
)

func elementNames(res map[string]any) []string {
	var out []string
	for k := range res {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func subsetted(res map[string]any) bool {
	meta, _ := res["meta"].(map[string]any)
	tags, _ := meta["tag"].([]any)
	for _, tg := range tags {
		if m, _ := tg.(map[string]any); m["code"] == "SUBSETTED" {
			return true
		}
	}
	return false
}

// TestSummary_SearchReadVRead: _summary=true keeps the Σ and mandatory elements, text keeps
// the narrative, id, meta and mandatory elements; both mark the result SUBSETTED, on search,
// read and vread alike.
func TestSummary_SearchReadVRead(t *testing.T) {
	fhirtest.ForEachStore(t, func(t *testing.T, h storetest.Harness) {
		s := start(t, h)
		body := []byte(`{"resourceType":"Task","id":"t1","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">Referral</div>"},
			"status":"requested","intent":"order","priority":"urgent","description":"Medically tailored meals",
			"owner":{"reference":"Organization/cbo-a"},"note":[{"text":"call first"}],
			"input":[{"type":{"text":"program"},"valueString":"meals"}]}`)
		wantStatus(t, s.Do("PUT", "/fhir/Task/t1", body), http.StatusCreated)
		wantTrue := []string{"description", "id", "intent", "meta", "owner", "resourceType", "status"}
		wantText := []string{"id", "intent", "meta", "resourceType", "status", "text"}
		for _, tc := range []struct {
			path string
			want []string
		}{
			{"/fhir/Task/t1?_summary=true", wantTrue},
			{"/fhir/Task/t1/_history/1?_summary=true", wantTrue},
			{"/fhir/Task/t1?_summary=text", wantText},
			{"/fhir/Task/t1/_history/1?_summary=text", wantText},
			{"/fhir/Task/t1?_elements=note", []string{"id", "intent", "meta", "note", "resourceType", "status"}},
		} {
			r := s.Do("GET", tc.path, nil)
			wantStatus(t, r, http.StatusOK)
			res := r.JSON(t)
			if got := elementNames(res); !slices.Equal(got, tc.want) || !subsetted(res) {
				t.Errorf("%s: %v (SUBSETTED %v), want %v marked SUBSETTED", tc.path, got, subsetted(res), tc.want)
			}
		}
		for _, q := range []string{"_summary=true", "_summary=text"} {
			r := s.Do("GET", "/fhir/Task?_id=t1&"+q, nil)
			wantStatus(t, r, http.StatusOK)
			b := r.JSON(t)
			res := b["entry"].([]any)[0].(map[string]any)["resource"].(map[string]any)
			want := wantTrue
			if q == "_summary=text" {
				want = wantText
			}
			if got := elementNames(res); !slices.Equal(got, want) || !subsetted(res) {
				t.Errorf("search %s: %v, want %v marked SUBSETTED", q, got, want)
			}
			self := ""
			for _, l := range b["link"].([]any) {
				if m := l.(map[string]any); m["relation"] == "self" {
					self = m["url"].(string)
				}
			}
			if !strings.Contains(self, q) {
				t.Errorf("self link %q does not show %s", self, q)
			}
		}
		// A plain read serves the stored resource untouched.
		if res := s.Do("GET", "/fhir/Task/t1", nil).JSON(t); subsetted(res) || res["note"] == nil {
			t.Errorf("plain read shaped: %v", res)
		}
		for _, bad := range []string{"/fhir/Task/t1?_summary=count", "/fhir/Task/t1?_summary=maybe", "/fhir/Task/t1/_history/1?_summary=1"} {
			wantOutcome(t, s.Do("GET", bad, nil), http.StatusBadRequest, "invalid")
		}
	})
}
