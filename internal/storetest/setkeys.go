package storetest

import (
	"slices"
	"testing"

	"github.com/calaimfhir/calaimfhir/resources"
)

func init() {
	// SetKeys changes the derived keys of the current version in place: searches see them at
	// once, the version, lastUpdated, JSON and history stay, and the next version's own keys
	// replace them.
	register("SetKeys_InPlace", func(t *testing.T, h Harness) {
		s, _ := h.OpenFresh(t)
		planA, planB := resources.MemberKey("Organization/plan-a"), resources.MemberKey("Organization/plan-b")
		byKey := func(keys ...string) []string {
			return searchAll(t, s, resources.Query{Type: "Task", Clauses: []resources.Clause{{AnyKey: keys}}})
		}
		t1, t2 := task("t1", 1, "Organization/cbo", "requested"), task("t2", 1, "Organization/cbo", "requested")
		mustPut(t, s, t1)
		mustPut(t, s, t2)
		if err := s.SetKeys(ctx(t), "Task", "t1", 1, resources.MemberKeyPrefix, []string{planA, planB}); err != nil {
			t.Fatal(err)
		}
		if got := byKey(planA); !slices.Equal(got, []string{"t1"}) {
			t.Fatalf("plan-a key: %v", got)
		}
		// The owner keys are still there, and the key works with the polling query's order.
		if got := searchAll(t, s, resources.Query{Type: "Task", Clauses: []resources.Clause{owner("cbo"), {AnyKey: []string{planB}}}}); !slices.Equal(got, []string{"t1"}) {
			t.Fatalf("owner and plan-b: %v", got)
		}
		if got := searchAll(t, s, resources.Query{Type: "Task", Clauses: []resources.Clause{{NoKey: []string{planA}}}}); !slices.Equal(got, []string{"t2"}) {
			t.Fatalf("without plan-a: %v", got)
		}
		r, err := s.Read(ctx(t), "Task", "t1")
		if err != nil {
			t.Fatal(err)
		}
		sameVersion(t, r, t1)
		page, err := s.History(ctx(t), &resources.HistoryQuery{Type: "Task", ID: "t1", Count: 10})
		if err != nil || len(page.Resources) != 1 {
			t.Fatalf("history: %v, %d versions", err, len(page.Resources))
		}

		// Only keys under the prefix change: plan-b stays, plan-a goes.
		if err := s.SetKeys(ctx(t), "Task", "t1", 1, resources.MemberKeyPrefix, []string{planB}); err != nil {
			t.Fatal(err)
		}
		if got := byKey(planA); len(got) != 0 {
			t.Fatalf("plan-a after its removal: %v", got)
		}
		if got := byKey(planB); !slices.Equal(got, []string{"t1"}) {
			t.Fatalf("plan-b: %v", got)
		}
		if got := searchAll(t, s, resources.Query{Type: "Task", Clauses: []resources.Clause{owner("cbo")}}); len(got) != 2 {
			t.Fatalf("owner keys after SetKeys: %v", got)
		}

		// A stale version is a conflict and changes nothing; the next version's keys are its own.
		v2 := task("t1", 2, "Organization/cbo", "accepted")
		mustPut(t, s, v2)
		wantKind(t, s.SetKeys(ctx(t), "Task", "t1", 1, resources.MemberKeyPrefix, []string{planA}), resources.KindConflict)
		if got := byKey(planA, planB); len(got) != 0 {
			t.Fatalf("member keys after a new version without them: %v", got)
		}
		if got := searchAll(t, s, resources.Query{Type: "Task", Clauses: []resources.Clause{status("accepted")}}); !slices.Equal(got, []string{"t1"}) {
			t.Fatalf("the new version's keys: %v", got)
		}

		// Unknown and deleted resources: nothing to do, and no error.
		if err := s.SetKeys(ctx(t), "Task", "nope", 1, resources.MemberKeyPrefix, []string{planA}); err != nil {
			t.Fatalf("unknown: %v", err)
		}
		mustPut(t, s, tombstone("Task", "t2", 2))
		if err := s.SetKeys(ctx(t), "Task", "t2", 2, resources.MemberKeyPrefix, []string{planA}); err != nil {
			t.Fatalf("deleted: %v", err)
		}
		if got := byKey(planA); len(got) != 0 {
			t.Fatalf("a tombstone got keys: %v", got)
		}
	})

	// A migration is recorded once and seen by the store opened again on the same data.
	register("Migrated_Persists", func(t *testing.T, h Harness) {
		loc := h.New(t)
		s := h.Open(t, loc)
		if done, err := s.Migrated(ctx(t), "m1"); err != nil || done {
			t.Fatalf("fresh store: %v, %v", done, err)
		}
		for range 2 {
			if err := s.SetMigrated(ctx(t), "m1"); err != nil {
				t.Fatal(err)
			}
		}
		s.Close()
		s = h.Open(t, loc)
		defer s.Close()
		if done, err := s.Migrated(ctx(t), "m1"); err != nil || !done {
			t.Fatalf("after reopening: %v, %v", done, err)
		}
		if done, err := s.Migrated(ctx(t), "m2"); err != nil || done {
			t.Fatalf("another name: %v, %v", done, err)
		}
	})
}
