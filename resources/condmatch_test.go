package resources_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/calaimfhir/calaimfhir/internal/fhirtest"
	"github.com/calaimfhir/calaimfhir/internal/storetest"
	"github.com/calaimfhir/calaimfhir/resources"
)

// Conditional interactions judge the matches of their condition as reads by id are judged
// (Service.match): a match the caller may not see is neither returned nor counted, and the
// condition a store tests again at write time excludes it. These tests look at both ways a
// condition is answered (judged one by one, and past maxJudgedMatches matches searched with
// the caller's scope) and at a match stored between the two looks.

func patientCIN(cin string) []byte {
	return []byte(`{"resourceType":"Patient","name":[{"family":"Doe"}],"identifier":[{"system":"urn:cin","value":"` + cin + `"}]}`)
}

func cinCondition(cin string) string { return "identifier=urn:cin|" + cin }

// bundleIDs runs a transaction and returns, per entry, the id in its Location.
func bundleIDs(t *testing.T, svc *resources.Service, ctx context.Context, entries ...string) []string {
	t.Helper()
	res, err := svc.ProcessBundle(ctx, []byte(`{"resourceType":"Bundle","type":"transaction","entry":[`+strings.Join(entries, ",")+`]}`), resources.BundleOptions{})
	if err != nil {
		t.Fatalf("transaction: %v", err)
	}
	var ids []string
	for _, e := range res.Entries {
		// Location: Type/id/_history/n
		parts := strings.Split(e.Location, "/")
		if len(parts) < 2 {
			t.Fatalf("entry without a location: %+v", e)
		}
		ids = append(ids, parts[1])
	}
	return ids
}

func TestConditional_MatchesTheCallerMayNotSee(t *testing.T) {
	// prov-1 stores patients with one CIN; prov-2 sees none of them.
	for _, theirs := range []int{1, 40} {
		t.Run(fmt.Sprintf("%d invisible matches", theirs), func(t *testing.T) {
			w, _ := newWorld(t)
			organizations(w, "prov-1", "prov-2")
			prov1, prov2 := as(resources.RoleProvider, "prov-1"), as(resources.RoleProvider, "prov-2")
			var hidden []string
			for range theirs {
				r, _, err := w.svc.Create(prov1, "Patient", patientCIN("11111111A"), "")
				if err != nil {
					t.Fatal(err)
				}
				hidden = append(hidden, r.ID)
			}

			// prov-2's conditional create creates its own patient, then finds it.
			mine, created, err := w.svc.Create(prov2, "Patient", patientCIN("11111111A"), cinCondition("11111111A"))
			if err != nil || !created || slices.Contains(hidden, mine.ID) {
				t.Fatalf("prov-2's conditional create: %v, created %v, %v", mine, created, err)
			}
			again, created, err := w.svc.Create(prov2, "Patient", patientCIN("11111111A"), cinCondition("11111111A"))
			if err != nil || created || again.ID != mine.ID {
				t.Fatalf("prov-2's second conditional create: %v, created %v, %v; want its patient %s", again, created, err, mine.ID)
			}

			// prov-1 sees its own: one is found, several are 412.
			got, created, err := w.svc.Create(prov1, "Patient", patientCIN("11111111A"), cinCondition("11111111A"))
			switch {
			case theirs == 1 && (err != nil || created || got.ID != hidden[0]):
				t.Fatalf("prov-1's conditional create: %v, created %v, %v; want its patient %s", got, created, err, hidden[0])
			case theirs > 1 && !resources.IsKind(err, resources.KindPreconditionFailed):
				t.Fatalf("prov-1's conditional create with %d matches: %v, want 412", theirs, err)
			}

			// In a transaction: a conditional create of a CIN only prov-1 has creates, and a
			// conditional reference resolves to prov-2's patient alone.
			ids := bundleIDs(t, w.svc, prov2,
				`{"fullUrl":"urn:uuid:p","resource":`+string(patientCIN("11111111A"))+`,"request":{"method":"POST","url":"Patient","ifNoneExist":"`+cinCondition("11111111A")+`"}}`,
				`{"resource":{"resourceType":"Condition","subject":{"reference":"Patient?`+cinCondition("11111111A")+`"},"code":{"text":"housing"}},"request":{"method":"POST","url":"Condition"}}`)
			if ids[0] != mine.ID {
				t.Errorf("the transaction's conditional create answered %s, want prov-2's patient %s", ids[0], mine.ID)
			}
			cond, err := w.svc.Read(prov2, "Condition", ids[1])
			if err != nil || !strings.Contains(string(cond.JSON), `"Patient/`+mine.ID+`"`) {
				t.Fatalf("the conditional reference: %s, %v; want Patient/%s", cond.JSON, err, mine.ID)
			}
			for range theirs {
				r, _, err := w.svc.Create(prov1, "Patient", patientCIN("22222222B"), "")
				if err != nil {
					t.Fatal(err)
				}
				hidden = append(hidden, r.ID)
			}
			ids = bundleIDs(t, w.svc, prov2,
				`{"resource":`+string(patientCIN("22222222B"))+`,"request":{"method":"POST","url":"Patient","ifNoneExist":"`+cinCondition("22222222B")+`"}}`)
			if slices.Contains(hidden, ids[0]) {
				t.Fatalf("the transaction's conditional create answered prov-1's patient %s", ids[0])
			}
		})
	}
}

// storeFirst stores a resource, through the service as a given caller, just before the first
// conditional write reaches the store: a match that arrives between the caller's look and its
// write.
type storeFirst struct {
	resources.Store
	once  sync.Once
	first func()
}

func (s *storeFirst) CreateIfNoneExist(ctx context.Context, r *resources.Resource, cond *resources.Query) (*resources.Resource, error) {
	s.once.Do(s.first)
	return s.Store.CreateIfNoneExist(ctx, r, cond)
}

func (s *storeFirst) Apply(ctx context.Context, writes []*resources.Write) error {
	if slices.ContainsFunc(writes, func(w *resources.Write) bool { return w.IfNoneMatch != nil }) {
		s.once.Do(s.first)
	}
	return s.Store.(resources.Transactor).Apply(ctx, writes)
}

func TestConditional_MatchStoredMeanwhile(t *testing.T) {
	for _, tc := range []struct {
		name        string
		by          string // who stores the match meanwhile
		transaction bool
		alsoHidden  bool // prov-1 stores one more before it
	}{
		{"invisible, create", "prov-1", false, false},
		{"visible, create", "prov-2", false, false},
		{"invisible, transaction", "prov-1", true, false},
		{"visible, transaction", "prov-2", true, false},
		// Two new matches: the store's check finds several, which is not the caller's 412
		// unless it may see them.
		{"two invisible, create", "prov-1", false, true},
		{"invisible and visible, create", "prov-2", false, true},
		{"two invisible, transaction", "prov-1", true, true},
		{"invisible and visible, transaction", "prov-2", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inner := fhirtest.SQLite.Open(t, fhirtest.SQLite.New(t))
			store := &storeFirst{Store: inner}
			w := &world{t: t, svc: newService(t, store, time.Hour)}
			organizations(w, "prov-1", "prov-2")
			var meanwhile string
			store.first = func() {
				// Through a service on the inner store: the wrapper's once is taken.
				other := newService(t, inner, time.Hour)
				if tc.alsoHidden {
					if _, _, err := other.Create(as(resources.RoleProvider, "prov-1"), "Patient", patientCIN("33333333C"), ""); err != nil {
						t.Error(err)
					}
				}
				r, _, err := other.Create(as(resources.RoleProvider, tc.by), "Patient", patientCIN("33333333C"), "")
				if err != nil {
					t.Error(err)
					return
				}
				meanwhile = r.ID
			}
			prov2 := as(resources.RoleProvider, "prov-2")
			var got string
			var created bool
			if tc.transaction {
				got = bundleIDs(t, w.svc, prov2,
					`{"resource":`+string(patientCIN("33333333C"))+`,"request":{"method":"POST","url":"Patient","ifNoneExist":"`+cinCondition("33333333C")+`"}}`)[0]
				created = got != meanwhile
			} else {
				r, c, err := w.svc.Create(prov2, "Patient", patientCIN("33333333C"), cinCondition("33333333C"))
				if err != nil {
					t.Fatal(err)
				}
				got, created = r.ID, c
			}
			if meanwhile == "" {
				t.Fatal("nothing was stored meanwhile")
			}
			visible := tc.by == "prov-2"
			if visible && (created || got != meanwhile) {
				t.Errorf("a visible match stored meanwhile: answered %s (created %v), want %s", got, created, meanwhile)
			}
			if !visible && (!created || got == meanwhile) {
				t.Errorf("an invisible match stored meanwhile: answered %s (created %v), want a new patient", got, created)
			}
			sr, err := resources.ParseSearch("Patient", map[string][]string{"identifier": {"urn:cin|33333333C"}}, w.svc.Base, true)
			if err != nil {
				t.Fatal(err)
			}
			page, err := w.svc.Search(resources.AsSystem(context.Background()), sr)
			if err != nil {
				t.Fatal(err)
			}
			want := 2 // the one stored meanwhile and the caller's
			if visible {
				want = 1
			}
			if tc.alsoHidden {
				want++
			}
			if len(page.Resources) != want {
				body, _ := json.Marshal(page.Resources)
				t.Errorf("%d patients with the CIN stored, want %d: %s", len(page.Resources), want, body)
			}
		})
	}
}

// A plan's member key that outlived its Coverage (a fan-out lost with its process) selects
// the patient in the plan's scope; conditional interactions must still not match it, also
// when the condition matches too many resources to judge them all without the scope.
func TestConditional_StaleMemberKeyMatchesNothing(t *testing.T) {
	for _, others := range []int{0, 40} {
		t.Run(fmt.Sprintf("%d other matches", others), func(t *testing.T) {
			w, store := newWorld(t)
			organizations(w, "plan-1", "prov-1")
			stale := resources.MemberKey("Organization/plan-1")
			storeVersion(t, store, "Patient", "left", 1, time.Now(), false,
				`"name":[{"family":"Left"}],"identifier":[{"system":"urn:cin","value":"88888888H"}]`, stale)
			for range others {
				if _, _, err := w.svc.Create(as(resources.RoleProvider, "prov-1"), "Patient", patientCIN("88888888H"), ""); err != nil {
					t.Fatal(err)
				}
			}
			plan := as(resources.RolePlan, "plan-1")
			if storetest.Reads(t, w.svc, plan, "Patient", "left") {
				t.Fatal("plan-1 reads a patient without Coverage")
			}
			r, created, err := w.svc.Create(plan, "Patient", patientCIN("88888888H"), cinCondition("88888888H"))
			if err != nil || !created || r.ID == "left" {
				t.Fatalf("plan-1's conditional create: %v, created %v, %v; want a new patient", r, created, err)
			}
			// Its conditional reference finds the patient it just created, not the one it may not see.
			ids := bundleIDs(t, w.svc, plan,
				`{"resource":{"resourceType":"Condition","subject":{"reference":"Patient?`+cinCondition("88888888H")+`"},"code":{"text":"x"}},"request":{"method":"POST","url":"Condition"}}`)
			cond, err := w.svc.Read(plan, "Condition", ids[0])
			if err != nil || !strings.Contains(string(cond.JSON), `"Patient/`+r.ID+`"`) {
				t.Fatalf("plan-1's conditional reference: %s, %v; want Patient/%s", cond.JSON, err, r.ID)
			}
		})
	}
}

// Conditional update, patch and delete never act on what the caller may not see.
func TestConditional_UpdatePatchDeleteLeaveOthersAlone(t *testing.T) {
	w, _ := newWorld(t)
	organizations(w, "prov-1", "prov-2")
	prov1, prov2 := as(resources.RoleProvider, "prov-1"), as(resources.RoleProvider, "prov-2")
	theirs, _, err := w.svc.Create(prov1, "Patient", patientCIN("66666666F"), "")
	if err != nil {
		t.Fatal(err)
	}
	n, err := w.svc.ConditionalDelete(prov2, "Patient", cinCondition("66666666F"))
	if err != nil || n != 0 {
		t.Fatalf("prov-2's conditional delete: %d deleted, %v; want none", n, err)
	}
	_, err = w.svc.ConditionalPatch(prov2, "Patient", cinCondition("66666666F"), resources.JSONPatch,
		[]byte(`[{"op":"replace","path":"/name/0/family","value":"Changed"}]`))
	if !resources.IsKind(err, resources.KindNotFound) {
		t.Fatalf("prov-2's conditional patch: %v, want not found", err)
	}
	mine, created, err := w.svc.ConditionalUpdate(prov2, "Patient", cinCondition("66666666F"), patientCIN("66666666F"))
	if err != nil || !created || mine.ID == theirs.ID {
		t.Fatalf("prov-2's conditional update: %v, created %v, %v; want a patient of its own", mine, created, err)
	}
	got, err := w.svc.Read(prov1, "Patient", theirs.ID)
	if err != nil || got.VersionID != 1 {
		t.Fatalf("prov-1's patient after prov-2's conditional writes: %v, %v; want version 1", got, err)
	}
}
