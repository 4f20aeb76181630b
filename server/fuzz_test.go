package server_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/calaimfhir/calaimfhir/internal/fhirtest"
	"github.com/calaimfhir/calaimfhir/resources"
)

// FuzzCreate sends arbitrary bodies through the real Echo stack to the create interaction on
// the embedded store. Whatever the input: no panic, no 500, every error is an
// OperationOutcome, and whatever was created reads back.
//
//	go test ./server -run '^$' -fuzz FuzzCreate -fuzztime 10m
func FuzzCreate(f *testing.F) {
	if dir := examplesDirOrEmpty(); dir != "" {
		files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
		for _, file := range files {
			typ, _, _ := strings.Cut(filepath.Base(file), "-")
			if b, err := os.ReadFile(file); err == nil && resources.Supported(typ) {
				f.Add(b)
			}
		}
	}
	for _, seed := range []string{
		`{"resourceType":"Patient"}`, `{}`, `[]`, `null`, `{"resourceType":"Patient","id":7}`,
		`{"resourceType":"Task","status":"requested","intent":"order","for":{"reference":"Patient/1"}}`,
		`{"resourceType":"Patient","meta":{"versionId":"x","lastUpdated":"bad"}}`,
		`{"resourceType":"Patient","birthDate":"1990-13-45"}`, `{"resourceType":"Observation","valueQuantity":{"value":1e400}}`,
	} {
		f.Add([]byte(seed))
	}
	store, _ := fhirtest.SQLite.OpenFresh(f)
	s := fhirtest.Start(f, store, fhirtest.Options{AnyReferences: true}) // reach the store with the examples
	f.Fuzz(func(t *testing.T, body []byte) {
		typ := "Patient"
		var probe struct{ ResourceType string }
		if json.Unmarshal(body, &probe) == nil && resources.Supported(probe.ResourceType) {
			typ = probe.ResourceType
		}
		req := httptest.NewRequest("POST", "/fhir/"+typ, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/fhir+json")
		req.Header.Set("Authorization", "Bearer "+s.AdminToken)
		rec := httptest.NewRecorder()
		s.Server.ServeHTTP(rec, req)
		switch {
		case rec.Code == http.StatusCreated:
			var created struct{ ID string }
			if err := json.Unmarshal(rec.Body.Bytes(), &created); err != nil || created.ID == "" {
				t.Fatalf("201 with a body that is not a resource: %s", rec.Body.Bytes())
			}
			read := httptest.NewRecorder()
			get := httptest.NewRequest("GET", "/fhir/"+typ+"/"+created.ID, nil)
			get.Header.Set("Authorization", "Bearer "+s.AdminToken)
			s.Server.ServeHTTP(read, get)
			if read.Code != http.StatusOK || !bytes.Equal(read.Body.Bytes(), rec.Body.Bytes()) {
				t.Fatalf("created resource does not read back: %d %s", read.Code, read.Body.Bytes())
			}
		case rec.Code >= 500:
			t.Fatalf("status %d for body %q: %s", rec.Code, body, rec.Body.Bytes())
		case rec.Code >= 400:
			var oo struct{ ResourceType string }
			if json.Unmarshal(rec.Body.Bytes(), &oo) != nil || oo.ResourceType != "OperationOutcome" {
				t.Fatalf("error %d without an OperationOutcome: %s", rec.Code, rec.Body.Bytes())
			}
		default:
			t.Fatalf("unexpected status %d", rec.Code)
		}
	})
}

func examplesDirOrEmpty() string {
	dir := filepath.Join(fhirtest.RepoRoot(), "..", "shared", "fhir-examples", "r4")
	if _, err := os.Stat(dir); err != nil {
		return ""
	}
	return dir
}

// FuzzBundle sends arbitrary Bundles to POST /fhir on the embedded store: no panic, no 500,
// every error an OperationOutcome.
//
//	go test ./server -run '^$' -fuzz FuzzBundle -fuzztime 2m
func FuzzBundle(f *testing.F) {
	if dir := examplesDirOrEmpty(); dir != "" {
		for _, name := range []string{"Bundle-bundle-transaction.json", "Bundle-xds.json", "Bundle-bundle-request-medsallergies.json"} {
			if b, err := os.ReadFile(filepath.Join(dir, name)); err == nil {
				f.Add(b)
			}
		}
	}
	f.Add(referralTransaction("12345678A", "R-1"))
	for _, seed := range []string{
		`{"resourceType":"Bundle","type":"batch","entry":[null,{},{"request":null},{"request":{"method":"GET","url":"/"}}]}`,
		`{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"urn:uuid:a","request":{"method":"PATCH","url":"Task/x"},"resource":{"resourceType":"Binary","contentType":"application/json-patch+json","data":"W10="}}]}`,
		`{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"DELETE","url":"Patient?identifier=x"}},{"request":{"method":"PUT","url":"Patient?"},"resource":{"resourceType":"Patient"}}]}`,
	} {
		f.Add([]byte(seed))
	}
	store, _ := fhirtest.SQLite.OpenFresh(f)
	s := fhirtest.Start(f, store, fhirtest.Options{AnyReferences: true})
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest("POST", "/fhir", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/fhir+json")
		req.Header.Set("Authorization", "Bearer "+s.AdminToken)
		rec := httptest.NewRecorder()
		s.Server.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("status %d for %q: %s", rec.Code, body, rec.Body.Bytes())
		}
		if rec.Code >= 400 {
			var oo struct{ ResourceType string }
			if json.Unmarshal(rec.Body.Bytes(), &oo) != nil || oo.ResourceType != "OperationOutcome" {
				t.Fatalf("error %d without an OperationOutcome: %s", rec.Code, rec.Body.Bytes())
			}
		}
	})
}
