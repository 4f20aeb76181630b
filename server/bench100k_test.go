package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/calaimfhir/calaimfhir/internal/fhirtest"
	"github.com/calaimfhir/calaimfhir/internal/sqlitestore"
	"github.com/calaimfhir/calaimfhir/resources"
)

// The 100,000-resource search benchmark on the embedded store (80,000 Tasks for 50 CBOs and
// 20,000 Patients), through the whole HTTP stack without network I/O:
//
//	go test ./server -run '^$' -bench Search100k -benchtime 2000x
//
// It reports latency percentiles per query; the first run spends about a minute loading.
var big struct {
	once  sync.Once
	srv   *fhirtest.Server
	since string // a watermark that leaves about 20 Tasks per CBO after it
	err   error
}

const (
	bigPatients = 20000
	bigTasks    = 80000
	bigCBOs     = 50
)

func loadBig(b *testing.B) {
	big.once.Do(func() {
		dir, err := osMkdirTemp()
		if err != nil {
			big.err = err
			return
		}
		ctx := context.Background()
		store, err := sqlitestore.Open(ctx, dir, sqlitestore.Options{})
		if err != nil {
			big.err = err
			return
		}
		at := time.Now().UTC().Add(-time.Hour).Truncate(time.Microsecond)
		var batch []*resources.Resource
		flush := func() {
			if big.err == nil && len(batch) > 0 {
				big.err = store.PutAll(ctx, batch)
			}
			batch = batch[:0]
		}
		add := func(typ, id string, doc map[string]any) {
			at = at.Add(time.Microsecond * 10)
			doc["resourceType"], doc["id"] = typ, id
			doc["meta"] = map[string]any{"versionId": "1", "lastUpdated": resources.FormatInstant(at)}
			body, _ := resources.EncodeResource(doc)
			batch = append(batch, &resources.Resource{Type: typ, ID: id, VersionID: 1, LastUpdated: at, JSON: body, Keys: resources.ExtractKeys(typ, doc)})
			if len(batch) == 2000 {
				flush()
			}
		}
		for i := 0; i < bigPatients; i++ {
			add("Patient", fmt.Sprintf("p%06d", i), map[string]any{
				"identifier": []any{map[string]any{"system": "https://calaimfhir.example.org/sid/medi-cal-cin", "value": fmt.Sprintf("%08dA", i)}},
				"name":       []any{map[string]any{"family": fmt.Sprintf("Family%d", i%997), "given": []any{"Given"}}},
				"birthDate":  fmt.Sprintf("19%02d-0%d-1%d", 40+i%60, 1+i%9, i%10),
			})
		}
		statuses := []string{"requested", "accepted", "in-progress", "completed", "rejected", "cancelled"}
		for i := 0; i < bigTasks; i++ {
			doc := map[string]any{
				"status": statuses[i%len(statuses)], "intent": "order",
				"for":       map[string]any{"reference": fmt.Sprintf("Patient/p%06d", i%bigPatients)},
				"focus":     map[string]any{"reference": fmt.Sprintf("ServiceRequest/sr%06d", i)},
				"requester": map[string]any{"reference": "Organization/plan-1"},
				"code":      map[string]any{"coding": []any{map[string]any{"system": "http://hl7.org/fhir/CodeSystem/task-code", "code": "fulfill"}}},
			}
			if i%11 != 0 { // one Task in eleven is unclaimed
				doc["owner"] = map[string]any{"reference": fmt.Sprintf("Organization/cbo-%d", i%bigCBOs)}
			}
			if i == bigTasks-20*bigCBOs {
				big.since = resources.FormatInstant(at)
			}
			add("Task", fmt.Sprintf("t%06d", i), doc)
		}
		flush()
		if big.err == nil {
			big.srv = fhirtest.Start(b, store, fhirtest.Options{AnyReferences: true})
		}
	})
	if big.err != nil {
		b.Fatal(big.err)
	}
}

func BenchmarkSearch100k(b *testing.B) {
	loadBig(b)
	cboTokens := make([]string, bigCBOs)
	for i := range cboTokens {
		cboTokens[i] = big.srv.Token("cbo", fmt.Sprintf("Organization/cbo-%d", i), "")
	}
	queries := []struct {
		name  string
		path  func(i int) string
		want  func(n int) bool
		token func(i int) string // default: the administrator
	}{
		// The polling query as the CBO itself sends it: tenancy limits it to the CBO's Tasks.
		{"poll-as-cbo", func(i int) string {
			return fmt.Sprintf("/fhir/Task?owner=Organization/cbo-%d&_lastUpdated=gt%s&_sort=_lastUpdated", i%bigCBOs, url.QueryEscape(big.since))
		}, func(n int) bool { return n >= 15 && n <= 25 }, func(i int) string { return cboTokens[i%bigCBOs] }},
		{"poll-owner-lastUpdated", func(i int) string {
			return fmt.Sprintf("/fhir/Task?owner=Organization/cbo-%d&_lastUpdated=gt%s&_sort=_lastUpdated", i%bigCBOs, url.QueryEscape(big.since))
		}, func(n int) bool { return n >= 15 && n <= 25 }, nil},
		{"unclaimed-requested", func(i int) string { return "/fhir/Task?owner:missing=true&status=requested&_count=20" },
			func(n int) bool { return n == 20 }, nil},
		{"patient-identifier", func(i int) string {
			return fmt.Sprintf("/fhir/Patient?identifier=https://calaimfhir.example.org/sid/medi-cal-cin|%08dA", (i*7919)%bigPatients)
		}, func(n int) bool { return n == 1 }, nil},
		{"task-by-patient-identifier", func(i int) string {
			return fmt.Sprintf("/fhir/Task?patient.identifier=https://calaimfhir.example.org/sid/medi-cal-cin|%08dA", (i*7919)%bigPatients)
		}, func(n int) bool { return n == 4 }, nil},
	}
	for _, q := range queries {
		b.Run(q.name, func(b *testing.B) {
			var lat []time.Duration
			for i := 0; b.Loop(); i++ {
				start := time.Now()
				var rec *httptest.ResponseRecorder
				if q.token != nil {
					rec = serveAs(big.srv, q.token(i), "GET", q.path(i))
				} else {
					rec = serve(b, big.srv, "GET", q.path(i), nil)
				}
				lat = append(lat, time.Since(start))
				if rec.Code != http.StatusOK {
					b.Fatalf("%d %s", rec.Code, rec.Body)
				}
				if i == 0 {
					var bundle struct{ Entry []json.RawMessage }
					json.Unmarshal(rec.Body.Bytes(), &bundle)
					if !q.want(len(bundle.Entry)) {
						b.Fatalf("%s: %d entries", q.path(i), len(bundle.Entry))
					}
				}
			}
			slices.Sort(lat)
			pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
			b.ReportMetric(pct(0.50), "p50-ms")
			b.ReportMetric(pct(0.95), "p95-ms")
			b.ReportMetric(pct(0.99), "p99-ms")
		})
	}
}

func osMkdirTemp() (string, error) { return os.MkdirTemp("", "calaimfhir-bench-") }

func serveAs(s *fhirtest.Server, token, method, path string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	rec := httptest.NewRecorder()
	s.Server.ServeHTTP(rec, req)
	return rec
}
