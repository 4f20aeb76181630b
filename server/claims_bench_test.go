package server_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/calaimfhir/calaimfhir/internal/fhirtest"
)

// BenchmarkSubmit10k sends Bundles of 10,000 CHW claims (1,000 members, one item each) to
// POST /fhir/Claim/$submit on the embedded store and reports claims checked and stored per
// second. Every claim is new (no resubmissions), so each is stored with its ClaimResponse.
//
//	go test ./server -run '^$' -bench Submit10k -benchtime 2x
func BenchmarkSubmit10k(b *testing.B) { benchSubmit(b, 1000, 10000) }

// BenchmarkSubmit1k is the same at a tenth of the size (100 members), for profiling.
func BenchmarkSubmit1k(b *testing.B) { benchSubmit(b, 100, 1000) }

func benchSubmit(b *testing.B, members, claimsPerBundle int) {
	store, _ := fhirtest.SQLite.OpenFresh(b)
	s := fhirtest.Start(b, store, fhirtest.Options{})
	seedClaims(b, s)
	seedMembers(b, s, members)

	template := claimFixture(b, "claim-chw.json")
	template["item"] = template["item"].([]any)[:1]
	delete(template, "total")
	round := 0
	b.ReportAllocs()
	var elapsed time.Duration
	for b.Loop() {
		b.StopTimer()
		var entries []any
		for i := range claimsPerBundle {
			c := cloneJSON(b, template)
			setClaimID(c, fmt.Sprintf("BENCH-%d-%d", round, i))
			c["patient"] = map[string]any{"reference": fmt.Sprintf("Patient/bm-%d", i%members)}
			c["insurance"].([]any)[0].(map[string]any)["coverage"] = map[string]any{"reference": fmt.Sprintf("Coverage/bc-%d", i%members)}
			// A different date per round and per thousand claims: no two items are duplicates.
			day := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, round*(claimsPerBundle/members)+i/members)
			claimItem(c, 0)["servicedDate"] = day.Format(time.DateOnly)
			entries = append(entries, map[string]any{"resource": c})
		}
		body, _ := json.Marshal(map[string]any{"resourceType": "Bundle", "type": "batch", "entry": entries})
		round++
		b.StartTimer()
		start := time.Now()
		rec := serve(b, s, "POST", "/fhir/Claim/$submit", body)
		elapsed += time.Since(start)
		if rec.Code != http.StatusOK {
			b.Fatalf("%d %.500s", rec.Code, rec.Body)
		}
		b.StopTimer()
		if n := bytes.Count(rec.Body.Bytes(), []byte(`"outcome":"complete"`)); n != claimsPerBundle {
			b.Fatalf("%d of %d claims complete: %.2000s", n, claimsPerBundle, rec.Body)
		}
		b.ReportMetric(float64(len(body))/float64(claimsPerBundle), "request-bytes/claim")
		b.StartTimer()
	}
	b.ReportMetric(float64(round*claimsPerBundle)/elapsed.Seconds(), "claims/s")
}

func cloneJSON(t testing.TB, v map[string]any) map[string]any {
	b, _ := json.Marshal(v)
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// seedMembers stores n Patients (bm-i) with active Coverages (bc-i), in transactions.
func seedMembers(t testing.TB, s *fhirtest.Server, n int) {
	t.Helper()
	const perTx = 400
	for start := 0; start < n; start += perTx / 2 {
		var entries []any
		for i := start; i < min(start+perTx/2, n); i++ {
			entries = append(entries,
				map[string]any{"resource": map[string]any{"resourceType": "Patient", "id": fmt.Sprintf("bm-%d", i),
					"identifier": []any{map[string]any{"system": "https://calaimfhir.org/fhir/sid/medi-cal-cin", "value": fmt.Sprintf("%08dA", i)}},
					"name":       []any{map[string]any{"family": "Member", "given": []any{fmt.Sprint(i)}}}, "birthDate": "1970-01-01"},
					"request": map[string]any{"method": "PUT", "url": fmt.Sprintf("Patient/bm-%d", i)}},
				map[string]any{"resource": map[string]any{"resourceType": "Coverage", "id": fmt.Sprintf("bc-%d", i), "status": "active",
					"beneficiary": map[string]any{"reference": fmt.Sprintf("Patient/bm-%d", i)},
					"payor":       []any{map[string]any{"reference": "Organization/plan-1"}},
					"period":      map[string]any{"start": "2020-01-01", "end": "2030-12-31"}},
					"request": map[string]any{"method": "PUT", "url": fmt.Sprintf("Coverage/bc-%d", i)}})
		}
		body, _ := json.Marshal(map[string]any{"resourceType": "Bundle", "type": "transaction", "entry": entries})
		if resp := s.Do("POST", "/fhir", body); resp.Status != http.StatusOK {
			t.Fatalf("seed members: %d %.300s", resp.Status, resp.Body)
		}
	}
}
