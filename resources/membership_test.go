package resources_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/calaimfhir/calaimfhir/internal/fhirtest"
	"github.com/calaimfhir/calaimfhir/resources"
)

// holdingStore holds the first Put of a type until released, telling when it arrived.
type holdingStore struct {
	resources.Store
	typ     string
	once    sync.Once
	arrived chan struct{}
	release chan struct{}
}

func (h *holdingStore) Put(ctx context.Context, r *resources.Resource) error {
	if r.Type == h.typ {
		h.once.Do(func() {
			close(h.arrived)
			<-h.release
		})
	}
	return h.Store.Put(ctx, r)
}

// clockedHold is holdingStore with the store's TypeClock, so the service keeps plans in its
// plan cache (plancache.go).
type clockedHold struct{ *holdingStore }

func (c clockedHold) TypeClock(typ string) (uint64, bool) {
	return c.Store.(resources.TypeClock).TypeClock(typ)
}

// TestMembership_CoverageBetweenLookupAndCommit: a Condition looks up its patient's plans
// (none), then a Coverage commits and fans out before the Condition commits, so the fan-out
// cannot find it. The check after the Condition's commit gives it the plan's key, also when
// the service keeps plans in its cache (the Coverage's write has moved the clock).
func TestMembership_CoverageBetweenLookupAndCommit(t *testing.T) {
	for _, cached := range []bool{false, true} {
		t.Run(fmt.Sprint("plan cache ", cached), func(t *testing.T) { coverageBetweenLookupAndCommit(t, cached) })
	}
}

func coverageBetweenLookupAndCommit(t *testing.T, cached bool) {
	hold := &holdingStore{Store: fhirtest.SQLite.Open(t, fhirtest.SQLite.New(t)), typ: "Condition",
		arrived: make(chan struct{}), release: make(chan struct{})}
	var store resources.Store = hold
	if cached {
		store = clockedHold{hold}
	}
	w := &world{t: t, svc: newService(t, store, time.Hour)}
	sys := resources.AsSystem(context.Background())
	organizations(w, "plan-1")
	w.put(sys, "Patient", "p1", `"name":[{"family":"One"}]`)

	done := make(chan struct{})
	go func() {
		defer close(done)
		w.put(sys, "Condition", "c1", `"subject":{"reference":"Patient/p1"},"code":{"text":"housing"}`)
	}()
	<-hold.arrived // the Condition has its keys (no plan) and waits to be written
	w.put(sys, "Coverage", "cov-p1", `"status":"active","beneficiary":{"reference":"Patient/p1"},"payor":[{"reference":"Organization/plan-1"}]`)
	close(hold.release)
	<-done

	plan := as(resources.RolePlan, "plan-1")
	sr, err := resources.ParseSearch("Condition", map[string][]string{"patient": {"Patient/p1"}}, "", true)
	if err != nil {
		t.Fatal(err)
	}
	page, err := w.svc.Search(plan, sr)
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Resources) != 1 {
		t.Fatalf("the plan's search finds %d Conditions of its member, want 1", len(page.Resources))
	}
}

// TestMembership_StaleKeyIsNotServed: a member key that outlived its Coverage (a fan-out that
// never ran) lets nothing through a plan's search, and is taken away.
func TestMembership_StaleKeyIsNotServed(t *testing.T) {
	w, store := newWorld(t)
	sys := resources.AsSystem(context.Background())
	organizations(w, "plan-1")
	w.put(sys, "Patient", "p1", `"name":[{"family":"One"}]`)
	w.put(sys, "Condition", "c1", `"subject":{"reference":"Patient/p1"},"code":{"text":"hiv"}`)
	// The key a lost fan-out would have left: p1 has no Coverage.
	if err := store.SetKeys(context.Background(), "Condition", "c1", 1, resources.MemberKeyPrefix, []string{resources.MemberKey("Organization/plan-1")}); err != nil {
		t.Fatal(err)
	}
	plan := as(resources.RolePlan, "plan-1")
	if got := visibleIDs(t, w.svc, plan, "Condition"); len(got) != 0 {
		t.Fatalf("the plan's search serves a non-member's Condition: %v", got)
	}
	stale := func() bool {
		page, err := store.Search(context.Background(), &resources.Query{Type: "Condition", Count: 10,
			Clauses: []resources.Clause{{AnyKey: []string{resources.MemberKey("Organization/plan-1")}}}})
		if err != nil {
			t.Fatal(err)
		}
		return len(page.Resources) > 0
	}
	for deadline := time.Now().Add(5 * time.Second); stale(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the stale key was not taken away")
		}
	}
}
