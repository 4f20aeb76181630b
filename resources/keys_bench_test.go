package resources_test

import (
	"bytes"
	"encoding/json"
	"slices"
	"testing"

	"github.com/calaimfhir/calaimfhir/internal/bench"
	"github.com/calaimfhir/calaimfhir/resources"
)

// Micro-benchmarks of the per-write steps after validation, on one realistic document per
// type (from the bench population): decoding the body into a map (as Service.prepare does),
// extracting the search keys, and encoding the stored form.
//
//	go test ./resources -run '^$' -bench 'Decode|ExtractKeys|EncodeResource' -count 6
func sampleTypes(b *testing.B) ([]string, map[string][]byte) {
	docs := bench.SampleDocuments(1)
	var types []string
	for typ := range docs {
		types = append(types, typ)
	}
	slices.Sort(types)
	return types, docs
}

func decode(b *testing.B, body []byte) map[string]any {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		b.Fatal(err)
	}
	return doc
}

func BenchmarkDecode(b *testing.B) {
	types, docs := sampleTypes(b)
	for _, typ := range types {
		b.Run("type="+typ, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(docs[typ])))
			for b.Loop() {
				decode(b, docs[typ])
			}
		})
	}
}

func BenchmarkExtractKeys(b *testing.B) {
	types, docs := sampleTypes(b)
	for _, typ := range types {
		doc := decode(b, docs[typ])
		b.Run("type="+typ, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if keys := resources.ExtractKeys(typ, doc); len(keys.Eq) == 0 {
					b.Fatal("no keys")
				}
			}
		})
	}
}

func BenchmarkEncodeResource(b *testing.B) {
	types, docs := sampleTypes(b)
	for _, typ := range types {
		doc := decode(b, docs[typ])
		b.Run("type="+typ, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(docs[typ])))
			for b.Loop() {
				if _, err := resources.EncodeResource(doc); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
