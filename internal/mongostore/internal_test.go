package mongostore

// Tests of what the conformance suite cannot express: the stored layout, indexes, the crash
// repairs of the transaction-free protocols, and literal treatment of hostile strings at the
// driver level.

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/calaimfhir/calaimfhir/internal/ferrettest"
	"github.com/calaimfhir/calaimfhir/resources"
)

func openTest(t *testing.T) (*Store, *ferrettest.Server) {
	t.Helper()
	srv := ferrettest.Start(t)
	s, err := Open(testCtx(t), srv.URI("internal"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, srv
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

var clock struct {
	sync.Mutex
	last time.Time
}

// taskRes builds a Task version with a strictly increasing lastUpdated.
func taskRes(id string, v int64, owner string) *resources.Resource {
	clock.Lock()
	lu := time.Now().UTC().Truncate(time.Microsecond)
	if !lu.After(clock.last) {
		lu = clock.last.Add(time.Microsecond)
	}
	clock.last = lu
	clock.Unlock()
	doc := map[string]any{
		"resourceType": "Task", "id": id, "status": "requested", "intent": "order",
		"meta":  map[string]any{"versionId": "1", "lastUpdated": lu.Format(time.RFC3339Nano)},
		"owner": map[string]any{"reference": owner},
		// A decimal that float64 would not round-trip: the bytes must come back verbatim.
		"input": []any{map[string]any{"type": map[string]any{"text": "n"}, "valueDecimal": json.Number("1.10000000000000000001")}},
	}
	b, err := json.Marshal(doc)
	if err != nil {
		panic(err)
	}
	return &resources.Resource{Type: "Task", ID: id, VersionID: v, LastUpdated: lu, JSON: b, Keys: resources.ExtractKeys("Task", doc)}
}

func TestOpen_CreatesIndexesIdempotently(t *testing.T) {
	s, srv := openTest(t)
	// A second Open on the same database must not fail (FerretDB panics on a createIndexes
	// that names several existing indexes; the store creates them one by one).
	s2, err := Open(testCtx(t), srv.URI("internal"), Options{})
	if err != nil {
		t.Fatalf("second Open: %v", err)
	}
	s2.Close()
	want := map[string][]string{
		"Task":         {"_id_", "k_lu_id", "lu_id"},
		"Task_history": {"_id_", "id_v", "lu_id_v"},
		"Patient":      {"_id_", "k_lu_id", "lu_id"},
		"Task_idx":     {"_id_", "p_hi", "p_lo_hi", "p_n", "p_s", "rid_v", "w"},
	}
	for coll, names := range want {
		cur, err := s.db.Collection(coll).Indexes().List(testCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		var specs []struct {
			Name string `bson:"name"`
		}
		if err := cur.All(testCtx(t), &specs); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, sp := range specs {
			got = append(got, sp.Name)
		}
		slices.Sort(got)
		if !slices.Equal(got, names) {
			t.Errorf("%s indexes %v, want %v", coll, got, names)
		}
	}
}

func TestDocumentLayout(t *testing.T) {
	s, _ := openTest(t)
	ctx := testCtx(t)
	r := taskRes("t1", 1, "Organization/a")
	if err := s.Put(ctx, r); err != nil {
		t.Fatal(err)
	}
	var cur bson.M
	if err := s.db.Collection("Task").FindOne(ctx, bson.D{{Key: "_id", Value: "t1"}}).Decode(&cur); err != nil {
		t.Fatal(err)
	}
	if cur["v"] != int64(1) || cur["lu"] != r.LastUpdated.UnixMicro() || cur["del"] != false || cur["json"] != string(r.JSON) {
		t.Fatalf("current document %v", cur)
	}
	var keys []string
	for _, k := range cur["k"].(bson.A) {
		keys = append(keys, k.(string))
	}
	if !slices.Equal(keys, r.Keys.Eq) {
		t.Fatalf("k = %q, want %q", keys, r.Keys.Eq)
	}
	got, err := s.Read(ctx, "Task", "t1")
	if err != nil || string(got.JSON) != string(r.JSON) || !got.LastUpdated.Equal(r.LastUpdated) {
		t.Fatalf("read %+v, %v", got, err)
	}

	del := &resources.Resource{Type: "Task", ID: "t1", VersionID: 2, LastUpdated: r.LastUpdated.Add(time.Microsecond), Deleted: true}
	if err := s.Put(ctx, del); err != nil {
		t.Fatal(err)
	}
	var h bson.M
	if err := s.db.Collection("Task_history").FindOne(ctx, bson.D{{Key: "_id", Value: "t1/2"}}).Decode(&h); err != nil {
		t.Fatal(err)
	}
	if h["id"] != "t1" || h["v"] != int64(2) || h["del"] != true || h["json"] != nil || len(h["k"].(bson.A)) != 0 {
		t.Fatalf("tombstone history entry %v", h)
	}
	cur = bson.M{} // Decode merges into an existing map
	if err := s.db.Collection("Task").FindOne(ctx, bson.D{{Key: "_id", Value: "t1"}}).Decode(&cur); err != nil {
		t.Fatal(err)
	}
	if cur["del"] != true || cur["json"] != nil || len(cur["k"].(bson.A)) != 0 {
		t.Fatalf("tombstone current document %v", cur)
	}
}

// TestHostileStrings_AreLiteral stores and searches ids and whole keys that would be operators,
// patterns or field paths if the store ever built a filter from them.
func TestHostileStrings_AreLiteral(t *testing.T) {
	s, _ := openTest(t)
	ctx := testCtx(t)
	hostile := []string{`{"$ne": 1}`, `$where`, `.*`, `^`, `$gt`, `a.b`, `{}`, `this.v == 1`, `[object Object]`}
	for i, h := range hostile {
		r := taskRes(h, 1, "Organization/x")
		r.Keys.Eq = append(r.Keys.Eq, h) // a raw key, not a param␟value encoding
		slices.Sort(r.Keys.Eq)
		if err := s.Put(ctx, r); err != nil {
			t.Fatalf("%d: put %q: %v", i, h, err)
		}
	}
	if err := s.Put(ctx, taskRes("plain", 1, "Organization/x")); err != nil {
		t.Fatal(err)
	}
	for _, h := range hostile {
		got, err := s.Read(ctx, "Task", h)
		if err != nil || got.ID != h {
			t.Fatalf("read %q: %v %v", h, got, err)
		}
		for _, q := range []*resources.Query{
			{Type: "Task", Count: 50, Total: true, Clauses: []resources.Clause{{IDs: []string{h}}}},
			{Type: "Task", Count: 50, Total: true, Clauses: []resources.Clause{{AnyKey: []string{h}}}},
		} {
			page, err := s.Search(ctx, q)
			if err != nil {
				t.Fatalf("search %q: %v", h, err)
			}
			if len(page.Resources) != 1 || page.Resources[0].ID != h || page.Total != 1 {
				t.Fatalf("search %q matched %d resources (total %d)", h, len(page.Resources), page.Total)
			}
		}
		page, err := s.History(ctx, &resources.HistoryQuery{Type: "Task", ID: h, Count: 10})
		if err != nil || len(page.Resources) != 1 {
			t.Fatalf("history %q: %v %v", h, page, err)
		}
	}
	if _, err := s.Read(ctx, "Task_history", "x"); !resources.IsKind(err, resources.KindBadRequest) {
		t.Fatalf("type names outside [A-Za-z0-9] must be rejected, got %v", err)
	}
	if _, err := s.Read(ctx, "$cmd", "x"); !resources.IsKind(err, resources.KindBadRequest) {
		t.Fatalf("type $cmd: got %v", err)
	}
}

// TestPut_RollsForwardAbandonedVersion simulates a writer that died between its history insert
// and its current-document update.
func TestPut_RollsForwardAbandonedVersion(t *testing.T) {
	s, _ := openTest(t)
	ctx := testCtx(t)
	if err := s.Put(ctx, taskRes("t1", 1, "Organization/a")); err != nil {
		t.Fatal(err)
	}
	orphan := func(v int64, age time.Duration) *resources.Resource {
		r := taskRes("t1", v, "Organization/b")
		h := &doc{ID: histID("t1", v), RID: "t1", V: v, LU: r.LastUpdated.UnixMicro(), JSON: string(r.JSON), K: r.Keys.Eq, W: "dead", At: bson.NewDateTimeFromTime(time.Now().Add(-age))}
		if _, err := s.db.Collection("Task_history").InsertOne(ctx, h); err != nil {
			t.Fatal(err)
		}
		return r
	}

	// A fresh entry belongs to a writer that may still be at work: not touched.
	orphan(2, 0)
	if err := s.Put(ctx, taskRes("t1", 2, "Organization/c")); !resources.IsKind(err, resources.KindConflict) {
		t.Fatalf("put over an in-flight version: %v, want conflict", err)
	}
	if got, _ := s.Read(ctx, "Task", "t1"); got.VersionID != 1 {
		t.Fatalf("in-flight version was applied early: v%d", got.VersionID)
	}

	// An old one is rolled forward by the next writer, which gets a conflict and re-reads.
	if _, err := s.db.Collection("Task_history").DeleteOne(ctx, bson.D{{Key: "_id", Value: "t1/2"}}); err != nil {
		t.Fatal(err)
	}
	want := orphan(2, time.Minute)
	if err := s.Put(ctx, taskRes("t1", 2, "Organization/c")); !resources.IsKind(err, resources.KindConflict) {
		t.Fatalf("put over an abandoned version: %v, want conflict", err)
	}
	got, err := s.Read(ctx, "Task", "t1")
	if err != nil || got.VersionID != 2 || string(got.JSON) != string(want.JSON) {
		t.Fatalf("after repair: %+v %v", got, err)
	}
	page, err := s.Search(ctx, &resources.Query{Type: "Task", Count: 10, Clauses: []resources.Clause{
		{AnyKey: []string{resources.RefKey("owner", "Organization", "b")}}}})
	if err != nil || len(page.Resources) != 1 {
		t.Fatalf("the repaired version's keys are not searchable: %v %v", page, err)
	}
	if err := s.Put(ctx, taskRes("t1", 3, "Organization/a")); err != nil {
		t.Fatalf("resource still wedged after repair: %v", err)
	}
}

func TestCreateIfNoneExist_Claims(t *testing.T) {
	s, _ := openTest(t)
	ctx := testCtx(t)
	owner := func(o string) *resources.Query {
		return &resources.Query{Type: "Task", Count: 2, Clauses: []resources.Clause{
			{AnyKey: []string{resources.RefKey("owner", "Organization", o)}},
			{AnyKey: []string{resources.TokenCodeKey("status", "requested"), resources.TokenCodeKey("status", "draft")}},
		}}
	}
	plantClaim := func(cond *resources.Query, g int64, id string, age time.Duration, rel bool) {
		key := condKey("Task", cond)
		c := claim{ID: key + "|" + strconv.FormatInt(g, 10), Key: key, G: g, RID: id, At: bson.NewDateTimeFromTime(time.Now().Add(-age)), Rel: rel}
		if _, err := s.claims.InsertOne(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	created := func(r *resources.Resource, cond *resources.Query) {
		t.Helper()
		existing, err := s.CreateIfNoneExist(ctx, r, cond)
		if err != nil || existing != nil {
			t.Fatalf("%s: existing=%v err=%v, want created", r.ID, existing, err)
		}
		if _, err := s.Read(ctx, "Task", r.ID); err != nil {
			t.Fatal(err)
		}
	}

	// The key does not depend on the order of clauses or of alternatives.
	reordered := &resources.Query{Type: "Task", Clauses: []resources.Clause{
		{AnyKey: []string{resources.TokenCodeKey("status", "draft"), resources.TokenCodeKey("status", "requested")}},
		{AnyKey: []string{resources.RefKey("owner", "Organization", "a")}},
	}}
	if condKey("Task", owner("a")) != condKey("Task", reordered) || condKey("Task", owner("a")) == condKey("Task", owner("b")) {
		t.Fatal("condition keys are not canonical")
	}

	// A claim whose creator died before storing anything is taken over once its lease expired.
	plantClaim(owner("a"), 0, "ghost", time.Hour, false)
	created(taskRes("a1", 1, "Organization/a"), owner("a"))

	// A released claim (its creator's Put failed) is taken over at once.
	plantClaim(owner("b"), 0, "ghost", 0, true)
	created(taskRes("b1", 1, "Organization/b"), owner("b"))

	// A claim whose resource exists but no longer matches is stale: a new one is created.
	if err := s.Put(ctx, taskRes("other", 1, "Organization/zzz")); err != nil {
		t.Fatal(err)
	}
	plantClaim(owner("c"), 0, "other", 0, false)
	created(taskRes("c1", 1, "Organization/c"), owner("c"))
	existing, err := s.CreateIfNoneExist(ctx, taskRes("c2", 1, "Organization/c"), owner("c"))
	if err != nil || existing == nil || existing.ID != "c1" {
		t.Fatalf("second create on c: %v %v, want c1", existing, err)
	}

	// A fresh claim whose resource is not visible: callers wait, then get KindUnavailable.
	defer func(w time.Duration) { claimWait = w }(claimWait)
	claimWait = 300 * time.Millisecond
	plantClaim(owner("d"), 0, "in-flight", 0, false)
	start := time.Now()
	_, err = s.CreateIfNoneExist(ctx, taskRes("d1", 1, "Organization/d"), owner("d"))
	if !resources.IsKind(err, resources.KindUnavailable) || time.Since(start) > 5*time.Second {
		t.Fatalf("create behind an in-flight claim: %v after %v, want unavailable", err, time.Since(start))
	}
	// ... and succeed as soon as the claimed resource appears (it matches, so it is returned).
	go func() {
		time.Sleep(100 * time.Millisecond)
		_ = s.Put(context.Background(), taskRes("in-flight", 1, "Organization/d"))
	}()
	claimWait = 10 * time.Second
	existing, err = s.CreateIfNoneExist(ctx, taskRes("d2", 1, "Organization/d"), owner("d"))
	if err != nil || existing == nil || existing.ID != "in-flight" {
		t.Fatalf("create behind a completing claim: %v %v, want in-flight", existing, err)
	}
}

func TestOpen_Unreachable_ReturnsUnavailable(t *testing.T) {
	srv := ferrettest.Start(t)
	srv.Stop()
	start := time.Now()
	_, err := Open(testCtx(t), srv.URI("x"), Options{ServerSelectionTimeout: 300 * time.Millisecond})
	if !resources.IsKind(err, resources.KindUnavailable) {
		t.Fatalf("Open on a stopped server: %v, want unavailable", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Open took %v", d)
	}
	var e *resources.Error
	if !asError(err, &e) || e.RetryAfter <= 0 {
		t.Fatalf("unavailable without Retry-After: %#v", err)
	}
}

// TestOpen_RefusesStaleReadsAndUnacknowledgedWrites: URI options under which the server could
// not read back its own writes are refused before anything connects.
func TestOpen_RefusesStaleReadsAndUnacknowledgedWrites(t *testing.T) {
	for _, tc := range []struct {
		query string
		ok    bool
	}{
		{"", true},
		{"readPreference=primary", true},
		{"w=majority", true},
		{"w=1", true},
		{"readPreference=secondary", false},
		{"readPreference=secondaryPreferred", false},
		{"readPreference=nearest", false},
		{"readPreference=primaryPreferred", false},
		{"w=0", false},
	} {
		uri := "mongodb://127.0.0.1:1/x?serverSelectionTimeoutMS=200"
		if tc.query != "" {
			uri += "&" + tc.query
		}
		s, err := Open(testCtx(t), uri, Options{})
		if s != nil {
			s.Close()
		}
		refused := err != nil && strings.Contains(err.Error(), "remove the option")
		if refused == tc.ok {
			t.Errorf("%q: %v, want refused %v", tc.query, err, !tc.ok)
		}
	}
}

func asError(err error, target **resources.Error) bool {
	e, ok := err.(*resources.Error)
	if ok {
		*target = e
	}
	return ok
}

// TestConcurrentUpdateChains: writers racing read-modify-write loops on one resource must
// produce one contiguous chain of versions, every acknowledged write in it exactly once (FerretDB's
// updates are not atomic compare-and-set, so this checks the history-insert gate).
func TestConcurrentUpdateChains(t *testing.T) {
	s, _ := openTest(t)
	ctx := testCtx(t)
	if err := s.Put(ctx, taskRes("t1", 1, "Organization/a")); err != nil {
		t.Fatal(err)
	}
	const writers, each = 6, 8
	var mu sync.Mutex
	acked := map[int64]string{} // version -> owner written
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < each; {
				cur, err := s.Read(ctx, "Task", "t1")
				if err != nil {
					t.Error(err)
					return
				}
				owner := fmt.Sprintf("Organization/w%d-%d", w, n)
				r := taskRes("t1", cur.VersionID+1, owner)
				err = s.Put(ctx, r)
				if resources.IsKind(err, resources.KindConflict) {
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if prev, dup := acked[r.VersionID]; dup {
					t.Errorf("version %d acknowledged twice (%s and %s)", r.VersionID, prev, owner)
				}
				acked[r.VersionID] = string(r.JSON)
				mu.Unlock()
				n++
			}
		}()
	}
	wg.Wait()
	final := int64(1 + writers*each)
	got, err := s.Read(ctx, "Task", "t1")
	if err != nil || got.VersionID != final {
		t.Fatalf("final version %v (%v), want %d", got, err, final)
	}
	page, err := s.History(ctx, &resources.HistoryQuery{Type: "Task", ID: "t1", Count: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(page.Resources)) != final || page.Total != final {
		t.Fatalf("history has %d entries (total %d), want %d", len(page.Resources), page.Total, final)
	}
	for i, h := range page.Resources {
		if want := final - int64(i); h.VersionID != want {
			t.Fatalf("history entry %d is version %d, want %d", i, h.VersionID, want)
		}
		if h.VersionID > 1 && string(h.JSON) != acked[h.VersionID] {
			t.Fatalf("version %d in history is not the acknowledged write", h.VersionID)
		}
	}
	if string(got.JSON) != acked[final] {
		t.Fatal("current document is not the last acknowledged write")
	}
}

// TestCreateIfNoneExist_ConcurrentTakeover: after the matching resource is deleted, concurrent
// conditional creates take over the stale claim exactly once.
func TestCreateIfNoneExist_ConcurrentTakeover(t *testing.T) {
	s, _ := openTest(t)
	ctx := testCtx(t)
	cond := &resources.Query{Type: "Task", Count: 2, Clauses: []resources.Clause{
		{AnyKey: []string{resources.RefKey("owner", "Organization", "x")}}}}
	for round := 0; round < 3; round++ {
		var wg sync.WaitGroup
		var mu sync.Mutex
		created, ids := 0, map[string]bool{}
		for i := 0; i < 20; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := taskRes(fmt.Sprintf("r%d-%02d", round, i), 1, "Organization/x")
				existing, err := s.CreateIfNoneExist(ctx, r, cond)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err != nil:
					t.Errorf("round %d: %v", round, err)
				case existing == nil:
					created++
					ids[r.ID] = true
				default:
					ids[existing.ID] = true
				}
			}()
		}
		wg.Wait()
		if created != 1 || len(ids) != 1 {
			t.Fatalf("round %d: created %d, ids %v", round, created, ids)
		}
		for id := range ids {
			if err := s.Put(ctx, &resources.Resource{Type: "Task", ID: id, VersionID: 2, LastUpdated: time.Now().UTC(), Deleted: true}); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestCreateFresh_CurrentWithoutHistory covers what a CreateFresh leaves when its history
// insert failed and the database went away before it could delete its current document: the
// resource reads, vreads (from the current document) and takes its next version.
func TestCreateFresh_CurrentWithoutHistory(t *testing.T) {
	s, _ := openTest(t)
	ctx := testCtx(t)
	r := taskRes("t1", 1, "Organization/a")
	if err := s.CreateFresh(ctx, r); err != nil {
		t.Fatal(err)
	}
	if n, err := s.db.Collection("Task_history").CountDocuments(ctx, bson.D{{Key: "_id", Value: "t1/1"}}); err != nil || n != 1 {
		t.Fatalf("history entries of t1/1: %d, %v", n, err)
	}
	if _, err := s.db.Collection("Task_history").DeleteOne(ctx, bson.D{{Key: "_id", Value: "t1/1"}}); err != nil {
		t.Fatal(err)
	}
	got, err := s.VRead(ctx, "Task", "t1", 1)
	if err != nil || got.VersionID != 1 || string(got.JSON) != string(r.JSON) {
		t.Fatalf("vread 1 from the current document: %+v %v", got, err)
	}
	if _, err := s.VRead(ctx, "Task", "t1", 2); !resources.IsKind(err, resources.KindNotFound) {
		t.Fatalf("vread 2: %v, want not found", err)
	}
	if err := s.Put(ctx, taskRes("t1", 2, "Organization/b")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.VRead(ctx, "Task", "t1", 1); !resources.IsKind(err, resources.KindNotFound) {
		t.Fatalf("vread 1 after the update: %v, want not found (the version is lost, as documented)", err)
	}
}

// TestCreateFresh_HistoryEntryOfAnotherWriter: an id that is not fresh after all (another
// writer's history entry for version 1 is there, its current document not yet): the create is
// a conflict and takes back the current document it wrote, which leaves the other writer's
// version to be rolled forward.
func TestCreateFresh_HistoryEntryOfAnotherWriter(t *testing.T) {
	s, _ := openTest(t)
	ctx := testCtx(t)
	other := taskRes("t1", 1, "Organization/b")
	h := &doc{ID: histID("t1", 1), RID: "t1", V: 1, LU: other.LastUpdated.UnixMicro(), JSON: string(other.JSON), K: other.Keys.Eq, W: "other", At: bson.NewDateTimeFromTime(time.Now())}
	if _, err := s.db.Collection("Task_history").InsertOne(ctx, h); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateFresh(ctx, taskRes("t1", 1, "Organization/a")); !resources.IsKind(err, resources.KindConflict) {
		t.Fatalf("create over another writer's version 1: %v, want a conflict", err)
	}
	if _, err := s.Read(ctx, "Task", "t1"); !resources.IsKind(err, resources.KindNotFound) {
		t.Fatalf("read after the conflict: %v, want not found (the current document taken back)", err)
	}
	var got doc
	if err := s.db.Collection("Task_history").FindOne(ctx, bson.D{{Key: "_id", Value: "t1/1"}}).Decode(&got); err != nil || got.W != "other" {
		t.Fatalf("the other writer's entry: %+v, %v", got, err)
	}
	if n, err := s.db.Collection("Task_idx").CountDocuments(ctx, bson.D{{Key: "rid", Value: "t1"}}); err != nil || n != 0 {
		t.Fatalf("index documents left: %d, %v", n, err)
	}
}
