package r4_test

import (
	"slices"
	"testing"

	"github.com/calaimfhir/calaimfhir/internal/bench"
	"github.com/calaimfhir/calaimfhir/internal/r4"
)

// BenchmarkValidateByType parses and validates one realistic document of each type the workload
// writes (from the bench population), as every create and update does.
//
//	go test ./internal/r4 -run '^$' -bench ValidateByType -count 6 | tee new.txt  # benchstat old.txt new.txt
func BenchmarkValidateByType(b *testing.B) {
	docs := bench.SampleDocuments(1)
	types := make([]string, 0, len(docs))
	for typ := range docs {
		types = append(types, typ)
	}
	slices.Sort(types)
	for _, typ := range types {
		body := docs[typ]
		b.Run("type="+typ, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if got, err := r4.Validate(body); err != nil || got != typ {
					b.Fatalf("Validate: %q, %v", got, err)
				}
			}
		})
	}
}
