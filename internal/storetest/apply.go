package storetest

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/calaimfhir/calaimfhir/resources"
)

func transactor(t testing.TB, s resources.Store) resources.Transactor {
	t.Helper()
	return implements[resources.Transactor](t, s)
}

// implements returns s as the optional interface I, which every store of the suite provides.
func implements[I any](t testing.TB, s resources.Store) I {
	t.Helper()
	i, ok := s.(I)
	if !ok {
		var want *I
		t.Fatalf("%T does not implement %T", s, want)
	}
	return i
}

func writes(rs ...*resources.Resource) []*resources.Write {
	ws := make([]*resources.Write, len(rs))
	for i, r := range rs {
		ws[i] = &resources.Write{Resource: r}
	}
	return ws
}

func wantApplyError(t testing.TB, err error, index int, kind resources.Kind) {
	t.Helper()
	var ae *resources.ApplyError
	if !errors.As(err, &ae) || ae.Index != index || !resources.IsKind(err, kind) {
		t.Fatalf("got %v, want an ApplyError for write %d of kind %d", err, index, kind)
	}
}

// visible reports whether the current resource of typ carrying the identifier value exists.
func visible(t testing.TB, s resources.Store, typ, value string) bool {
	t.Helper()
	page := search(t, s, &resources.Query{Type: typ, Clauses: []resources.Clause{
		{AnyKey: []string{resources.TokenCodeKey("identifier", value)}}}})
	return len(page.Resources) > 0
}

// countByIdentifier counts current Patients and Tasks carrying the identifier value.
func countByIdentifier(t testing.TB, s resources.Store, value string) int {
	t.Helper()
	n := 0
	for _, typ := range []string{"Patient", "Task"} {
		if visible(t, s, typ, value) {
			n++
		}
	}
	return n
}

func init() {
	register("Apply_WritesEverything", func(t *testing.T, h Harness) {
		s, _ := h.OpenFresh(t)
		mustPut(t, s, task("t1", 1, "Organization/a", "requested"))
		mustPut(t, s, patient("p0", 1, "00000000A"))
		ws := writes(patient("p1", 1, "11111111A"), task("t1", 2, "Organization/a", "accepted"),
			task("t2", 1, "Organization/b", "requested"), tombstone("Patient", "p0", 2))
		if err := transactor(t, s).Apply(ctx(t), ws); err != nil {
			t.Fatal(err)
		}
		for _, w := range ws {
			got, err := s.Read(ctx(t), w.Resource.Type, w.Resource.ID)
			if w.Resource.Deleted {
				wantKind(t, err, resources.KindGone)
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			sameVersion(t, got, w.Resource)
		}
		page, err := s.History(ctx(t), &resources.HistoryQuery{Type: "Task", ID: "t1", Count: 10})
		if err != nil || len(page.Resources) != 2 {
			t.Fatalf("history of t1: %v, %v", page, err)
		}
	})

	register("Apply_FailureInTheMiddle_LeavesNothing", func(t *testing.T, h Harness) {
		s, _ := h.OpenFresh(t)
		mustPut(t, s, patient("existing", 1, "99999999Z"))
		var rs []*resources.Resource
		for i := 0; i < 100; i++ {
			if i == 50 {
				rs = append(rs, patient("existing", 5, "99999999Z")) // wrong version: fails
				continue
			}
			rs = append(rs, task(fmt.Sprintf("t%03d", i), 1, "Organization/tx", "requested"))
		}
		// Readers search, read and list history all along; none may ever see a Task of it.
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for r := 0; r < 2; r++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					if n := search(t, s, &resources.Query{Type: "Task", Clauses: []resources.Clause{owner("tx")}}); len(n.Resources) > 0 {
						t.Errorf("a reader found %d Tasks of the failing transaction", len(n.Resources))
					}
					if _, err := s.Read(ctx(t), "Task", "t049"); !resources.IsKind(err, resources.KindNotFound) {
						t.Errorf("a reader read t049 of the failing transaction: %v", err)
					}
					if h, err := s.History(ctx(t), &resources.HistoryQuery{Type: "Task", Count: 5}); err == nil && len(h.Resources) > 0 {
						t.Errorf("a reader saw %d history entries of the failing transaction", len(h.Resources))
					}
				}
			}()
		}
		err := transactor(t, s).Apply(ctx(t), writes(rs...))
		close(stop)
		wg.Wait()
		wantApplyError(t, err, 50, resources.KindConflict)
		for i, r := range rs {
			if i == 50 {
				continue
			}
			_, err := s.Read(ctx(t), "Task", r.ID)
			wantKind(t, err, resources.KindNotFound)
		}
		page := search(t, s, &resources.Query{Type: "Task", Total: true, Clauses: []resources.Clause{owner("tx")}})
		if page.Total != 0 {
			t.Fatalf("search finds %d Tasks of the failed transaction", page.Total)
		}
		hist, err := s.History(ctx(t), &resources.HistoryQuery{Type: "Task", Count: 10})
		if err != nil || len(hist.Resources) != 0 {
			t.Fatalf("type history after the failed transaction: %d entries, %v", len(hist.Resources), err)
		}
		got, err := s.Read(ctx(t), "Patient", "existing")
		if err != nil || got.VersionID != 1 {
			t.Fatalf("existing patient after the failed transaction: %v, %v", got, err)
		}
		// The same writes, corrected, go through.
		rs[50] = patient("existing", 2, "99999999Z")
		if err := transactor(t, s).Apply(ctx(t), writes(rs...)); err != nil {
			t.Fatal(err)
		}
		if page := search(t, s, &resources.Query{Type: "Task", Total: true, Clauses: []resources.Clause{owner("tx")}}); page.Total != 99 {
			t.Fatalf("after the retry: %d Tasks, want 99", page.Total)
		}
	})

	register("Apply_IfNoneMatch", func(t *testing.T, h Harness) {
		s, _ := h.OpenFresh(t)
		cond := func(cin string) *resources.Query {
			return &resources.Query{Clauses: []resources.Clause{{AnyKey: []string{resources.TokenKey("identifier", "urn:cin", cin)}}}}
		}
		mustPut(t, s, patient("p1", 1, "11111111A"))
		ws := writes(task("t1", 1, "Organization/a", "requested"), patient("p2", 1, "11111111A"))
		ws[1].IfNoneMatch = cond("11111111A")
		wantApplyError(t, transactor(t, s).Apply(ctx(t), ws), 1, resources.KindConflict)
		_, err := s.Read(ctx(t), "Task", "t1")
		wantKind(t, err, resources.KindNotFound)
		ws[1] = &resources.Write{Resource: patient("p3", 1, "22222222B"), IfNoneMatch: cond("22222222B")}
		if err := transactor(t, s).Apply(ctx(t), ws); err != nil {
			t.Fatal(err)
		}
	})

	// The conditions the Service hands over: the caller's scope as alternatives, and the matches
	// it judged invisible to the caller excluded by id (Service.match). An earlier write of the
	// same transaction counts as a match under the same clauses.
	register("Apply_IfNoneMatch_ScopedAndExcluded", func(t *testing.T, h Harness) {
		s, _ := h.OpenFresh(t)
		cin := func(v string) resources.Clause {
			return resources.Clause{AnyKey: []string{resources.TokenKey("identifier", "urn:cin", v)}}
		}
		cond := func(clauses ...resources.Clause) *resources.Query { return &resources.Query{Clauses: clauses} }
		mustPut(t, s, patient("p1", 1, "44444444D"))
		ws := writes(patient("p2", 1, "44444444D"))
		ws[0].IfNoneMatch = cond(cin("44444444D"), resources.Clause{NotIDs: []string{"p1"}})
		if err := transactor(t, s).Apply(ctx(t), ws); err != nil {
			t.Fatalf("p1 excluded: %v", err)
		}
		ws = writes(patient("p3", 1, "44444444D"))
		ws[0].IfNoneMatch = cond(cin("44444444D"), resources.Clause{NotIDs: []string{"p1"}})
		wantApplyError(t, transactor(t, s).Apply(ctx(t), ws), 0, resources.KindConflict) // p2 matches

		// Within one transaction: p4 is written first; p5's condition matches it through an
		// alternative, unless p4 is excluded.
		scope := resources.Clause{Or: [][]resources.Clause{{{IDs: []string{"elsewhere"}}}, {{IDs: []string{"p4"}}}}}
		ws = writes(patient("p4", 1, "55555555E"), patient("p5", 1, "55555555E"))
		ws[1].IfNoneMatch = cond(cin("55555555E"), scope)
		wantApplyError(t, transactor(t, s).Apply(ctx(t), ws), 1, resources.KindConflict)
		ws = writes(patient("p4", 1, "55555555E"), patient("p5", 1, "55555555E"))
		ws[1].IfNoneMatch = cond(cin("55555555E"), resources.Clause{NotIDs: []string{"p4"}})
		if err := transactor(t, s).Apply(ctx(t), ws); err != nil {
			t.Fatalf("p4 excluded: %v", err)
		}
	})

	register("Apply_ConcurrentConditionalCreates_OneWins", func(t *testing.T, h Harness) {
		s, _ := h.OpenFresh(t)
		cond := &resources.Query{Clauses: []resources.Clause{{AnyKey: []string{resources.TokenKey("identifier", "urn:cin", "33333333C")}}}}
		var wins, conflicts atomic.Int32
		var wg sync.WaitGroup
		for i := 0; i < 20; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ws := writes(patient(fmt.Sprintf("p%02d", i), 1, "33333333C"), task(fmt.Sprintf("t%02d", i), 1, "Organization/a", "requested"))
				ws[0].IfNoneMatch = cond
				err := transactor(t, s).Apply(ctx(t), ws)
				switch {
				case err == nil:
					wins.Add(1)
				case resources.IsKind(err, resources.KindConflict):
					conflicts.Add(1)
				default:
					t.Errorf("apply %d: %v", i, err)
				}
			}()
		}
		wg.Wait()
		if wins.Load() != 1 || conflicts.Load() != 19 {
			t.Fatalf("wins %d conflicts %d, want 1 and 19", wins.Load(), conflicts.Load())
		}
		if n := search(t, s, &resources.Query{Type: "Task", Total: true}).Total; n != 1 {
			t.Fatalf("%d Tasks stored, want only the winner's", n)
		}
	})

	register("Apply_ReadersNeverSeeHalfATransaction", func(t *testing.T, h Harness) {
		s, _ := h.OpenFresh(t)
		mustPut(t, s, patient("blocker", 1, "blocker"))
		const pairs = 30
		done := make(chan struct{})
		var wg sync.WaitGroup
		// Two sequential searches are not one snapshot: a commit may fall between them. So each
		// reader looks at one member first; once it is visible, the other must be too.
		for _, order := range [][2]string{{"Patient", "Task"}, {"Task", "Patient"}} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-done:
						return
					default:
					}
					for i := 0; i < pairs; i++ {
						p := fmt.Sprintf("pair-%d", i)
						first := visible(t, s, order[0], p)
						second := visible(t, s, order[1], p)
						if first && !second {
							t.Errorf("a reader saw the %s of pair %d without its %s", order[0], i, order[1])
						}
						if (first || second) && i%2 == 1 {
							t.Errorf("a reader saw pair %d, whose transaction failed", i)
						}
					}
				}
			}()
		}
		for i := 0; i < pairs; i++ {
			p := fmt.Sprintf("pair-%d", i)
			pat := patient(fmt.Sprintf("pp%02d", i), 1, p)
			tk := task(fmt.Sprintf("tp%02d", i), 1, "Organization/a", "requested")
			tk = withIdentifier(t, tk, p)
			ws := writes(pat, tk)
			if i%2 == 1 { // odd pairs fail on their last write
				ws = append(ws, &resources.Write{Resource: patient("blocker", 7, "blocker")})
			}
			err := transactor(t, s).Apply(ctx(t), ws)
			if (err == nil) != (i%2 == 0) {
				t.Fatalf("pair %d: %v", i, err)
			}
			time.Sleep(time.Millisecond)
		}
		close(done)
		wg.Wait()
		for i := 0; i < pairs; i++ {
			want := 2
			if i%2 == 1 {
				want = 0
			}
			if n := countByIdentifier(t, s, fmt.Sprintf("pair-%d", i)); n != want {
				t.Fatalf("pair %d: %d resources stored, want %d", i, n, want)
			}
		}
	})
}

// withIdentifier rebuilds a Task version with an extra identifier value.
func withIdentifier(t testing.TB, r *resources.Resource, value string) *resources.Resource {
	t.Helper()
	return fromJSON(t, "Task", r.ID, r.VersionID, fmt.Sprintf(`{"status":"requested","intent":"order","identifier":[{"system":"urn:pair","value":%q}]}`, value))
}
