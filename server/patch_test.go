package server_test

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/calaimfhir/calaimfhir/internal/fhirtest"
	"github.com/calaimfhir/calaimfhir/internal/storetest"
)

func TestPatch_JSONAndFHIRPath(t *testing.T) {
	fhirtest.ForEachStore(t, func(t *testing.T, h storetest.Harness) {
		s := start(t, h)
		referralNetwork(t, s)
		jsonPatch := []byte(`[{"op":"replace","path":"/status","value":"accepted"},
			{"op":"add","path":"/businessStatus","value":{"text":"Member contacted"}}]`)
		r := s.Do("PATCH", "/fhir/Task/t-1", jsonPatch, "Content-Type", "application/json-patch+json", "If-Match", `W/"1"`)
		wantStatus(t, r, http.StatusOK)
		task := r.JSON(t)
		if v, _ := meta(task); task["status"] != "accepted" || v != "2" || r.Header.Get("ETag") != `W/"2"` {
			t.Fatalf("after JSON Patch: %s", r.Body)
		}
		wantOutcome(t, s.Do("PATCH", "/fhir/Task/t-1", jsonPatch, "Content-Type", "application/json-patch+json", "If-Match", `W/"1"`),
			http.StatusPreconditionFailed, "")
		fhirPathPatch := []byte(`{"resourceType":"Parameters","parameter":[{"name":"operation","part":[
			{"name":"type","valueCode":"replace"},{"name":"path","valueString":"Task.status"},{"name":"value","valueCode":"in-progress"}]}]}`)
		r = s.Do("PATCH", "/fhir/Task/t-1", fhirPathPatch)
		wantStatus(t, r, http.StatusOK)
		if r.JSON(t)["status"] != "in-progress" {
			t.Fatalf("after FHIRPath Patch: %s", r.Body)
		}
		// The result is validated like an update, and a patch cannot change the id.
		wantOutcome(t, s.Do("PATCH", "/fhir/Task/t-1", []byte(`[{"op":"replace","path":"/status","value":"bogus"}]`),
			"Content-Type", "application/json-patch+json"), http.StatusUnprocessableEntity, "")
		wantOutcome(t, s.Do("PATCH", "/fhir/Task/t-1", []byte(`[{"op":"replace","path":"/id","value":"t-9"}]`),
			"Content-Type", "application/json-patch+json"), http.StatusUnprocessableEntity, "")
		wantOutcome(t, s.Do("PATCH", "/fhir/Task/t-1", []byte(`[{"op":"replace","path":"/for/reference","value":"Patient/nobody"}]`),
			"Content-Type", "application/json-patch+json"), http.StatusUnprocessableEntity, "not-found")
		wantOutcome(t, s.Do("PATCH", "/fhir/Task/t-1", []byte(`not json`), "Content-Type", "application/json-patch+json"), http.StatusBadRequest, "")
		wantOutcome(t, s.Do("PATCH", "/fhir/Task/t-1", []byte(`[]`), "Content-Type", "text/plain"), http.StatusUnsupportedMediaType, "")
		wantOutcome(t, s.Do("PATCH", "/fhir/Task/nope", jsonPatch, "Content-Type", "application/json-patch+json"), http.StatusNotFound, "")
		// Conditional PATCH.
		r = s.Do("PATCH", "/fhir/Patient?identifier=urn:cin|22222222B", []byte(`[{"op":"add","path":"/gender","value":"male"}]`),
			"Content-Type", "application/json-patch+json")
		wantStatus(t, r, http.StatusOK)
		if r.JSON(t)["id"] != "ben" {
			t.Fatalf("conditional patch hit %s", r.Body)
		}
	})
}

func TestPatch_ConcurrentPatchesLoseNoUpdate(t *testing.T) {
	fhirtest.ForEachStore(t, func(t *testing.T, h storetest.Harness) {
		s := start(t, h)
		wantStatus(t, s.Do("PUT", "/fhir/Patient/p", []byte(`{"resourceType":"Patient","id":"p","name":[{"family":"X","given":["start"]}]}`)), http.StatusCreated)
		var wg sync.WaitGroup
		for i := 0; i < 10; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				body := []byte(fmt.Sprintf(`[{"op":"add","path":"/name/0/given/-","value":"g%d"}]`, i))
				if i%2 == 0 { // without If-Match: the server re-applies on conflict
					if r := s.Do("PATCH", "/fhir/Patient/p", body, "Content-Type", "application/json-patch+json"); r.Status != http.StatusOK {
						t.Errorf("patch %d: %d %s", i, r.Status, r.Body)
					}
					return
				}
				for attempt := 0; attempt < 200; attempt++ { // with If-Match: the client retries on 412
					cur := s.Do("GET", "/fhir/Patient/p", nil)
					r := s.Do("PATCH", "/fhir/Patient/p", body, "Content-Type", "application/json-patch+json", "If-Match", cur.Header.Get("ETag"))
					if r.Status == http.StatusOK {
						return
					}
					if r.Status != http.StatusPreconditionFailed {
						t.Errorf("patch %d: %d %s", i, r.Status, r.Body)
						return
					}
				}
				t.Errorf("patch %d never applied", i)
			}()
		}
		wg.Wait()
		p := s.Do("GET", "/fhir/Patient/p", nil).JSON(t)
		given := p["name"].([]any)[0].(map[string]any)["given"].([]any)
		var got []string
		for _, g := range given {
			got = append(got, g.(string))
		}
		slices.Sort(got)
		want := []string{"g0", "g1", "g2", "g3", "g4", "g5", "g6", "g7", "g8", "g9", "start"}
		if !slices.Equal(got, want) {
			t.Fatalf("given names %v, want %v", got, want)
		}
		if v, _ := meta(p); v != "11" {
			t.Fatalf("version %s, want 11", v)
		}
	})
}

func TestPatch_InBundles(t *testing.T) {
	fhirtest.ForEachStore(t, func(t *testing.T, h storetest.Harness) {
		s := start(t, h)
		referralNetwork(t, s)
		data := base64.StdEncoding.EncodeToString([]byte(`[{"op":"replace","path":"/status","value":"accepted"}]`))
		body := []byte(`{"resourceType":"Bundle","type":"transaction","entry":[
			{"request":{"method":"PATCH","url":"Task/t-2"},"resource":{"resourceType":"Binary","contentType":"application/json-patch+json","data":"` + data + `"}},
			{"request":{"method":"PATCH","url":"Task?identifier=nothing-here"},"resource":{"resourceType":"Parameters","parameter":[]}}]}`)
		r, _ := postBundle(t, s, body)
		wantOutcome(t, r, http.StatusNotFound, "") // the conditional patch matches nothing: all fails
		// t-2 is already "accepted" in the fixture, so the version shows whether it was patched.
		v, _ := meta(s.Do("GET", "/fhir/Task/t-2", nil).JSON(t))
		if v != "1" {
			t.Fatalf("a failed transaction patched Task/t-2 (version %s)", v)
		}
		body = []byte(strings.Replace(string(body), `"url":"Task?identifier=nothing-here"},"resource":{"resourceType":"Parameters","parameter":[]}`,
			`"url":"Task/t-3"},"resource":{"resourceType":"Parameters","parameter":[{"name":"operation","part":[{"name":"type","valueCode":"replace"},{"name":"path","valueString":"Task.status"},{"name":"value","valueCode":"accepted"}]}]}`, 1))
		r, b := postBundle(t, s, body)
		if b == nil || !slices.Equal(statuses(b), []string{"200", "200"}) {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
		if s.Do("GET", "/fhir/Task/t-3", nil).JSON(t)["status"] != "accepted" {
			t.Fatal("the FHIRPath patch in the transaction was not applied")
		}
	})
}
