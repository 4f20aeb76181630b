package server_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/calaimfhir/calaimfhir/internal/fhirtest"
	"github.com/calaimfhir/calaimfhir/internal/storetest"
)

// start runs a server on a fresh store of h.
func start(t *testing.T, h storetest.Harness) *fhirtest.Server {
	t.Helper()
	store, _ := h.OpenFresh(t)
	return fhirtest.Start(t, store, fhirtest.Options{})
}

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fhirtest.RepoRoot(), "testdata", "rest", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func wantStatus(t testing.TB, r *fhirtest.Response, status int) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status %d, want %d; body: %s", r.Status, status, r.Body)
	}
}

// wantOutcome checks an error answer: the status, an OperationOutcome body in FHIR JSON, and
// the issue code of its first issue.
func wantOutcome(t testing.TB, r *fhirtest.Response, status int, code string) map[string]any {
	t.Helper()
	wantStatus(t, r, status)
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/fhir+json") {
		t.Fatalf("Content-Type %q, want application/fhir+json", ct)
	}
	oo := r.JSON(t)
	if oo["resourceType"] != "OperationOutcome" {
		t.Fatalf("body is not an OperationOutcome: %s", r.Body)
	}
	issues, _ := oo["issue"].([]any)
	if len(issues) == 0 {
		t.Fatalf("OperationOutcome without issues: %s", r.Body)
	}
	if got := issues[0].(map[string]any)["code"]; code != "" && got != code {
		t.Fatalf("issue code %v, want %s: %s", got, code, r.Body)
	}
	return oo
}

// create posts a fixture and returns the stored resource.
func create(t testing.TB, s *fhirtest.Server, typ string, body []byte) map[string]any {
	t.Helper()
	r := s.Do("POST", "/fhir/"+typ, body)
	wantStatus(t, r, http.StatusCreated)
	return r.JSON(t)
}

func meta(res map[string]any) (version, lastUpdated string) {
	m, _ := res["meta"].(map[string]any)
	version, _ = m["versionId"].(string)
	lastUpdated, _ = m["lastUpdated"].(string)
	return
}

func TestCreateReadVReadUpdateDelete(t *testing.T) {
	fhirtest.ForEachStore(t, func(t *testing.T, h storetest.Harness) {
		s := start(t, h)
		r := s.Do("POST", "/fhir/Patient", fixture(t, "patient.json"))
		wantStatus(t, r, http.StatusCreated)
		p := r.JSON(t)
		id, _ := p["id"].(string)
		if len(id) != 32 {
			t.Fatalf("server-assigned id %q, want 32 hex characters", id)
		}
		if v, lu := meta(p); v != "1" || lu == "" {
			t.Fatalf("meta after create: version %q lastUpdated %q", v, lu)
		}
		if got, want := r.Header.Get("Location"), s.Base+"/Patient/"+id+"/_history/1"; got != want {
			t.Fatalf("Location %q, want %q", got, want)
		}
		if got := r.Header.Get("ETag"); got != `W/"1"` {
			t.Fatalf("ETag %q", got)
		}
		if r.Header.Get("Last-Modified") == "" {
			t.Fatal("no Last-Modified")
		}

		read := s.Do("GET", "/fhir/Patient/"+id, nil)
		wantStatus(t, read, http.StatusOK)
		if string(read.Body) != string(r.Body) {
			t.Fatalf("read differs from create response:\n%s\n%s", read.Body, r.Body)
		}
		if read.Header.Get("ETag") != `W/"1"` {
			t.Fatalf("read ETag %q", read.Header.Get("ETag"))
		}
		wantStatus(t, s.Do("GET", "/fhir/Patient/"+id, nil, "If-None-Match", `W/"1"`), http.StatusNotModified)

		// Update: the body must carry the URL id.
		p["gender"] = "female"
		body, _ := json.Marshal(p)
		up := s.Do("PUT", "/fhir/Patient/"+id, body)
		wantStatus(t, up, http.StatusOK)
		if v, _ := meta(up.JSON(t)); v != "2" || up.Header.Get("ETag") != `W/"2"` {
			t.Fatalf("update version %q etag %q", v, up.Header.Get("ETag"))
		}
		v1 := s.Do("GET", "/fhir/Patient/"+id+"/_history/1", nil)
		wantStatus(t, v1, http.StatusOK)
		if string(v1.Body) != string(r.Body) {
			t.Fatal("vread of version 1 differs from what create returned")
		}
		wantOutcome(t, s.Do("GET", "/fhir/Patient/"+id+"/_history/9", nil), http.StatusNotFound, "not-found")
		wantOutcome(t, s.Do("GET", "/fhir/Patient/"+id+"/_history/x", nil), http.StatusNotFound, "not-found")

		// Delete, then read → 410; history keeps every version.
		del := s.Do("DELETE", "/fhir/Patient/"+id, nil)
		wantStatus(t, del, http.StatusNoContent)
		if del.Header.Get("ETag") != `W/"3"` {
			t.Fatalf("delete ETag %q, want W/\"3\"", del.Header.Get("ETag"))
		}
		wantOutcome(t, s.Do("GET", "/fhir/Patient/"+id, nil), http.StatusGone, "deleted")
		wantStatus(t, s.Do("DELETE", "/fhir/Patient/"+id, nil), http.StatusNoContent)
		wantStatus(t, s.Do("GET", "/fhir/Patient/"+id+"/_history/2", nil), http.StatusOK)
		hist := s.Do("GET", "/fhir/Patient/"+id+"/_history", nil)
		wantStatus(t, hist, http.StatusOK)
		b := hist.JSON(t)
		if b["type"] != "history" || fmt.Sprint(b["total"]) != "3" {
			t.Fatalf("history bundle: %s", hist.Body)
		}
		entries := b["entry"].([]any)
		first := entries[0].(map[string]any)
		if first["request"].(map[string]any)["method"] != "DELETE" || first["resource"] != nil {
			t.Fatalf("newest history entry should be the delete without a resource: %v", first)
		}
		last := entries[2].(map[string]any)
		if last["request"].(map[string]any)["method"] != "POST" {
			t.Fatalf("oldest history entry should be the create: %v", last)
		}

		// Update on a deleted resource brings it back as the next version.
		rev := s.Do("PUT", "/fhir/Patient/"+id, body)
		wantStatus(t, rev, http.StatusOK)
		if v, _ := meta(rev.JSON(t)); v != "4" {
			t.Fatalf("version after resurrection %q, want 4", v)
		}
	})
}

func TestUpdate_ClientID_CreatesResource(t *testing.T) {
	fhirtest.ForEachStore(t, func(t *testing.T, h storetest.Harness) {
		s := start(t, h)
		body := []byte(`{"resourceType":"Organization","id":"cbo-a","name":"Hope CBO","active":true}`)
		r := s.Do("PUT", "/fhir/Organization/cbo-a", body)
		wantStatus(t, r, http.StatusCreated)
		if got := r.Header.Get("Location"); got != s.Base+"/Organization/cbo-a/_history/1" {
			t.Fatalf("Location %q", got)
		}
		wantStatus(t, s.Do("PUT", "/fhir/Organization/cbo-a", body), http.StatusOK)
	})
}

func TestUpdate_StaleIfMatch_Returns412(t *testing.T) {
	fhirtest.ForEachStore(t, func(t *testing.T, h storetest.Harness) {
		s := start(t, h)
		body := []byte(`{"resourceType":"Organization","id":"o1","name":"A"}`)
		wantStatus(t, s.Do("PUT", "/fhir/Organization/o1", body), http.StatusCreated)
		wantStatus(t, s.Do("PUT", "/fhir/Organization/o1", body, "If-Match", `W/"1"`), http.StatusOK)
		wantOutcome(t, s.Do("PUT", "/fhir/Organization/o1", body, "If-Match", `W/"1"`), http.StatusPreconditionFailed, "conflict")
		wantOutcome(t, s.Do("DELETE", "/fhir/Organization/o1", nil, "If-Match", `W/"1"`), http.StatusPreconditionFailed, "conflict")
		wantOutcome(t, s.Do("PUT", "/fhir/Organization/o1", body, "If-Match", `banana`), http.StatusBadRequest, "")
		wantStatus(t, s.Do("PUT", "/fhir/Organization/o1", body, "If-Match", `"2"`), http.StatusOK)
	})
}

func TestConcurrentIfMatchUpdates_OneWinsPerVersion(t *testing.T) {
	fhirtest.ForEachStore(t, func(t *testing.T, h storetest.Harness) {
		s := start(t, h)
		body := []byte(`{"resourceType":"Organization","id":"o1","name":"A"}`)
		wantStatus(t, s.Do("PUT", "/fhir/Organization/o1", body), http.StatusCreated)
		var wg sync.WaitGroup
		statuses := make([]int, 10)
		for i := range statuses {
			wg.Add(1)
			go func() {
				defer wg.Done()
				statuses[i] = s.Do("PUT", "/fhir/Organization/o1", body, "If-Match", `W/"1"`).Status
			}()
		}
		wg.Wait()
		count := map[int]int{}
		for _, st := range statuses {
			count[st]++
		}
		if count[200] != 1 || count[412] != 9 {
			t.Fatalf("statuses %v, want one 200 and nine 412", count)
		}
	})
}

func TestConditionalCreate(t *testing.T) {
	fhirtest.ForEachStore(t, func(t *testing.T, h storetest.Harness) {
		s := start(t, h)
		body := fixture(t, "patient.json")
		cond := "identifier=https://calaimfhir.example.org/sid/medi-cal-cin|91234567A"
		first := s.Do("POST", "/fhir/Patient", body, "If-None-Exist", cond)
		wantStatus(t, first, http.StatusCreated)
		again := s.Do("POST", "/fhir/Patient", body, "If-None-Exist", cond)
		wantStatus(t, again, http.StatusOK)
		if again.JSON(t)["id"] != first.JSON(t)["id"] {
			t.Fatal("conditional create returned a different resource")
		}
		wantOutcome(t, s.Do("POST", "/fhir/Patient", body, "If-None-Exist", "nonsense=1"), http.StatusBadRequest, "")
		wantOutcome(t, s.Do("POST", "/fhir/Patient", body, "If-None-Exist", "_count=1"), http.StatusBadRequest, "")
		// Two matches → 412.
		wantStatus(t, s.Do("POST", "/fhir/Patient", body), http.StatusCreated)
		wantOutcome(t, s.Do("POST", "/fhir/Patient", body, "If-None-Exist", cond), http.StatusPreconditionFailed, "")
	})
}

func TestConditionalCreate_50Concurrent_CreatesOne(t *testing.T) {
	fhirtest.ForEachStore(t, func(t *testing.T, h storetest.Harness) {
		s := start(t, h)
		body := []byte(`{"resourceType":"Patient","identifier":[{"system":"urn:cin","value":"55555555E"}]}`)
		var wg sync.WaitGroup
		var mu sync.Mutex
		ids := map[any]int{}
		statuses := map[int]int{}
		for i := 0; i < 50; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := s.Do("POST", "/fhir/Patient", body, "If-None-Exist", "identifier=urn:cin|55555555E")
				mu.Lock()
				defer mu.Unlock()
				statuses[r.Status]++
				if r.Status < 300 {
					ids[r.JSON(t)["id"]]++
				}
			}()
		}
		wg.Wait()
		if statuses[201] != 1 || statuses[200] != 49 || len(ids) != 1 {
			t.Fatalf("statuses %v, distinct ids %d; want one 201, 49 200s, one id", statuses, len(ids))
		}
		total := s.Do("GET", "/fhir/Patient?identifier=urn:cin|55555555E&_summary=count", nil).JSON(t)["total"]
		if fmt.Sprint(total) != "1" {
			t.Fatalf("stored %v matching patients, want 1", total)
		}
	})
}

func TestPrefer(t *testing.T) {
	fhirtest.ForEachStore(t, func(t *testing.T, h storetest.Harness) {
		s := start(t, h)
		body := fixture(t, "patient.json")
		min := s.Do("POST", "/fhir/Patient", body, "Prefer", "return=minimal")
		wantStatus(t, min, http.StatusCreated)
		if len(min.Body) != 0 || min.Header.Get("Location") == "" {
			t.Fatalf("return=minimal: body %q, Location %q", min.Body, min.Header.Get("Location"))
		}
		oo := s.Do("POST", "/fhir/Patient", body, "Prefer", "return=OperationOutcome")
		wantStatus(t, oo, http.StatusCreated)
		if oo.JSON(t)["resourceType"] != "OperationOutcome" {
			t.Fatalf("return=OperationOutcome: %s", oo.Body)
		}
		rep := s.Do("POST", "/fhir/Patient", body, "Prefer", "return=representation")
		if rep.JSON(t)["resourceType"] != "Patient" {
			t.Fatalf("return=representation: %s", rep.Body)
		}
	})
}

func TestErrors_AreOperationOutcomes(t *testing.T) {
	fhirtest.ForEachStore(t, func(t *testing.T, h storetest.Harness) {
		store, _ := h.OpenFresh(t)
		s := fhirtest.Start(t, store, fhirtest.Options{MaxBodyBytes: 4096})
		org := []byte(`{"resourceType":"Organization","id":"o1","name":"A"}`)
		wantStatus(t, s.Do("PUT", "/fhir/Organization/o1", org), http.StatusCreated)
		big := []byte(`{"resourceType":"Organization","name":"` + strings.Repeat("x", 5000) + `"}`)
		cases := []struct {
			name    string
			method  string
			path    string
			body    []byte
			headers []string
			status  int
			code    string
		}{
			{"malformed JSON", "POST", "/fhir/Patient", []byte(`{"resourceType":"Patient",`), nil, 400, ""},
			{"not an object", "POST", "/fhir/Patient", []byte(`[1,2]`), nil, 400, ""},
			{"empty body", "POST", "/fhir/Patient", []byte{}, nil, 400, ""},
			{"type differs from URL", "POST", "/fhir/Patient", org, nil, 400, ""},
			{"body id differs from URL", "PUT", "/fhir/Organization/o2", org, nil, 400, ""},
			{"update without id", "PUT", "/fhir/Organization/o1", []byte(`{"resourceType":"Organization","name":"A"}`), nil, 400, ""},
			{"invalid id in URL", "PUT", "/fhir/Organization/bad_id!", org, nil, 400, ""},
			{"invalid R4", "POST", "/fhir/Patient", []byte(`{"resourceType":"Patient","birthDate":"1990-13-45"}`), nil, 422, ""},
			{"unknown element", "POST", "/fhir/Patient", []byte(`{"resourceType":"Patient","favouriteColour":"blue"}`), nil, 422, ""},
			{"unknown type", "GET", "/fhir/Spaceship/1", nil, nil, 404, "not-found"},
			{"unknown type create", "POST", "/fhir/Spaceship", []byte(`{"resourceType":"Spaceship"}`), nil, 404, "not-found"},
			{"unknown type search", "GET", "/fhir/Spaceship", nil, nil, 404, "not-found"},
			{"unknown id", "GET", "/fhir/Patient/nope", nil, nil, 404, "not-found"},
			{"delete unknown id", "DELETE", "/fhir/Patient/nope", nil, nil, 404, "not-found"},
			{"unknown endpoint", "GET", "/fhir/Patient/1/_history/1/extra", nil, nil, 404, "not-found"},
			{"method not allowed", "POST", "/fhir/Organization/o1", []byte(`{}`), nil, 405, "not-supported"},
			{"XML wanted", "GET", "/fhir/Organization/o1", nil, []string{"Accept", "application/fhir+xml"}, 406, "not-supported"},
			{"_format xml", "GET", "/fhir/Organization/o1?_format=xml", nil, nil, 406, "not-supported"},
			{"XML body", "POST", "/fhir/Organization", []byte(`<Organization/>`), []string{"Content-Type", "application/fhir+xml"}, 415, "not-supported"},
			{"form body on create", "POST", "/fhir/Organization", org, []string{"Content-Type", "application/x-www-form-urlencoded"}, 415, "not-supported"},
			{"body too large", "POST", "/fhir/Organization", big, nil, 413, "too-long"},
			{"bad _count", "GET", "/fhir/Patient?_count=abc", nil, nil, 400, ""},
			{"bad _lastUpdated", "GET", "/fhir/Patient?_lastUpdated=yesterday", nil, nil, 400, ""},
			{"tampered cursor", "GET", "/fhir/Patient?_cursor=AAAA", nil, nil, 400, ""},
			{"bad _since", "GET", "/fhir/Patient/_history?_since=soon", nil, nil, 400, ""},
			{"history of unknown id", "GET", "/fhir/Patient/nope/_history", nil, nil, 404, "not-found"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				wantOutcome(t, s.Do(tc.method, tc.path, tc.body, tc.headers...), tc.status, tc.code)
			})
		}
	})
}

func TestInvalidResource_OutcomeNamesElementPaths(t *testing.T) {
	fhirtest.ForEachStore(t, func(t *testing.T, h storetest.Harness) {
		s := start(t, h)
		r := s.Do("POST", "/fhir/Patient", []byte(`{"resourceType":"Patient","birthDate":"1990-13-45","active":"yes"}`))
		oo := wantOutcome(t, r, http.StatusUnprocessableEntity, "")
		var exprs []string
		for _, is := range oo["issue"].([]any) {
			for _, e := range is.(map[string]any)["expression"].([]any) {
				exprs = append(exprs, e.(string))
			}
		}
		joined := strings.Join(exprs, " ")
		if !strings.Contains(joined, "Patient.birthDate") && !strings.Contains(joined, "Patient.active") {
			t.Fatalf("expressions %v name neither Patient.birthDate nor Patient.active", exprs)
		}
		// Nothing was stored.
		if total := s.Do("GET", "/fhir/Patient?_summary=count", nil).JSON(t)["total"]; fmt.Sprint(total) != "0" {
			t.Fatalf("an invalid create stored something: total %v", total)
		}
	})
}

func TestMetadata_ListsEveryTypeAndInteraction(t *testing.T) {
	fhirtest.ForEachStore(t, func(t *testing.T, h storetest.Harness) {
		s := start(t, h)
		r := s.Do("GET", "/fhir/metadata", nil)
		wantStatus(t, r, http.StatusOK)
		cs := r.JSON(t)
		if cs["resourceType"] != "CapabilityStatement" || cs["fhirVersion"] != "4.0.1" {
			t.Fatalf("metadata: %s", r.Body)
		}
		rest := cs["rest"].([]any)[0].(map[string]any)
		types := map[string]map[string]any{}
		for _, res := range rest["resource"].([]any) {
			m := res.(map[string]any)
			types[m["type"].(string)] = m
		}
		if len(types) != 23+4 { // the stored types, the read-only StructureDefinition, CodeSystem, ValueSet, and AuditEvent
			t.Fatalf("%d resource types listed, want 27", len(types))
		}
		task := types["Task"]
		params := map[string]string{}
		for _, p := range task["searchParam"].([]any) {
			params[p.(map[string]any)["name"].(string)] = p.(map[string]any)["type"].(string)
		}
		for _, want := range []string{"_id", "_lastUpdated", "identifier", "patient", "status", "owner", "requester"} {
			if params[want] == "" {
				t.Errorf("Task search parameter %s not listed", want)
			}
		}
		// What is listed works: each listed search parameter of every type is accepted in
		// strict mode with a value of its type.
		sample := map[string]string{"date": "2024", "number": "1", "quantity": "1", "composite": "a$2024", "special": "0|0|1|km"}
		for typ, res := range types {
			if typ == "AuditEvent" {
				continue // its parameters take codes (action=C, outcome=0); server/audit_test.go covers them
			}
			for _, p := range res["searchParam"].([]any) {
				m := p.(map[string]any)
				value := sample[m["type"].(string)]
				if value == "" {
					value = "x"
				}
				wantStatus(t, s.Do("GET", "/fhir/"+typ+"?"+m["name"].(string)+"="+value, nil, "Prefer", "handling=strict"), http.StatusOK)
			}
		}
	})
}

func TestHealthAndMetrics(t *testing.T) {
	fhirtest.ForEachStore(t, func(t *testing.T, h storetest.Harness) {
		s := start(t, h)
		wantStatus(t, s.Do("GET", "/health/live", nil), http.StatusOK)
		wantStatus(t, s.Do("GET", "/health/ready", nil), http.StatusOK)
		p := create(t, s, "Patient", fixture(t, "patient.json"))
		// A provider's read resolves its patient set once: one access-set build.
		prov := s.Token("provider", "Organization/clinic-1", "")
		s.Do("GET", "/fhir/Patient/"+p["id"].(string), nil, "Authorization", "Bearer "+prov)
		s.Do("GET", "/fhir/Patient/"+p["id"].(string), nil, "Authorization", "Bearer "+prov)
		m := s.Do("GET", "/metrics", nil)
		wantStatus(t, m, http.StatusOK)
		for _, want := range []string{
			`calaimfhir_http_requests_total{interaction="create",status="201",type="Patient"} 1`,
			`calaimfhir_store_call_duration_seconds_count{op="put",outcome="ok",store="test"} 1`,
			`calaimfhir_http_request_duration_seconds_bucket`,
			"calaimfhir_access_set_builds_total 1\n",
		} {
			if !strings.Contains(string(m.Body), want) {
				t.Errorf("metrics lack %s", want)
			}
		}
	})
}

func TestLogs_HaveRequestIDsAndNoPHI(t *testing.T) {
	fhirtest.ForEachStore(t, func(t *testing.T, h storetest.Harness) {
		s := start(t, h)
		p := create(t, s, "Patient", fixture(t, "patient.json"))
		id := p["id"].(string)
		s.Do("GET", "/fhir/Patient/"+id, nil, "X-Request-Id", "req-123")
		s.Do("GET", "/fhir/Patient?identifier=https://calaimfhir.example.org/sid/medi-cal-cin|91234567A", nil)
		s.Do("POST", "/fhir/Patient", []byte(`{"resourceType":"Patient","birthDate":"1990-13-45","name":[{"family":"Quintanilla"}]}`))
		s.Do("GET", "/fhir/Patient/91234567A/_history/1/extra", nil) // unknown routes log no path
		s.Do("GET", "/elsewhere/91234567A", nil)
		logs := s.LogText()
		if !strings.Contains(logs, `"request_id":"req-123"`) {
			t.Fatalf("logs lack the request id: %s", logs)
		}
		for _, phi := range []string{"Quintanilla", "Maria", "91234567A", id, "1990-13-45", "1987-04-12"} {
			if strings.Contains(logs, phi) {
				t.Fatalf("logs contain %q: %s", phi, logs)
			}
		}
	})
}
