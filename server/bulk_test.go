package server_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/calaimfhir/calaimfhir/internal/fhirtest"
)

// TestBulkGate_WaitsThenRefuses holds the one bulk slot with a transaction Bundle whose body
// is still arriving: a second Bundle waits for BulkWait and is refused with 503, Retry-After
// and nothing written, while short requests are answered at once; when the first one is
// done, the second goes through.
func TestBulkGate_WaitsThenRefuses(t *testing.T) {
	store, _ := fhirtest.SQLite.OpenFresh(t)
	s := fhirtest.Start(t, store, fhirtest.Options{BulkConcurrency: 1, BulkWait: 200 * time.Millisecond, AnyReferences: true})
	patientTx := func(family string) string {
		return `{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"urn:uuid:p","request":{"method":"POST","url":"Patient"},` +
			`"resource":{"resourceType":"Patient","name":[{"family":"` + family + `"}]}}]}`
	}

	// The first Bundle: its body arrives in two parts, the second only when the test says so.
	first := patientTx("Holder")
	pr, pw := io.Pipe()
	req, err := http.NewRequest("POST", s.HTTP.URL+"/fhir", pr)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/fhir+json")
	req.Header.Set("Authorization", "Bearer "+s.AdminToken)
	done := make(chan int, 1)
	go func() {
		resp, err := s.HTTP.Client().Do(req)
		if err != nil {
			done <- 0
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	if _, err := pw.Write([]byte(first[:20])); err != nil {
		t.Fatal(err)
	}

	// Until the first one holds the slot, a second may still go through; then it is refused.
	var refused *fhirtest.Response
	for i := 0; i < 100 && refused == nil; i++ {
		r := s.Do("POST", "/fhir", []byte(patientTx("Waiter")))
		switch r.Status {
		case http.StatusServiceUnavailable:
			refused = r
		case http.StatusOK:
			time.Sleep(10 * time.Millisecond)
		default:
			t.Fatalf("second Bundle: %d %s", r.Status, r.Body)
		}
	}
	if refused == nil {
		t.Fatal("the second Bundle was never refused while the first held the slot")
	}
	if refused.Header.Get("Retry-After") == "" || !strings.Contains(string(refused.Body), `"OperationOutcome"`) {
		t.Fatalf("refusal: %v %s", refused.Header, refused.Body)
	}
	// Short requests do not wait for the slot.
	if r := s.Do("GET", "/fhir/Patient?family=Nobody", nil); r.Status != http.StatusOK {
		t.Fatalf("search while the slot is held: %d %s", r.Status, r.Body)
	}
	waiters := countFamily(t, s, "Waiter")

	// The first Bundle completes; the next one is served.
	if _, err := pw.Write([]byte(first[20:])); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	if code := <-done; code != http.StatusOK {
		t.Fatalf("first Bundle: %d", code)
	}
	if r := s.Do("POST", "/fhir", []byte(patientTx("Waiter"))); r.Status != http.StatusOK {
		t.Fatalf("after the slot was free: %d %s", r.Status, r.Body)
	}
	if got := countFamily(t, s, "Waiter"); got != waiters+1 {
		t.Fatalf("Waiter patients: %d, want %d (a refused Bundle wrote something)", got, waiters+1)
	}
	if got := countFamily(t, s, "Holder"); got != 1 {
		t.Fatalf("Holder patients: %d", got)
	}
}

func countFamily(t *testing.T, s *fhirtest.Server, family string) int {
	t.Helper()
	r := s.Do("GET", "/fhir/Patient?family:exact="+family+"&_total=accurate", nil)
	var b struct{ Total int }
	if r.Status != http.StatusOK || json.Unmarshal(r.Body, &b) != nil {
		t.Fatalf("count %s: %d %s", family, r.Status, r.Body)
	}
	return b.Total
}
