package server_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/calaimfhir/calaimfhir/internal/fhirtest"
	"github.com/calaimfhir/calaimfhir/internal/storetest"
)

func TestRestart_DataStillThere(t *testing.T) {
	fhirtest.ForEachStore(t, func(t *testing.T, h storetest.Harness) {
		loc := h.New(t)
		store := h.Open(t, loc)
		s := fhirtest.Start(t, store, fhirtest.Options{})
		p := create(t, s, "Patient", fixture(t, "patient.json"))
		id := p["id"].(string)
		before := s.Do("GET", "/fhir/Patient/"+id, nil)
		s.HTTP.Close()
		if err := store.Close(); err != nil {
			t.Fatal(err)
		}

		store = h.Open(t, loc)
		t.Cleanup(func() { store.Close() })
		s = fhirtest.Start(t, store, fhirtest.Options{})
		after := s.Do("GET", "/fhir/Patient/"+id, nil)
		wantStatus(t, after, http.StatusOK)
		if string(after.Body) != string(before.Body) {
			t.Fatalf("after restart:\n%s\nbefore:\n%s", after.Body, before.Body)
		}
		ids, _, _, _ := bundleIDs(t, s.Do("GET", "/fhir/Patient?identifier=91234567A", nil))
		if len(ids) != 1 || ids[0] != id {
			t.Fatalf("search after restart: %v", ids)
		}
	})
}

func TestStoreDown_Returns503AndRecovers(t *testing.T) {
	fhirtest.ForEachStore(t, func(t *testing.T, h storetest.Harness) {
		store, loc := h.OpenFresh(t)
		s := fhirtest.Start(t, store, fhirtest.Options{})
		p := create(t, s, "Patient", fixture(t, "patient.json"))
		id := p["id"].(string)

		restore := h.Outage(t, loc)
		restored := false
		defer func() {
			if !restored {
				restore()
			}
		}()
		ready := s.Do("GET", "/health/ready", nil)
		wantOutcome(t, ready, http.StatusServiceUnavailable, "transient")
		wantStatus(t, s.Do("GET", "/health/live", nil), http.StatusOK)
		w := s.Do("POST", "/fhir/Patient", fixture(t, "patient.json"))
		wantOutcome(t, w, http.StatusServiceUnavailable, "transient")
		if w.Header.Get("Retry-After") == "" {
			t.Error("503 without Retry-After")
		}
		// A read is either served correctly or refused as unavailable, never a 500.
		if r := s.Do("GET", "/fhir/Patient/"+id, nil); r.Status != http.StatusOK {
			wantOutcome(t, r, http.StatusServiceUnavailable, "transient")
		}
		if strings.Contains(s.LogText(), `"status":500`) {
			t.Fatal("an outage produced a 500")
		}

		restore()
		restored = true
		deadline := time.Now().Add(30 * time.Second)
		for s.Do("GET", "/health/ready", nil).Status != http.StatusOK {
			if time.Now().After(deadline) {
				t.Fatal("/health/ready did not recover")
			}
			time.Sleep(100 * time.Millisecond)
		}
		wantStatus(t, s.Do("POST", "/fhir/Patient", fixture(t, "patient.json")), http.StatusCreated)
		wantStatus(t, s.Do("GET", "/fhir/Patient/"+id, nil), http.StatusOK)
	})
}
