package mongostore

// Apply (resources.Transactor). See "Transactions" in the package comment for the protocol,
// its crash windows and what readers observe.

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/calaimfhir/calaimfhir/resources"
)

const (
	txCollection       = "transactions"
	decisionCollection = "transaction_decisions"
	outcomeCommit      = "c"
	outcomeAbort       = "a"
)

// txTimeout is how long a transaction record may go without a heartbeat before a reader or
// writer that meets the transaction takes its writer for dead and settles it (rolls it back, or
// finishes it if it had committed). Writers refresh the record every txTimeout/4.
var txTimeout = 30 * time.Second

var _ resources.Transactor = (*Store)(nil)

// txRecord is a transaction's record in the transactions collection (_id is its id, W lists
// its writes; deleted when the transaction is finished) or its decision in the decisions
// collection (_id is its id, O the outcome; kept).
type txRecord struct {
	ID string        `bson:"_id"`
	At bson.DateTime `bson:"at"` // record: last heartbeat; decision: when it was taken
	W  []txWrite     `bson:"w,omitempty"`
	O  string        `bson:"o,omitempty"`
}

// txWrite names one write of a transaction: version v of resource t/id, written as w.
type txWrite struct {
	T  string `bson:"t"`
	ID string `bson:"id"`
	V  int64  `bson:"v"`
	W  string `bson:"w"`
}

// txEntry is a history entry of a transaction with its resource type.
type txEntry struct {
	typ string
	h   *doc
}

// Apply implements resources.Transactor. With multi-document transactions (replica sets,
// mongos) every write goes into one transaction; otherwise the transaction-free protocol of
// the package comment makes the writes visible together.
func (s *Store) Apply(ctx context.Context, writes []*resources.Write) error {
	if len(writes) == 0 {
		return nil
	}
	es := make([]txEntry, len(writes))
	for i, w := range writes {
		r := w.Resource
		if r == nil || r.VersionID < 1 || r.ID == "" {
			return &resources.ApplyError{Index: i, Err: resources.Errorf(resources.KindInternal, "mongostore: Apply of an invalid write")}
		}
		if _, _, err := s.colls(ctx, r.Type, true); err != nil {
			return &resources.ApplyError{Index: i, Err: err}
		}
		es[i] = txEntry{typ: r.Type, h: newEntry(r)}
	}
	if s.txn {
		return s.applyTxn(ctx, writes, es)
	}
	return s.applyTx(ctx, writes, es)
}

// applyErr names write i as the cause of err.
func applyErr(i int, err error) error {
	return &resources.ApplyError{Index: i, Err: err}
}

// condCheck is the check of conditional create i: a current resource of its type matching the
// condition is a conflict, and so is an earlier write of the same transaction whose version
// matches it. A resource that an earlier write replaces is judged by that write's version, as
// the SQLite store's check inside its transaction sees it.
func (s *Store) condCheck(i int, ws []*resources.Write, es []txEntry) func(context.Context) (*resources.Resource, bool, error) {
	r, cond := ws[i].Resource, ws[i].IfNoneMatch
	latest := map[string]*doc{} // id -> the transaction's last version of it before write i
	for j := 0; j < i; j++ {
		if es[j].typ == r.Type {
			latest[es[j].h.RID] = es[j].h
		}
	}
	found := func() error {
		return resources.Errorf(resources.KindConflict, "a %s matching the condition of the conditional create exists", r.Type)
	}
	return func(ctx context.Context) (*resources.Resource, bool, error) {
		for _, h := range latest {
			if !h.Del && matchDoc(cond.Clauses, h) {
				return nil, true, found()
			}
		}
		page, err := s.Search(ctx, &resources.Query{Type: r.Type, Clauses: cond.Clauses, Count: len(latest) + 1})
		if err != nil {
			return nil, true, err
		}
		for _, m := range page.Resources {
			if _, replaced := latest[m.ID]; !replaced {
				return nil, true, found()
			}
		}
		return nil, false, nil
	}
}

// claimConflict maps the outcome of claimCond for write i of a transaction.
func claimConflict(i int, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errClaimBusy), errors.Is(err, errOwnClaim):
		return applyErr(i, resources.Errorf(resources.KindConflict, "conditional create: %v", err))
	}
	return applyErr(i, fail(err, "conditional create"))
}

// matchDoc reports whether the version in h satisfies every clause, with the semantics of the
// filter compile builds (Search): equality keys on k, value clauses on x, ids, lastUpdated,
// and alternatives of those (a caller's scope).
func matchDoc(clauses []resources.Clause, h *doc) bool {
	has := make(map[string]bool, len(h.K))
	for _, k := range h.K {
		has[k] = true
	}
	anyOf := func(keys []string) bool {
		for _, k := range keys {
			if has[k] {
				return true
			}
		}
		return false
	}
	for _, c := range clauses {
		var ok bool
		switch {
		case len(c.AnyKey) > 0:
			ok = anyOf(c.AnyKey)
		case len(c.NoKey) > 0:
			ok = !anyOf(c.NoKey)
		case len(c.Strings) > 0 || len(c.Dates) > 0 || len(c.Numbers) > 0:
			ok = compileValue(c).match(h.X)
		case len(c.IDs) > 0:
			ok = slices.Contains(c.IDs, h.RID)
		case len(c.NotIDs) > 0:
			ok = !slices.Contains(c.NotIDs, h.RID)
		case len(c.LastUpdated) > 0:
			for _, r := range c.LastUpdated {
				ok = ok || inRange(r, h.LU)
			}
		case len(c.Or) > 0:
			for _, alt := range c.Or {
				ok = ok || matchDoc(alt, h)
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// inRange is rangeAlternatives for one range and one lu value.
func inRange(r resources.DateRange, lu int64) bool {
	hasFrom, hasTo := !r.From.IsZero(), !r.To.IsZero()
	if !r.Not {
		return (!hasFrom || lu >= ceilMicro(r.From)) && (!hasTo || lu < ceilMicro(r.To))
	}
	return hasFrom && lu < ceilMicro(r.From) || hasTo && lu >= ceilMicro(r.To)
}

// applyTxn writes everything in one multi-document transaction. Conditional creates take their
// claims first, outside the transaction (as CreateIfNoneExist does): a condition search inside
// a snapshot-isolated transaction does not conflict with another transaction inserting a
// matching resource, so without the claim two concurrent creates could both commit.
func (s *Store) applyTxn(ctx context.Context, ws []*resources.Write, es []txEntry) error {
	var held []*claim
	release := func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		for _, cl := range held {
			_, _ = s.claims.UpdateOne(rctx, bson.D{{Key: "_id", Value: cl.ID}, {Key: "id", Value: cl.RID}},
				bson.D{{Key: "$set", Value: bson.D{{Key: "rel", Value: true}}}})
		}
	}
	checks := make([]func(context.Context) (*resources.Resource, bool, error), len(ws))
	for i, w := range ws {
		if w.IfNoneMatch == nil {
			continue
		}
		checks[i] = s.condCheck(i, ws, es)
		if _, done, err := checks[i](ctx); done {
			release()
			return applyErr(i, fail(err, "conditional create"))
		}
		cl, _, err := s.claimCond(ctx, w.Resource.Type, w.Resource.ID, "", w.IfNoneMatch, checks[i])
		if cl == nil {
			release()
			if err == nil {
				err = errClaimBusy // not reached: checks report a match as an error
			}
			return claimConflict(i, err)
		}
		held = append(held, cl)
	}
	sess, err := s.client.StartSession()
	if err != nil {
		release()
		return fail(err, "start session")
	}
	defer sess.EndSession(context.WithoutCancel(ctx))
	_, err = sess.WithTransaction(ctx, func(ctx context.Context) (any, error) {
		for i, e := range es {
			r := ws[i].Resource
			if checks[i] != nil {
				if _, done, err := checks[i](ctx); done {
					return nil, applyErr(i, fail(err, "conditional create"))
				}
			}
			cur, hist, idx := s.db.Collection(e.typ), s.db.Collection(e.typ+historySuffix), s.idx(e.typ)
			if _, err := hist.InsertOne(ctx, e.h); err != nil {
				if mongo.IsDuplicateKeyError(err) {
					return nil, applyErr(i, conflict(r))
				}
				return nil, err
			}
			if err := writeIdx(ctx, idx, e.h, true); err != nil {
				return nil, err
			}
			ok, err := apply(ctx, cur, e.h)
			if err != nil {
				return nil, err
			}
			if !ok {
				return nil, applyErr(i, conflict(r))
			}
			if e.h.V == 1 {
				continue // no older versions to clean up (see put)
			}
			if err := cleanIdx(ctx, idx, e.h); err != nil {
				return nil, err
			}
		}
		return nil, nil
	})
	if err != nil {
		release()
		var ae *resources.ApplyError
		if errors.As(err, &ae) {
			return ae
		}
		return fail(err, "apply")
	}
	return nil
}

// tx is one Apply on the transaction-free path.
type tx struct {
	s      *Store
	id     string
	ws     []*resources.Write
	es     []txEntry
	rec    *txRecord
	marked []bool // write i set txp on its resource's current document (or may have)
	beat   *beater
}

// beater refreshes the at field of a transaction record while its writer (or a recovery) works
// on it, so that others do not take it for abandoned.
type beater struct {
	s    *Store
	id   string
	last time.Time
}

func (b *beater) beat(ctx context.Context) {
	if b == nil || time.Since(b.last) < txTimeout/4 {
		return
	}
	b.last = time.Now()
	_, _ = b.s.txs.UpdateOne(ctx, bson.D{{Key: "_id", Value: b.id}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "at", Value: bson.NewDateTimeFromTime(b.last)}}}})
}

// applyTx is Apply without multi-document transactions.
func (s *Store) applyTx(ctx context.Context, ws []*resources.Write, es []txEntry) error {
	s.maybeSweep(ctx)
	t, err := s.begin(ctx, ws, es)
	if err != nil {
		return err
	}
	if err := t.prepare(ctx); err != nil {
		t.rollback(ctx)
		return err
	}
	if err := ctx.Err(); err != nil {
		t.rollback(ctx)
		return fail(err, "apply")
	}
	// From the commit on, the work is done even if the caller goes away: readers that meet
	// the transaction would otherwise wait for it until it looks abandoned.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), txTimeout)
	defer cancel()
	t.beat.beat(ctx)
	committed, err := t.commit(ctx)
	if err != nil {
		// The outcome is unknown (the decision may have been written): the transaction is
		// left to recovery, which finishes it if it committed and rolls it back otherwise.
		return err
	}
	if !committed {
		t.rollback(ctx)
		e := resources.Errorf(resources.KindUnavailable, "the transaction was rolled back: it made no progress for %v", txTimeout)
		e.RetryAfter = 1
		return e
	}
	if err := s.finish(ctx, t.id, es, t.beat); err != nil {
		// Committed: recovery (or a reader that meets the transaction) completes it.
		return fail(err, "apply")
	}
	return nil
}

// begin inserts the transaction record.
func (s *Store) begin(ctx context.Context, ws []*resources.Write, es []txEntry) (*tx, error) {
	t := &tx{s: s, id: newToken(), ws: ws, es: es, marked: make([]bool, len(ws))}
	now := time.Now()
	t.rec = &txRecord{ID: t.id, At: bson.NewDateTimeFromTime(now), W: make([]txWrite, len(es))}
	for i, e := range es {
		e.h.Tx = t.id
		t.rec.W[i] = txWrite{T: e.typ, ID: e.h.RID, V: e.h.V, W: e.h.W}
	}
	t.beat = &beater{s: s, id: t.id, last: now}
	if _, err := s.txs.InsertOne(ctx, t.rec); err != nil {
		return nil, fail(err, "apply")
	}
	return t, nil
}

// prepare writes everything a reader does not see yet: the claims and checks of conditional
// creates, the history entries (the version gates), the txp markers on the current documents
// of updated resources (which also check that the update's previous version is current), and
// the index documents.
func (t *tx) prepare(ctx context.Context) error {
	for i, w := range t.ws {
		if w.IfNoneMatch == nil {
			continue
		}
		check := t.s.condCheck(i, t.ws, t.es)
		if _, done, err := check(ctx); done {
			return applyErr(i, fail(err, "conditional create"))
		}
		cl, _, err := t.s.claimCond(ctx, w.Resource.Type, w.Resource.ID, t.id, w.IfNoneMatch, check)
		if cl == nil {
			if err == nil {
				err = errClaimBusy
			}
			return claimConflict(i, err)
		}
		t.beat.beat(ctx)
	}
	if err := t.insertHistory(ctx); err != nil {
		return err
	}
	t.beat.beat(ctx)
	if err := t.markCurrent(ctx); err != nil {
		return err
	}
	t.beat.beat(ctx)
	for _, g := range groupEntries(t.es) {
		var docs []any
		for _, e := range g.es {
			docs = append(docs, idxDocs(e.h)...)
		}
		if err := insertIgnoringDuplicates(ctx, t.s.idx(g.typ), docs); err != nil {
			return fail(err, "apply index")
		}
	}
	return nil
}

// typeGroup is the entries of one resource type, in write order.
type typeGroup struct {
	typ string
	at  []int // indexes into the writes
	es  []txEntry
}

func groupEntries(es []txEntry) []*typeGroup {
	var out []*typeGroup
	by := map[string]*typeGroup{}
	for i, e := range es {
		g := by[e.typ]
		if g == nil {
			g = &typeGroup{typ: e.typ}
			by[e.typ] = g
			out = append(out, g)
		}
		g.at = append(g.at, i)
		g.es = append(g.es, e)
	}
	return out
}

// insertHistory inserts the history entries, one InsertMany per type. An entry whose _id is
// taken is a conflict (after the same repairs as Put: an abandoned Put's entry is rolled
// forward, an abandoned transaction settled).
func (t *tx) insertHistory(ctx context.Context) error {
	first := -1
	for _, g := range groupEntries(t.es) {
		docs := make([]any, len(g.es))
		for k, e := range g.es {
			docs[k] = e.h
		}
		cur, hist, idx := t.s.db.Collection(g.typ), t.s.db.Collection(g.typ+historySuffix), t.s.idx(g.typ)
		_, err := hist.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
		if err == nil {
			continue
		}
		var bwe mongo.BulkWriteException
		if !errors.As(err, &bwe) || bwe.WriteConcernError != nil || len(bwe.WriteErrors) == 0 {
			return fail(err, "apply history")
		}
		for _, we := range bwe.WriteErrors {
			if we.Code != 11000 || we.Index < 0 || we.Index >= len(g.at) {
				return fail(err, "apply history")
			}
			i := g.at[we.Index]
			mine, err := t.s.rollForward(ctx, cur, hist, idx, t.es[i].h)
			if err != nil {
				return applyErr(i, err)
			}
			if !mine && (first < 0 || i < first) {
				first = i
			}
		}
	}
	if first >= 0 {
		return applyErr(first, conflict(t.ws[first].Resource))
	}
	return nil
}

// markCurrent checks each update's previous version and marks that current document with txp
// (see "Transactions" in the package comment).
// A resource written several times by the transaction is checked at its first write; the later
// ones must follow in version order.
func (t *tx) markCurrent(ctx context.Context) error {
	last := map[string]int64{}
	for i, e := range t.es {
		key := e.typ + "/" + e.h.RID
		prev, seen := last[key]
		last[key] = e.h.V
		if seen {
			if prev != e.h.V-1 {
				return applyErr(i, conflict(t.ws[i].Resource))
			}
			continue
		}
		if e.h.V == 1 {
			continue // the history entry "id/1" is the proof that the resource never existed
		}
		// The transaction owns version v (its history entry), so once the document is seen at
		// v-1 only this transaction moves it away: the check and the mark can be two requests,
		// both by _id alone (the only filter FerretDB's SQLite backend answers without a scan).
		cur := t.s.db.Collection(e.typ)
		var c doc
		err := cur.FindOne(ctx, bson.D{{Key: "_id", Value: e.h.RID}}, options.FindOne().SetProjection(bson.D{{Key: "v", Value: 1}})).Decode(&c)
		if errors.Is(err, mongo.ErrNoDocuments) || err == nil && c.V != e.h.V-1 {
			return applyErr(i, conflict(t.ws[i].Resource))
		}
		if err != nil {
			return applyErr(i, fail(err, "apply"))
		}
		t.marked[i] = true
		if _, err := cur.UpdateOne(ctx, bson.D{{Key: "_id", Value: e.h.RID}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "txp", Value: t.id}}}}); err != nil {
			return applyErr(i, fail(err, "apply"))
		}
	}
	return nil
}

// commit takes the decision: the insert of the decision document is the commit point. It
// reports whether the transaction committed; false means that a recovery decided to abort it
// first (it took the writer for dead). An error means that the outcome is unknown.
func (t *tx) commit(ctx context.Context) (bool, error) {
	d := &txRecord{ID: t.id, At: bson.NewDateTimeFromTime(time.Now()), O: outcomeCommit}
	_, err := t.s.decisions.InsertOne(ctx, d)
	if err == nil {
		return true, nil
	}
	if !mongo.IsDuplicateKeyError(err) {
		return false, fail(err, "apply commit")
	}
	var got txRecord
	if err := t.s.decisions.FindOne(ctx, bson.D{{Key: "_id", Value: t.id}}).Decode(&got); err != nil {
		return false, fail(err, "apply commit")
	}
	// A commit decision is ours (our insert, retried by the driver): only the writer commits.
	return got.O == outcomeCommit, nil
}

// rollback undoes a failed prepare; errors leave the rest to recovery.
func (t *tx) rollback(ctx context.Context) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	_ = t.s.rollback(rctx, t.id, t.rec.W, t.marked)
}

// rollback undoes transaction id's writes ws: the txp markers (of the writes with marked[i],
// or of all when marked is nil), the index documents and the history entries, then deletes the
// transaction's record. Every step is filtered on the transaction's own tokens, so it is
// idempotent and never touches another writer's documents. The markers go first: while its
// history entry exists the transaction owns version v, so nobody else writes the document at v-1.
func (s *Store) rollback(ctx context.Context, id string, ws []txWrite, marked []bool) error {
	for i, w := range ws {
		if w.V == 1 || marked != nil && !marked[i] || !typePattern.MatchString(w.T) {
			continue
		}
		_, err := s.db.Collection(w.T).UpdateOne(ctx,
			bson.D{{Key: "_id", Value: w.ID}, {Key: "v", Value: w.V - 1}, {Key: "txp", Value: id}},
			bson.D{{Key: "$unset", Value: bson.D{{Key: "txp", Value: ""}}}})
		if err != nil {
			return fail(err, "rollback")
		}
	}
	byType := map[string][]txWrite{}
	var types []string
	for _, w := range ws {
		if !typePattern.MatchString(w.T) {
			continue
		}
		if _, ok := byType[w.T]; !ok {
			types = append(types, w.T)
		}
		byType[w.T] = append(byType[w.T], w)
	}
	for _, typ := range types {
		ids, tokens := bson.A{}, bson.A{}
		for _, w := range byType[typ] {
			ids = append(ids, histID(w.ID, w.V))
			tokens = append(tokens, w.W)
		}
		if _, err := s.idx(typ).DeleteMany(ctx, bson.D{{Key: "w", Value: bson.D{{Key: "$in", Value: tokens}}}}); err != nil {
			return fail(err, "rollback")
		}
		if _, err := s.db.Collection(typ+historySuffix).DeleteMany(ctx, bson.D{
			{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}},
			{Key: "w", Value: bson.D{{Key: "$in", Value: tokens}}},
		}); err != nil {
			return fail(err, "rollback")
		}
	}
	return s.dropRecord(ctx, id, outcomeAbort)
}

// finish applies the entries of committed transaction id to the current documents (as Put's
// last steps: insert for version 1, replace from the previous version otherwise, then the
// clean-up of the updated resources' older index documents) and deletes the transaction's
// record. Every step is idempotent: a recovery may run it again.
func (s *Store) finish(ctx context.Context, id string, es []txEntry, b *beater) error {
	groups := groupEntries(es)
	for _, g := range groups {
		var creates []any
		for _, e := range g.es {
			if e.h.V == 1 {
				creates = append(creates, e.h.current())
			}
		}
		if err := insertIgnoringDuplicates(ctx, s.db.Collection(g.typ), creates); err != nil {
			return err
		}
	}
	b.beat(ctx)
	for _, e := range es {
		if e.h.V == 1 {
			continue
		}
		// No match means moved already, by another finisher (a recovery): the transaction
		// owns version v, so nobody else moves the document from v-1 (see markCurrent).
		if _, err := apply(ctx, s.db.Collection(e.typ), e.h); err != nil {
			return err
		}
		b.beat(ctx)
	}
	// Index documents of older versions can no longer match (their w is not current); as for
	// Put, a failure here only leaves garbage. A version 1 has no older version: the only
	// documents such a clean-up could find are those of a crashed attempt, garbage too.
	for _, g := range groups {
		var updated []*doc
		for _, e := range g.es {
			if e.h.V > 1 {
				updated = append(updated, e.h)
			}
		}
		_ = cleanIdxAll(ctx, s.idx(g.typ), updated)
	}
	return s.dropRecord(ctx, id, outcomeCommit)
}

// cleanIdxAll is cleanIdx for several versions of one type in one request.
func cleanIdxAll(ctx context.Context, idx *mongo.Collection, hs []*doc) error {
	or := make(bson.A, 0, len(hs))
	for _, h := range hs {
		or = append(or, bson.D{
			{Key: "rid", Value: h.RID},
			{Key: "v", Value: bson.D{{Key: "$lte", Value: h.V}}},
			{Key: "w", Value: bson.D{{Key: "$ne", Value: h.W}}},
		})
	}
	if len(or) == 0 {
		return nil
	}
	_, err := idx.DeleteMany(ctx, bson.D{{Key: "$or", Value: or}})
	return err
}

// insertIgnoringDuplicates inserts docs; documents that exist already (same _id) are fine.
func insertIgnoringDuplicates(ctx context.Context, c *mongo.Collection, docs []any) error {
	if len(docs) == 0 {
		return nil
	}
	_, err := c.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
	if err == nil {
		return nil
	}
	var bwe mongo.BulkWriteException
	if !errors.As(err, &bwe) || bwe.WriteConcernError != nil || len(bwe.WriteErrors) == 0 {
		return err
	}
	for _, we := range bwe.WriteErrors {
		if we.Code != 11000 {
			return err
		}
	}
	return nil
}

// dropRecord deletes a finished transaction's record; outcome is how it finished.
func (s *Store) dropRecord(ctx context.Context, id, outcome string) error {
	if _, err := s.txs.DeleteOne(ctx, bson.D{{Key: "_id", Value: id}}); err != nil {
		return fail(err, "transaction")
	}
	s.done.add(id, outcome)
	return nil
}

// txInfo is what the collections say about a transaction.
type txInfo struct {
	rec     bool      // its record exists: not finished
	at      time.Time // the record's last heartbeat
	outcome string    // its decision, "" if none (or not looked up)
}

func (i txInfo) stale() bool { return i.rec && time.Since(i.at) > txTimeout }

// txStates looks the transactions up: their records in one request (the transactions
// collection is small), and the decisions of those with a record, or of all with outcomes (the
// decisions collection grows, so they are read by _id one by one).
func (s *Store) txStates(ctx context.Context, ids []string, outcomes bool) (map[string]txInfo, error) {
	in := make(bson.A, len(ids))
	for i, id := range ids {
		in[i] = id
	}
	cursor, err := s.txs.Find(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: in}}}},
		options.Find().SetProjection(bson.D{{Key: "at", Value: 1}}))
	if err != nil {
		return nil, fail(err, "transaction state")
	}
	var recs []txRecord
	if err := cursor.All(ctx, &recs); err != nil {
		return nil, fail(err, "transaction state")
	}
	out := make(map[string]txInfo, len(ids))
	for _, r := range recs {
		out[r.ID] = txInfo{rec: true, at: r.At.Time()}
	}
	for _, id := range ids {
		info := out[id]
		if info.rec || outcomes {
			var d txRecord
			err := s.decisions.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&d)
			if err != nil && !errors.Is(err, mongo.ErrNoDocuments) {
				return nil, fail(err, "transaction state")
			}
			info.outcome = d.O
		}
		out[id] = info
	}
	return out, nil
}

// seen is a reader's verdict on a transaction marker in a current document it read.
type seen int

const (
	// seenDone: the transaction was finished before the read started. A tx marker names a
	// committed version; a txp marker was left by a rollback.
	seenDone seen = iota
	// seenChanged: the transaction finished while the read ran (possibly after the reader
	// waited for a committed one to be applied): what was read may mix states; read again.
	seenChanged
	// seenPending: pending, or being rolled back: none of its versions is visible; the
	// current documents read still hold the previous versions.
	seenPending
)

// settleTxs gives the verdicts on transactions ids for a read of current documents that started
// at start (the zero time: no knowledge from before). A committed transaction that is not
// applied everywhere yet is waited for; one whose writer stopped beating for txTimeout is
// settled here.
func (s *Store) settleTxs(ctx context.Context, ids []string, start time.Time) (map[string]seen, error) {
	out := make(map[string]seen, len(ids))
	var ask []string
	for _, id := range ids {
		if s.done.before(id, start) {
			out[id] = seenDone
		} else {
			ask = append(ask, id)
		}
	}
	if len(ask) == 0 {
		return out, nil
	}
	infos, err := s.txStates(ctx, ask, false)
	if err != nil {
		return nil, err
	}
	for _, id := range ask {
		info := infos[id]
		if info.outcome == outcomeCommit || info.stale() {
			if info, err = s.awaitTx(ctx, id, info); err != nil {
				return nil, err
			}
		}
		if info.rec {
			out[id] = seenPending
			continue
		}
		s.done.add(id, info.outcome)
		out[id] = seenChanged
	}
	return out, nil
}

// fate is what a history entry of a transaction is to readers.
type fate int

const (
	fatePending   fate = iota // pending or being rolled back: not a version (yet)
	fateCommitted             // committed and applied: a version
	fateAborted               // rolled back: an entry left behind, not a version
)

// txFates gives the fates of transactions ids, for the history entries they marked. A committed
// transaction that is not applied everywhere is waited for, so that a version shown in history
// is also the current one (or older); an abandoned one is settled.
func (s *Store) txFates(ctx context.Context, ids []string) (map[string]fate, error) {
	out := make(map[string]fate, len(ids))
	var ask []string
	for _, id := range ids {
		if o := s.done.outcome(id); o != "" {
			out[id] = fateOf(o)
		} else {
			ask = append(ask, id)
		}
	}
	if len(ask) == 0 {
		return out, nil
	}
	infos, err := s.txStates(ctx, ask, true)
	if err != nil {
		return nil, err
	}
	for _, id := range ask {
		info := infos[id]
		if info.outcome == outcomeCommit || info.stale() {
			if info, err = s.awaitTx(ctx, id, info); err != nil {
				return nil, err
			}
		}
		if info.rec {
			out[id] = fatePending
			continue
		}
		if info.outcome == "" {
			info.outcome = outcomeAbort // finished without a decision: rolled back by its writer
		}
		s.done.add(id, info.outcome)
		out[id] = fateOf(info.outcome)
	}
	return out, nil
}

func fateOf(outcome string) fate {
	if outcome == outcomeCommit {
		return fateCommitted
	}
	return fateAborted // a decision to abort, or none (its writer rolled it back)
}

// awaitTx waits until transaction id is finished, settling it when its writer is gone, and
// returns its final state (with its outcome). A pending transaction that is not stale is not
// waited for: the caller sees it pending.
func (s *Store) awaitTx(ctx context.Context, id string, info txInfo) (txInfo, error) {
	backoff := time.Millisecond
	for {
		switch {
		case !info.rec:
			return info, nil
		case info.stale():
			if _, err := s.recoverTx(ctx, id); err != nil {
				return info, err
			}
		case info.outcome != outcomeCommit:
			return info, nil
		default:
			select {
			case <-ctx.Done():
				return info, fail(ctx.Err(), "transaction wait")
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 20*time.Millisecond)
		}
		infos, err := s.txStates(ctx, []string{id}, true)
		if err != nil {
			return info, err
		}
		info = infos[id]
	}
}

// recoverTx settles transaction id if its record is older than txTimeout: it decides abort
// unless the transaction committed, then rolls it back or finishes it. It reports whether the
// transaction is finished.
func (s *Store) recoverTx(ctx context.Context, id string) (bool, error) {
	var rec txRecord
	err := s.txs.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&rec)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return true, nil
	}
	if err != nil {
		return false, fail(err, "recover transaction")
	}
	if time.Since(rec.At.Time()) <= txTimeout {
		return false, nil // its writer is alive
	}
	b := &beater{s: s, id: id}
	b.beat(ctx) // keep other recoveries off while this one works
	outcome, err := s.decide(ctx, id)
	if err != nil {
		return false, err
	}
	if outcome != outcomeCommit {
		return true, s.rollback(ctx, id, rec.W, nil)
	}
	es := make([]txEntry, 0, len(rec.W))
	for _, w := range rec.W {
		if !typePattern.MatchString(w.T) {
			continue
		}
		var h doc
		err := s.db.Collection(w.T+historySuffix).FindOne(ctx, bson.D{{Key: "_id", Value: histID(w.ID, w.V)}}).Decode(&h)
		if errors.Is(err, mongo.ErrNoDocuments) || err == nil && h.W != w.W {
			continue // not reached: a committed transaction's entries all exist
		}
		if err != nil {
			return false, fail(err, "recover transaction")
		}
		es = append(es, txEntry{typ: w.T, h: &h})
	}
	if err := s.finish(ctx, id, es, b); err != nil {
		return false, fail(err, "recover transaction")
	}
	return true, nil
}

// decide inserts an abort decision for transaction id unless it has a decision already, and
// returns the decision.
func (s *Store) decide(ctx context.Context, id string) (string, error) {
	d := &txRecord{ID: id, At: bson.NewDateTimeFromTime(time.Now()), O: outcomeAbort}
	_, err := s.decisions.InsertOne(ctx, d)
	if err == nil {
		return outcomeAbort, nil
	}
	if !mongo.IsDuplicateKeyError(err) {
		return "", fail(err, "recover transaction")
	}
	var got txRecord
	if err := s.decisions.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&got); err != nil {
		return "", fail(err, "recover transaction")
	}
	return got.O, nil
}

// settleEntry handles a history entry of a transaction met by a writer of the same version: a
// stale transaction is settled, and an entry of a transaction that was rolled back (one that a
// slow writer inserted after a recovery's rollback) is deleted, so that the version can be
// written. The writer gets KindConflict either way.
func (s *Store) settleEntry(ctx context.Context, hist *mongo.Collection, h *doc) error {
	fates, err := s.txFates(ctx, []string{h.Tx})
	if err != nil || fates[h.Tx] != fateAborted {
		return err
	}
	return fail(dropOrphan(ctx, hist, h), "put")
}

// dropOrphan deletes h, a history entry of a transaction that was rolled back. Only a writer
// that a recovery took for dead inserts such an entry after the rollback; if that writer is
// still at work, it fails at its commit anyway (the decision is to abort).
func dropOrphan(ctx context.Context, hist *mongo.Collection, h *doc) error {
	_, err := hist.DeleteOne(ctx, bson.D{{Key: "_id", Value: h.ID}, {Key: "w", Value: h.W}, {Key: "tx", Value: h.Tx}})
	return err
}

// maybeSweep settles abandoned transactions at most once per txTimeout per Store. Readers
// settle the transactions they meet; the sweep also reaches a committed transaction of
// creates only, whose versions no reader can meet before they are applied.
func (s *Store) maybeSweep(ctx context.Context) {
	now := time.Now().UnixNano()
	last := s.lastSweep.Load()
	if now-last < int64(txTimeout) || !s.lastSweep.CompareAndSwap(last, now) {
		return
	}
	_ = s.sweep(ctx)
}

func (s *Store) sweep(ctx context.Context) error {
	cursor, err := s.txs.Find(ctx, bson.D{}, options.Find().SetProjection(bson.D{{Key: "at", Value: 1}}))
	if err != nil {
		return err
	}
	var recs []txRecord
	if err := cursor.All(ctx, &recs); err != nil {
		return err
	}
	for _, r := range recs {
		if time.Since(r.At.Time()) > txTimeout {
			if _, err := s.recoverTx(ctx, r.ID); err != nil {
				return err
			}
		}
	}
	return nil
}

// doneTxs remembers finished transactions, when this process learned it, and their outcome
// once known. A finished transaction stays finished with the same outcome (ids are never
// reused, decisions never change), so this is a cache of facts; it only spares lookups.
type doneTxs struct {
	mu sync.Mutex
	m  map[string]doneTx
}

type doneTx struct {
	learned time.Time
	outcome string // "" when not looked up
}

const doneTxsMax = 1 << 16

func (c *doneTxs) add(id, outcome string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= doneTxsMax {
		c.m = make(map[string]doneTx)
	}
	d, ok := c.m[id]
	if !ok {
		d.learned = time.Now()
	}
	if outcome != "" {
		d.outcome = outcome
	}
	c.m[id] = d
}

// before reports whether id was known to be finished before t.
func (c *doneTxs) before(id string, t time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	d, ok := c.m[id]
	return ok && d.learned.Before(t)
}

// outcome is id's outcome if it is known to be finished with a known outcome, else "".
func (c *doneTxs) outcome(id string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[id].outcome
}

// marked reports whether a current document carries a transaction marker.
func marked(d *doc) bool { return d.Tx != "" || d.Txp != "" }

// markers lists the transactions named in docs' markers.
func markers(docs []doc) []string {
	var ids []string
	seen := map[string]bool{}
	for i := range docs {
		for _, id := range []string{docs[i].Tx, docs[i].Txp} {
			if id != "" && !seen[id] {
				seen[id] = true
				ids = append(ids, id)
			}
		}
	}
	return ids
}

// rereadCurrent applies the verdicts to a current document: it reports whether the read must
// be repeated. single is a read of this one document (Read): then a version whose transaction
// was just finished is final as read; a search reads again, since the other documents it read
// may predate that transaction's moves.
func rereadCurrent(d *doc, verdicts map[string]seen, single bool) bool {
	if d.Tx != "" {
		switch verdicts[d.Tx] {
		case seenPending:
			return true // not reached: current documents are moved only after the commit
		case seenChanged:
			if !single {
				return true
			}
		}
	}
	return d.Txp != "" && verdicts[d.Txp] == seenChanged
}

// pause is the back-off before a repeated read; it gives up (KindUnavailable) after many.
func pause(ctx context.Context, attempt int) error {
	if attempt >= 100 {
		e := resources.Errorf(resources.KindUnavailable, "transactions kept changing the documents read; retry")
		e.RetryAfter = 1
		return e
	}
	if attempt < 2 {
		return nil
	}
	select {
	case <-ctx.Done():
		return fail(ctx.Err(), "read")
	case <-time.After(time.Duration(min(attempt, 20)) * time.Millisecond):
		return nil
	}
}
