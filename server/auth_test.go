package server_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/calaimfhir/calaimfhir/internal/auth"
	"github.com/calaimfhir/calaimfhir/internal/fhirtest"
)

// TestAuthentication_EveryFHIREndpointButMetadataNeedsAToken walks the interactions with
// tokens that must all be refused, and checks the open endpoints stay open.
func TestAuthentication_EveryFHIREndpointButMetadataNeedsAToken(t *testing.T) {
	store, _ := fhirtest.SQLite.OpenFresh(t)
	s := fhirtest.Start(t, store, fhirtest.Options{})
	referralNetwork(t, s)

	// (Expiry, nbf, iat and the other claim checks are covered in internal/auth.)
	wrongAudience, _ := s.Key.Mint(auth.MintOptions{Role: "admin", Org: "Organization/x", Audience: "someone-else"})
	otherKey, _ := auth.LoadOrCreateDevKey(t.TempDir())
	wrongKey, _ := otherKey.Mint(auth.MintOptions{Role: "admin", Org: "Organization/x"})
	header := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT","kid":"` + s.Key.Kid + `"}`))
	claims := base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"calaimfhir-dev","aud":"calaimfhir","sub":"x","org":"Organization/x","role":"admin","scope":"system/*.cruds","exp":` +
		strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10) + `}`))
	algNone := header + "." + claims + "."
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	forged := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{"iss": auth.DevIssuer, "aud": auth.DevAudience, "sub": "x",
		"org": "Organization/x", "role": "admin", "scope": "system/*.cruds", "exp": time.Now().Add(time.Hour).Unix()})
	forged.Header["kid"] = s.Key.Kid
	forgedToken, _ := forged.SignedString(ecKey)

	requests := []struct{ method, path, body string }{
		{"GET", "/fhir/Patient/ana", ""},
		{"GET", "/fhir/Patient?name=alvarez", ""},
		{"POST", "/fhir/Patient/_search", "name=a"},
		{"POST", "/fhir/Organization", `{"resourceType":"Organization","name":"x"}`},
		{"PUT", "/fhir/Organization/cbo-a", `{"resourceType":"Organization","id":"cbo-a"}`},
		{"DELETE", "/fhir/Claim/c-1", ""},
		{"GET", "/fhir/Task/t-1/_history", ""},
		{"GET", "/fhir/Consent/_history", ""},
		{"GET", "/fhir?_type=Patient", ""},
		{"POST", "/fhir", `{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"Patient/ana"}}]}`},
		{"PATCH", "/fhir/Task/t-1", `[]`},
	}
	tokens := map[string]string{"no token": "", "garbage": "not-a-jwt", "wrong key": wrongKey, "wrong audience": wrongAudience,
		"alg none": algNone, "forged with our kid": forgedToken}
	for name, tok := range tokens {
		for _, rq := range requests {
			var body []byte
			if rq.body != "" {
				body = []byte(rq.body)
			}
			headers := []string{"Authorization", ""}
			if tok != "" {
				headers = []string{"Authorization", "Bearer " + tok}
			}
			if strings.HasSuffix(rq.path, "_search") {
				headers = append(headers, "Content-Type", "application/x-www-form-urlencoded")
			}
			if rq.method == "PATCH" {
				headers = append(headers, "Content-Type", "application/json-patch+json")
			}
			r := s.Do(rq.method, rq.path, body, headers...)
			if r.Status != http.StatusUnauthorized || !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("%s: %s %s → %d (WWW-Authenticate %q), want 401", name, rq.method, rq.path, r.Status, r.Header.Get("WWW-Authenticate"))
				continue
			}
			wantOutcome(t, r, http.StatusUnauthorized, "login")
			if tok != "" && len(tok) > 20 && strings.Contains(string(r.Body), tok) {
				t.Errorf("the 401 echoes the token")
			}
		}
	}
	for _, open := range []string{"/fhir/metadata", "/health/live", "/health/ready", "/metrics"} {
		wantStatus(t, s.Do("GET", open, nil, "Authorization", ""), http.StatusOK)
	}
}

func TestScopes_CheckedPerInteractionAndType(t *testing.T) {
	store, _ := fhirtest.SQLite.OpenFresh(t)
	s := fhirtest.Start(t, store, fhirtest.Options{})
	referralNetwork(t, s)
	taskReader := s.Token("cbo", "Organization/cbo-a", "system/Task.rs")
	v1Reader := s.Token("admin", "Organization/plan-1", "user/*.read") // scopes limit administrators too; tenancy has its own tests
	as := func(tok string) []string { return []string{"Authorization", "Bearer " + tok} }
	cases := []struct {
		name, token, method, path, body string
		status                          int
	}{
		{"v2 read allowed", taskReader, "GET", "/fhir/Task/t-1", "", 200},
		{"v2 search allowed", taskReader, "GET", "/fhir/Task?status=requested", "", 200},
		{"v2 no create", taskReader, "POST", "/fhir/Task", `{"resourceType":"Task","status":"draft","intent":"order"}`, 403},
		{"v2 other type", taskReader, "GET", "/fhir/Patient/ana", "", 403},
		{"v2 chain into another type", taskReader, "GET", "/fhir/Task?patient.name=alvarez", "", 403},
		{"v2 system search with another type", taskReader, "GET", "/fhir?_type=Task,Patient", "", 403},
		{"v2 bundle entry of another type", taskReader, "POST", "/fhir", `{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"GET","url":"Patient/ana"}}]}`, 403},
		{"v1 read", v1Reader, "GET", "/fhir/Patient/ana", "", 200},
		{"v1 search", v1Reader, "GET", "/fhir/Claim", "", 200},
		{"v1 no write", v1Reader, "PUT", "/fhir/Organization/cbo-a", `{"resourceType":"Organization","id":"cbo-a"}`, 403},
		{"v1 no delete", v1Reader, "DELETE", "/fhir/Claim/c-1", "", 403},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var body []byte
			if tc.body != "" {
				body = []byte(tc.body)
			}
			r := s.Do(tc.method, tc.path, body, as(tc.token)...)
			if tc.status == 403 {
				wantOutcome(t, r, http.StatusForbidden, "forbidden")
				return
			}
			wantStatus(t, r, tc.status)
		})
	}
	// _include of a type the token cannot read leaves those resources out.
	r := s.Do("GET", "/fhir/Task?_id=t-1&_include=Task:patient", nil, as(taskReader)...)
	wantStatus(t, r, http.StatusOK)
	if strings.Contains(string(r.Body), `"resourceType":"Patient"`) {
		t.Fatal("a Task-only token received an included Patient")
	}
}
