package resources_test

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/calaimfhir/calaimfhir/internal/fhirtest"
	"github.com/calaimfhir/calaimfhir/internal/storetest"
	"github.com/calaimfhir/calaimfhir/resources"
)

// storeDirect writes a version straight to the store, as a process that stopped right after
// its commit leaves it: no member keys granted, checked or fanned out.
func storeDirect(t *testing.T, store resources.Store, typ, id string, version int64, body string) {
	t.Helper()
	storeVersion(t, store, typ, id, version, time.Now(), false, body)
}

// storeVersion is storeDirect with the version's time, a tombstone (deleted), and keys of its
// own (extra: member keys it was given while settled).
func storeVersion(t *testing.T, store resources.Store, typ, id string, version int64, lu time.Time, deleted bool, body string, extra ...string) {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal([]byte(`{"resourceType":"`+typ+`","id":"`+id+`",`+body+`}`), &doc); err != nil {
		t.Fatal(err)
	}
	enc, err := resources.EncodeResource(doc)
	if err != nil {
		t.Fatal(err)
	}
	r := &resources.Resource{Type: typ, ID: id, VersionID: version, LastUpdated: lu.UTC(), JSON: enc, Deleted: deleted,
		Keys: resources.ExtractKeysAt(typ, doc, "http://calaimfhir.test/fhir")}
	r.Keys.Eq = append(r.Keys.Eq, extra...)
	slices.Sort(r.Keys.Eq)
	if deleted {
		r.JSON, r.Keys = nil, resources.Keys{}
	}
	if err := store.Put(context.Background(), r); err != nil {
		t.Fatal(err)
	}
}

func hasMemberKey(t *testing.T, store resources.Store, typ, id, plan string) bool {
	t.Helper()
	page, err := store.Search(context.Background(), &resources.Query{Type: typ, Count: 1, Clauses: []resources.Clause{
		{IDs: []string{id}}, {AnyKey: []string{resources.MemberKey("Organization/" + plan)}}}})
	if err != nil {
		t.Fatal(err)
	}
	return len(page.Resources) == 1
}

func TestSweepMembers_RepairsWhatAStoppedProcessLeft(t *testing.T) {
	fhirtest.ForEachStore(t, testSweepRepairs)
}

func testSweepRepairs(t *testing.T, h storetest.Harness) {
	store, _ := h.OpenFresh(t)
	w := &world{t: t, svc: newService(t, store, time.Hour)}
	sys := resources.AsSystem(context.Background())
	organizations(w, "plan-1", "plan-2")
	w.put(sys, "Patient", "p1", `"name":[{"family":"One"}]`)
	w.put(sys, "Condition", "c1", `"subject":{"reference":"Patient/p1"},"code":{"text":"housing"}`)
	w.put(sys, "Patient", "p2", `"name":[{"family":"Two"}]`)
	w.put(sys, "Coverage", "cov2", `"status":"active","beneficiary":{"reference":"Patient/p2"},"payor":[{"reference":"Organization/plan-2"}]`)
	// Stopped after committing, before settling: p1's Coverage (no fan-out), and a Condition
	// about p2 (stored without plan-2's key).
	storeDirect(t, store, "Coverage", "cov1", 1, `"status":"active","beneficiary":{"reference":"Patient/p1"},"payor":[{"reference":"Organization/plan-1"}]`)
	storeDirect(t, store, "Condition", "c2", 1, `"subject":{"reference":"Patient/p2"},"code":{"text":"food"}`)

	plan1, plan2 := as(resources.RolePlan, "plan-1"), as(resources.RolePlan, "plan-2")
	if got := visibleIDs(t, w.svc, plan1, "Condition"); len(got) != 0 {
		t.Fatalf("before the sweep plan-1 finds Conditions %v; the lost fan-out should hide c1", got)
	}
	if got := visibleIDs(t, w.svc, plan2, "Condition"); len(got) != 0 {
		t.Fatalf("before the sweep plan-2 finds Conditions %v; c2 has no key", got)
	}

	// The next process, on the same database.
	next := newService(t, store, time.Hour)
	n, err := next.SweepMembers(context.Background(), resources.SweepWindow)
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Errorf("the sweep repaired %d resources, want 3 (p1, c1, c2)", n)
	}
	for _, tc := range []struct {
		ctx  context.Context
		typ  string
		want []string
	}{
		{plan1, "Condition", []string{"c1"}},
		{plan1, "Patient", []string{"p1"}},
		{plan2, "Condition", []string{"c2"}},
		{plan2, "Patient", []string{"p2"}},
	} {
		if got := visibleIDs(t, next, tc.ctx, tc.typ); !slices.Equal(got, tc.want) {
			t.Errorf("after the sweep: %s %v, want %v", tc.typ, got, tc.want)
		}
	}
	// Nothing left to repair.
	if n, err := next.SweepMembers(context.Background(), resources.SweepWindow); err != nil || n != 0 {
		t.Errorf("a second sweep repaired %d (%v), want 0", n, err)
	}
}

func TestSweepMembers_LooksBackFromTheNewestWrite(t *testing.T) {
	w, store := newWorld(t)
	organizations(w, "plan-1")
	storeDirect(t, store, "Patient", "p1", 1, `"name":[{"family":"One"}]`)
	storeDirect(t, store, "Coverage", "cov1", 1, `"status":"active","beneficiary":{"reference":"Patient/p1"},"payor":[{"reference":"Organization/plan-1"}]`)
	time.Sleep(20 * time.Millisecond)
	w.put(resources.AsSystem(context.Background()), "Patient", "later", `"name":[{"family":"Later"}]`)
	// A window that ends before the unsettled writes: nothing is repaired.
	if _, err := w.svc.SweepMembers(context.Background(), time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if got := visibleIDs(t, w.svc, as(resources.RolePlan, "plan-1"), "Patient"); len(got) != 0 {
		t.Fatalf("a sweep of the last millisecond reached back to p1: %v", got)
	}
	if _, err := w.svc.SweepMembers(context.Background(), resources.SweepWindow); err != nil {
		t.Fatal(err)
	}
	if got := visibleIDs(t, w.svc, as(resources.RolePlan, "plan-1"), "Patient"); !slices.Equal(got, []string{"p1"}) {
		t.Fatalf("after the sweep plan-1 finds %v, want [p1]", got)
	}
}

// A Coverage written long before the window and ended (deleted, or its payor changed) by a
// process that stopped before its fan-out: the sweep takes the plan's key away from the member
// who left (its predecessor version names the plan).
func TestSweepMembers_CoverageEndedBeforeTheStop(t *testing.T) {
	for _, how := range []string{"deleted", "payor changed"} {
		t.Run(how, func(t *testing.T) {
			store := fhirtest.SQLite.Open(t, fhirtest.SQLite.New(t))
			organizations(&world{t: t, svc: newService(t, store, time.Hour)}, "plan-1", "plan-2")
			old := time.Now().Add(-24 * time.Hour)
			plan1 := resources.MemberKey("Organization/plan-1")
			storeVersion(t, store, "Patient", "p1", 1, old, false, `"name":[{"family":"One"}]`, plan1)
			storeVersion(t, store, "Coverage", "cov", 1, old, false, `"status":"active","beneficiary":{"reference":"Patient/p1"},"payor":[{"reference":"Organization/plan-1"}]`, plan1)
			storeVersion(t, store, "Coverage", "cov", 2, time.Now(), how == "deleted", `"status":"active","beneficiary":{"reference":"Patient/p1"},"payor":[{"reference":"Organization/plan-2"}]`)
			svc := newService(t, store, time.Hour)
			if _, err := svc.SweepMembers(context.Background(), resources.SweepWindow); err != nil {
				t.Fatal(err)
			}
			if hasMemberKey(t, store, "Patient", "p1", "plan-1") {
				t.Error("after the sweep p1 still carries plan-1's key")
			}
			if want := how == "payor changed"; hasMemberKey(t, store, "Patient", "p1", "plan-2") != want {
				t.Errorf("after the sweep p1 carries plan-2's key: %v, want %v", !want, want)
			}
		})
	}
}
