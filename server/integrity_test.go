package server_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/calaimfhir/calaimfhir/internal/fhirtest"
	"github.com/calaimfhir/calaimfhir/internal/storetest"
)

func TestReferentialIntegrity_OnWrite(t *testing.T) {
	fhirtest.ForEachStore(t, func(t *testing.T, h storetest.Harness) {
		s := start(t, h)
		referralNetwork(t, s)
		cases := []struct {
			name, typ, body string
			status          int
			expr            string
		}{
			{"task for a missing patient", "Task", `{"resourceType":"Task","status":"requested","intent":"order","for":{"reference":"Patient/nobody"},"focus":{"reference":"ServiceRequest/sr-1"}}`, 422, "Task.for"},
			{"task focus missing", "Task", `{"resourceType":"Task","status":"requested","intent":"order","for":{"reference":"Patient/ana"},"focus":{"reference":"ServiceRequest/nope"}}`, 422, "Task.focus"},
			{"task focus deleted type not stored", "Task", `{"resourceType":"Task","status":"requested","intent":"order","focus":{"reference":"MedicationRequest/m1"}}`, 422, "Task.focus"},
			{"task all resolve", "Task", `{"resourceType":"Task","status":"requested","intent":"order","for":{"reference":"Patient/ana"},"focus":{"reference":"ServiceRequest/sr-1"}}`, 201, ""},
			{"absolute reference to this server", "ServiceRequest", `{"resourceType":"ServiceRequest","status":"active","intent":"order","subject":{"reference":"BASE/Patient/ben"}}`, 201, ""},
			{"reference elsewhere is not checked", "ServiceRequest", `{"resourceType":"ServiceRequest","status":"active","intent":"order","subject":{"reference":"https://ehr.example.org/fhir/Patient/9"}}`, 201, ""},
			{"claim coverage missing", "Claim", `{"resourceType":"Claim","status":"active","type":{"coding":[{"code":"professional"}]},"use":"claim","patient":{"reference":"Patient/ana"},"created":"2025-01-01","provider":{"reference":"Organization/cbo-a"},"priority":{"coding":[{"code":"normal"}]},"insurance":[{"sequence":1,"focal":true,"coverage":{"reference":"Coverage/none"}}]}`, 422, "Claim.insurance.coverage"},
			{"consent patient missing", "Consent", `{"resourceType":"Consent","status":"active","scope":{"text":"x"},"category":[{"text":"x"}],"patient":{"reference":"Patient/zz"}}`, 422, "Consent.patient"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				body := strings.ReplaceAll(tc.body, "BASE", s.Base)
				r := s.Do("POST", "/fhir/"+tc.typ, []byte(body))
				if tc.status != 422 {
					wantStatus(t, r, tc.status)
					return
				}
				oo := wantOutcome(t, r, 422, "not-found")
				if got := oo["issue"].([]any)[0].(map[string]any)["expression"].([]any)[0]; got != tc.expr {
					t.Fatalf("expression %v, want %s", got, tc.expr)
				}
			})
		}
	})
}

func TestReferentialIntegrity_DeleteAndCascade(t *testing.T) {
	fhirtest.ForEachStore(t, func(t *testing.T, h storetest.Harness) {
		s := start(t, h)
		referralNetwork(t, s)
		r := s.Do("DELETE", "/fhir/ServiceRequest/sr-2", nil)
		oo := wantOutcome(t, r, http.StatusConflict, "conflict")
		msg := oo["issue"].([]any)[0].(map[string]any)["diagnostics"].(string)
		if !strings.Contains(msg, "Task/t-2") || !strings.Contains(msg, "Task/t-3") {
			t.Fatalf("409 does not name the referrers: %s", msg)
		}
		wantStatus(t, s.Do("GET", "/fhir/ServiceRequest/sr-2", nil), http.StatusOK)
		// An unreferenced resource goes; a cascade takes the referrers with it.
		wantStatus(t, s.Do("DELETE", "/fhir/Organization/cbo-b?_cascade=delete", nil), http.StatusNoContent)
		wantStatus(t, s.Do("GET", "/fhir/Task/t-2", nil), http.StatusGone) // it was owned by cbo-b
		wantStatus(t, s.Do("DELETE", "/fhir/ServiceRequest/sr-2?_cascade=delete", nil), http.StatusNoContent)
		for _, gone := range []string{"ServiceRequest/sr-2", "Task/t-3"} {
			wantStatus(t, s.Do("GET", "/fhir/"+gone, nil), http.StatusGone)
		}
		wantStatus(t, s.Do("GET", "/fhir/Patient/ben", nil), http.StatusOK) // referred to, not referring
	})
}
