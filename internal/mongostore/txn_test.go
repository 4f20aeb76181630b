package mongostore

// Tests of Apply's transaction-free protocol that the conformance suite cannot express: the
// stored layout, and the crash windows (a writer that stops between any two steps) with the
// recovery by later readers, writers and the sweep.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/calaimfhir/calaimfhir/resources"
)

func patientRes(id string, v int64, cin string) *resources.Resource {
	clock.Lock()
	lu := time.Now().UTC().Truncate(time.Microsecond)
	if !lu.After(clock.last) {
		lu = clock.last.Add(time.Microsecond)
	}
	clock.last = lu
	clock.Unlock()
	doc := map[string]any{
		"resourceType": "Patient", "id": id,
		"meta":       map[string]any{"versionId": fmt.Sprint(v), "lastUpdated": lu.Format(time.RFC3339Nano)},
		"identifier": []any{map[string]any{"system": "urn:cin", "value": cin}},
		"name":       []any{map[string]any{"family": "Doe-" + id, "given": []any{"Jan"}}},
		"birthDate":  "1980-02-03",
	}
	b, err := json.Marshal(doc)
	if err != nil {
		panic(err)
	}
	return &resources.Resource{Type: "Patient", ID: id, VersionID: v, LastUpdated: lu, JSON: b, Keys: resources.ExtractKeys("Patient", doc)}
}

func cinCond(cin string) *resources.Query {
	return &resources.Query{Clauses: []resources.Clause{{AnyKey: []string{resources.TokenKey("identifier", "urn:cin", cin)}}}}
}

func ownerQuery(owner string) *resources.Query {
	return &resources.Query{Type: "Task", Count: 10, Total: true, Clauses: []resources.Clause{
		{AnyKey: []string{resources.RefKey("owner", "Organization", owner)}}}}
}

func plain(rs ...*resources.Resource) []*resources.Write {
	ws := make([]*resources.Write, len(rs))
	for i, r := range rs {
		ws[i] = &resources.Write{Resource: r}
	}
	return ws
}

// prepared runs an Apply up to (not including) its commit, as a writer that dies there.
func prepared(t *testing.T, s *Store, ws []*resources.Write) *tx {
	t.Helper()
	es := make([]txEntry, len(ws))
	for i, w := range ws {
		es[i] = txEntry{typ: w.Resource.Type, h: newEntry(w.Resource)}
	}
	tr, err := s.begin(testCtx(t), ws, es)
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.prepare(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	return tr
}

// committed runs an Apply through its commit point, as a writer that dies right after it.
func committed(t *testing.T, s *Store, ws []*resources.Write) *tx {
	t.Helper()
	tr := prepared(t, s, ws)
	ok, err := tr.commit(testCtx(t))
	if err != nil || !ok {
		t.Fatalf("commit: %v %v", ok, err)
	}
	return tr
}

// abandon makes transaction id look abandoned (no heartbeat for longer than txTimeout).
func abandon(t *testing.T, s *Store, id string) {
	t.Helper()
	_, err := s.txs.UpdateOne(testCtx(t), bson.D{{Key: "_id", Value: id}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "at", Value: bson.NewDateTimeFromTime(time.Now().Add(-2 * txTimeout))}}}})
	if err != nil {
		t.Fatal(err)
	}
}

func count(t *testing.T, c *mongo.Collection, filter bson.D) int64 {
	t.Helper()
	n, err := c.CountDocuments(testCtx(t), filter)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// noTrace checks that transaction id is finished and left nothing behind but its markers on
// the versions it wrote: no record, no txp marker.
func noTrace(t *testing.T, s *Store, id string) {
	t.Helper()
	if n := count(t, s.txs, bson.D{{Key: "_id", Value: id}}); n != 0 {
		t.Fatalf("the record of transaction %s remains", id)
	}
	for _, typ := range []string{"Task", "Patient"} {
		if n := count(t, s.db.Collection(typ), bson.D{{Key: "txp", Value: id}}); n != 0 {
			t.Fatalf("%s: %d current documents still marked txp", typ, n)
		}
	}
}

func wantVersion(t *testing.T, s *Store, typ, id string, v int64) {
	t.Helper()
	got, err := s.Read(testCtx(t), typ, id)
	if v == 0 {
		if !resources.IsKind(err, resources.KindNotFound) {
			t.Fatalf("%s/%s: %v %v, want not found", typ, id, got, err)
		}
		return
	}
	if err != nil || got.VersionID != v {
		t.Fatalf("%s/%s: %+v %v, want version %d", typ, id, got, err, v)
	}
}

func historyIDs(t *testing.T, s *Store, typ string) (ids []string, total int64) {
	t.Helper()
	page, err := s.History(testCtx(t), &resources.HistoryQuery{Type: typ, Count: 100})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range page.Resources {
		ids = append(ids, fmt.Sprintf("%s/%d", r.ID, r.VersionID))
	}
	slices.Sort(ids)
	return ids, page.Total
}

// TestApply_LayoutLikePut: the documents of a version written by Apply are those Put writes
// (sort values with sentinels, value keys, index documents, write token), plus the marker
// naming the transaction on the current document only.
func TestApply_LayoutLikePut(t *testing.T) {
	s, _ := openTest(t)
	ctx := testCtx(t)
	viaPut, viaApply := patientRes("put", 1, "1"), patientRes("apply", 1, "1")
	if err := s.Put(ctx, viaPut); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(ctx, plain(viaApply)); err != nil {
		t.Fatal(err)
	}
	get := func(coll, id string) bson.M {
		var m bson.M
		if err := s.db.Collection(coll).FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	same := func(a, b bson.M, skip ...string) {
		t.Helper()
		for _, k := range skip {
			delete(a, k)
			delete(b, k)
		}
		ja, _ := json.Marshal(a)
		jb, _ := json.Marshal(b)
		if string(ja) != string(jb) {
			t.Fatalf("layouts differ:\n put   %s\n apply %s", ja, jb)
		}
	}
	cp, ca := get("Patient", "put"), get("Patient", "apply")
	wp, wa, txa := cp["w"], ca["w"], ca["tx"]
	if ca["tx"] == nil || ca["w"] == nil || ca["txp"] != nil || cp["tx"] != nil {
		t.Fatalf("current document of an applied version: %v", ca)
	}
	// Keys differ only by the resource's own values (family names): compare their shape.
	if len(cp["k"].(bson.A)) != len(ca["k"].(bson.A)) || len(cp["o"].(bson.D)) != len(ca["o"].(bson.D)) || len(cp["o"].(bson.D)) < 5 {
		t.Fatalf("keys or sort values differ: %v / %v", cp["o"], ca["o"])
	}
	same(cp, ca, "_id", "w", "tx", "lu", "json", "k", "x", "o")
	hp, ha := get("Patient_history", "put/1"), get("Patient_history", "apply/1")
	if ha["tx"] != txa || hp["tx"] != nil {
		t.Fatalf("history entry of an applied version: %v", ha)
	}
	same(hp, ha, "_id", "id", "w", "at", "lu", "json", "k", "x", "o", "tx")
	np, na := count(t, s.idx("Patient"), bson.D{{Key: "w", Value: wp}}), count(t, s.idx("Patient"), bson.D{{Key: "w", Value: wa}})
	if np < 3 || np != na { // name (family, given, text...), birthdate
		t.Fatalf("index documents: put %d, apply %d", np, na)
	}
	// Searchable by value (through T_idx and w) and sortable like a Put version.
	page, err := s.Search(ctx, &resources.Query{Type: "Patient", Count: 10, Total: true,
		Clauses: []resources.Clause{{Strings: []resources.StringMatch{{Param: "family", Value: resources.NormalizeString("Doe-apply")}}}}})
	if err != nil || page.Total != 1 || page.Resources[0].ID != "apply" {
		t.Fatalf("value search: %v %v", page, err)
	}
}

// TestApply_SameResourceTwice: a transaction may write consecutive versions of one resource.
func TestApply_SameResourceTwice(t *testing.T) {
	s, _ := openTest(t)
	ctx := testCtx(t)
	if err := s.Apply(ctx, plain(taskRes("t1", 1, "Organization/a"), taskRes("t1", 2, "Organization/b"))); err != nil {
		t.Fatal(err)
	}
	wantVersion(t, s, "Task", "t1", 2)
	if page, err := s.Search(ctx, ownerQuery("a")); err != nil || page.Total != 0 {
		t.Fatalf("the first version is still found: %v %v", page, err)
	}
	if ids, total := historyIDs(t, s, "Task"); len(ids) != 2 || total != 2 {
		t.Fatalf("history %v (total %d)", ids, total)
	}
	err := s.Apply(ctx, plain(taskRes("t1", 3, "Organization/a"), taskRes("t1", 5, "Organization/b")))
	var ae *resources.ApplyError
	if !errors.As(err, &ae) || ae.Index != 1 || !resources.IsKind(err, resources.KindConflict) {
		t.Fatalf("gap in the versions of one transaction: %v", err)
	}
	wantVersion(t, s, "Task", "t1", 2)
}

// TestApply_ConditionSeesEarlierWrites: a conditional create is checked against the
// transaction's own earlier writes too, as the SQLite store's check inside its transaction.
func TestApply_ConditionSeesEarlierWrites(t *testing.T) {
	s, _ := openTest(t)
	ctx := testCtx(t)
	ws := plain(patientRes("p1", 1, "X"), patientRes("p2", 1, "X"))
	ws[1].IfNoneMatch = cinCond("X")
	var ae *resources.ApplyError
	if err := s.Apply(ctx, ws); !errors.As(err, &ae) || ae.Index != 1 || !resources.IsKind(err, resources.KindConflict) {
		t.Fatalf("got %v, want a conflict on write 1", err)
	}
	wantVersion(t, s, "Patient", "p1", 0)
	// An existing match that an earlier write changes so that it no longer matches is no
	// conflict; one that still matches is.
	if err := s.Put(ctx, patientRes("old", 1, "Y")); err != nil {
		t.Fatal(err)
	}
	ws = plain(patientRes("old", 2, "Z"), patientRes("new", 1, "Y"))
	ws[1].IfNoneMatch = cinCond("Y")
	if err := s.Apply(ctx, ws); err != nil {
		t.Fatal(err)
	}
	ws = plain(patientRes("old", 3, "Y"), patientRes("newer", 1, "Y"))
	ws[1].IfNoneMatch = cinCond("Z")
	if err := s.Apply(ctx, ws); err != nil {
		t.Fatal(err) // "old" leaves Z: nothing matches Z any more
	}
}

// TestApply_PendingIsInvisible: between prepare and commit nothing of the transaction is
// visible; the updated resource reads as its previous version everywhere.
func TestApply_PendingIsInvisible(t *testing.T) {
	s, _ := openTest(t)
	ctx := testCtx(t)
	if err := s.Put(ctx, taskRes("t1", 1, "Organization/a")); err != nil {
		t.Fatal(err)
	}
	tr := prepared(t, s, plain(taskRes("t1", 2, "Organization/b"), taskRes("t2", 1, "Organization/b"), patientRes("p1", 1, "X")))
	wantVersion(t, s, "Task", "t1", 1)
	wantVersion(t, s, "Task", "t2", 0)
	if page, err := s.Search(ctx, ownerQuery("a")); err != nil || page.Total != 1 || len(page.Resources) != 1 {
		t.Fatalf("the previous version is not found: %v %v", page, err)
	}
	if page, err := s.Search(ctx, ownerQuery("b")); err != nil || page.Total != 0 || len(page.Resources) != 0 {
		t.Fatalf("a pending version is found: %v %v", page, err)
	}
	if ids, total := historyIDs(t, s, "Task"); !slices.Equal(ids, []string{"t1/1"}) || total != 1 {
		t.Fatalf("history shows %v (total %d)", ids, total)
	}
	if _, err := s.VRead(ctx, "Task", "t1", 2); !resources.IsKind(err, resources.KindNotFound) {
		t.Fatalf("vread of a pending version: %v", err)
	}
	// The pending transaction owns the versions: a Put of one is a conflict.
	if err := s.Put(ctx, taskRes("t1", 2, "Organization/c")); !resources.IsKind(err, resources.KindConflict) {
		t.Fatalf("put over a pending version: %v", err)
	}
	// The writer comes back and commits: everything appears.
	if ok, err := tr.commit(ctx); err != nil || !ok {
		t.Fatal(ok, err)
	}
	if err := s.finish(ctx, tr.id, tr.es, tr.beat); err != nil {
		t.Fatal(err)
	}
	wantVersion(t, s, "Task", "t1", 2)
	wantVersion(t, s, "Task", "t2", 1)
	wantVersion(t, s, "Patient", "p1", 1)
	if ids, total := historyIDs(t, s, "Task"); len(ids) != 3 || total != 3 {
		t.Fatalf("history %v (total %d)", ids, total)
	}
	noTrace(t, s, tr.id)
}

// TestApply_AbandonedPending_RolledBack: a writer that died before its commit point. While it
// might be alive, readers answer with the previous versions; once it is stale, the first
// reader that meets a marker rolls it back, and the versions are free again.
func TestApply_AbandonedPending_RolledBack(t *testing.T) {
	s, _ := openTest(t)
	ctx := testCtx(t)
	if err := s.Put(ctx, taskRes("t1", 1, "Organization/a")); err != nil {
		t.Fatal(err)
	}
	ws := plain(taskRes("t2", 1, "Organization/b"), taskRes("t1", 2, "Organization/b"))
	ws[0].IfNoneMatch = &resources.Query{Clauses: []resources.Clause{{AnyKey: []string{resources.RefKey("owner", "Organization", "b")}}}}
	tr := prepared(t, s, ws)
	abandon(t, s, tr.id)
	wantVersion(t, s, "Task", "t1", 1) // meets txp, settles the transaction
	noTrace(t, s, tr.id)
	if n := count(t, s.db.Collection("Task_history"), bson.D{}); n != 1 {
		t.Fatalf("%d history entries after the rollback, want 1", n)
	}
	if n := count(t, s.idx("Task"), bson.D{{Key: "rid", Value: "t2"}}); n != 0 {
		t.Fatalf("%d index documents of the rolled back version remain", n)
	}
	// The version and the claim are free: the same writes go through.
	if err := s.Apply(ctx, ws); err != nil {
		t.Fatal(err)
	}
	wantVersion(t, s, "Task", "t1", 2)
	wantVersion(t, s, "Task", "t2", 1)
}

// TestApply_AbandonedPending_ClaimTakenOver: a conditional create waiting on the claim of a
// dead transaction settles it and takes over.
func TestApply_AbandonedPending_ClaimTakenOver(t *testing.T) {
	s, _ := openTest(t)
	ctx := testCtx(t)
	ws := plain(patientRes("dead", 1, "X"))
	ws[0].IfNoneMatch = cinCond("X")
	tr := prepared(t, s, ws)

	defer func(w time.Duration) { claimWait = w }(claimWait)
	claimWait = 300 * time.Millisecond
	q := &resources.Query{Type: "Patient", Clauses: cinCond("X").Clauses}
	if _, err := s.CreateIfNoneExist(ctx, patientRes("p1", 1, "X"), q); !resources.IsKind(err, resources.KindUnavailable) {
		t.Fatalf("create behind a live transaction's claim: %v, want unavailable", err)
	}
	ws2 := plain(patientRes("p2", 1, "X"))
	ws2[0].IfNoneMatch = cinCond("X")
	if err := s.Apply(ctx, ws2); !resources.IsKind(err, resources.KindConflict) {
		t.Fatalf("apply behind a live transaction's claim: %v, want conflict", err)
	}
	abandon(t, s, tr.id)
	if existing, err := s.CreateIfNoneExist(ctx, patientRes("p1", 1, "X"), q); err != nil || existing != nil {
		t.Fatalf("create after the transaction died: %v %v", existing, err)
	}
	noTrace(t, s, tr.id)
	if err := s.Apply(ctx, ws2); !resources.IsKind(err, resources.KindConflict) {
		t.Fatalf("apply with a match: %v, want conflict", err)
	}
}

// TestApply_AbandonedCommitted_RolledForward: a writer that died after its commit point and
// before applying its versions. A reader meeting a marker finishes the transaction; a
// transaction of creates only (no marker to meet) is finished by the sweep of a later Apply.
func TestApply_AbandonedCommitted_RolledForward(t *testing.T) {
	s, _ := openTest(t)
	ctx := testCtx(t)
	if err := s.Put(ctx, taskRes("t1", 1, "Organization/a")); err != nil {
		t.Fatal(err)
	}
	tr := committed(t, s, plain(taskRes("t1", 2, "Organization/b"), taskRes("t2", 1, "Organization/b")))
	abandon(t, s, tr.id)
	wantVersion(t, s, "Task", "t2", 0) // not applied yet, and nothing of it can be met here
	if page, err := s.Search(ctx, ownerQuery("a")); err != nil || len(page.Resources) != 0 || page.Total != 0 {
		// The search met t1 (previous version, txp), finished the transaction, searched again.
		t.Fatalf("search by the old owner: %v %v", page, err)
	}
	wantVersion(t, s, "Task", "t1", 2)
	wantVersion(t, s, "Task", "t2", 1)
	if page, err := s.Search(ctx, ownerQuery("b")); err != nil || page.Total != 2 {
		t.Fatalf("search by the new owner: %v %v", page, err)
	}
	noTrace(t, s, tr.id)

	creates := committed(t, s, plain(taskRes("c1", 1, "Organization/c"), patientRes("c2", 1, "Y")))
	abandon(t, s, creates.id)
	wantVersion(t, s, "Task", "c1", 0)
	s.lastSweep.Store(0)
	if err := s.Apply(ctx, plain(taskRes("other", 1, "Organization/d"))); err != nil {
		t.Fatal(err)
	}
	wantVersion(t, s, "Task", "c1", 1)
	wantVersion(t, s, "Patient", "c2", 1)
	noTrace(t, s, creates.id)
}

// TestApply_ReaderWaitsForCommittedTransaction: a live writer between its commit point and its
// last move. A reader that meets one of its versions waits until all of them are applied.
func TestApply_ReaderWaitsForCommittedTransaction(t *testing.T) {
	s, _ := openTest(t)
	ctx := testCtx(t)
	tr := committed(t, s, plain(taskRes("a", 1, "Organization/x"), taskRes("b", 1, "Organization/x")))
	if _, err := s.db.Collection("Task").InsertOne(ctx, tr.es[0].h.current()); err != nil {
		t.Fatal(err) // a is applied, b is not
	}
	const delay = 300 * time.Millisecond
	finished := make(chan error, 1)
	go func() {
		time.Sleep(delay)
		finished <- s.finish(context.Background(), tr.id, tr.es, nil)
	}()
	start := time.Now()
	page, err := s.Search(ctx, ownerQuery("x"))
	if err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(start); waited < delay*2/3 || len(page.Resources) != 2 || page.Total != 2 {
		t.Fatalf("search returned %d resources (total %d) after %v", len(page.Resources), page.Total, waited)
	}
	wantVersion(t, s, "Task", "b", 1)
	if err := <-finished; err != nil {
		t.Fatal(err)
	}
	noTrace(t, s, tr.id)
}

// TestApply_RecoveryRacesSlowWriter: a recovery rolls back a transaction whose writer only
// looked dead; the writer's commit then fails and leaves nothing.
func TestApply_RecoveryRacesSlowWriter(t *testing.T) {
	s, _ := openTest(t)
	ctx := testCtx(t)
	if err := s.Put(ctx, taskRes("t1", 1, "Organization/a")); err != nil {
		t.Fatal(err)
	}
	tr := prepared(t, s, plain(taskRes("t1", 2, "Organization/b"), taskRes("t2", 1, "Organization/b")))
	abandon(t, s, tr.id)
	if settled, err := s.recoverTx(ctx, tr.id); err != nil || !settled {
		t.Fatalf("recover: %v %v", settled, err)
	}
	if ok, err := tr.commit(ctx); err != nil || ok {
		t.Fatalf("commit after a recovery rolled the transaction back: %v %v", ok, err)
	}
	tr.rollback(ctx)
	noTrace(t, s, tr.id)
	wantVersion(t, s, "Task", "t1", 1)
	wantVersion(t, s, "Task", "t2", 0)

	// A slow writer that inserts an entry after the recovery's rollback and then dies leaves
	// an orphan entry: invisible, and removed by the next writer of that version, or by a
	// reader that meets it.
	orphan := func(v int64) {
		h := newEntry(taskRes("t1", v, "Organization/z"))
		h.Tx = tr.id
		if _, err := s.db.Collection("Task_history").InsertOne(ctx, h); err != nil {
			t.Fatal(err)
		}
	}
	orphan(2)
	if err := s.Put(ctx, taskRes("t1", 2, "Organization/c")); !resources.IsKind(err, resources.KindConflict) {
		t.Fatalf("first put over the orphan: %v, want conflict", err)
	}
	if err := s.Put(ctx, taskRes("t1", 2, "Organization/c")); err != nil {
		t.Fatalf("second put: %v", err)
	}
	orphan(3)
	if ids, total := historyIDs(t, s, "Task"); !slices.Equal(ids, []string{"t1/1", "t1/2"}) || total != 2 {
		t.Fatalf("history shows %v (total %d)", ids, total)
	}
	orphan(3)
	if _, err := s.VRead(ctx, "Task", "t1", 3); !resources.IsKind(err, resources.KindNotFound) {
		t.Fatalf("vread of an orphan entry: %v", err)
	}
	if n := count(t, s.db.Collection("Task_history"), bson.D{{Key: "tx", Value: tr.id}}); n != 0 {
		t.Fatalf("%d orphans remain", n)
	}
	// A txp marker left behind on a current document is harmless too.
	if _, err := s.db.Collection("Task").UpdateOne(ctx, bson.D{{Key: "_id", Value: "t1"}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "txp", Value: tr.id}}}}); err != nil {
		t.Fatal(err)
	}
	wantVersion(t, s, "Task", "t1", 2)
	if page, err := s.Search(ctx, ownerQuery("c")); err != nil || page.Total != 1 {
		t.Fatalf("search over a stale marker: %v %v", page, err)
	}
	if err := s.Put(ctx, taskRes("t1", 3, "Organization/c")); err != nil {
		t.Fatal(err)
	}
}

// TestApply_ReadersDuringApplies: readers racing transactions that update two resources
// together (owner a -> b, then back) never see one of them moved and the other not.
func TestApply_ReadersDuringApplies(t *testing.T) {
	s, _ := openTest(t)
	ctx := testCtx(t)
	if err := s.Apply(ctx, plain(taskRes("x", 1, "Organization/a"), taskRes("y", 1, "Organization/a"))); err != nil {
		t.Fatal(err)
	}
	const rounds = 20
	done := make(chan struct{})
	var wg sync.WaitGroup
	for r := 0; r < 2; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				for _, owner := range []string{"a", "b"} {
					page, err := s.Search(ctx, ownerQuery(owner))
					if err != nil {
						t.Error(err)
						return
					}
					if len(page.Resources) == 1 {
						t.Errorf("a search by owner %s found only %s", owner, page.Resources[0].ID)
					}
				}
				x, err1 := s.Read(ctx, "Task", "x")
				y, err2 := s.Read(ctx, "Task", "y")
				if err1 != nil || err2 != nil {
					t.Error(err1, err2)
					return
				}
				if y.VersionID < x.VersionID { // x is read first: y cannot be older
					t.Errorf("read x v%d, then y v%d", x.VersionID, y.VersionID)
				}
			}
		}()
	}
	for v := int64(2); v < 2+rounds; v++ {
		owner := "Organization/b"
		if v%2 == 1 {
			owner = "Organization/a"
		}
		if err := s.Apply(ctx, plain(taskRes("x", v, owner), taskRes("y", v, owner))); err != nil {
			t.Fatal(err)
		}
	}
	close(done)
	wg.Wait()
	if n := count(t, s.txs, bson.D{}); n != 0 {
		t.Fatalf("%d transaction records remain", n)
	}
}
