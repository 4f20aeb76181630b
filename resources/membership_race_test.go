package resources_test

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/calaimfhir/calaimfhir/internal/fhirtest"
	"github.com/calaimfhir/calaimfhir/internal/storetest"
	"github.com/calaimfhir/calaimfhir/resources"
)

// holdSetKeys holds the first SetKeys of typ until released.
type holdSetKeys struct {
	resources.Store
	typ     string
	held    atomic.Bool
	arrived chan struct{}
	release chan struct{}
}

func (h *holdSetKeys) SetKeys(ctx context.Context, typ, id string, v int64, prefix string, keys []string) error {
	if typ == h.typ && h.held.CompareAndSwap(false, true) {
		close(h.arrived)
		<-h.release
	}
	return h.Store.SetKeys(ctx, typ, id, v, prefix, keys)
}

func newHold(t *testing.T) (*holdSetKeys, *world) {
	hold := &holdSetKeys{Store: fhirtest.SQLite.Open(t, fhirtest.SQLite.New(t)), typ: "Condition",
		arrived: make(chan struct{}), release: make(chan struct{})}
	return hold, &world{t: t, svc: newService(t, hold, time.Hour)}
}

// cov1's fan-out computes [plan-1] for c1; cov1 is deleted (its fan-out finds nothing to
// remove, c1 has no key yet); then the stale SetKeys lands.
func TestMembership_StaleSettingAfterCoverageDeleted(t *testing.T) {
	hold, w := newHold(t)
	sys := resources.AsSystem(context.Background())
	organizations(w, "plan-1")
	w.put(sys, "Patient", "p1", `"name":[{"family":"One"}]`)
	w.put(sys, "Condition", "c1", `"subject":{"reference":"Patient/p1"},"code":{"text":"hiv"}`)
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.put(sys, "Coverage", "cov1", `"status":"active","beneficiary":{"reference":"Patient/p1"},"payor":[{"reference":"Organization/plan-1"}]`)
	}()
	<-hold.arrived
	if _, err := w.svc.Delete(sys, "Coverage", "cov1", 0, false); err != nil {
		t.Fatal(err)
	}
	close(hold.release)
	<-done
	plan := as(resources.RolePlan, "plan-1")
	t.Logf("plan-1 reads Patient/p1: %v, Condition/c1: %v", storetest.Reads(t, w.svc, plan, "Patient", "p1"), storetest.Reads(t, w.svc, plan, "Condition", "c1"))
	if got := visibleIDs(t, w.svc, plan, "Condition"); slices.Contains(got, "c1") {
		t.Errorf("p1 has no Coverage, yet plan-1's Condition search returns %v", got)
	}
}

// Two plans' Coverage for p1, fan-outs interleaved: without the read after each setting,
// plan-1's stale setting removed plan-2's key.
func TestMembership_StaleSettingOfAnotherPlan(t *testing.T) {
	hold, w := newHold(t)
	sys := resources.AsSystem(context.Background())
	organizations(w, "plan-1", "plan-2")
	w.put(sys, "Patient", "p1", `"name":[{"family":"One"}]`)
	w.put(sys, "Condition", "c1", `"subject":{"reference":"Patient/p1"},"code":{"text":"housing"}`)
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.put(sys, "Coverage", "cov1", `"status":"active","beneficiary":{"reference":"Patient/p1"},"payor":[{"reference":"Organization/plan-1"}]`)
	}()
	<-hold.arrived
	w.put(sys, "Coverage", "cov2", `"status":"active","beneficiary":{"reference":"Patient/p1"},"payor":[{"reference":"Organization/plan-2"}]`)
	close(hold.release)
	<-done
	plan2 := as(resources.RolePlan, "plan-2")
	if got := visibleIDs(t, w.svc, plan2, "Condition"); !slices.Contains(got, "c1") {
		t.Errorf("p1 is plan-2's member, yet plan-2's Condition search returns %v (read by id: %v)", got, storetest.Reads(t, w.svc, plan2, "Condition", "c1"))
	}
}

// failSetKeys fails the first n SetKeys, as a database that is briefly away.
type failSetKeys struct {
	resources.Store
	left atomic.Int32
}

func (f *failSetKeys) SetKeys(ctx context.Context, typ, id string, v int64, prefix string, keys []string) error {
	if f.left.Add(-1) >= 0 {
		return resources.Errorf(resources.KindUnavailable, "the database is away")
	}
	return f.Store.SetKeys(ctx, typ, id, v, prefix, keys)
}

// A settle that fails is retried in the background until it succeeds: the plan then finds
// what the Coverage's fan-out could not mark at first.
func TestMembership_FailedSettleIsRetried(t *testing.T) {
	store := &failSetKeys{Store: fhirtest.SQLite.Open(t, fhirtest.SQLite.New(t))}
	w := &world{t: t, svc: newService(t, store, time.Hour)}
	t.Cleanup(w.svc.Close)
	sys := resources.AsSystem(context.Background())
	organizations(w, "plan-1")
	w.put(sys, "Patient", "p1", `"name":[{"family":"One"}]`)
	w.put(sys, "Condition", "c1", `"subject":{"reference":"Patient/p1"},"code":{"text":"housing"}`)
	store.left.Store(2)
	w.put(sys, "Coverage", "cov1", `"status":"active","beneficiary":{"reference":"Patient/p1"},"payor":[{"reference":"Organization/plan-1"}]`)
	plan := as(resources.RolePlan, "plan-1")
	deadline := time.Now().Add(20 * time.Second)
	for !slices.Equal(visibleIDs(t, w.svc, plan, "Condition"), []string{"c1"}) {
		if time.Now().After(deadline) {
			t.Fatalf("20 s after the Coverage, plan-1 still does not find c1 (SetKeys failures left: %d)", store.left.Load())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if store.left.Load() > 0 {
		t.Fatalf("c1 found before the failures were used up: %d left", store.left.Load())
	}
}
