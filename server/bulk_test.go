package server_test

import (
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/calaimfhir/calaimfhir/internal/fhirtest"
)

// TestBulkGate_SlowUploadHoldsNoSlot: a Bundle whose body is still arriving does not hold the
// one bulk slot (it takes it when its body is in), so another Bundle goes through meanwhile;
// then the slow one completes too.
func TestBulkGate_SlowUploadHoldsNoSlot(t *testing.T) {
	store, _ := fhirtest.SQLite.OpenFresh(t)
	s := fhirtest.Start(t, store, fhirtest.Options{BulkConcurrency: 1, BulkWait: 200 * time.Millisecond})
	patientTx := func(family string) string {
		return `{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"urn:uuid:p","request":{"method":"POST","url":"Patient"},` +
			`"resource":{"resourceType":"Patient","name":[{"family":"` + family + `"}]}}]}`
	}
	slow := patientTx("Slow")
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
	if _, err := pw.Write([]byte(slow[:20])); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // longer than BulkWait: a slot held by the upload would refuse the next
	for i := range 3 {
		if r := s.Do("POST", "/fhir", []byte(patientTx("Quick"))); r.Status != http.StatusOK {
			t.Fatalf("Bundle %d while another is uploading: %d %s", i, r.Status, r.Body)
		}
	}
	if _, err := pw.Write([]byte(slow[20:])); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	if code := <-done; code != http.StatusOK {
		t.Fatalf("the slow Bundle: %d", code)
	}
}
