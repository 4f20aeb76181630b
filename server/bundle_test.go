package server_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/calaimfhir/calaimfhir/internal/fhirtest"
	"github.com/calaimfhir/calaimfhir/internal/storetest"
	"github.com/calaimfhir/calaimfhir/resources"
)

type bundleResponse struct {
	ResourceType string
	Type         string
	Entry        []struct {
		Resource json.RawMessage
		Response struct {
			Status   string
			Location string
			Etag     string
			Outcome  json.RawMessage
		}
	}
}

func postBundle(t *testing.T, s *fhirtest.Server, body []byte, headers ...string) (*fhirtest.Response, *bundleResponse) {
	t.Helper()
	r := s.Do("POST", "/fhir", body, headers...)
	if r.Status != http.StatusOK {
		return r, nil
	}
	var b bundleResponse
	if err := json.Unmarshal(r.Body, &b); err != nil {
		t.Fatalf("response is not a Bundle: %v", err)
	}
	return r, &b
}

func statuses(b *bundleResponse) []string {
	var out []string
	for _, e := range b.Entry {
		code, _, _ := strings.Cut(e.Response.Status, " ")
		out = append(out, code)
	}
	return out
}

// referralTransaction is what an EHR pushes for one CalAIM referral.
func referralTransaction(cin, referralID string) []byte {
	return []byte(fmt.Sprintf(`{"resourceType":"Bundle","type":"transaction","entry":[
	{"fullUrl":"urn:uuid:p","request":{"method":"POST","url":"Patient","ifNoneExist":"identifier=urn:cin|%[1]s"},
	 "resource":{"resourceType":"Patient","identifier":[{"system":"urn:cin","value":%[1]q}],"name":[{"family":"Rivera"}]}},
	{"fullUrl":"urn:uuid:c","request":{"method":"POST","url":"Condition"},
	 "resource":{"resourceType":"Condition","subject":{"reference":"urn:uuid:p"},
	  "code":{"coding":[{"system":"http://hl7.org/fhir/sid/icd-10-cm","code":"Z59.41"}]}}},
	{"fullUrl":"urn:uuid:k","request":{"method":"POST","url":"Consent"},
	 "resource":{"resourceType":"Consent","status":"active","scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"patient-privacy"}]},
	  "category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"IDSCL"}]}],"patient":{"reference":"urn:uuid:p"}}},
	{"fullUrl":"urn:uuid:s","request":{"method":"POST","url":"ServiceRequest"},
	 "resource":{"resourceType":"ServiceRequest","status":"active","intent":"order","subject":{"reference":"urn:uuid:p"},
	  "reasonReference":[{"reference":"urn:uuid:c"}],"supportingInfo":[{"reference":"urn:uuid:k"}],
	  "extension":[{"url":"urn:test:consent","valueReference":{"reference":"urn:uuid:k"}}],
	  "contained":[{"resourceType":"Organization","id":"x","partOf":{"reference":"urn:uuid:o"}}],
	  "code":{"text":"Medically tailored meals"}}},
	{"fullUrl":"urn:uuid:t","request":{"method":"POST","url":"Task","ifNoneExist":"identifier=urn:referral|%[2]s"},
	 "resource":{"resourceType":"Task","identifier":[{"system":"urn:referral","value":%[2]q}],"status":"requested","intent":"order",
	  "focus":{"reference":"urn:uuid:s"},"for":{"reference":"urn:uuid:p"},"owner":{"reference":"Organization/cbo-a"}}},
	{"fullUrl":"urn:uuid:o","request":{"method":"POST","url":"Organization","ifNoneExist":"identifier=urn:npi|1234567893"},
	 "resource":{"resourceType":"Organization","identifier":[{"system":"urn:npi","value":"1234567893"}],"name":"Referring clinic"}}]}`, cin, referralID))
}

func TestTransaction_Referral_ResolvesPlaceholders(t *testing.T) {
	fhirtest.ForEachStore(t, func(t *testing.T, h storetest.Harness) {
		s := start(t, h)
		r, b := postBundle(t, s, referralTransaction("12345678A", "R-1"))
		if b == nil || b.Type != "transaction-response" {
			t.Fatalf("status %d: %s", r.Status, r.Body)
		}
		if got := statuses(b); !slices.Equal(got, []string{"201", "201", "201", "201", "201", "201"}) {
			t.Fatalf("statuses %v", got)
		}
		ids := map[string]string{}
		for i, name := range []string{"Patient", "Condition", "Consent", "ServiceRequest", "Task"} {
			loc := b.Entry[i].Response.Location
			if !strings.HasPrefix(loc, s.Base+"/"+name+"/") || !strings.HasSuffix(loc, "/_history/1") {
				t.Fatalf("location %q", loc)
			}
			ids[name] = strings.Split(strings.TrimPrefix(loc, s.Base+"/"), "/")[1]
		}
		sr := s.Do("GET", "/fhir/ServiceRequest/"+ids["ServiceRequest"], nil).JSON(t)
		body, _ := json.Marshal(sr)
		for _, want := range []string{"Patient/" + ids["Patient"], "Condition/" + ids["Condition"], "Consent/" + ids["Consent"]} {
			if !strings.Contains(string(body), `"`+want+`"`) {
				t.Fatalf("ServiceRequest lacks %s: %s", want, body)
			}
		}
		if strings.Contains(string(body), "urn:uuid") {
			t.Fatalf("a placeholder was left (extension or contained): %s", body)
		}
		matches, _ := searchNames(t, s, "Task?focus=ServiceRequest/"+ids["ServiceRequest"]+"&patient="+ids["Patient"])
		if !slices.Equal(matches, []string{"Task/" + ids["Task"]}) {
			t.Fatalf("Task search by resolved references: %v", matches)
		}
		// Pushing the same referral again creates no second Patient or Task.
		_, again := postBundle(t, s, referralTransaction("12345678A", "R-1"))
		if got := statuses(again); got[0] != "200" || got[4] != "200" || got[5] != "200" {
			t.Fatalf("second push: %v", got)
		}
		if n := s.Do("GET", "/fhir/Patient?_summary=count", nil).JSON(t)["total"]; fmt.Sprint(n) != "1" {
			t.Fatalf("%v Patients after pushing twice", n)
		}
	})
}

func TestTransaction_FailureLeavesNothing(t *testing.T) {
	fhirtest.ForEachStore(t, func(t *testing.T, h storetest.Harness) {
		s := start(t, h)
		var entries []string
		for i := 0; i < 100; i++ {
			status := "requested"
			if i == 50 {
				status = "not-a-status" // invalid R4: the whole transaction fails
			}
			entries = append(entries, fmt.Sprintf(`{"fullUrl":"urn:uuid:%d","request":{"method":"POST","url":"Task"},
				"resource":{"resourceType":"Task","status":%q,"intent":"order","owner":{"reference":"Organization/tx"}}}`, i, status))
		}
		body := []byte(`{"resourceType":"Bundle","type":"transaction","entry":[` + strings.Join(entries, ",") + `]}`)
		r, _ := postBundle(t, s, body)
		oo := wantOutcome(t, r, http.StatusUnprocessableEntity, "")
		if !strings.Contains(string(r.Body), "Bundle.entry[50]") {
			t.Fatalf("the outcome does not name the failing entry: %v", oo)
		}
		if n := s.Do("GET", "/fhir/Task?_summary=count", nil).JSON(t)["total"]; fmt.Sprint(n) != "0" {
			t.Fatalf("%v Tasks remain", n)
		}
		if hist := s.Do("GET", "/fhir/Task/_history", nil).JSON(t); fmt.Sprint(hist["total"]) != "0" {
			t.Fatalf("history holds %v entries", hist["total"])
		}
	})
}

func TestTransaction_ConcurrentIdenticalConditionalCreates(t *testing.T) {
	fhirtest.ForEachStore(t, func(t *testing.T, h storetest.Harness) {
		s := start(t, h)
		var wg sync.WaitGroup
		for i := 0; i < 20; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if r, _ := postBundle(t, s, referralTransaction("77777777G", "R-7")); r.Status != http.StatusOK {
					t.Errorf("push %d: %d %s", i, r.Status, r.Body)
				}
			}()
		}
		wg.Wait()
		for _, typ := range []string{"Patient", "Task", "Organization"} {
			if n := s.Do("GET", "/fhir/"+typ+"?_summary=count", nil).JSON(t)["total"]; fmt.Sprint(n) != "1" {
				t.Fatalf("%v %s resources after 20 identical pushes, want 1", n, typ)
			}
		}
		// Conditional updates in bundles converge on one resource too.
		for i := 0; i < 20; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				body := fmt.Sprintf(`{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"PUT","url":"Organization?identifier=urn:npi|1234567893"},
					"resource":{"resourceType":"Organization","identifier":[{"system":"urn:npi","value":"1234567893"}],"name":"CBO %d"}}]}`, i)
				if r, _ := postBundle(t, s, []byte(body)); r.Status != http.StatusOK {
					t.Errorf("conditional update %d: %d %s", i, r.Status, r.Body)
				}
			}()
		}
		wg.Wait()
		if n := s.Do("GET", "/fhir/Organization?identifier=urn:npi|1234567893&_summary=count", nil).JSON(t)["total"]; fmt.Sprint(n) != "1" {
			t.Fatalf("%v Organizations after 20 conditional updates, want 1", n)
		}
		if n := s.Do("GET", "/fhir/Organization?_summary=count", nil).JSON(t)["total"]; fmt.Sprint(n) != "1" {
			t.Fatalf("%v Organizations after 20 conditional updates, want 1", n)
		}
	})
}

func TestBatch_EntriesIndependent(t *testing.T) {
	fhirtest.ForEachStore(t, func(t *testing.T, h storetest.Harness) {
		s := start(t, h)
		body := []byte(`{"resourceType":"Bundle","type":"batch","entry":[
			{"request":{"method":"POST","url":"Organization"},"resource":{"resourceType":"Organization","name":"A"}},
			{"request":{"method":"POST","url":"Organization"},"resource":{"resourceType":"Organization","active":"yes"}},
			{"request":{"method":"PUT","url":"Organization/o2"},"resource":{"resourceType":"Organization","id":"o2","name":"B"}},
			{"request":{"method":"GET","url":"Organization/o2"}},
			{"request":{"method":"GET","url":"Organization?name=b"}},
			{"request":{"method":"DELETE","url":"Organization/missing"}},
			{"request":{"method":"POST","url":"Spaceship"},"resource":{"resourceType":"Spaceship"}}]}`)
		r, b := postBundle(t, s, body)
		if b == nil || b.Type != "batch-response" {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
		if got, want := statuses(b), []string{"201", "422", "201", "200", "200", "404", "404"}; !slices.Equal(got, want) {
			t.Fatalf("statuses %v, want %v", got, want)
		}
		if len(b.Entry[1].Response.Outcome) == 0 {
			t.Fatal("a failed batch entry has no outcome")
		}
	})
}

func TestBundle_Limits(t *testing.T) {
	store, _ := fhirtest.SQLite.OpenFresh(t)
	s := fhirtest.Start(t, store, fhirtest.Options{})
	entries := strings.Repeat(`{"request":{"method":"GET","url":"Patient"}},`, resources.DefaultMaxBundleEntries+1)
	body := []byte(`{"resourceType":"Bundle","type":"batch","entry":[` + strings.TrimSuffix(entries, ",") + `]}`)
	wantOutcome(t, s.Do("POST", "/fhir", body), http.StatusRequestEntityTooLarge, "too-long")
	wantOutcome(t, s.Do("POST", "/fhir", []byte(`{"resourceType":"Bundle","type":"collection"}`)), http.StatusBadRequest, "")
	wantOutcome(t, s.Do("POST", "/fhir", []byte(`{"resourceType":"Patient"}`)), http.StatusBadRequest, "")
	wantOutcome(t, s.Do("POST", "/fhir", []byte(`{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Patient"}}]}`)), http.StatusBadRequest, "")
	dup := []byte(`{"resourceType":"Bundle","type":"transaction","entry":[
		{"request":{"method":"PUT","url":"Organization/o1"},"resource":{"resourceType":"Organization","id":"o1"}},
		{"request":{"method":"PUT","url":"Organization/o1"},"resource":{"resourceType":"Organization","id":"o1"}}]}`)
	wantOutcome(t, s.Do("POST", "/fhir", dup), http.StatusBadRequest, "")
}

func TestOfficialBundles(t *testing.T) {
	dir := fhirtest.ExamplesDir(t, "r4")
	read := func(t *testing.T, name string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	fhirtest.ForEachStore(t, func(t *testing.T, h storetest.Harness) {
		store, _ := h.OpenFresh(t)
		s := fhirtest.Start(t, store, fhirtest.Options{AnyReferences: true})
		// The state Bundle-bundle-transaction.json assumes: Patient/123a at version 2,
		// Patient/234, and one Patient with identifier 123456.
		wantStatus(t, s.Do("PUT", "/fhir/Patient/123a", []byte(`{"resourceType":"Patient","id":"123a"}`)), http.StatusCreated)
		wantStatus(t, s.Do("PUT", "/fhir/Patient/123a", []byte(`{"resourceType":"Patient","id":"123a","active":true}`)), http.StatusOK)
		wantStatus(t, s.Do("PUT", "/fhir/Patient/234", []byte(`{"resourceType":"Patient","id":"234"}`)), http.StatusCreated)
		create(t, s, "Patient", []byte(`{"resourceType":"Patient","identifier":[{"value":"123456"}]}`))

		cases := []struct {
			file string
			want []string
		}{
			// $lookup is an operation on ValueSet, which is not stored: left out (lenient).
			{"Bundle-bundle-transaction.json", []string{"201", "201", "201", "201", "200", "204", "204", "404", "200", "404"}},
			{"Bundle-xds.json", []string{"201", "201", "201", "201", "404"}},
			{"Bundle-bundle-request-medsallergies.json", []string{"404", "404", "404", "200", "404"}},
			{"Bundle-bundle-request-simplesummary.json", []string{"404", "200", "404", "200"}},
		}
		for _, tc := range cases {
			t.Run(tc.file, func(t *testing.T) {
				r, b := postBundle(t, s, read(t, tc.file), "Prefer", "handling=lenient")
				if b == nil {
					t.Fatalf("%d %s", r.Status, r.Body)
				}
				if got := statuses(b); !slices.Equal(got, tc.want) {
					t.Fatalf("statuses %v, want %v\n%s", got, tc.want, r.Body)
				}
			})
		}
		// The XDS DocumentReference refers to the Patient by the fullUrl of its entry.
		docs, _ := searchNames(t, s, "DocumentReference")
		pats, _ := searchNames(t, s, "Patient?identifier=MRN")
		if len(docs) != 1 || len(pats) != 1 {
			t.Fatalf("xds: %v %v", docs, pats)
		}
		byPatient, _ := searchNames(t, s, "DocumentReference?subject="+strings.TrimPrefix(pats[0], "Patient/"))
		if !slices.Equal(byPatient, docs) {
			t.Fatalf("the DocumentReference does not refer to the created Patient %s", pats[0])
		}
		// Without handling=lenient, entries of types not stored fail the transaction.
		for _, f := range []string{"Bundle-hla-1.json", "Bundle-ussg-fht.json"} {
			r, _ := postBundle(t, s, read(t, f))
			wantOutcome(t, r, http.StatusNotFound, "not-found")
			r, b := postBundle(t, s, read(t, f), "Prefer", "handling=lenient")
			if b == nil {
				t.Fatalf("%s lenient: %d %s", f, r.Status, r.Body)
			}
		}
	})
}
