package resources_test

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/calaimfhir/calaimfhir/resources"
)

// A plan pages through its member's Conditions; the second one is updated after the first
// page: the snapshot shows its version of T, judged on keys extracted from JSON (no member
// key), so the plan's traversal lost it before member keys were added there.
func TestMembership_SnapshotPagingKeepsMemberResources(t *testing.T) {
	w, _ := newWorld(t)
	sys := resources.AsSystem(context.Background())
	organizations(w, "plan-1")
	w.put(sys, "Patient", "p1", `"name":[{"family":"One"}]`)
	w.put(sys, "Coverage", "cov1", `"status":"active","beneficiary":{"reference":"Patient/p1"},"payor":[{"reference":"Organization/plan-1"}]`)
	w.put(sys, "Condition", "c1", `"subject":{"reference":"Patient/p1"},"code":{"text":"a"}`)
	w.put(sys, "Condition", "c2", `"subject":{"reference":"Patient/p1"},"code":{"text":"b"}`)

	for _, role := range []string{resources.RolePlan, resources.RoleAdmin} {
		ctx := as(role, "plan-1")
		sr, err := resources.ParseSearch("Condition", url.Values{"_count": {"1"}}, w.svc.Base, true)
		if err != nil {
			t.Fatal(err)
		}
		p1, err := w.svc.Search(ctx, sr)
		if err != nil || len(p1.Resources) != 1 || p1.Next == nil {
			t.Fatalf("%s page 1: %v %+v", role, err, p1)
		}
		time.Sleep(2 * time.Millisecond)
		w.put(sys, "Condition", "c2", `"subject":{"reference":"Patient/p1"},"code":{"text":"b2"}`) // updated after T
		sr.Query.After = p1.Next
		p2, err := w.svc.Search(as(role, "plan-1"), sr)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, r := range p2.Resources {
			ids = append(ids, r.ID)
		}
		t.Logf("%s: page 1 %s, page 2 %v", role, p1.Resources[0].ID, ids)
		if len(ids) != 1 {
			t.Errorf("%s: the traversal lost c2 (page 2: %v)", role, ids)
		}
	}
}
