package mongostore

// Tests of the value searches (Strings, Dates, Numbers, NoKey): a randomized comparison with the
// in-memory semantics of resources (ValueMatch.MatchDate/MatchNumber, prefix/contains) under
// every plan (index candidates, intersection, in-memory walk), and the index bookkeeping of
// updates, deletes, rollbacks and roll-forwards.

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/calaimfhir/calaimfhir/resources"
)

// valueRes builds a Task version carrying exactly the given keys.
func valueRes(id string, v int64, k resources.Keys) *resources.Resource {
	r := taskRes(id, v, "Organization/x")
	r.Keys = k
	return r
}

// refMatch is the reference semantics of one clause on one resource's keys.
func refMatch(c resources.Clause, k resources.Keys) bool {
	switch {
	case len(c.AnyKey) > 0:
		for _, key := range c.AnyKey {
			if slices.Contains(k.Eq, key) {
				return true
			}
		}
		return false
	case len(c.NoKey) > 0:
		for _, key := range c.NoKey {
			if slices.Contains(k.Eq, key) {
				return false
			}
		}
		return true
	case len(c.Strings) > 0:
		for _, m := range c.Strings {
			for _, s := range k.Strings {
				if s.Param == m.Param && (m.Contains && strings.Contains(s.Value, m.Value) || !m.Contains && strings.HasPrefix(s.Value, m.Value)) {
					return true
				}
			}
		}
		return false
	case len(c.Dates) > 0:
		for _, m := range c.Dates {
			for _, d := range k.Dates {
				if m.MatchDate(d) {
					return true
				}
			}
		}
		return false
	case len(c.Numbers) > 0:
		for _, m := range c.Numbers {
			for _, n := range k.Numbers {
				if m.MatchNumber(n) {
					return true
				}
			}
		}
		return false
	}
	return false
}

// searchAllPages follows Next cursors and checks Total on every page.
func searchAllPages(t *testing.T, s *Store, q resources.Query) []string {
	t.Helper()
	var got []string
	var total int64 = -2
	for pages := 0; ; pages++ {
		if pages > 200 {
			t.Fatal("too many pages")
		}
		page, err := s.Search(testCtx(t), &q)
		if err != nil {
			t.Fatalf("search: %v", err)
		}
		if total != -2 && page.Total != total {
			t.Fatalf("total changed between pages: %d then %d", total, page.Total)
		}
		total = page.Total
		for _, r := range page.Resources {
			got = append(got, r.ID)
		}
		if page.Next == nil {
			if q.Total && total != int64(len(got)) {
				t.Fatalf("total %d, but %d resources: %v", total, len(got), got)
			}
			return got
		}
		if len(page.Resources) != q.Count {
			t.Fatalf("a page with a next link has %d resources, want %d", len(page.Resources), q.Count)
		}
		q.After = page.Next
	}
}

var (
	strPieces = []string{"a", "b", "é", ".", "*", "(", ")", `\`, "$", "^", "[", "?", "+", "|", "{", "\x00", "\n", "a.*b"}
	dateEdges = []int64{math.MinInt64, math.MaxInt64}
)

func randStr(rng *rand.Rand, maxPieces int) string {
	var b strings.Builder
	for n := rng.IntN(maxPieces + 1); n > 0; n-- {
		b.WriteString(strPieces[rng.IntN(len(strPieces))])
	}
	return b.String()
}

func randKeys(rng *rand.Rand) resources.Keys {
	var k resources.Keys
	for _, e := range []string{"e\x1f1", "e\x1f2", "e\x1f3"} {
		if rng.IntN(2) == 0 {
			k.Eq = append(k.Eq, e)
		}
	}
	for n := rng.IntN(4); n > 0; n-- {
		k.Strings = append(k.Strings, resources.StringKey{Param: []string{"s1", "s2"}[rng.IntN(2)], Value: randStr(rng, 3)})
	}
	for n := rng.IntN(4); n > 0; n-- {
		lo := int64(rng.IntN(11)) * 10
		hi := lo + []int64{1, 5, 10, 30}[rng.IntN(4)]
		switch rng.IntN(8) {
		case 0:
			lo = dateEdges[0]
		case 1:
			hi = dateEdges[1]
		}
		k.Dates = append(k.Dates, resources.DateKey{Param: []string{"d1", "d2"}[rng.IntN(2)], Lo: lo, Hi: hi})
	}
	for n := rng.IntN(3); n > 0; n-- {
		k.Numbers = append(k.Numbers, resources.NumberKey{Param: []string{"n1", "n1\x1fu"}[rng.IntN(2)], V: []float64{-1.5, 0, 2, 2.5, 100, math.MaxFloat64}[rng.IntN(6)]})
	}
	return k
}

func randBounds(rng *rand.Rand, date bool) [][]resources.Bound {
	ops := []resources.BoundOp{resources.OpGE, resources.OpGT, resources.OpLE, resources.OpLT}
	var alts [][]resources.Bound
	for a := rng.IntN(3) + 1; a > 0; a-- {
		var conj []resources.Bound
		for b := rng.IntN(4); b > 0; b-- {
			bd := resources.Bound{Op: ops[rng.IntN(4)]}
			if date {
				bd.OnHi = rng.IntN(2) == 0
				bd.Micros = int64(rng.IntN(23))*5 - 5
				if rng.IntN(10) == 0 {
					bd.Micros = dateEdges[rng.IntN(2)]
				}
			} else {
				bd.Num = []float64{-2, -1.5, 0, 1, 2, 2.5, 3, 100, 200, math.Inf(1)}[rng.IntN(10)]
			}
			conj = append(conj, bd)
		}
		alts = append(alts, conj)
	}
	return alts
}

func randClause(rng *rand.Rand) resources.Clause {
	eq := func() []string {
		var keys []string
		for n := rng.IntN(2) + 1; n > 0; n-- {
			keys = append(keys, fmt.Sprintf("e\x1f%d", rng.IntN(4)+1))
		}
		return keys
	}
	switch rng.IntN(9) {
	case 0:
		return resources.Clause{AnyKey: eq()}
	case 1:
		return resources.Clause{NoKey: eq()}
	case 2, 3:
		var ms []resources.StringMatch
		for n := rng.IntN(2) + 1; n > 0; n-- {
			ms = append(ms, resources.StringMatch{Param: []string{"s1", "s2"}[rng.IntN(2)], Value: randStr(rng, 2), Contains: rng.IntN(2) == 0})
		}
		return resources.Clause{Strings: ms}
	case 4, 5, 6:
		var ms []resources.ValueMatch
		for n := rng.IntN(2) + 1; n > 0; n-- {
			ms = append(ms, resources.ValueMatch{Param: []string{"d1", "d2"}[rng.IntN(2)], Any: randBounds(rng, true)})
		}
		return resources.Clause{Dates: ms}
	default:
		var ms []resources.ValueMatch
		for n := rng.IntN(2) + 1; n > 0; n-- {
			ms = append(ms, resources.ValueMatch{Param: []string{"n1", "n1\x1fu"}[rng.IntN(2)], Any: randBounds(rng, false)})
		}
		return resources.Clause{Numbers: ms}
	}
}

// TestValueSearch_MatchesInMemorySemantics compares random searches with the reference
// semantics, with paging and totals, under each plan: candidates from the index (large probe
// limit), intersection of a narrow clause with broad ones and in-memory walks (tiny limits).
func TestValueSearch_MatchesInMemorySemantics(t *testing.T) {
	s, _ := openTest(t)
	ctx := testCtx(t)
	rng := rand.New(rand.NewPCG(7, uint64(time.Now().UnixNano())))
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
		var r *resources.Resource
		if del {
			r = &resources.Resource{Type: "Task", ID: id, VersionID: st.v, LastUpdated: taskRes(id, 1, "x").LastUpdated, Deleted: true}
			st.keys = resources.Keys{}
		} else {
			st.keys = randKeys(rng)
			r = valueRes(id, st.v, st.keys)
		}
		st.lu, st.del = r.LastUpdated, del
		if err := s.Put(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 40; i++ {
		put(fmt.Sprintf("r%02d", i), false)
	}
	defer func(l int) { probeLimit = l }(probeLimit)
	paged, matched := 0, 0 // queries with several pages, with one page of matches
	for round := 0; round < 2; round++ {
		// Updates and deletes between rounds: the old values must stop matching.
		for i := 0; i < 12; i++ {
			put(fmt.Sprintf("r%02d", rng.IntN(40)), rng.IntN(4) == 0)
		}
		for _, limit := range []int{10000, 8, 1} {
			probeLimit = limit
			for n := 0; n < 15; n++ {
				q := resources.Query{Type: "Task", Count: rng.IntN(5) + 2, Total: true, Sort: resources.Sort(rng.IntN(2))}
				for c := rng.IntN(3) + 1; c > 0; c-- {
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
					c := cmp.Or(live[a].lu.Compare(live[b].lu), strings.Compare(a, b))
					if q.Sort == resources.SortLastUpdatedDesc {
						return -c
					}
					return c
				})
				got := searchAllPages(t, s, q)
				if !slices.Equal(got, want) {
					t.Fatalf("round %d, probe limit %d, clauses %#v:\n got %q\nwant %q", round, limit, q.Clauses, got, want)
				}
				switch {
				case len(want) > q.Count:
					paged++
				case len(want) > 0:
					matched++
				}
			}
		}
	}
	t.Logf("%d searches with several pages, %d with one page of matches", paged, matched)
	if paged < 5 || matched < 5 {
		t.Fatal("the random searches hardly match anything: the comparison proves little")
	}
}

// TestValueSearch_ConjunctionOnOneValue: bounds of one alternative hold for one value; two
// values each satisfying one bound do not match, whichever plan answers.
func TestValueSearch_ConjunctionOnOneValue(t *testing.T) {
	s, _ := openTest(t)
	ctx := testCtx(t)
	// Dates [0,10) and [100,110): "lo >= 50" holds for the second, "hi <= 20" for the first.
	if err := s.Put(ctx, valueRes("two", 1, resources.Keys{
		Dates:   []resources.DateKey{{Param: "d", Lo: 0, Hi: 10}, {Param: "d", Lo: 100, Hi: 110}},
		Numbers: []resources.NumberKey{{Param: "n", V: 1}, {Param: "n", V: 10}},
	})); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, valueRes("one", 1, resources.Keys{
		Dates:   []resources.DateKey{{Param: "d", Lo: 60, Hi: 70}},
		Numbers: []resources.NumberKey{{Param: "n", V: 5}},
	})); err != nil {
		t.Fatal(err)
	}
	defer func(l int) { probeLimit = l }(probeLimit)
	for _, limit := range []int{10000, 1} {
		probeLimit = limit
		for _, tc := range []struct {
			c    resources.Clause
			want []string
		}{
			{resources.Clause{Dates: []resources.ValueMatch{{Param: "d", Any: [][]resources.Bound{{{Op: resources.OpGE, Micros: 50}, {OnHi: true, Op: resources.OpLE, Micros: 80}}}}}}, []string{"one"}},
			{resources.Clause{Dates: []resources.ValueMatch{{Param: "d", Any: [][]resources.Bound{{{Op: resources.OpGE, Micros: 50}}, {{OnHi: true, Op: resources.OpLE, Micros: 20}}}}}}, []string{"two", "one"}},
			{resources.Clause{Numbers: []resources.ValueMatch{{Param: "n", Any: [][]resources.Bound{{{Op: resources.OpGT, Num: 2}, {Op: resources.OpLT, Num: 8}}}}}}, []string{"one"}},
			{resources.Clause{Numbers: []resources.ValueMatch{{Param: "n", Any: [][]resources.Bound{{{Op: resources.OpGT, Num: 2}, {Op: resources.OpLT, Num: 8}}, {{Op: resources.OpGE, Num: 10}}}}}}, []string{"two", "one"}},
			// Two clauses (AND) may be satisfied by different values.
			{resources.Clause{Numbers: []resources.ValueMatch{{Param: "n", Any: [][]resources.Bound{{{Op: resources.OpLT, Num: 2}}}}}}, []string{"two"}},
		} {
			got := searchAllPages(t, s, resources.Query{Type: "Task", Count: 1, Total: true, Clauses: []resources.Clause{tc.c}})
			if !slices.Equal(got, tc.want) {
				t.Errorf("limit %d, %#v: got %v, want %v", limit, tc.c, got, tc.want)
			}
		}
		got := searchAllPages(t, s, resources.Query{Type: "Task", Count: 5, Clauses: []resources.Clause{
			{Numbers: []resources.ValueMatch{{Param: "n", Any: [][]resources.Bound{{{Op: resources.OpLT, Num: 2}}}}}},
			{Numbers: []resources.ValueMatch{{Param: "n", Any: [][]resources.Bound{{{Op: resources.OpGT, Num: 8}}}}}},
		}})
		if !slices.Equal(got, []string{"two"}) {
			t.Errorf("limit %d: separate clauses on different values: got %v", limit, got)
		}
	}
}

// TestValueSearch_HostileStrings: prefix and contains are literal, whatever the value holds.
func TestValueSearch_HostileStrings(t *testing.T) {
	s, _ := openTest(t)
	ctx := testCtx(t)
	values := map[string]string{
		"dotstar": "a.*b", "paren": "x(y", "backslash": `c\d`, "dollar": "e$", "caret": "^f",
		"class": "[g]", "nul": "h\x00i", "newline": "j\nk", "plain": "aXXb", "brace": "l{2}",
	}
	for id, v := range values {
		if err := s.Put(ctx, valueRes(id, 1, resources.Keys{Strings: []resources.StringKey{{Param: "name", Value: v}}})); err != nil {
			t.Fatal(err)
		}
	}
	defer func(l int) { probeLimit = l }(probeLimit)
	for _, limit := range []int{10000, 1} {
		probeLimit = limit
		for _, tc := range []struct {
			value    string
			contains bool
			want     []string
		}{
			{".*", false, nil},
			{".*", true, []string{"dotstar"}},
			{"a.*", false, []string{"dotstar"}},
			{"a", false, []string{"dotstar", "plain"}},
			{"(", true, []string{"paren"}},
			{"x(", false, []string{"paren"}},
			{`\`, true, []string{"backslash"}},
			{`c\`, false, []string{"backslash"}},
			{`\d`, true, []string{"backslash"}},
			{"$", true, []string{"dollar"}},
			{"e$", false, []string{"dollar"}},
			{"^", false, []string{"caret"}},
			{"f", false, nil},
			{"f", true, []string{"caret"}},
			{"[g", false, []string{"class"}},
			{"g", false, nil},
			{"h\x00", false, []string{"nul"}},
			{"\x00i", true, []string{"nul"}},
			{"j\n", false, []string{"newline"}},
			{"k", false, nil},
			{"{2}", true, []string{"brace"}},
			{"l{", false, []string{"brace"}},
			{"\xff", true, nil}, // invalid UTF-8 matches nothing
		} {
			got := searchAllPages(t, s, resources.Query{Type: "Task", Count: 20, Total: true, Clauses: []resources.Clause{
				{Strings: []resources.StringMatch{{Param: "name", Value: tc.value, Contains: tc.contains}}}}})
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Errorf("limit %d, %q contains=%v: got %v, want %v", limit, tc.value, tc.contains, got, tc.want)
			}
		}
	}
}

// TestValueSearch_IndexDocumentsFollowVersions: the index collection holds the current
// version's values only; leftovers of other versions never make a resource match; a
// roll-forward writes the index documents of the version it applies.
func TestValueSearch_IndexDocumentsFollowVersions(t *testing.T) {
	s, _ := openTest(t)
	ctx := testCtx(t)
	idx := s.db.Collection("Task_idx")
	count := func(filter bson.D) int64 {
		t.Helper()
		n, err := idx.CountDocuments(ctx, filter)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	name := func(v string) resources.Keys {
		return resources.Keys{Strings: []resources.StringKey{{Param: "name", Value: v}}, Dates: []resources.DateKey{{Param: "d", Lo: 1, Hi: 2}}}
	}
	found := func(prefix string) []string {
		t.Helper()
		return searchAllPages(t, s, resources.Query{Type: "Task", Count: 10, Total: true, Clauses: []resources.Clause{
			{Strings: []resources.StringMatch{{Param: "name", Value: prefix}}}}})
	}
	if err := s.Put(ctx, valueRes("t1", 1, name("alpha"))); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, valueRes("t1", 2, name("beta"))); err != nil {
		t.Fatal(err)
	}
	if n := count(bson.D{{Key: "rid", Value: "t1"}}); n != 2 {
		t.Fatalf("%d index documents after an update, want 2 (one string, one date)", n)
	}
	if got := found("alp"); len(got) != 0 {
		t.Fatalf("old value still matches: %v", got)
	}
	if got := found("bet"); !slices.Equal(got, []string{"t1"}) {
		t.Fatalf("new value: %v", got)
	}

	// Leftovers of version 1 (a writer that died before its clean-up) and of a version 3
	// that was never applied do not match.
	var cur doc
	if err := s.db.Collection("Task").FindOne(ctx, bson.D{{Key: "_id", Value: "t1"}}).Decode(&cur); err != nil {
		t.Fatal(err)
	}
	stale := func(v int64, w, value string) {
		h := &doc{ID: histID("t1", v), RID: "t1", V: v, W: w, X: newValueKeys(&resources.Keys{Strings: []resources.StringKey{{Param: "name", Value: value}}})}
		if err := writeIdx(ctx, idx, h, false); err != nil {
			t.Fatal(err)
		}
	}
	stale(1, "old-writer", "alpha")
	stale(3, "future-writer", "gamma")
	for _, p := range []string{"alp", "gam"} {
		if got := found(p); len(got) != 0 {
			t.Fatalf("a leftover index document of another version matches %q: %v", p, got)
		}
	}
	// Writing the same version's documents again is harmless (a retry, a roll-forward).
	if err := writeIdx(ctx, idx, &doc{ID: histID("t1", 2), RID: "t1", V: 2, W: cur.W, X: cur.X}, false); err != nil {
		t.Fatalf("rewriting index documents: %v", err)
	}

	// The next Put removes the older leftovers but not those of versions above its own.
	if err := s.Put(ctx, valueRes("t1", 3, name("delta"))); err != nil {
		t.Fatal(err)
	}
	if n := count(bson.D{{Key: "rid", Value: "t1"}, {Key: "w", Value: bson.D{{Key: "$in", Value: bson.A{"old-writer", cur.W, "future-writer"}}}}}); n != 0 {
		t.Fatalf("%d leftover index documents after the next Put", n)
	}
	if got := found("del"); !slices.Equal(got, []string{"t1"}) {
		t.Fatalf("after update: %v", got)
	}

	// A tombstone removes the values.
	if err := s.Put(ctx, &resources.Resource{Type: "Task", ID: "t1", VersionID: 4, LastUpdated: taskRes("x", 1, "x").LastUpdated, Deleted: true}); err != nil {
		t.Fatal(err)
	}
	if n := count(bson.D{{Key: "rid", Value: "t1"}}); n != 0 {
		t.Fatalf("%d index documents after delete", n)
	}
	if got := found(""); len(got) != 0 {
		t.Fatalf("deleted resource matches: %v", got)
	}

	// A version whose writer died after its history entry is rolled forward with its values.
	if err := s.Put(ctx, valueRes("t2", 1, name("first"))); err != nil {
		t.Fatal(err)
	}
	r := valueRes("t2", 2, name("orphan"))
	h := &doc{ID: histID("t2", 2), RID: "t2", V: 2, LU: r.LastUpdated.UnixMicro(), JSON: string(r.JSON), K: []string{}, X: newValueKeys(&r.Keys), W: "dead", At: bson.NewDateTimeFromTime(time.Now().Add(-time.Minute))}
	if _, err := s.db.Collection("Task_history").InsertOne(ctx, h); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, valueRes("t2", 2, name("loser"))); !resources.IsKind(err, resources.KindConflict) {
		t.Fatalf("put over an abandoned version: %v, want conflict", err)
	}
	if got := found("orph"); !slices.Equal(got, []string{"t2"}) {
		t.Fatalf("rolled-forward version not searchable: %v", got)
	}
	if got := found("fir"); len(got) != 0 {
		t.Fatalf("value of the version before the roll-forward matches: %v", got)
	}

	// A Put whose version was too high rolls back its history entry and index documents.
	if err := s.Put(ctx, valueRes("t2", 9, name("toohigh"))); !resources.IsKind(err, resources.KindConflict) {
		t.Fatalf("put of version 9 over version 2: %v, want conflict", err)
	}
	if n := count(bson.D{{Key: "rid", Value: "t2"}, {Key: "v", Value: 9}}); n != 0 {
		t.Fatalf("%d index documents of a rolled-back version", n)
	}
}

// TestValueSearch_NoKeyOnArray: $nin on the key array means "none of them".
func TestValueSearch_NoKeyOnArray(t *testing.T) {
	s, _ := openTest(t)
	ctx := testCtx(t)
	for id, eq := range map[string][]string{"ab": {"a", "b"}, "b": {"b"}, "c": {"c"}, "none": nil} {
		if err := s.Put(ctx, valueRes(id, 1, resources.Keys{Eq: eq})); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		keys []string
		want []string
	}{
		{[]string{"a"}, []string{"b", "c", "none"}},
		{[]string{"a", "b"}, []string{"c", "none"}},
		{[]string{"z"}, []string{"ab", "b", "c", "none"}},
	} {
		got := searchAllPages(t, s, resources.Query{Type: "Task", Count: 10, Total: true, Clauses: []resources.Clause{{NoKey: tc.keys}}})
		slices.Sort(got)
		if !slices.Equal(got, tc.want) {
			t.Errorf("NoKey %v: got %v, want %v", tc.keys, got, tc.want)
		}
	}
}

// TestValueSearch_ConcurrentUpdates: while resources change values, a search never returns a
// version that does not hold the searched value (the index is joined on the version's write
// token), under both plans; once the writers stop, results are complete.
func TestValueSearch_ConcurrentUpdates(t *testing.T) {
	s, _ := openTest(t)
	ctx := testCtx(t)
	const n = 6
	version := func(id string, v int64, name string) *resources.Resource {
		r := taskRes(id, v, "Organization/"+name)
		r.Keys.Strings = []resources.StringKey{{Param: "name", Value: name}}
		r.Keys.Dates = []resources.DateKey{{Param: "d", Lo: int64(len(name)), Hi: int64(len(name)) + 1}}
		return r
	}
	for i := 0; i < n; i++ {
		if err := s.Put(ctx, version(fmt.Sprintf("t%d", i), 1, "alpha")); err != nil {
			t.Fatal(err)
		}
	}
	defer func(l int) { probeLimit = l }(probeLimit)
	done := make(chan struct{})
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		go func() {
			id := fmt.Sprintf("t%d", i)
			for v := int64(2); ; v++ {
				select {
				case <-done:
					errs <- nil
					return
				default:
				}
				name := []string{"alpha", "beta-long"}[v%2]
				if err := s.Put(ctx, version(id, v, name)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	check := func(limit int) {
		probeLimit = limit
		for _, q := range []resources.Query{
			{Type: "Task", Count: 3, Clauses: []resources.Clause{{Strings: []resources.StringMatch{{Param: "name", Value: "alp"}}}}},
			{Type: "Task", Count: 3, Clauses: []resources.Clause{{Dates: []resources.ValueMatch{{Param: "d", Any: [][]resources.Bound{{{Op: resources.OpLT, Micros: 6}}}}}}}},
		} {
			page, err := s.Search(ctx, &q)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range page.Resources {
				if !strings.Contains(string(r.JSON), "Organization/alpha") {
					t.Fatalf("limit %d: %s v%d returned for a value it does not hold: %s", limit, r.ID, r.VersionID, r.JSON)
				}
			}
		}
	}
	for i := 0; i < 15; i++ {
		check(10000)
		check(1)
	}
	close(done)
	for i := 0; i < n; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	var want []string
	for i := 0; i < n; i++ {
		r, err := s.Read(ctx, "Task", fmt.Sprintf("t%d", i))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(r.JSON), "Organization/alpha") {
			want = append(want, r.ID)
		}
	}
	for _, limit := range []int{10000, 1} {
		probeLimit = limit
		got := searchAllPages(t, s, resources.Query{Type: "Task", Count: 2, Total: true, Clauses: []resources.Clause{{Strings: []resources.StringMatch{{Param: "name", Value: "alp"}}}}})
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Fatalf("limit %d after the writers stopped: got %v, want %v", limit, got, want)
		}
	}
}

// TestCondKey_PartitionNotScope: a caller's conditional creates of one condition share a claim
// chain whatever scope or exclusions the Service added; another organization's have their own.
func TestCondKey_PartitionNotScope(t *testing.T) {
	cin := resources.Clause{AnyKey: []string{resources.TokenKey("identifier", "urn:cin", "1")}}
	scope := resources.Clause{Or: [][]resources.Clause{{{AnyKey: []string{"tag"}}}, {{IDs: []string{"p1", "p2"}}}}}
	key := func(partition string, cs ...resources.Clause) string {
		return condKey("Patient", &resources.Query{Type: "Patient", Clauses: cs, Partition: partition})
	}
	mine := key("Organization/a", cin)
	for name, other := range map[string]string{
		"with the scope":  key("Organization/a", cin, scope),
		"with exclusions": key("Organization/a", cin, resources.Clause{NotIDs: []string{"x"}}),
		"with both":       key("Organization/a", scope, cin, resources.Clause{NotIDs: []string{"y", "z"}}),
	} {
		if other != mine {
			t.Errorf("the condition %s has a chain of its own", name)
		}
	}
	if key("Organization/b", cin) == mine || key("", cin) == mine {
		t.Error("another organization's condition shares the chain")
	}
}

// TestCondKey_ValueClauses: conditional-create keys tell value conditions apart and do not
// depend on the order of alternatives.
func TestCondKey_ValueClauses(t *testing.T) {
	date := func(us ...int64) resources.Clause {
		var alts [][]resources.Bound
		for _, u := range us {
			alts = append(alts, []resources.Bound{{Op: resources.OpGE, Micros: u}, {OnHi: true, Op: resources.OpLE, Micros: u + 10}})
		}
		return resources.Clause{Dates: []resources.ValueMatch{{Param: "d", Any: alts}}}
	}
	key := func(cs ...resources.Clause) string {
		return condKey("Task", &resources.Query{Type: "Task", Clauses: cs})
	}
	distinct := []string{
		key(date(1)), key(date(2)),
		key(resources.Clause{Numbers: []resources.ValueMatch{{Param: "d", Any: [][]resources.Bound{{{Op: resources.OpGE, Num: 1}}}}}}),
		key(resources.Clause{Strings: []resources.StringMatch{{Param: "s", Value: "a"}}}),
		key(resources.Clause{Strings: []resources.StringMatch{{Param: "s", Value: "a", Contains: true}}}),
		key(resources.Clause{NoKey: []string{"a"}}), key(resources.Clause{AnyKey: []string{"a"}}),
	}
	for i := range distinct {
		for j := range i {
			if distinct[i] == distinct[j] {
				t.Errorf("conditions %d and %d share a key", j, i)
			}
		}
	}
	if key(date(1, 2)) != key(date(2, 1)) {
		t.Error("the key depends on the order of alternatives")
	}
}
