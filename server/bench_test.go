package server_test

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/calaimfhir/calaimfhir/internal/fhirtest"
)

// Benchmarks of the Task interactions through the whole Echo stack (routing, negotiation,
// validation, store) on each store, without network I/O:
//
//	go test ./server -run '^$' -bench . -benchtime 3s
func taskBody(i int) []byte {
	return []byte(fmt.Sprintf(`{"resourceType":"Task","identifier":[{"system":"urn:referral","value":"R-%d"}],
		"status":"requested","intent":"order","priority":"routine",
		"code":{"coding":[{"system":"http://hl7.org/fhir/CodeSystem/task-code","code":"fulfill"}]},
		"focus":{"reference":"ServiceRequest/sr-%d"},"for":{"reference":"Patient/p-%d"},
		"authoredOn":"2025-03-01T10:00:00Z","requester":{"reference":"Organization/plan-1"},
		"owner":{"reference":"Organization/cbo-%d"}}`, i, i, i%500, i%20))
}

func serve(b *testing.B, s *fhirtest.Server, method, path string, body []byte) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+s.AdminToken)
	if body != nil {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	rec := httptest.NewRecorder()
	s.Server.ServeHTTP(rec, req)
	return rec
}

func BenchmarkTask(b *testing.B) {
	for _, h := range fhirtest.Stores() {
		b.Run(h.Name, func(b *testing.B) {
			store, _ := h.OpenFresh(b)
			s := fhirtest.Start(b, store, fhirtest.Options{AnyReferences: true}) // Tasks point at unstored ServiceRequests
			const seeded = 2000
			ids := make([]string, seeded)
			for i := range ids {
				rec := serve(b, s, "POST", "/fhir/Task", taskBody(i))
				if rec.Code != http.StatusCreated {
					b.Fatalf("seed: %d %s", rec.Code, rec.Body)
				}
				ids[i] = rec.Header().Get("Location")[len(s.Base)+len("/Task/"):][:32]
			}
			b.Run("create", func(b *testing.B) {
				b.ReportAllocs()
				for i := 0; b.Loop(); i++ {
					if rec := serve(b, s, "POST", "/fhir/Task", taskBody(seeded+i)); rec.Code != http.StatusCreated {
						b.Fatalf("%d %s", rec.Code, rec.Body)
					}
				}
			})
			b.Run("read", func(b *testing.B) {
				b.ReportAllocs()
				for i := 0; b.Loop(); i++ {
					if rec := serve(b, s, "GET", "/fhir/Task/"+ids[i%seeded], nil); rec.Code != http.StatusOK {
						b.Fatalf("%d %s", rec.Code, rec.Body)
					}
				}
			})
			b.Run("search-owner-status", func(b *testing.B) {
				b.ReportAllocs()
				for i := 0; b.Loop(); i++ {
					path := fmt.Sprintf("/fhir/Task?owner=Organization/cbo-%d&status=requested&_count=20", i%20)
					if rec := serve(b, s, "GET", path, nil); rec.Code != http.StatusOK {
						b.Fatalf("%d %s", rec.Code, rec.Body)
					}
				}
			})
		})
	}
}

// BenchmarkReferralTransaction pushes CalAIM referrals (Patient, Condition, Consent,
// ServiceRequest, Task, Organization in one transaction Bundle with placeholders and
// conditional creates) through the HTTP stack, and reports resources written per second.
//
//	go test ./server -run '^$' -bench ReferralTransaction -benchtime 2000x
func BenchmarkReferralTransaction(b *testing.B) {
	for _, h := range fhirtest.Stores() {
		b.Run(h.Name, func(b *testing.B) {
			store, _ := h.OpenFresh(b)
			s := fhirtest.Start(b, store, fhirtest.Options{})
			i := 0
			b.ReportAllocs()
			start := time.Now()
			for b.Loop() {
				i++
				rec := serve(b, s, "POST", "/fhir", referralTransaction(fmt.Sprintf("%08dA", i), fmt.Sprintf("R-%d", i)))
				if rec.Code != http.StatusOK {
					b.Fatalf("%d %s", rec.Code, rec.Body)
				}
			}
			b.ReportMetric(float64(i*6)/time.Since(start).Seconds(), "resources/s")
		})
	}
}

// BenchmarkReferralTransactionParallel is the same with several EHRs pushing at once
// (GOMAXPROCS×4 clients), which is how a plan's intake sees them.
//
//	go test ./server -run '^$' -bench ReferralTransactionParallel -benchtime 4000x
func BenchmarkReferralTransactionParallel(b *testing.B) {
	store, _ := fhirtest.SQLite.OpenFresh(b)
	s := fhirtest.Start(b, store, fhirtest.Options{})
	var n atomic.Int64
	b.SetParallelism(4)
	b.ReportAllocs()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			rec := serve(b, s, "POST", "/fhir", referralTransaction(fmt.Sprintf("%08dB", i), fmt.Sprintf("P-%d", i)))
			if rec.Code != http.StatusOK {
				b.Errorf("%d %s", rec.Code, rec.Body)
				return
			}
		}
	})
	b.ReportMetric(float64(n.Load()*6)/time.Since(start).Seconds(), "resources/s")
}
