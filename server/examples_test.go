package server_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/calaimfhir/calaimfhir/internal/fhirtest"
	"github.com/calaimfhir/calaimfhir/internal/storetest"
	"github.com/calaimfhir/calaimfhir/resources"
)

// exampleSkips are official R4 examples this server rejects on purpose, with the reason.
var exampleSkips = map[string]string{
	"Observation-clinical-gender.json": "invalid R4: performer references an Encounter, which Observation.performer does not allow",
	"Questionnaire-qs1.json":           "invalid R4: nested items lack the required linkId (que-2 cardinality 1..1)",
}

func decodeJSON(t testing.TB, b []byte) map[string]any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("not JSON: %v", err)
	}
	return m
}

// TestOfficialExamples_CreateAndReadBack posts every official example of a supported type
// and checks the stored resource reads back equal to the file, apart from id and meta.
func TestOfficialExamples_CreateAndReadBack(t *testing.T) {
	dir := fhirtest.ExamplesDir(t, "r4")
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples in %s", dir)
	}
	fhirtest.ForEachStore(t, func(t *testing.T, h storetest.Harness) {
		// The examples refer to resources outside the set (Task.for Patient/example, ...), so
		// the required-reference check is off, as --allow-dangling-references does.
		store, _ := h.OpenFresh(t)
		s := fhirtest.Start(t, store, fhirtest.Options{AnyReferences: true})
		tried := 0
		for _, f := range files {
			name := filepath.Base(f)
			typ, _, _ := strings.Cut(name, "-")
			if !resources.Supported(typ) {
				continue
			}
			t.Run(name, func(t *testing.T) {
				if why, skip := exampleSkips[name]; skip {
					t.Skip(why)
				}
				body, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				tried++
				r := s.Do("POST", "/fhir/"+typ, body)
				if r.Status != http.StatusCreated {
					t.Fatalf("create: status %d: %s", r.Status, r.Body)
				}
				id := r.JSON(t)["id"].(string)
				read := s.Do("GET", "/fhir/"+typ+"/"+id, nil)
				wantStatus(t, read, http.StatusOK)
				got, want := decodeJSON(t, read.Body), decodeJSON(t, body)
				for _, m := range []map[string]any{got, want} {
					delete(m, "id")
					delete(m, "meta")
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Fatalf("read back differs (-file +stored):\n%s", diff)
				}
			})
		}
		if tried < 150 {
			t.Fatalf("only %d examples tried; the folder should hold over 150 of the supported types", tried)
		}
	})
}
