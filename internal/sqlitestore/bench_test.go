package sqlitestore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/calaimfhir/calaimfhir/internal/fhirtest"
	"github.com/calaimfhir/calaimfhir/resources"
)

func benchTask(i int) *resources.Resource {
	doc := map[string]any{
		"resourceType": "Task", "status": "requested", "intent": "order",
		"owner":      map[string]any{"reference": fmt.Sprintf("Organization/cbo-%d", i%20)},
		"for":        map[string]any{"reference": fmt.Sprintf("Patient/p-%d", i%500)},
		"identifier": []any{map[string]any{"system": "urn:referral", "value": fmt.Sprint(i)}},
	}
	body, _ := resources.EncodeResource(doc)
	return &resources.Resource{Type: "Task", ID: fmt.Sprintf("t%08d", i), VersionID: 1,
		LastUpdated: time.Now().UTC(), JSON: body, Keys: resources.ExtractKeys("Task", doc)}
}

// Store-level costs, without HTTP or validation: go test ./internal/sqlitestore -bench .
func BenchmarkPut(b *testing.B) {
	s, _ := fhirtest.SQLite.OpenFresh(b)
	ctx := context.Background()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if err := s.Put(ctx, benchTask(i)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSearchOwnerStatus(b *testing.B) {
	s, _ := fhirtest.SQLite.OpenFresh(b)
	ctx := context.Background()
	for i := 0; i < 5000; i++ {
		if err := s.Put(ctx, benchTask(i)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		q := &resources.Query{Type: "Task", Count: 20, Total: true, Clauses: []resources.Clause{
			{AnyKey: []string{resources.RefKey("owner", "Organization", fmt.Sprintf("cbo-%d", i%20))}},
			{AnyKey: []string{resources.TokenCodeKey("status", "requested")}},
		}}
		if _, err := s.Search(ctx, q); err != nil {
			b.Fatal(err)
		}
	}
}
