package server_test

import (
	"net/http"
	"strconv"
	"testing"

	"github.com/calaimfhir/calaimfhir/internal/auth"
	"github.com/calaimfhir/calaimfhir/internal/fhirtest"
)

func TestSecurityHeadersAndCORS(t *testing.T) {
	store, _ := fhirtest.SQLite.OpenFresh(t)
	s := fhirtest.Start(t, store, fhirtest.Options{CORSOrigins: []string{"https://cbo.example.org"}})
	r := s.Do("GET", "/fhir/Patient", nil)
	for h, want := range map[string]string{"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store", "X-Frame-Options": "DENY"} {
		if got := r.Header.Get(h); got != want {
			t.Errorf("%s: %q, want %q", h, got, want)
		}
	}
	if r.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatal("CORS headers without an Origin")
	}
	r = s.Do("GET", "/fhir/Patient", nil, "Origin", "https://evil.example.com")
	if r.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatal("an origin not on the allow-list got CORS headers")
	}
	r = s.Do("GET", "/fhir/Patient", nil, "Origin", "https://cbo.example.org")
	if r.Header.Get("Access-Control-Allow-Origin") != "https://cbo.example.org" {
		t.Fatal("the allowed origin got no CORS headers")
	}
	r = s.Do("OPTIONS", "/fhir/Patient", nil, "Origin", "https://cbo.example.org", "Access-Control-Request-Method", "POST")
	if r.Status != http.StatusNoContent || r.Header.Get("Access-Control-Allow-Methods") == "" {
		t.Fatalf("preflight: %d %v", r.Status, r.Header)
	}
}

func TestRateLimit_429WithRetryAfter(t *testing.T) {
	store, _ := fhirtest.SQLite.OpenFresh(t)
	s := fhirtest.Start(t, store, fhirtest.Options{RateLimit: 1, RateBurst: 3})
	for i := 0; i < 3; i++ {
		wantStatus(t, s.Do("GET", "/fhir/Patient", nil), http.StatusOK)
	}
	r := s.Do("GET", "/fhir/Patient", nil)
	wantOutcome(t, r, http.StatusTooManyRequests, "throttled")
	if n, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || n < 1 {
		t.Fatalf("Retry-After %q", r.Header.Get("Retry-After"))
	}
	// Another client has its own bucket.
	other, err := s.Key.Mint(auth.MintOptions{Role: "cbo", Org: "Organization/cbo-a", ClientID: "another-client"})
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, s.Do("GET", "/fhir/Patient", nil, "Authorization", "Bearer "+other), http.StatusOK)
	wantStatus(t, s.Do("GET", "/fhir/metadata", nil), http.StatusOK) // the CapabilityStatement is not limited
}
