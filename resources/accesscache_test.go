package resources_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/calaimfhir/calaimfhir/internal/fhirtest"
	"github.com/calaimfhir/calaimfhir/internal/r4"
	"github.com/calaimfhir/calaimfhir/internal/storetest"
	"github.com/calaimfhir/calaimfhir/resources"
)

// These tests drive the service directly on the embedded store, with callers set on the
// context as the server sets them after authentication, to watch the access-set cache
// (accesscache.go): creations must extend the sets in place, drops must take effect at once,
// and whatever happens concurrently, the cache must agree with sets built afresh.

type callerKey struct{}

func as(role, org string) context.Context {
	ctx := context.WithValue(context.Background(), callerKey{}, resources.CallerInfo{Role: role, Org: "Organization/" + org, Admin: role == resources.RoleAdmin})
	return resources.WithScopeCache(ctx) // one request
}

func newService(t testing.TB, store resources.Store, ttl time.Duration) *resources.Service {
	return &resources.Service{Store: store, Validate: r4.Validate, Base: "http://calaimfhir.test/fhir",
		RequiredReferences: resources.DefaultRequiredReferences, AccessCacheTTL: ttl,
		Caller: func(ctx context.Context) (resources.CallerInfo, bool) {
			c, ok := ctx.Value(callerKey{}).(resources.CallerInfo)
			return c, ok
		}}
}

type world struct {
	t   testing.TB
	svc *resources.Service
}

// newWorld is a world on a fresh embedded store, which it returns too.
func newWorld(t testing.TB) (*world, resources.Store) {
	store := fhirtest.SQLite.Open(t, fhirtest.SQLite.New(t))
	return &world{t: t, svc: newService(t, store, time.Hour)}, store
}

func (w *world) put(ctx context.Context, typ, id, body string) {
	w.t.Helper()
	if _, _, err := w.svc.Update(ctx, typ, id, []byte(fmt.Sprintf(`{"resourceType":%q,"id":%q,%s}`, typ, id, body)), 0); err != nil {
		w.t.Fatalf("PUT %s/%s: %v", typ, id, err)
	}
}

// referral writes what an EHR pushes, as the provider: Patient, Coverage with the plan as
// payor, ServiceRequest and Task owned by the CBO.
func (w *world) referral(n int, prov, plan, cbo string) {
	w.t.Helper()
	ctx := as(resources.RoleProvider, prov)
	p := fmt.Sprint("p", n)
	w.put(ctx, "Patient", p, `"name":[{"family":"m`+p+`"}]`)
	w.put(ctx, "Coverage", "cov-"+p, `"status":"active","beneficiary":{"reference":"Patient/`+p+`"},"payor":[{"reference":"Organization/`+plan+`"}]`)
	w.put(ctx, "ServiceRequest", "sr-"+p, `"status":"active","intent":"order","subject":{"reference":"Patient/`+p+`"},"requester":{"reference":"Organization/`+prov+`"}`)
	w.put(ctx, "Task", "task-"+p, taskBody(p, prov, cbo))
	w.put(ctx, "Condition", "cond-"+p, `"subject":{"reference":"Patient/`+p+`"},"code":{"text":"housing"}`)
}

// consent writes, as the provider (or the administrator, when prov is ""), p's Consent to
// disclose to cbo (status active or inactive).
func (w *world) consent(p, prov, cbo, status string) {
	w.t.Helper()
	ctx := resources.AsSystem(context.Background())
	if prov != "" {
		ctx = as(resources.RoleProvider, prov)
	}
	w.put(ctx, "Consent", "con-"+p, `"status":"`+status+`","scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"patient-privacy"}]},`+
		`"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"IDSCL"}]}],"patient":{"reference":"Patient/`+p+`"},`+
		`"provision":{"type":"permit","actor":[{"role":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ParticipationType","code":"IRCP"}]},"reference":{"reference":"Organization/`+cbo+`"}}]}`)
}

func taskBody(p, prov, cbo string) string {
	return `"status":"requested","intent":"order","focus":{"reference":"ServiceRequest/sr-` + p + `"},"for":{"reference":"Patient/` + p + `"},` +
		`"requester":{"reference":"Organization/` + prov + `"},"owner":{"reference":"Organization/` + cbo + `"}`
}

// visibleIDs lists the ids of typ a caller finds by searching for all of them.
func visibleIDs(t testing.TB, svc *resources.Service, ctx context.Context, typ string) []string {
	t.Helper()
	sr, err := resources.ParseSearch(typ, url.Values{"_count": {"1000"}}, svc.Base, true)
	if err != nil {
		t.Fatal(err)
	}
	page, err := svc.Search(ctx, sr)
	if err != nil {
		t.Fatalf("search %s: %v", typ, err)
	}
	if page.Next != nil {
		t.Fatalf("search %s: more than one page", typ)
	}
	var ids []string
	for _, r := range page.Resources {
		ids = append(ids, r.ID)
	}
	slices.Sort(ids)
	return ids
}

func organizations(w *world, orgs ...string) {
	for _, org := range orgs {
		w.put(resources.AsSystem(context.Background()), "Organization", org, `"name":"`+org+`"`)
	}
}

func TestAccessCache_CreationsExtendSetsWithoutRebuilding(t *testing.T) {
	w, _ := newWorld(t)
	organizations(w, "prov-1", "prov-2", "plan-1", "plan-2", "cbo-a", "cbo-b")
	w.referral(0, "prov-1", "plan-1", "cbo-a")

	callers := map[string]func() context.Context{
		"prov-1": func() context.Context { return as(resources.RoleProvider, "prov-1") },
		"prov-2": func() context.Context { return as(resources.RoleProvider, "prov-2") },
		"plan-1": func() context.Context { return as(resources.RolePlan, "plan-1") },
		"plan-2": func() context.Context { return as(resources.RolePlan, "plan-2") },
		"cbo-a":  func() context.Context { return as(resources.RoleCBO, "cbo-a") },
		"cbo-b":  func() context.Context { return as(resources.RoleCBO, "cbo-b") },
	}
	want := map[string]bool{"prov-1": true, "plan-1": true, "cbo-a": true}
	check := func(p string) {
		t.Helper()
		for name, ctx := range callers {
			for _, typ := range []string{"Patient", "ServiceRequest"} {
				id := p
				if typ == "ServiceRequest" {
					id = "sr-" + p
				}
				if typ == "ServiceRequest" && name[:4] == "plan" {
					continue // a plan sees requests of its members, checked through the patient
				}
				if got := storetest.Reads(t, w.svc, ctx(), typ, id); got != want[name] {
					t.Errorf("%s reads %s/%s: %v, want %v", name, typ, id, got, want[name])
				}
			}
		}
	}
	check("p0") // every caller's sets are built and cached now
	if storetest.Reads(t, w.svc, callers["cbo-a"](), "Condition", "cond-p0") {
		t.Errorf("cbo-a reads a Condition without a Consent")
	}
	before := w.svc.AccessSetBuilds()
	for n := 1; n <= 5; n++ {
		p := fmt.Sprint("p", n)
		w.referral(n, "prov-1", "plan-1", "cbo-a")
		check(p)
		if storetest.Reads(t, w.svc, callers["cbo-a"](), "Condition", "cond-"+p) {
			t.Errorf("cbo-a reads cond-%s without a Consent", p)
		}
		w.consent(p, "prov-1", "cbo-a", "active")
		if !storetest.Reads(t, w.svc, callers["cbo-a"](), "Condition", "cond-"+p) {
			t.Errorf("cbo-a does not read cond-%s under its new Consent", p)
		}
		// The CBO accepts the Task: its first write adds its tenant tag to the Task, which
		// can only add to what anyone sees. (Not task-p5: a writer keeps seeing what it
		// wrote, and task-p5 is reassigned below.)
		if n == 5 {
			continue
		}
		w.put(callers["cbo-a"](), "Task", "task-"+p, strings.Replace(taskBody(p, "prov-1", "cbo-a"), `"requested"`, `"accepted"`, 1))
	}
	if got := w.svc.AccessSetBuilds() - before; got != 0 {
		t.Errorf("five referrals made the service read %d access sets again; creations should extend them", got)
	}

	// A reassignment takes the referral from cbo-a at once (a drop, then a rebuild).
	w.put(resources.AsSystem(context.Background()), "Task", "task-p5", taskBody("p5", "prov-1", "cbo-b"))
	if storetest.Reads(t, w.svc, callers["cbo-a"](), "Patient", "p5") || !storetest.Reads(t, w.svc, callers["cbo-b"](), "Patient", "p5") {
		t.Errorf("after reassigning task-p5 to cbo-b: cbo-a still sees p5, or cbo-b does not")
	}
	if w.svc.AccessSetBuilds() == before {
		t.Errorf("a reassignment rebuilt nothing")
	}
	// Revoking a Consent takes the Condition away at once.
	w.consent("p3", "prov-1", "cbo-a", "inactive")
	if storetest.Reads(t, w.svc, callers["cbo-a"](), "Condition", "cond-p3") {
		t.Errorf("cbo-a still reads cond-p3 after its Consent was revoked")
	}
	// A delete as well.
	if _, err := w.svc.Delete(resources.AsSystem(context.Background()), "Task", "task-p5", 0, false); err != nil {
		t.Fatal(err)
	}
	if storetest.Reads(t, w.svc, callers["cbo-b"](), "Patient", "p5") {
		t.Errorf("cbo-b still sees p5 after its Task was deleted")
	}
	// A payor change takes the member from plan-1.
	w.put(resources.AsSystem(context.Background()), "Coverage", "cov-p4", `"status":"active","beneficiary":{"reference":"Patient/p4"},"payor":[{"reference":"Organization/plan-2"}]`)
	if storetest.Reads(t, w.svc, callers["plan-1"](), "Patient", "p4") || !storetest.Reads(t, w.svc, callers["plan-2"](), "Patient", "p4") {
		t.Errorf("after the payor change: plan-1 still sees p4, or plan-2 does not")
	}
}

// TestAccessCache_AgreesWithFreshSetsUnderConcurrency writes referrals, reassignments, payor
// changes and deletes from several goroutines while others search as every caller (so sets
// are built, extended and dropped while writes commit), then compares what each caller sees
// through this service with what a second service, whose cache starts empty, sees.
func TestAccessCache_AgreesWithFreshSetsUnderConcurrency(t *testing.T) {
	w, store := newWorld(t)
	provs, plans, cbos := []string{"prov-1", "prov-2", "prov-3"}, []string{"plan-1", "plan-2"}, []string{"cbo-a", "cbo-b", "cbo-c", "cbo-d"}
	organizations(w, append(append(slices.Clone(provs), plans...), cbos...)...)
	callers := orgCallers(provs, plans, cbos)

	const writers, perWriter = 4, 30
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for r := 0; r < 3; r++ {
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, 7))
			for {
				select {
				case <-stop:
					return
				default:
				}
				c := callers[rng.IntN(len(callers))]
				visibleIDs(t, w.svc, as(c.role, c.org), []string{"Patient", "ServiceRequest", "Coverage", "Condition"}[rng.IntN(4)])
			}
		}(uint64(r))
	}
	var writersWG sync.WaitGroup
	for g := 0; g < writers; g++ {
		writersWG.Add(1)
		go func(g int) {
			defer writersWG.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 11))
			admin := resources.AsSystem(context.Background())
			for i := 0; i < perWriter; i++ {
				n := g*perWriter + i
				p := fmt.Sprint("p", n)
				prov := provs[rng.IntN(len(provs))]
				cbo := cbos[rng.IntN(len(cbos))]
				w.referral(n, prov, plans[rng.IntN(len(plans))], cbo)
				if rng.IntN(2) == 0 {
					w.consent(p, prov, cbo, "active")
				}
				if i == 0 {
					continue
				}
				// Now and then change something written earlier by this writer.
				old := fmt.Sprint("p", g*perWriter+rng.IntN(i))
				switch rng.IntN(6) {
				case 0:
					w.put(admin, "Task", "task-"+old, taskBody(old, provs[rng.IntN(len(provs))], cbos[rng.IntN(len(cbos))]))
				case 1:
					w.put(admin, "Coverage", "cov-"+old, `"status":"active","beneficiary":{"reference":"Patient/`+old+`"},"payor":[{"reference":"Organization/`+plans[rng.IntN(len(plans))]+`"}]`)
				case 2:
					if _, err := w.svc.Delete(admin, "Task", "task-"+old, 0, false); err != nil {
						t.Errorf("delete task-%s: %v", old, err)
					}
				case 3:
					w.consent(old, "", cbos[rng.IntN(len(cbos))], []string{"active", "inactive"}[rng.IntN(2)])
				}
			}
		}(g)
	}
	writersWG.Wait()
	close(stop)
	wg.Wait()

	fresh := newService(t, store, time.Hour)
	for _, c := range callers {
		for _, typ := range []string{"Patient", "ServiceRequest", "Coverage", "Task", "Condition", "Consent"} {
			got := visibleIDs(t, w.svc, as(c.role, c.org), typ)
			want := visibleIDs(t, fresh, as(c.role, c.org), typ)
			if !slices.Equal(got, want) {
				t.Errorf("%s %s sees %d %s through the long-lived cache and %d afresh:\ncached %v\nfresh  %v", c.role, c.org, len(got), typ, len(want), got, want)
			}
		}
	}
}

// TestAccessCache_ChangesFromAnotherProcessArriveWithinTheTTL: a second service on a second
// store opened on the same files stands for another server process. What it writes reaches
// the first one's cached sets by the TTL alone: an expired set is served while it is rebuilt
// in the background, and rebuilt by the request itself once twice the TTL has passed. While
// no other process writes, expired sets are kept without reading the store again (the
// embedded store's change stamp).
func TestAccessCache_ChangesFromAnotherProcessArriveWithinTheTTL(t *testing.T) {
	dir := fhirtest.SQLite.New(t)
	store := fhirtest.SQLite.Open(t, dir)
	const ttl = 150 * time.Millisecond
	w := &world{t: t, svc: newService(t, store, ttl)}
	organizations(w, "prov-1", "plan-1", "cbo-a")
	w.referral(0, "prov-1", "plan-1", "cbo-a")
	cbo := func() context.Context { return as(resources.RoleCBO, "cbo-a") }
	if !storetest.Reads(t, w.svc, cbo(), "Patient", "p0") {
		t.Fatal("cbo-a does not see p0")
	}
	// Past the TTL, with no other writer, the sets are kept: nothing is read again.
	builds := w.svc.AccessSetBuilds()
	for i := 0; i < 5; i++ {
		time.Sleep(ttl)
		storetest.Reads(t, w.svc, cbo(), "Patient", "p0")
	}
	if got := w.svc.AccessSetBuilds() - builds; got != 0 {
		t.Errorf("with no other writer, %d sets were read again after their TTL", got)
	}
	other := &world{t: t, svc: newService(t, fhirtest.SQLite.Open(t, dir), ttl)}
	other.referral(1, "prov-1", "plan-1", "cbo-a") // unknown to w.svc's cache
	if storetest.Reads(t, w.svc, cbo(), "Patient", "p1") {
		t.Log("p1 visible before the TTL: the set was rebuilt early (a slow machine)")
	}
	// Within the TTL and a background rebuild, p1 shows.
	deadline := time.Now().Add(2*ttl + 2*time.Second)
	for !storetest.Reads(t, w.svc, cbo(), "Patient", "p1") {
		if time.Now().After(deadline) {
			t.Fatalf("p1 written by another process is still not visible after %s", 2*ttl+2*time.Second)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// After twice the TTL with no requests, the first request rebuilds before it answers.
	other.referral(2, "prov-1", "plan-1", "cbo-a")
	time.Sleep(2*ttl + 20*time.Millisecond)
	if !storetest.Reads(t, w.svc, cbo(), "Patient", "p2") {
		t.Errorf("p2 not visible to the first request after twice the TTL")
	}
}

// TestAccessCache_ExtendedSetsOutliveTheirTTL: a set extended by this service's own creations
// (every referral extends the pushing EHR's and the CBO's sets) is still known to be exact
// past its TTL while no other process writes, and so is not read from the store again.
func TestAccessCache_ExtendedSetsOutliveTheirTTL(t *testing.T) {
	store := fhirtest.SQLite.Open(t, fhirtest.SQLite.New(t))
	const ttl = 150 * time.Millisecond
	w := &world{t: t, svc: newService(t, store, ttl)}
	organizations(w, "prov-1", "plan-1", "cbo-a")
	w.referral(0, "prov-1", "plan-1", "cbo-a")
	callers := []context.Context{as(resources.RoleCBO, "cbo-a"), as(resources.RoleProvider, "prov-1"), as(resources.RolePlan, "plan-1")}
	look := func(p string) {
		t.Helper()
		for _, ctx := range callers {
			if !storetest.Reads(t, w.svc, resources.WithScopeCache(ctx), "Patient", p) {
				t.Fatalf("%v does not see %s", ctx.Value(callerKey{}), p)
			}
		}
	}
	look("p0")
	builds := w.svc.AccessSetBuilds()
	for n := 1; n <= 3; n++ {
		p := fmt.Sprint("p", n)
		w.referral(n, "prov-1", "plan-1", "cbo-a") // extends the three callers' sets
		look(p)
		time.Sleep(ttl + 20*time.Millisecond)
		look(p)
	}
	time.Sleep(50 * time.Millisecond) // a background rebuild, if one was started, lands
	if got := w.svc.AccessSetBuilds() - builds; got != 0 {
		t.Errorf("sets extended by this service were read from the store %d times after their TTL", got)
	}
}

// TestAccessCache_TooLargeFailsOnceForEveryone: a provider whose referrals exceed the bound
// fails, but concurrent requests share one resolution and later ones get the kept failure
// without reading the store again, while other organizations are served; a write that can take
// access away from the provider lets the next request try again. (Plans are not resolved into
// sets: membership.go.)
func TestAccessCache_TooLargeFailsOnceForEveryone(t *testing.T) {
	w, store := newWorld(t)
	organizations(w, "prov-big", "prov-small", "plan-1", "cbo-a")
	for i := 1; i <= 4; i++ {
		w.referral(i, "prov-big", "plan-1", "cbo-a")
	}
	w.referral(9, "prov-small", "plan-1", "cbo-a")
	// The provider's sets grew with its writes (extended, never resolved); a service started
	// now resolves them, under a bound they exceed.
	w.svc = newService(t, store, time.Hour)
	w.svc.MaxScopeResolved = 3

	big := func() context.Context { return as(resources.RoleProvider, "prov-big") }
	burst := func() (failures int) {
		var wg sync.WaitGroup
		var mu sync.Mutex
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := w.svc.Read(big(), "ServiceRequest", "sr-p1")
				if err != nil && !resources.IsKind(err, resources.KindInternal) {
					t.Errorf("read by the large provider: %v, want the internal error of the bound", err)
				}
				if err != nil {
					mu.Lock()
					failures++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		return failures
	}
	before := w.svc.AccessSetBuilds()
	if n := burst(); n != 8 {
		t.Fatalf("%d of 8 reads failed, want all", n)
	}
	first := w.svc.AccessSetBuilds() - before
	if first > 3 {
		t.Errorf("8 concurrent requests built %d sets: each resolved the too-large set itself", first)
	}
	before = w.svc.AccessSetBuilds()
	if n := burst(); n != 8 {
		t.Fatalf("%d of 8 reads failed, want all", n)
	}
	if again := w.svc.AccessSetBuilds() - before; again != 0 {
		t.Errorf("the kept failure was not used: %d more builds", again)
	}
	if !storetest.Reads(t, w.svc, as(resources.RoleProvider, "prov-small"), "Condition", "cond-p9") {
		t.Error("the small provider does not see its patient's Condition")
	}
	// A new referral (creations: sets only grow) keeps the failure.
	sys := resources.AsSystem(context.Background())
	w.put(sys, "Patient", "p5", `"name":[{"family":"mp5"}]`)
	w.put(sys, "ServiceRequest", "sr-p5", `"status":"active","intent":"order","subject":{"reference":"Patient/p5"},"requester":{"reference":"Organization/prov-big"}`)
	w.put(sys, "Task", "task-p5", taskBody("p5", "prov-big", "cbo-a"))
	before = w.svc.AccessSetBuilds()
	if n := burst(); n != 8 {
		t.Fatalf("%d of 8 reads failed after a new referral, want all", n)
	}
	if again := w.svc.AccessSetBuilds() - before; again != 0 {
		t.Errorf("a creation dropped the kept failure: %d more builds", again)
	}

	// A Task of the provider goes through this service (a drop): the next request tries
	// again (and the provider, still too large, fails again).
	if _, err := w.svc.Delete(resources.AsSystem(context.Background()), "Task", "task-p5", 0, false); err != nil {
		t.Fatal(err)
	}
	before = w.svc.AccessSetBuilds()
	if n := burst(); n != 8 {
		t.Fatalf("%d of 8 reads failed after a drop, want all", n)
	}
	if w.svc.AccessSetBuilds() == before {
		t.Error("a drop did not let the next request resolve the set again")
	}

	// Referrals go through another process (the store directly: no drop reaches this cache).
	// Within the failure's TTL the provider still gets the kept failure; past it, the failure
	// is served while one resolution runs in the background, and once that has landed the
	// provider is served again.
	gone := func(typ, id string) {
		r, err := store.Read(context.Background(), typ, id)
		if err != nil {
			t.Fatal(err)
		}
		tomb := &resources.Resource{Type: typ, ID: id, VersionID: r.VersionID + 1, LastUpdated: time.Now().UTC().Truncate(time.Microsecond), Deleted: true}
		if err := store.Put(context.Background(), tomb); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{"p2", "p3", "p4", "p5"} {
		gone("ServiceRequest", "sr-"+p)
		if p != "p5" {
			gone("Task", "task-"+p)
		}
		if p != "p2" && p != "p5" {
			gone("Patient", p) // p5 is not the provider's: the system wrote it
		}
	}
	if _, err := w.svc.Read(big(), "ServiceRequest", "sr-p1"); !resources.IsKind(err, resources.KindInternal) {
		t.Fatalf("read within the failure's TTL: %v, want the kept failure", err)
	}
	defer resources.SetScopeFailureTTLForTest(10 * time.Millisecond)()
	time.Sleep(20 * time.Millisecond)
	served := false
	for deadline := time.Now().Add(10 * time.Second); !served; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("past the failure's TTL the provider was never served again")
		}
		_, err := w.svc.Read(big(), "ServiceRequest", "sr-p1")
		switch {
		case err == nil:
			served = true
		case !resources.IsKind(err, resources.KindInternal):
			t.Fatalf("read past the failure's TTL: %v", err)
		}
	}
	if !storetest.Reads(t, w.svc, big(), "Patient", "p1") {
		t.Error("the provider does not see its patient once served again")
	}
}
