package mongostore

// Tests of _sort by parameters: a randomized comparison with the reference order (values with
// missing last, then lastUpdated and id) under every plan, with paging through cursors; the
// stored sort values of current documents and history entries; and the edge cases of the
// keyset condition.

import (
	"cmp"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/calaimfhir/calaimfhir/resources"
)

// refSortValue is what SortBy field f compares for keys k (the value or its sentinel).
func refSortValue(k resources.Keys, f resources.SortField) string {
	for _, s := range k.Sort {
		if s.Param == f.Param {
			if f.Desc {
				return s.Desc
			}
			return s.Asc
		}
	}
	if f.Desc {
		return resources.SortMissingDesc
	}
	return resources.SortMissingAsc
}

func TestSortBy_MatchesReferenceOrder(t *testing.T) {
	s, _ := openTest(t)
	ctx := testCtx(t)
	rng := rand.New(rand.NewPCG(11, uint64(time.Now().UnixNano())))
	// Task parameters (stored with sentinels when absent) and one that is not a Task
	// parameter (every resource lacks it: a constant).
	params := []string{"status", "priority", "authored-on", "_tag", "no-such-param"}
	vals := []string{"a", "b", "bb", "c"}
	base := time.Now().UTC().Truncate(time.Second)
	type state struct {
		v    int64
		keys resources.Keys
		lu   time.Time
		del  bool
	}
	live := map[string]*state{}
	put := func(id string, del bool) {
		st := live[id]
		if st == nil {
			st = &state{}
			live[id] = st
		}
		st.v++
		// Few distinct lastUpdated values, so that ties fall through to the id.
		lu := base.Add(time.Duration(rng.IntN(4)) * time.Microsecond)
		var r *resources.Resource
		if del {
			r = &resources.Resource{Type: "Task", ID: id, VersionID: st.v, LastUpdated: lu, Deleted: true}
			st.keys = resources.Keys{}
		} else {
			k := randKeys(rng)
			for _, p := range params[:4] {
				if rng.IntN(3) > 0 {
					a, b := vals[rng.IntN(len(vals))], vals[rng.IntN(len(vals))]
					k.Sort = append(k.Sort, resources.SortKey{Param: p, Asc: min(a, b), Desc: max(a, b)})
				}
			}
			r = valueRes(id, st.v, k)
			r.LastUpdated = lu
			st.keys = k
		}
		st.lu, st.del = lu, del
		if err := s.Put(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 20; i++ {
		put(fmt.Sprintf("r%02d", i), false)
	}
	defer func(l int) { probeLimit = l }(probeLimit)
	paged, pages := 0, 0
	for round := 0; round < 2; round++ {
		// Updates and deletes between rounds: the sort values follow the current version.
		for i := 0; i < 8; i++ {
			put(fmt.Sprintf("r%02d", rng.IntN(20)), rng.IntN(4) == 0)
		}
		for _, limit := range []int{10000, 1} {
			probeLimit = limit
			for n := 0; n < 6; n++ {
				q := resources.Query{Type: "Task", Count: rng.IntN(4) + 2, Total: rng.IntN(2) == 0, Sort: resources.Sort(rng.IntN(2))}
				for f := rng.IntN(3) + 1; f > 0; f-- {
					q.SortBy = append(q.SortBy, resources.SortField{Param: params[rng.IntN(len(params))], Desc: rng.IntN(2) == 0})
				}
				if rng.IntN(2) == 0 {
					q.Clauses = append(q.Clauses, randClause(rng))
				}
				var want []string
				for id, st := range live {
					ok := !st.del
					for _, c := range q.Clauses {
						ok = ok && refMatch(c, st.keys)
					}
					if ok {
						want = append(want, id)
					}
				}
				slices.SortFunc(want, func(a, b string) int {
					for _, f := range q.SortBy {
						c := strings.Compare(refSortValue(live[a].keys, f), refSortValue(live[b].keys, f))
						if f.Desc {
							c = -c
						}
						if c != 0 {
							return c
						}
					}
					c := cmp.Or(live[a].lu.Compare(live[b].lu), strings.Compare(a, b))
					if q.Sort == resources.SortLastUpdatedDesc {
						return -c
					}
					return c
				})
				got := searchAllPages(t, s, q)
				if !slices.Equal(got, want) {
					t.Fatalf("round %d, probe limit %d, sort %v %v, clauses %#v:\n got %q\nwant %q", round, limit, q.SortBy, q.Sort, q.Clauses, got, want)
				}
				if len(want) > q.Count {
					paged++
				}
				pages += len(want)/q.Count + 1
			}
		}
	}
	t.Logf("%d searches with several pages, %d pages", paged, pages)
	if paged < 8 {
		t.Fatalf("only %d searches had several pages: the comparison proves little", paged)
	}
}

func TestSortBy_StoredValues(t *testing.T) {
	s, _ := openTest(t)
	ctx := testCtx(t)
	r := taskRes("t1", 1, "Organization/a") // status, intent, owner have values
	if err := s.Put(ctx, r); err != nil {
		t.Fatal(err)
	}
	var cur, hist doc
	if err := s.db.Collection("Task").FindOne(ctx, bson.D{{Key: "_id", Value: "t1"}}).Decode(&cur); err != nil {
		t.Fatal(err)
	}
	if err := s.db.Collection("Task_history").FindOne(ctx, bson.D{{Key: "_id", Value: "t1/1"}}).Decode(&hist); err != nil {
		t.Fatal(err)
	}
	// Only the parameters with values: a missing value is an absent field, which the
	// descending sorts on .r and .d put last.
	if len(cur.O) != len(r.Keys.Sort) || len(r.Keys.Sort) == 0 {
		t.Fatalf("current document has sort values %v, want those of %v", cur.O, r.Keys.Sort)
	}
	for _, k := range r.Keys.Sort {
		want := sortVal{R: revKey(k.Asc), D: k.Desc}
		if got := cur.O[sortField(k.Param)]; got != want {
			t.Errorf("o[%s] = %+v, want %+v", k.Param, got, want)
		}
	}
	if !maps.Equal(hist.O, cur.O) {
		t.Errorf("history entry has sort values %v, current document %v", hist.O, cur.O)
	}
	// Reads do not return them.
	var read bson.M
	if err := s.db.Collection("Task").FindOne(ctx, bson.D{{Key: "_id", Value: "t1"}}, nil).Decode(&read); err != nil || read["o"] == nil {
		t.Fatalf("o not stored: %v %v", read, err)
	}

	// A rolled-forward version (history entry without sort values: its writer died) has none
	// either.
	r2 := taskRes("t1", 2, "Organization/b")
	h := &doc{ID: histID("t1", 2), RID: "t1", V: 2, LU: r2.LastUpdated.UnixMicro(), JSON: string(r2.JSON), K: r2.Keys.Eq, W: "dead", At: bson.NewDateTimeFromTime(time.Now().Add(-time.Minute))}
	if _, err := s.db.Collection("Task_history").InsertOne(ctx, h); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, taskRes("t1", 2, "Organization/c")); !resources.IsKind(err, resources.KindConflict) {
		t.Fatalf("put over an abandoned version: %v, want conflict", err)
	}
	cur = doc{}
	if err := s.db.Collection("Task").FindOne(ctx, bson.D{{Key: "_id", Value: "t1"}}).Decode(&cur); err != nil {
		t.Fatal(err)
	}
	if cur.V != 2 || cur.O != nil {
		t.Fatalf("rolled-forward current document: v%d, o %v", cur.V, cur.O)
	}

	// A tombstone has none.
	if err := s.Put(ctx, &resources.Resource{Type: "Task", ID: "t1", VersionID: 3, LastUpdated: taskRes("x", 1, "x").LastUpdated, Deleted: true}); err != nil {
		t.Fatal(err)
	}
	cur = doc{}
	if err := s.db.Collection("Task").FindOne(ctx, bson.D{{Key: "_id", Value: "t1"}}).Decode(&cur); err != nil || cur.O != nil {
		t.Fatalf("tombstone: o %v, %v", cur.O, err)
	}
}

func TestSortBy_Cursors(t *testing.T) {
	s, _ := openTest(t)
	ctx := testCtx(t)
	for i, status := range []string{"b", "a", "", "a"} {
		r := taskRes(fmt.Sprintf("t%d", i), 1, "Organization/a")
		r.Keys.Sort = nil
		if status != "" {
			r.Keys.Sort = []resources.SortKey{{Param: "status", Asc: status, Desc: status}}
		}
		if err := s.Put(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	q := &resources.Query{Type: "Task", Count: 1, SortBy: []resources.SortField{{Param: "status"}, {Param: "status"}, {Param: "no-such-param", Desc: true}}}
	page, err := s.Search(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	if page.Next == nil || !slices.Equal(page.Next.Values, []string{"a", "a", resources.SortMissingDesc}) {
		t.Fatalf("first page %v, next cursor %+v: want the values of t1 in SortBy order", pageIDs(page), page.Next)
	}
	// Duplicate fields and constants page like the reference order.
	if got := searchAllPages(t, s, *q); !slices.Equal(got, []string{"t1", "t3", "t0", "t2"}) {
		t.Fatalf("got %v", got)
	}

	// The cursor of a missing value, and values of a tampered cursor (strings only: they are
	// compared, never interpreted).
	for _, tc := range []struct {
		vals []string
		want []string
	}{
		{[]string{resources.SortMissingAsc, resources.SortMissingAsc, ""}, []string{"t2"}}, // after t0 (lu order: t2 is later)
		{[]string{"a", "a", "zzz"}, []string{"t1", "t3", "t0", "t2"}},                      // the constant "" is after "zzz" descending
		{[]string{"a", "a", ""}, []string{"t3", "t0", "t2"}},
		{[]string{"a", "b", ""}, []string{"t3", "t0", "t2"}}, // the first occurrence of a duplicate counts
		{[]string{`{"$gt": ""}`, "x", ""}, []string{"t2"}},   // '{' sorts after "b", before the sentinel
	} {
		q := *q
		q.Count = 10
		q.After = &resources.Cursor{LastUpdated: time.Unix(0, 0), ID: "t1", Values: tc.vals}
		if tc.vals[0] == resources.SortMissingAsc {
			lu, _ := s.Read(ctx, "Task", "t0")
			q.After.LastUpdated, q.After.ID = lu.LastUpdated, "t0"
		}
		if tc.vals[0] == "a" {
			lu, _ := s.Read(ctx, "Task", "t1")
			q.After.LastUpdated = lu.LastUpdated
		}
		page, err := s.Search(ctx, &q)
		if err != nil {
			t.Fatalf("%q: %v", tc.vals, err)
		}
		if got := pageIDs(page); !slices.Equal(got, tc.want) {
			t.Errorf("after %q: got %v, want %v", tc.vals, got, tc.want)
		}
	}

	// A cursor of another _sort, and too many sort keys.
	bad := *q
	bad.After = &resources.Cursor{LastUpdated: time.Now(), ID: "t1", Values: []string{"a"}}
	if _, err := s.Search(ctx, &bad); !resources.IsKind(err, resources.KindBadRequest) {
		t.Fatalf("cursor with 1 value for 3 sort fields: %v", err)
	}
	many := resources.Query{Type: "Task", Count: 1}
	for _, p := range resources.Params("Task") {
		many.SortBy = append(many.SortBy, resources.SortField{Param: p.Name}, resources.SortField{Param: p.Name, Desc: true})
	}
	if _, err := s.Search(ctx, &many); !resources.IsKind(err, resources.KindBadRequest) {
		t.Fatalf("%d sort fields: %v", len(many.SortBy), err)
	}
}

func pageIDs(p *resources.Page) []string {
	var out []string
	for _, r := range p.Resources {
		out = append(out, r.ID)
	}
	return out
}

func TestSortField_Escapes(t *testing.T) {
	for in, want := range map[string]string{
		"birthdate": "birthdate", "address-city": "address-city", "_tag": "_tag", "a:b": "a:b",
		"a.b": "a%2Eb", "$gt": "%24gt", "50%": "50%25", "a\x00": "a%00", "": "%",
	} {
		if got := sortField(in); got != want {
			t.Errorf("sortField(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRevKey_ReversesByteOrder(t *testing.T) {
	vals := []string{"", "a", "ab", "abc", "abd", "b", "\x00", "\x00\x00", "\xff", "z\xff", resources.SortMissingAsc, "Organization/cbo-1", "800660eea828e800"}
	for _, a := range vals {
		if got, ok := unrevKey(revKey(a)); !ok || got != a {
			t.Errorf("unrevKey(revKey(%q)) = %q, %v", a, got, ok)
		}
		for _, b := range vals {
			if want, got := strings.Compare(a, b), strings.Compare(revKey(b), revKey(a)); want != got {
				t.Errorf("compare(%q, %q) = %d, but the encodings compare %d reversed", a, b, want, got)
			}
		}
	}
	for _, bad := range []string{"", "~~", "0", "zz~", "ab"} {
		if _, ok := unrevKey(bad); ok {
			t.Errorf("unrevKey(%q) accepted", bad)
		}
	}
}
