package storetest

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/calaimfhir/calaimfhir/resources"
)

func ids(rs []*resources.Resource) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.ID
	}
	return out
}

func search(t testing.TB, s resources.Store, q *resources.Query) *resources.Page {
	t.Helper()
	if q.Count == 0 {
		q.Count = 100
	}
	page, err := s.Search(ctx(t), q)
	if err != nil {
		t.Fatalf("Search: %v", err)
	}
	return page
}

// searchAll follows Next cursors and returns every id, failing on a repeated one.
func searchAll(t testing.TB, s resources.Store, q resources.Query) []string {
	t.Helper()
	var all []string
	seen := map[string]bool{}
	for pages := 0; ; pages++ {
		if pages > 1000 {
			t.Fatal("too many pages")
		}
		page := search(t, s, &q)
		for _, r := range page.Resources {
			if seen[r.ID] {
				t.Fatalf("id %s returned twice", r.ID)
			}
			seen[r.ID] = true
			all = append(all, r.ID)
		}
		if page.Next == nil {
			return all
		}
		q.After = page.Next
	}
}

func owner(org string) resources.Clause {
	return resources.Clause{AnyKey: []string{resources.RefKey("owner", "Organization", org)}}
}

func status(codes ...string) resources.Clause {
	var keys []string
	for _, c := range codes {
		keys = append(keys, resources.TokenCodeKey("status", c))
	}
	return resources.Clause{AnyKey: keys}
}

// longList is 500 values made from filler (numbered) around the given ones.
func longList(filler string, vals ...string) []string {
	var out []string
	for i := 0; i < 500; i++ {
		out = append(out, fmt.Sprintf("%s-%03d", filler, i))
		if i%200 == 0 && len(vals) > 0 {
			out = append(out, vals[0])
			vals = vals[1:]
		}
	}
	return append(out, vals...)
}

func init() {
	register("Search_ByKeys_AndOr", func(t *testing.T, h Harness) {
		s, _ := h.OpenFresh(t)
		mustPut(t, s, task("a1", 1, "Organization/a", "requested"))
		mustPut(t, s, task("a2", 1, "Organization/a", "accepted"))
		mustPut(t, s, task("a3", 1, "Organization/a", "completed"))
		mustPut(t, s, task("b1", 1, "Organization/b", "requested"))
		mustPut(t, s, patient("p1", 1, "12345678A"))
		cases := []struct {
			name    string
			clauses []resources.Clause
			want    []string
		}{
			{"no clauses", nil, []string{"a1", "a2", "a3", "b1"}},
			{"owner", []resources.Clause{owner("a")}, []string{"a1", "a2", "a3"}},
			{"owner and status", []resources.Clause{owner("a"), status("requested")}, []string{"a1"}},
			{"status or", []resources.Clause{status("requested", "completed")}, []string{"a1", "a3", "b1"}},
			// owner=b: the id under each of owner's target types.
			{"owner by id only", []resources.Clause{{AnyKey: []string{resources.RefKey("owner", "Practitioner", "b"), resources.RefKey("owner", "Organization", "b")}}}, []string{"b1"}},
			{"identifier system|value", []resources.Clause{{AnyKey: []string{resources.TokenKey("identifier", "urn:test", "t-a2")}}}, []string{"a2"}},
			{"identifier system|value, two", []resources.Clause{{AnyKey: []string{resources.TokenKey("identifier", "urn:test", "t-a2"), resources.TokenKey("identifier", "urn:test", "t-b1"), resources.TokenKey("identifier", "urn:other", "t-a3")}}}, []string{"a2", "b1"}},
			{"identifier wrong system", []resources.Clause{{AnyKey: []string{resources.TokenKey("identifier", "urn:other", "t-a2")}}}, nil},
			{"ids", []resources.Clause{{IDs: []string{"a3", "b1", "zz"}}}, []string{"a3", "b1"}},
			{"ids and owner", []resources.Clause{{IDs: []string{"a3", "b1"}}, owner("a")}, []string{"a3"}},
			{"no match", []resources.Clause{owner("c")}, nil},
			// NotIDs: the matches of a condition its caller may not see (Service.match).
			{"not ids", []resources.Clause{{NotIDs: []string{"a1", "zz"}}}, []string{"a2", "a3", "b1"}},
			{"owner and not ids", []resources.Clause{owner("a"), {NotIDs: []string{"a2"}}}, []string{"a1", "a3"}},
			{"long not ids", []resources.Clause{{NotIDs: longList("x", "a1", "b1")}}, []string{"a2", "a3"}},
			{"owner and long not ids", []resources.Clause{owner("a"), {NotIDs: longList("x", "a3")}}, []string{"a1", "a2"}},
			{"or with not ids", []resources.Clause{{Or: [][]resources.Clause{{owner("b")}, {{NotIDs: []string{"a1", "a2", "b1"}}}}}}, []string{"a3", "b1"}},
			// Or: the disjunction of conjunctions tenancy and consent build.
			{"or of owners", []resources.Clause{{Or: [][]resources.Clause{{owner("a"), status("requested")}, {owner("b")}}}}, []string{"a1", "b1"}},
			{"or with ids and nokey", []resources.Clause{{Or: [][]resources.Clause{
				{{IDs: []string{"a2", "a3"}}, {NoKey: []string{resources.TokenCodeKey("status", "completed")}}},
				{owner("b"), status("accepted")},
			}}}, []string{"a2"}},
			{"or and outer clause", []resources.Clause{status("requested"), {Or: [][]resources.Clause{{owner("a")}, {{IDs: []string{"b1"}}}}}}, []string{"a1", "b1"}},
			{"or with empty alternative list", []resources.Clause{{Or: [][]resources.Clause{}}}, nil},
			// Lists as long as tenancy scopes make them (a plan's members): stores may compile
			// them differently from short ones.
			{"long ids", []resources.Clause{{IDs: longList("x", "a1", "b1")}}, []string{"a1", "b1"}},
			{"long keys", []resources.Clause{{AnyKey: longList(resources.TokenCodeKey("status", "none"), resources.TokenCodeKey("status", "accepted"))}}, []string{"a2"}},
			{"long nokey", []resources.Clause{owner("a"), {NoKey: longList(resources.TokenCodeKey("status", "none"), resources.TokenCodeKey("status", "accepted"))}}, []string{"a1", "a3"}},
			// The same lists beside a one-key clause that drives the search.
			{"owner and long ids", []resources.Clause{owner("a"), {IDs: longList("x", "a1", "b1", "a3")}}, []string{"a1", "a3"}},
			{"owner and long keys", []resources.Clause{owner("a"), {AnyKey: longList(resources.TokenCodeKey("status", "none"), resources.TokenCodeKey("status", "accepted"))}}, []string{"a2"}},
			{"owner and or with long lists", []resources.Clause{owner("b"), {Or: [][]resources.Clause{
				{{IDs: longList("x", "a3")}},
				{{AnyKey: longList(resources.RefKey("owner", "Organization", "none"), resources.RefKey("owner", "Organization", "b"))}},
			}}}, []string{"b1"}},
			{"owner and long ids, none listed", []resources.Clause{owner("a"), {IDs: longList("x")}}, nil},
			{"or with long lists", []resources.Clause{{Or: [][]resources.Clause{
				{{IDs: longList("x", "a3")}},
				{{AnyKey: longList(resources.RefKey("owner", "Organization", "none"), resources.RefKey("owner", "Organization", "b"))}},
			}}}, []string{"a3", "b1"}},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				page := search(t, s, &resources.Query{Type: "Task", Clauses: tc.clauses, Total: true})
				got := ids(page.Resources)
				slices.Sort(got)
				if !slices.Equal(got, tc.want) {
					t.Fatalf("got %v, want %v", got, tc.want)
				}
				if page.Total != int64(len(tc.want)) {
					t.Fatalf("total %d, want %d", page.Total, len(tc.want))
				}
			})
		}
	})

	register("Search_LastUpdatedRanges", func(t *testing.T, h Harness) {
		s, _ := h.OpenFresh(t)
		var stamps []time.Time
		for i := 0; i < 5; i++ {
			r := task(fmt.Sprintf("t%d", i), 1, "Organization/a", "requested")
			stamps = append(stamps, r.LastUpdated)
			mustPut(t, s, r)
		}
		cases := []struct {
			name string
			rs   []resources.DateRange
			want []string
		}{
			{"from t2", []resources.DateRange{{From: stamps[2]}}, []string{"t2", "t3", "t4"}},
			{"before t2", []resources.DateRange{{To: stamps[2]}}, []string{"t0", "t1"}},
			{"t1 to t3", []resources.DateRange{{From: stamps[1], To: stamps[3]}}, []string{"t1", "t2"}},
			{"not t1 to t3", []resources.DateRange{{From: stamps[1], To: stamps[3], Not: true}}, []string{"t0", "t3", "t4"}},
			{"t0 or t4", []resources.DateRange{{To: stamps[1]}, {From: stamps[4]}}, []string{"t0", "t4"}},
			{"exact instant", []resources.DateRange{{From: stamps[3], To: stamps[3].Add(time.Microsecond)}}, []string{"t3"}},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				page := search(t, s, &resources.Query{Type: "Task", Clauses: []resources.Clause{{LastUpdated: tc.rs}}})
				if got := ids(page.Resources); !slices.Equal(got, tc.want) {
					t.Fatalf("got %v, want %v (ascending by lastUpdated)", got, tc.want)
				}
			})
		}
	})

	register("Search_SortAndKeysetPaging", func(t *testing.T, h Harness) {
		s, _ := h.OpenFresh(t)
		var want []string
		for i := 0; i < 23; i++ {
			id := fmt.Sprintf("t%02d", i)
			want = append(want, id)
			mustPut(t, s, task(id, 1, "Organization/a", "requested"))
		}
		got := searchAll(t, s, resources.Query{Type: "Task", Count: 5, Clauses: []resources.Clause{owner("a")}})
		if !slices.Equal(got, want) {
			t.Fatalf("ascending pages: got %v, want %v", got, want)
		}
		desc := slices.Clone(want)
		slices.Reverse(desc)
		got = searchAll(t, s, resources.Query{Type: "Task", Count: 4, Sort: resources.SortLastUpdatedDesc})
		if !slices.Equal(got, desc) {
			t.Fatalf("descending pages: got %v, want %v", got, desc)
		}
		page := search(t, s, &resources.Query{Type: "Task", Count: 23})
		if page.Next != nil {
			t.Fatal("a page holding the last match must have no next cursor")
		}
	})

	register("Search_PagingWhileWriting_NoDuplicatesNoGaps", func(t *testing.T, h Harness) {
		s, _ := h.OpenFresh(t)
		var existing []string
		for i := 0; i < 30; i++ {
			id := fmt.Sprintf("t%02d", i)
			existing = append(existing, id)
			mustPut(t, s, task(id, 1, "Organization/a", "requested"))
		}
		q := resources.Query{Type: "Task", Count: 7, Clauses: []resources.Clause{owner("a")}}
		seen := map[string]bool{}
		for n := 0; ; n++ {
			page := search(t, s, &q)
			for _, r := range page.Resources {
				if seen[r.ID] {
					t.Fatalf("%s seen twice", r.ID)
				}
				seen[r.ID] = true
			}
			// Between pages, new Tasks arrive.
			mustPut(t, s, task(fmt.Sprintf("new%02d", n), 1, "Organization/a", "requested"))
			if page.Next == nil {
				break
			}
			q.After = page.Next
		}
		for _, id := range existing {
			if !seen[id] {
				t.Fatalf("%s existed when the search began but was never returned", id)
			}
		}
	})

	// Versions that share a lastUpdated page in (lu, id, version) order, each exactly once.
	register("History_PagesThroughEqualTimes", func(t *testing.T, h Harness) {
		s, _ := h.OpenFresh(t)
		at := now()
		var want []string
		for _, id := range []string{"c", "a", "b"} {
			for v := int64(1); v <= 2; v++ {
				r := task(id, v, "Organization/a", "requested")
				r.LastUpdated = at
				mustPut(t, s, r)
			}
		}
		for _, id := range []string{"c", "b", "a"} {
			want = append(want, id+"/2", id+"/1")
		}
		var got []string
		q := &resources.HistoryQuery{Type: "Task", Count: 1}
		for len(got) <= len(want) {
			page, err := s.History(ctx(t), q)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range page.Resources {
				got = append(got, fmt.Sprintf("%s/%d", r.ID, r.VersionID))
			}
			if page.Next == nil {
				break
			}
			q.After = page.Next
		}
		if !slices.Equal(got, want) {
			t.Fatalf("history paged one at a time: %v, want %v", got, want)
		}
	})

	register("History_InstanceAndType_NewestFirst", func(t *testing.T, h Harness) {
		s, _ := h.OpenFresh(t)
		mustPut(t, s, task("t1", 1, "Organization/a", "requested"))
		mustPut(t, s, patient("p1", 1, "12345678A"))
		mustPut(t, s, task("t2", 1, "Organization/a", "requested"))
		mid := now()
		mustPut(t, s, task("t1", 2, "Organization/a", "accepted"))
		mustPut(t, s, tombstone("Task", "t2", 2))
		mustPut(t, s, task("t1", 3, "Organization/a", "completed"))

		version := func(rs []*resources.Resource) []string {
			var out []string
			for _, r := range rs {
				out = append(out, fmt.Sprintf("%s/%d", r.ID, r.VersionID))
			}
			return out
		}
		page, err := s.History(ctx(t), &resources.HistoryQuery{Type: "Task", ID: "t1", Count: 10})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := version(page.Resources), []string{"t1/3", "t1/2", "t1/1"}; !slices.Equal(got, want) {
			t.Fatalf("instance history %v, want %v", got, want)
		}
		// Type history, paged two at a time.
		var got []string
		q := &resources.HistoryQuery{Type: "Task", Count: 2}
		for {
			page, err := s.History(ctx(t), q)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, version(page.Resources)...)
			if page.Next == nil {
				break
			}
			q.After = page.Next
		}
		if want := []string{"t1/3", "t2/2", "t1/2", "t2/1", "t1/1"}; !slices.Equal(got, want) {
			t.Fatalf("type history %v, want %v", got, want)
		}
		page, err = s.History(ctx(t), &resources.HistoryQuery{Type: "Task", Since: mid, Count: 10})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := version(page.Resources), []string{"t1/3", "t2/2", "t1/2"}; !slices.Equal(got, want) {
			t.Fatalf("history since: %v, want %v", got, want)
		}
		if !page.Resources[1].Deleted || page.Resources[1].JSON != nil {
			t.Fatalf("a delete in history must be a tombstone without JSON: %+v", page.Resources[1])
		}
	})

	register("CreateIfNoneExist", func(t *testing.T, h Harness) {
		s, _ := h.OpenFresh(t)
		cond := func(cin string) *resources.Query {
			return &resources.Query{Type: "Patient", Count: 2, Clauses: []resources.Clause{
				{AnyKey: []string{resources.TokenKey("identifier", "urn:cin", cin)}}}}
		}
		first := patient("p1", 1, "11111111A")
		existing, err := s.CreateIfNoneExist(ctx(t), first, cond("11111111A"))
		if err != nil || existing != nil {
			t.Fatalf("first conditional create: existing=%v err=%v, want stored", existing, err)
		}
		existing, err = s.CreateIfNoneExist(ctx(t), patient("p2", 1, "11111111A"), cond("11111111A"))
		if err != nil {
			t.Fatal(err)
		}
		sameVersion(t, existing, first)
		_, err = s.Read(ctx(t), "Patient", "p2")
		wantKind(t, err, resources.KindNotFound)

		mustPut(t, s, patient("p3", 1, "22222222B"))
		mustPut(t, s, patient("p4", 1, "22222222B"))
		_, err = s.CreateIfNoneExist(ctx(t), patient("p5", 1, "22222222B"), cond("22222222B"))
		wantKind(t, err, resources.KindPreconditionFailed)

		// After the match is deleted, the condition matches nothing and creates again.
		mustPut(t, s, tombstone("Patient", "p1", 2))
		existing, err = s.CreateIfNoneExist(ctx(t), patient("p6", 1, "11111111A"), cond("11111111A"))
		if err != nil || existing != nil {
			t.Fatalf("after delete: existing=%v err=%v, want stored", existing, err)
		}
	})

	register("CreateIfNoneExist_Concurrent_CreatesOne", func(t *testing.T, h Harness) {
		s, _ := h.OpenFresh(t)
		cond := &resources.Query{Type: "Patient", Count: 2, Clauses: []resources.Clause{
			{AnyKey: []string{resources.TokenKey("identifier", "urn:cin", "33333333C")}}}}
		var wg sync.WaitGroup
		var mu sync.Mutex
		created := 0
		returned := map[string]int{}
		for i := 0; i < 50; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := patient(fmt.Sprintf("c%02d", i), 1, "33333333C")
				existing, err := s.CreateIfNoneExist(ctx(t), r, cond)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err != nil:
					t.Errorf("conditional create %d: %v", i, err)
				case existing == nil:
					created++
					returned[r.ID]++
				default:
					returned[existing.ID]++
				}
			}()
		}
		wg.Wait()
		if created != 1 || len(returned) != 1 {
			t.Fatalf("created=%d, distinct ids returned=%v; want exactly one resource", created, returned)
		}
		page := search(t, s, &resources.Query{Type: "Patient", Clauses: cond.Clauses, Total: true})
		if page.Total != 1 {
			t.Fatalf("stored %d matching patients, want 1", page.Total)
		}
	})

	register("HostileKeyValues_AreLiteral", func(t *testing.T, h Harness) {
		s, _ := h.OpenFresh(t)
		hostile := []string{`{"$ne": null}`, `$where`, `.*`, `'; DROP TABLE resources; --`, `a%`, `_`, `\`, `{}`, `$gt`}
		for i, v := range hostile {
			mustPut(t, s, patient(fmt.Sprintf("h%d", i), 1, v))
		}
		mustPut(t, s, patient("plain", 1, "12345678A"))
		for i, v := range hostile {
			page := search(t, s, &resources.Query{Type: "Patient", Clauses: []resources.Clause{
				{AnyKey: []string{resources.TokenKey("identifier", "urn:cin", v)}}}})
			if got := ids(page.Resources); !slices.Equal(got, []string{fmt.Sprintf("h%d", i)}) {
				t.Fatalf("value %q matched %v", v, got)
			}
		}
	})
}
