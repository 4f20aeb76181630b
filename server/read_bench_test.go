package server_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"testing"

	"github.com/calaimfhir/calaimfhir/internal/bench"
	"github.com/calaimfhir/calaimfhir/internal/fhirtest"
)

// BenchmarkReadPath times GET Type/id on the embedded store through the whole Echo stack
// (token check, routing, negotiation, store read, response), without network I/O, for one
// realistic document of each type: the path from stored document to response bytes.
//
//	go test ./server -run '^$' -bench ReadPath -count 6 | tee new.txt  # benchstat old.txt new.txt
func BenchmarkReadPath(b *testing.B) {
	store, _ := fhirtest.SQLite.OpenFresh(b)
	s := fhirtest.Start(b, store, fhirtest.Options{AnyReferences: true})
	docs := bench.SampleDocuments(1)
	var types []string
	for typ := range docs {
		types = append(types, typ)
	}
	slices.Sort(types)
	for _, typ := range types {
		var doc map[string]any
		json.Unmarshal(docs[typ], &doc)
		path := fmt.Sprintf("/fhir/%s/%s", typ, doc["id"])
		if rec := serve(b, s, "PUT", path, docs[typ]); rec.Code != http.StatusCreated {
			b.Fatalf("store %s: %d %s", path, rec.Code, rec.Body)
		}
		b.Run("type="+typ, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if rec := serve(b, s, "GET", path, nil); rec.Code != http.StatusOK {
					b.Fatalf("%d %s", rec.Code, rec.Body)
				}
			}
		})
	}
}
