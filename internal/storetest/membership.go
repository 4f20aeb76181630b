package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/calaimfhir/calaimfhir/internal/r4"
	"github.com/calaimfhir/calaimfhir/resources"
)

// Plan membership is kept as member keys at write time (resources/membership.go), by the
// Service over the store's SetKeys: these tests drive a real Service on the store under test,
// as callers of each role.

type callerKey struct{}

func tenantService(s resources.Store) *resources.Service {
	return &resources.Service{Store: s, Validate: r4.Validate, Base: "http://calaimfhir.test/fhir",
		RequiredReferences: resources.DefaultRequiredReferences,
		Caller: func(ctx context.Context) (resources.CallerInfo, bool) {
			c, ok := ctx.Value(callerKey{}).(resources.CallerInfo)
			return c, ok
		}}
}

func caller(role, org string) context.Context {
	c := context.WithValue(context.Background(), callerKey{}, resources.CallerInfo{Role: role, Org: "Organization/" + org})
	return resources.WithScopeCache(c)
}

func system() context.Context { return resources.AsSystem(context.Background()) }

func putBody(t testing.TB, svc *resources.Service, ctx context.Context, typ, id, body string) {
	t.Helper()
	if _, _, err := svc.Update(ctx, typ, id, []byte(fmt.Sprintf(`{"resourceType":%q,"id":%q,%s}`, typ, id, body)), 0); err != nil {
		t.Fatalf("PUT %s/%s: %v", typ, id, err)
	}
}

func coverageBody(patient, plan string) string {
	return `"status":"active","beneficiary":{"reference":"Patient/` + patient + `"},"payor":[{"reference":"Organization/` + plan + `"}]`
}

func conditionBody(patient string) string {
	return `"subject":{"reference":"Patient/` + patient + `"},"code":{"text":"housing instability"}`
}

// seen is what ctx's caller finds of typ by a search (every page) with query.
func seen(t testing.TB, svc *resources.Service, ctx context.Context, typ, query string) []string {
	t.Helper()
	values, err := url.ParseQuery(query)
	if err != nil {
		t.Fatal(err)
	}
	values.Set("_count", "1000")
	sr, err := resources.ParseSearch(typ, values, svc.Base, false)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range searchPages(t, svc, ctx, sr) {
		out = append(out, r.ID)
	}
	slices.Sort(out)
	return out
}

func searchPages(t testing.TB, svc *resources.Service, ctx context.Context, sr *resources.SearchRequest) []*resources.Resource {
	t.Helper()
	res, err := svc.Search(ctx, sr)
	if err != nil {
		t.Fatalf("search: %v", err)
	}
	return res.Resources
}

// Reads reports whether ctx's caller can read typ/id through svc (not found when not); any
// other error fails the test.
func Reads(t testing.TB, svc *resources.Service, ctx context.Context, typ, id string) bool {
	t.Helper()
	_, err := svc.Read(ctx, typ, id)
	switch {
	case err == nil:
		return true
	case resources.IsKind(err, resources.KindNotFound):
		return false
	}
	t.Fatalf("read %s/%s: %v", typ, id, err)
	return false
}

func init() {
	// A plan sees exactly the resources about its members, by search and by read, as
	// Coverage comes, changes payor and goes, whichever order the resources came in.
	register("Membership_FollowsCoverage", func(t *testing.T, h Harness) {
		s, _ := h.OpenFresh(t)
		svc := tenantService(s)
		sys := system()
		for _, org := range []string{"plan-1", "plan-2", "prov"} {
			putBody(t, svc, sys, "Organization", org, `"name":"`+org+`"`)
		}
		prov := caller(resources.RoleProvider, "prov")
		plan1, plan2 := caller(resources.RolePlan, "plan-1"), caller(resources.RolePlan, "plan-2")
		putBody(t, svc, prov, "Patient", "p1", `"name":[{"family":"One"}]`)
		putBody(t, svc, prov, "Condition", "c1", conditionBody("p1"))
		check := func(step string, ctx context.Context, want bool) {
			t.Helper()
			wantIDs := map[bool][]string{true: {"c1"}}[want]
			if got := seen(t, svc, ctx, "Condition", "patient=Patient/p1"); !slices.Equal(got, wantIDs) {
				t.Errorf("%s: Condition search %v, want %v", step, got, wantIDs)
			}
			if got := seen(t, svc, ctx, "Patient", "_id=p1"); len(got) == 1 != want {
				t.Errorf("%s: Patient search %v, want found=%v", step, got, want)
			}
			if got := Reads(t, svc, ctx, "Condition", "c1"); got != want {
				t.Errorf("%s: Condition read %v, want %v", step, got, want)
			}
			if got := Reads(t, svc, ctx, "Patient", "p1"); got != want {
				t.Errorf("%s: Patient read %v, want %v", step, got, want)
			}
		}
		check("before any Coverage", plan1, false)

		// Coverage after the resources: the fan-out gives them the plan's key.
		putBody(t, svc, prov, "Coverage", "cov1", coverageBody("p1", "plan-1"))
		check("Coverage with plan-1", plan1, true)
		check("Coverage with plan-1, as plan-2", plan2, false)

		// A resource written after the Coverage gets the key when it is written.
		putBody(t, svc, prov, "Condition", "c2", conditionBody("p1"))
		if got := seen(t, svc, plan1, "Condition", "patient=Patient/p1"); !slices.Equal(got, []string{"c1", "c2"}) {
			t.Errorf("a Condition written after the Coverage: %v", got)
		}
		if _, err := svc.Delete(sys, "Condition", "c2", 0, false); err != nil {
			t.Fatal(err)
		}

		// The payor changes: the keys move.
		putBody(t, svc, prov, "Coverage", "cov1", coverageBody("p1", "plan-2"))
		check("payor changed to plan-2, as plan-1", plan1, false)
		check("payor changed to plan-2", plan2, true)

		// The Coverage goes: the member is no one's.
		if _, err := svc.Delete(sys, "Coverage", "cov1", 0, false); err != nil {
			t.Fatal(err)
		}
		check("Coverage deleted, as plan-2", plan2, false)

		// Two plans at once, in one transaction with the resources about the patient.
		bundle := `{"resourceType":"Bundle","type":"transaction","entry":[` +
			`{"fullUrl":"urn:uuid:p","resource":{"resourceType":"Patient","name":[{"family":"Two"}]},"request":{"method":"POST","url":"Patient"}},` +
			`{"fullUrl":"urn:uuid:a","resource":{"resourceType":"Coverage","status":"active","beneficiary":{"reference":"urn:uuid:p"},"payor":[{"reference":"Organization/plan-1"}]},"request":{"method":"POST","url":"Coverage"}},` +
			`{"fullUrl":"urn:uuid:b","resource":{"resourceType":"Coverage","status":"active","beneficiary":{"reference":"urn:uuid:p"},"payor":[{"reference":"Organization/plan-2"}]},"request":{"method":"POST","url":"Coverage"}},` +
			`{"fullUrl":"urn:uuid:c","resource":{"resourceType":"Condition","subject":{"reference":"urn:uuid:p"},"code":{"text":"food insecurity"}},"request":{"method":"POST","url":"Condition"}}]}`
		res, err := svc.ProcessBundle(prov, []byte(bundle), resources.BundleOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pid, ok := strings.CutPrefix(res.Entries[0].Location, "Patient/")
		pid, _, _ = strings.Cut(pid, "/")
		if !ok || pid == "" {
			t.Fatalf("the transaction's Patient: %+v", res.Entries[0])
		}
		for _, ctx := range []context.Context{plan1, plan2} {
			if got := seen(t, svc, ctx, "Condition", "patient=Patient/"+pid); len(got) != 1 {
				t.Errorf("Condition of a patient of two plans: %v", got)
			}
			if !Reads(t, svc, ctx, "Patient", pid) {
				t.Error("a patient of two plans is not read by one of them")
			}
		}
	})

	// A plan with more members than an access set may hold (Service.MaxScopeResolved) is
	// served: its searches select on its key, its reads ask for one patient's plans.
	register("Membership_BeyondTheResolutionBound", func(t *testing.T, h Harness) {
		s, _ := h.OpenFresh(t)
		svc := tenantService(s)
		svc.MaxScopeResolved = 3
		sys := system()
		putBody(t, svc, sys, "Organization", "plan-big", `"name":"big"`)
		var want []string
		for i := range 7 {
			p := fmt.Sprint("m", i)
			putBody(t, svc, sys, "Patient", p, `"name":[{"family":"`+p+`"}]`)
			putBody(t, svc, sys, "Coverage", "cov-"+p, coverageBody(p, "plan-big"))
			putBody(t, svc, sys, "Condition", "c-"+p, conditionBody(p))
			want = append(want, "c-"+p)
		}
		putBody(t, svc, sys, "Patient", "other", `"name":[{"family":"Other"}]`)
		putBody(t, svc, sys, "Condition", "c-other", conditionBody("other"))
		plan := caller(resources.RolePlan, "plan-big")
		if got := seen(t, svc, plan, "Condition", ""); !slices.Equal(got, want) {
			t.Errorf("Conditions: %v, want %v", got, want)
		}
		if got := seen(t, svc, plan, "Patient", ""); len(got) != 7 {
			t.Errorf("Patients: %v", got)
		}
		if !Reads(t, svc, plan, "Patient", "m6") || Reads(t, svc, plan, "Patient", "other") {
			t.Error("reads by id do not follow membership")
		}
	})

	// Coverage and resources about its patient written at the same time, on several
	// connections: whichever commits first, the plan's search finds every resource about its
	// member (the check after each commit, and the fan-out after the Coverage's).
	register("Membership_ConcurrentCoverageAndResources", func(t *testing.T, h Harness) {
		s, _ := h.OpenFresh(t)
		svc := tenantService(s)
		sys := system()
		putBody(t, svc, sys, "Organization", "plan-r", `"name":"r"`)
		const patients, perPatient = 6, 4
		for i := range patients {
			putBody(t, svc, sys, "Patient", fmt.Sprint("r", i), `"name":[{"family":"R"}]`)
		}
		var wg sync.WaitGroup
		for i := range patients {
			p := fmt.Sprint("r", i)
			wg.Add(1)
			go func() {
				defer wg.Done()
				putBody(t, svc, sys, "Coverage", "cov-"+p, coverageBody(p, "plan-r"))
			}()
			for j := range perPatient {
				wg.Add(1)
				go func() {
					defer wg.Done()
					putBody(t, svc, sys, "Condition", fmt.Sprintf("c-%s-%d", p, j), conditionBody(p))
				}()
			}
		}
		wg.Wait()
		plan := caller(resources.RolePlan, "plan-r")
		// settleMembers retries a failed step in the background; give it a moment before
		// failing (nothing here is expected to fail).
		deadline := time.Now().Add(5 * time.Second)
		for {
			got := seen(t, svc, plan, "Condition", "")
			if len(got) == patients*perPatient {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the plan finds %d of its members' %d Conditions", len(got), patients*perPatient)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})

	// A database written before member keys existed (resources stored without them) gets them
	// from MigrateMemberKeys, once.
	register("Membership_Migration", func(t *testing.T, h Harness) {
		s, _ := h.OpenFresh(t)
		svc := tenantService(s)
		put := func(typ, id, body string) {
			doc := map[string]any{}
			if err := json.Unmarshal([]byte(fmt.Sprintf(`{"resourceType":%q,"id":%q,%s}`, typ, id, body)), &doc); err != nil {
				t.Fatal(err)
			}
			mustPut(t, s, build(typ, id, 1, now(), doc))
		}
		put("Patient", "old", `"name":[{"family":"Old"}]`)
		put("Coverage", "cov-old", coverageBody("old", "plan-m"))
		put("Condition", "c-old", conditionBody("old"))
		plan := caller(resources.RolePlan, "plan-m")
		if got := seen(t, svc, plan, "Condition", ""); len(got) != 0 {
			t.Fatalf("before the migration the stored keys already name the plan: %v", got)
		}
		if err := svc.MigrateMemberKeys(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := seen(t, svc, plan, "Condition", ""); !slices.Equal(got, []string{"c-old"}) {
			t.Errorf("after the migration: %v", got)
		}
		if got := seen(t, svc, plan, "Patient", ""); !slices.Equal(got, []string{"old"}) {
			t.Errorf("Patients after the migration: %v", got)
		}
		// Done once: a resource stored without keys afterwards is not found by a second run
		// (writes through the Service get their keys themselves).
		put("Condition", "c-late", conditionBody("old"))
		if err := svc.MigrateMemberKeys(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := seen(t, svc, plan, "Condition", ""); !slices.Equal(got, []string{"c-old"}) {
			t.Errorf("the migration ran twice: %v", got)
		}
	})
}
