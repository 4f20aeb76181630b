package resources_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/calaimfhir/calaimfhir/resources"
)

// caller is a role acting for an organization.
type caller struct{ role, org string }

// orgCallers is one caller per provider, plan and CBO organization, in that order.
func orgCallers(provs, plans, cbos []string) []caller {
	var out []caller
	for _, p := range provs {
		out = append(out, caller{resources.RoleProvider, p})
	}
	for _, p := range plans {
		out = append(out, caller{resources.RolePlan, p})
	}
	for _, c := range cbos {
		out = append(out, caller{resources.RoleCBO, c})
	}
	return out
}

// TestVisibility_JudgedAsTheScopeClauseSelects: what visibleAs (and visibleDoc) let a caller
// see of one resource, judged against the access sets directly, must be exactly what a store
// search with the caller's scope clause selects. Checked for every stored resource of the
// types tenancy distinguishes, for every kind of caller (providers, plans, CBOs, an
// administrator, a caller with no organization, an unknown role, a CBO role for a plan's
// organization), with consents granting and withholding sensitive labels, and in three states
// of the access-set cache: sets just built, sets extended in place by creations and first
// writes, sets dropped by writes that take access away.
func TestVisibility_JudgedAsTheScopeClauseSelects(t *testing.T) {
	w, store := newWorld(t)
	provs, plans, cbos := []string{"prov-1", "prov-2"}, []string{"plan-1", "plan-2"}, []string{"cbo-a", "cbo-b", "cbo-c"}
	organizations(w, append(append(append([]string{}, provs...), plans...), cbos...)...)
	callers := append([]caller{
		{resources.RoleAdmin, "admin"}, {resources.RoleProvider, ""}, {"auditor", "cbo-a"}, {resources.RoleCBO, "plan-1"},
	}, orgCallers(provs, plans, cbos)...)
	types := []string{"Patient", "ServiceRequest", "Task", "Coverage", "Consent", "RelatedPerson", "Condition",
		"Observation", "DocumentReference", "Claim", "Procedure", "Encounter", "Group", "Organization"}

	rng := rand.New(rand.NewPCG(5, 9))
	admin := resources.AsSystem(context.Background())
	pick := func(list []string) string { return list[rng.IntN(len(list))] }
	const actCode = `{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"%s"}`
	labels := func() []string { // a random subset of the sensitive labels
		var out []string
		for _, code := range []string{"ETH", "PSY", "HIV"} {
			if rng.IntN(3) == 0 {
				out = append(out, fmt.Sprintf(actCode, code))
			}
		}
		return out
	}
	security := func() string {
		if l := labels(); len(l) > 0 {
			return `"meta":{"security":[` + strings.Join(l, ",") + `]},`
		}
		return ""
	}
	consent := func(id, p, cbo, status string) {
		nested := ""
		if l := labels(); len(l) > 0 {
			nested = `,"provision":[{"type":"` + pick([]string{"permit", "deny"}) + `","securityLabel":[` + strings.Join(l, ",") + `]}]`
		}
		top := ""
		if l := labels(); len(l) > 0 {
			top = `,"securityLabel":[` + strings.Join(l, ",") + `]`
		}
		w.put(admin, "Consent", id, `"status":"`+status+`","scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"patient-privacy"}]},`+
			`"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"IDSCL"}]}],"patient":{"reference":"Patient/`+p+`"},`+
			`"provision":{"type":"permit","actor":[{"role":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ParticipationType","code":"IRCP"}]},"reference":{"reference":"Organization/`+cbo+`"}}]`+top+nested+`}`)
	}
	n := 0
	referrals := func(count int) {
		for range count {
			p, prov, plan, cbo := fmt.Sprint("p", n), pick(provs), pick(plans), pick(cbos)
			w.referral(n, prov, plan, cbo)
			w.put(admin, "Observation", "obs-"+p, security()+`"status":"final","code":{"text":"screening"},"subject":{"reference":"Patient/`+p+`"}`)
			w.put(as(resources.RoleProvider, prov), "DocumentReference", "doc-"+p, security()+`"status":"current","subject":{"reference":"Patient/`+p+`"},"content":[{"attachment":{"contentType":"text/plain"}}]`)
			w.put(admin, "RelatedPerson", "rp-"+p, `"patient":{"reference":"Patient/`+p+`"}`)
			w.put(admin, "Encounter", "enc-"+p, `"status":"finished","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB"},"subject":{"reference":"Patient/`+p+`"}`)
			w.put(as(resources.RoleProvider, prov), "Group", "grp-"+p, `"type":"person","actual":true`)
			// A member known to a plan only (no referral), and one known to nobody.
			w.put(admin, "Patient", "m"+p, `"name":[{"family":"m`+p+`"}]`)
			w.put(admin, "Coverage", "cov-m"+p, `"status":"active","beneficiary":{"reference":"Patient/m`+p+`"},"payor":[{"reference":"Organization/`+pick(plans)+`"}]`)
			w.put(admin, "Patient", "x"+p, `"name":[{"family":"x`+p+`"}]`)
			if rng.IntN(3) > 0 { // a Consent: for the CBO, now and then for another, or revoked
				to, status := cbo, "active"
				switch rng.IntN(5) {
				case 0:
					to = pick(cbos)
				case 1:
					status = "inactive"
				}
				consent("con-"+p, p, to, status)
			}
			if rng.IntN(3) == 0 { // a request naming a CBO as performer, with no Task
				w.put(admin, "ServiceRequest", "perf-"+p, `"status":"active","intent":"order","subject":{"reference":"Patient/x`+p+`"},`+
					`"requester":{"reference":"Organization/`+prov+`"},"performer":[{"reference":"Organization/`+pick(cbos)+`"}]`)
			}
			if n > 0 && rng.IntN(3) == 0 { // a Task for another patient than its request's
				q := fmt.Sprint("p", rng.IntN(n))
				w.put(admin, "Task", "task2-"+p, `"status":"requested","intent":"order","focus":{"reference":"ServiceRequest/sr-`+p+`"},"for":{"reference":"Patient/`+q+`"},`+
					`"requester":{"reference":"Organization/`+prov+`"},"owner":{"reference":"Organization/`+pick(cbos)+`"}`)
			}
			if rng.IntN(2) == 0 { // the CBO accepts its Task: its first write adds its tenant tag
				w.put(as(resources.RoleCBO, cbo), "Task", "task-"+p, strings.Replace(taskBody(p, prov, cbo), `"requested"`, `"accepted"`, 1))
			}
			if rng.IntN(3) == 0 { // what a CBO writes itself
				w.put(as(resources.RoleCBO, cbo), "Procedure", "proc-"+p, `"status":"completed","code":{"text":"housing navigation"},"subject":{"reference":"Patient/`+p+`"}`)
				w.put(as(resources.RoleCBO, cbo), "Observation", "cbo-obs-"+p, security()+`"status":"final","code":{"text":"follow-up"},"subject":{"reference":"Patient/`+p+`"}`)
			}
			if rng.IntN(3) == 0 { // a Claim billed by a CBO, sent by a clearinghouse
				w.put(admin, "Claim", "claim-"+p, `"status":"active","type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/claim-type","code":"professional"}]},"use":"claim",`+
					`"patient":{"reference":"Patient/`+p+`"},"created":"2025-04-01","provider":{"reference":"Organization/`+pick(cbos)+`"},"priority":{"coding":[{"code":"normal"}]},`+
					`"insurance":[{"sequence":1,"focal":true,"coverage":{"reference":"Coverage/cov-`+p+`"}}]`)
			}
			n++
		}
	}

	var visible, hidden int
	check := func(phase string) {
		t.Helper()
		for _, c := range callers {
			for _, typ := range types {
				ctx := as(c.role, c.org)
				all := allCurrent(t, store, typ)
				judged := map[string]bool{}
				for _, r := range all { // judged before the clause exists: visibleAs does not need it
					ok, err := w.svc.VisibleAsForTest(ctx, r)
					if err != nil {
						t.Fatalf("%s: visibleAs %s/%s for %s %s: %v", phase, typ, r.ID, c.role, c.org, err)
					}
					var doc map[string]any
					dec := json.NewDecoder(bytes.NewReader(r.JSON))
					dec.UseNumber()
					if err := dec.Decode(&doc); err != nil {
						t.Fatal(err)
					}
					okDoc, err := w.svc.VisibleDocForTest(ctx, typ, r.ID, doc)
					if err != nil || okDoc != ok {
						t.Errorf("%s: %s %s: visibleDoc %s/%s = %v (%v), visibleAs %v", phase, c.role, c.org, typ, r.ID, okDoc, err, ok)
					}
					judged[r.ID] = ok
				}
				clause, restricted, err := w.svc.ScopeClauseForTest(ctx, typ)
				if err != nil {
					t.Fatal(err)
				}
				selected := map[string]bool{}
				if restricted {
					for _, r := range search(t, store, typ, clause) {
						selected[r.ID] = true
					}
				}
				wrong := 0
				for _, r := range all {
					want := !restricted || selected[r.ID]
					if judged[r.ID] != want {
						if wrong++; wrong <= 5 {
							t.Errorf("%s: %s %s: visibleAs %s/%s = %v, the scope clause selects it: %v", phase, c.role, c.org, typ, r.ID, judged[r.ID], want)
						}
					}
					if restricted && want {
						visible++
					} else if restricted {
						hidden++
					}
				}
			}
		}
	}

	referrals(25)
	check("sets built")
	builds := w.svc.AccessSetBuilds()
	referrals(15)
	check("sets extended")
	if got := w.svc.AccessSetBuilds() - builds; got != 0 {
		t.Errorf("%d access sets were read again while referrals were added: the extended sets were not what was checked", got)
	}
	// Writes that take access away: reassigned Tasks, payor changes, revoked or changed
	// Consents, a deleted Task.
	for i := range 10 {
		p := fmt.Sprint("p", rng.IntN(n))
		switch i % 4 {
		case 0:
			w.put(admin, "Task", "task-"+p, taskBody(p, pick(provs), pick(cbos)))
		case 1:
			w.put(admin, "Coverage", "cov-m"+p, `"status":"active","beneficiary":{"reference":"Patient/m`+p+`"},"payor":[{"reference":"Organization/`+pick(plans)+`"}]`)
		case 2:
			consent("con-"+p, p, pick(cbos), pick([]string{"active", "inactive"}))
		case 3:
			if _, err := w.svc.Delete(admin, "Task", "task-"+p, 0, false); err != nil {
				t.Fatal(err)
			}
		}
	}
	check("sets dropped")
	if visible < 500 || hidden < 500 {
		t.Errorf("restricted callers were shown %d resources and denied %d: too few of either to compare", visible, hidden)
	}
	t.Logf("%d judgments of visible resources, %d of hidden ones", visible, hidden)
}

// allCurrent lists every current resource of typ.
func allCurrent(t *testing.T, store resources.Store, typ string) []*resources.Resource {
	return search(t, store, typ)
}

// search lists the current resources of typ matching clauses, every page.
func search(t *testing.T, store resources.Store, typ string, clauses ...resources.Clause) []*resources.Resource {
	t.Helper()
	q := &resources.Query{Type: typ, Clauses: clauses, Count: resources.MaxCount}
	var out []*resources.Resource
	for {
		page, err := store.Search(context.Background(), q)
		if err != nil {
			t.Fatalf("search %s: %v", typ, err)
		}
		out = append(out, page.Resources...)
		if page.Next == nil {
			return out
		}
		q.After = page.Next
	}
}
