package resources_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/calaimfhir/calaimfhir/internal/fhirtest"
	"github.com/calaimfhir/calaimfhir/resources"
)

// coverageSearches counts the store's Coverage searches (plansOf's query), and passes the
// store's TypeClock through.
type coverageSearches struct {
	resources.Store
	n atomic.Int64
}

func (c *coverageSearches) Search(ctx context.Context, q *resources.Query) (*resources.Page, error) {
	if q.Type == "Coverage" {
		c.n.Add(1)
	}
	return c.Store.Search(ctx, q)
}

func (c *coverageSearches) TypeClock(typ string) (uint64, bool) {
	return c.Store.(resources.TypeClock).TypeClock(typ)
}

// TestPlanCache: writes about a patient ask the store for the patient's plans once, until a
// Coverage is written; a write after it gets the new plan's key.
func TestPlanCache(t *testing.T) {
	store := &coverageSearches{Store: fhirtest.SQLite.Open(t, fhirtest.SQLite.New(t))}
	w := &world{t: t, svc: newService(t, store, time.Hour)}
	sys := resources.AsSystem(context.Background())
	organizations(w, "plan-1", "plan-2")
	w.put(sys, "Patient", "p1", `"name":[{"family":"One"}]`)
	w.put(sys, "Coverage", "cov-1", `"status":"active","beneficiary":{"reference":"Patient/p1"},"payor":[{"reference":"Organization/plan-1"}]`)
	condition := func(n int) {
		w.put(sys, "Condition", fmt.Sprint("c", n), `"subject":{"reference":"Patient/p1"},"code":{"text":"housing"}`)
	}

	condition(1) // the first ask after the Coverage's write queries
	before := store.n.Load()
	for n := 2; n <= 5; n++ {
		condition(n)
	}
	if got := store.n.Load() - before; got != 0 {
		t.Fatalf("four Conditions of a patient whose Coverage did not change searched Coverage %d times, want 0", got)
	}

	// The Coverage's write moves the clock; its fan-out asks the store again.
	w.put(sys, "Coverage", "cov-2", `"status":"active","beneficiary":{"reference":"Patient/p1"},"payor":[{"reference":"Organization/plan-2"}]`)
	condition(6)
	page, err := store.Search(context.Background(), &resources.Query{Type: "Condition", Count: 10,
		Clauses: []resources.Clause{{IDs: []string{"c6"}}, {AnyKey: []string{resources.MemberKey("Organization/plan-2")}}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Resources) != 1 {
		t.Fatal("the Condition written after the second Coverage lacks its plan's member key")
	}
}
