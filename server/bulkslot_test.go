package server

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/calaimfhir/calaimfhir/internal/sqlitestore"
	"github.com/calaimfhir/calaimfhir/resources"
)

// TestBulkSlot_LeftAtTheFirstWrite: a bulk request's slot bounds its preparation, not its
// wait for the commit; every write method of the timed store gives it back.
func TestBulkSlot_LeftAtTheFirstWrite(t *testing.T) {
	st, err := sqlitestore.Open(context.Background(), t.TempDir(), sqlitestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	timed := &timedStore{Store: st, m: newMetrics(prometheus.NewRegistry(), "test")}
	g := newBulkGate(1, 20*time.Millisecond)
	n := 0
	patient := func() *resources.Resource {
		n++
		doc := map[string]any{"resourceType": "Patient", "id": resources.NewID()}
		r := &resources.Resource{Type: "Patient", ID: doc["id"].(string), VersionID: 1, LastUpdated: time.Now().UTC().Add(time.Duration(n) * time.Microsecond).Truncate(time.Microsecond)}
		r.JSON, _ = resources.EncodeResource(doc)
		r.Keys = resources.ExtractKeys("Patient", doc)
		return r
	}
	writes := map[string]func(ctx context.Context) error{
		"Put":         func(ctx context.Context) error { return timed.Put(ctx, patient()) },
		"CreateFresh": func(ctx context.Context) error { return timed.CreateFresh(ctx, patient()) },
		"CreateIfNoneExist": func(ctx context.Context) error {
			_, err := timed.CreateIfNoneExist(ctx, patient(), &resources.Query{Type: "Patient", Clauses: []resources.Clause{{AnyKey: []string{"_id=none"}}}})
			return err
		},
		"Apply": func(ctx context.Context) error { return timed.Apply(ctx, []*resources.Write{{Resource: patient()}}) },
	}
	for name, write := range writes {
		leave, err := g.enter(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := g.enter(context.Background()); !resources.IsKind(err, resources.KindUnavailable) {
			t.Fatalf("%s: a second request entered while the slot was held: %v", name, err)
		}
		ctx := context.WithValue(context.Background(), bulkSlotKey{}, leave)
		if err := write(ctx); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		again, err := g.enter(context.Background())
		if err != nil {
			t.Fatalf("%s did not give the slot back: %v", name, err)
		}
		again()
	}
}
