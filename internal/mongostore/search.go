package mongostore

import (
	"context"
	"slices"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/calaimfhir/calaimfhir/resources"
)

// micro converts a stored or cursor time to the lu encoding (Unix microseconds).
func micro(t time.Time) int64 { return t.UnixMicro() }

// ceilMicro is the smallest lu value not before t: lu >= t and lu < t compare exactly even when t
// carries nanoseconds.
func ceilMicro(t time.Time) int64 {
	m := t.UnixMicro()
	if t.Nanosecond()%1000 != 0 {
		m++
	}
	return m
}

// compile turns the clauses of q into a filter on current documents and the value clauses
// (Strings, Dates, Numbers), which are answered through the index collection (see candidates).
// none reports that no document can match (an empty alternative list), so no query is needed.
//
// Values from the request only ever appear as strings inside $in/$nin, as numbers, or quoted
// inside a regular expression (values.go): they cannot become operators, field names or patterns.
func compile(clauses []resources.Clause) (filter bson.D, values []*valueClause, none bool) {
	var and bson.A
	for _, c := range clauses {
		switch {
		case len(c.AnyKey) > 0 || len(c.NoKey) > 0 || len(c.IDs) > 0 || len(c.NotIDs) > 0:
			and = append(and, keyFilter(c))
		case len(c.Or) > 0:
			var or bson.A
			for _, alt := range c.Or {
				all := bson.A{}
				for _, sub := range alt {
					all = append(all, keyFilter(sub))
				}
				or = append(or, bson.D{{Key: "$and", Value: all}})
			}
			and = append(and, bson.D{{Key: "$or", Value: or}})
		case len(c.Strings) > 0 || len(c.Dates) > 0 || len(c.Numbers) > 0:
			values = append(values, compileValue(c))
		case len(c.LastUpdated) > 0:
			or, all := rangeAlternatives(c.LastUpdated)
			if all {
				continue
			}
			if len(or) == 0 {
				return nil, nil, true
			}
			if len(or) == 1 {
				and = append(and, or[0])
			} else {
				and = append(and, bson.D{{Key: "$or", Value: or}})
			}
		default: // no alternatives: the clause is false
			return nil, nil, true
		}
	}
	filter = bson.D{{Key: "del", Value: false}}
	// Plain equalities go to the top level of the filter, each field once (a filter document
	// must not repeat a key), the rest under $and. Both forms mean the same to MongoDB, whose
	// planner flattens $and anyway; FerretDB pushes only top-level equalities down to its
	// backend and evaluates everything else in Go after reading the whole collection (an owner
	// search: 290 ms as {del, $and: [{k}]} against 44 ms as {del, k} on FerretDB/PostgreSQL).
	var rest bson.A
	for _, c := range and {
		if e, ok := plainEquality(c.(bson.D)); ok && !slices.ContainsFunc(filter, func(f bson.E) bool { return f.Key == e.Key }) {
			filter = append(filter, e)
			continue
		}
		rest = append(rest, c)
	}
	if len(rest) > 0 {
		filter = append(filter, bson.E{Key: "$and", Value: rest})
	}
	return filter, values, false
}

// plainEquality reports whether cond is one field compared for equality with a string
// ({k: key}, as keyFilter writes a one-value AnyKey), and returns that element.
func plainEquality(cond bson.D) (bson.E, bool) {
	if len(cond) != 1 || strings.HasPrefix(cond[0].Key, "$") {
		return bson.E{}, false
	}
	_, ok := cond[0].Value.(string)
	return cond[0], ok
}

// keyFilter compiles an AnyKey, NoKey, IDs or NotIDs clause (the kinds an Or may hold); any other
// clause compiles to a condition no document meets.
func keyFilter(c resources.Clause) bson.D {
	switch {
	case len(c.AnyKey) == 1:
		// Plain equality, not a one-value $in: FerretDB pushes equality down to PostgreSQL
		// but filters $in itself after a full scan (measured 22 ms against 210 ms).
		return bson.D{{Key: "k", Value: c.AnyKey[0]}}
	case len(c.AnyKey) > 0:
		return bson.D{{Key: "k", Value: bson.D{{Key: "$in", Value: strs(c.AnyKey)}}}}
	case len(c.NoKey) > 0:
		// On an array field, $nin matches when no element equals any listed value.
		return bson.D{{Key: "k", Value: bson.D{{Key: "$nin", Value: strs(c.NoKey)}}}}
	case len(c.IDs) == 1:
		return bson.D{{Key: "_id", Value: c.IDs[0]}}
	case len(c.IDs) > 0:
		return bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: strs(c.IDs)}}}}
	case len(c.NotIDs) > 0:
		return bson.D{{Key: "_id", Value: bson.D{{Key: "$nin", Value: strs(c.NotIDs)}}}}
	}
	return bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: bson.A{}}}}}
}

func strs(v []string) bson.A {
	a := make(bson.A, len(v))
	for i, s := range v {
		a[i] = s
	}
	return a
}

// rangeAlternatives returns one lu condition per alternative; all reports that some range is
// unbounded (the clause always holds).
func rangeAlternatives(ranges []resources.DateRange) (or bson.A, all bool) {
	for _, r := range ranges {
		hasFrom, hasTo := !r.From.IsZero(), !r.To.IsZero()
		if !r.Not {
			if !hasFrom && !hasTo {
				return nil, true
			}
			var cond bson.D
			if hasFrom {
				cond = append(cond, bson.E{Key: "$gte", Value: ceilMicro(r.From)})
			}
			if hasTo {
				cond = append(cond, bson.E{Key: "$lt", Value: ceilMicro(r.To)})
			}
			or = append(or, bson.D{{Key: "lu", Value: cond}})
			continue
		}
		// Complement of [From, To): before From, or at/after To.
		if hasFrom {
			or = append(or, bson.D{{Key: "lu", Value: bson.D{{Key: "$lt", Value: ceilMicro(r.From)}}}})
		}
		if hasTo {
			or = append(or, bson.D{{Key: "lu", Value: bson.D{{Key: "$gte", Value: ceilMicro(r.To)}}}})
		}
	}
	return or, false
}

// and combines a filter with one more condition.
func and(filter bson.D, cond bson.D) bson.D {
	out := make(bson.D, 0, len(filter)+1)
	out = append(out, filter...)
	for i, e := range out {
		if e.Key == "$and" {
			a := append(bson.A{}, e.Value.(bson.A)...)
			out[i].Value = append(a, cond)
			return out
		}
	}
	return append(out, bson.E{Key: "$and", Value: bson.A{cond}})
}

// Search implements resources.Store: keyset paging on (lu, _id), or on (SortBy values..., lu,
// _id) when q has SortBy. A page holding a document with a transaction marker is resolved
// before it is returned (see "Transactions" in the package comment): when a transaction
// touching it finished while the search ran, the search runs again.
func (s *Store) Search(ctx context.Context, q *resources.Query) (*resources.Page, error) {
	cur, _, err := s.colls(ctx, q.Type, false)
	if err != nil {
		return nil, err
	}
	ord, err := pageOrder(q)
	if err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		start := time.Now()
		page, docs, err := s.search(ctx, cur, q, ord)
		if err != nil {
			return nil, err
		}
		ids := markers(docs)
		if len(ids) == 0 {
			return page, nil
		}
		verdicts, err := s.settleTxs(ctx, ids, start)
		if err != nil {
			return nil, err
		}
		again := false
		for i := range docs {
			again = again || rereadCurrent(&docs[i], verdicts, false)
		}
		if !again {
			return page, nil
		}
		if err := pause(ctx, attempt); err != nil {
			return nil, err
		}
	}
}

// search runs q once; docs are the documents the page was made of.
func (s *Store) search(ctx context.Context, cur *mongo.Collection, q *resources.Query, ord *order) (*resources.Page, []doc, error) {
	var err error
	page := &resources.Page{Total: -1}
	filter, values, none := compile(q.Clauses)
	scan := false
	if !none && len(values) > 0 {
		var ids, ws bson.A
		ids, ws, scan, none, err = s.candidates(ctx, s.idx(q.Type), values)
		if err != nil {
			return nil, nil, fail(err, "search index")
		}
		if !none && !scan {
			// w names one version of one resource, so this is exact even while the
			// resource is being updated: an index document of another version never matches
			// the current document. The _id condition lets MongoDB use the _id index.
			filter = and(filter, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}})
			filter = and(filter, bson.D{{Key: "w", Value: bson.D{{Key: "$in", Value: ws}}}})
		}
	}
	if none {
		if q.Total {
			page.Total = 0
		}
		return page, nil, nil
	}
	if scan {
		return s.scan(ctx, cur, q, ord, filter, values, page)
	}
	if q.Total {
		n, err := cur.CountDocuments(ctx, filter)
		if err != nil {
			return nil, nil, fail(err, "search count")
		}
		page.Total = n
	}
	count := max(q.Count, 1) // the contract says Count > 0; the SQLite store also reads 0 as 1
	filter, err = keyset(q, ord, filter)
	if err != nil {
		return nil, nil, err
	}
	proj := readProjection
	if len(q.SortBy) > 0 {
		proj = sortProjection
	}
	opts := options.Find().
		SetSort(ord.spec()).
		SetLimit(int64(count) + 1).
		SetProjection(proj)
	docs, err := find(ctx, cur, filter, opts, count+1)
	if err != nil {
		return nil, nil, fail(err, "search")
	}
	fillSearchPage(page, docs, q, ord, count)
	return page, docs, nil
}

// keyset adds q's resume position (strictly after q.After in ord) to filter.
func keyset(q *resources.Query, ord *order, filter bson.D) (bson.D, error) {
	if q.After == nil {
		return filter, nil
	}
	cond, all, err := ord.after(q.After, len(q.SortBy))
	if err != nil || all {
		return filter, err
	}
	return and(filter, cond), nil
}

var (
	// sortProjection reads a page of a SortBy search: what Read returns plus the sort values
	// (the next page's cursor carries the last row's).
	sortProjection = bson.D{{Key: "k", Value: 0}, {Key: "x", Value: 0}}
	// scanProjection reads what a page needs plus the value keys; scanSortProjection adds the
	// sort values.
	scanProjection     = bson.D{{Key: "k", Value: 0}, {Key: "o", Value: 0}}
	scanSortProjection = bson.D{{Key: "k", Value: 0}}
)

// scan answers a search whose value clauses are all broad: it walks the current documents
// matching filter in page order and checks the value clauses in memory on each document's value
// keys (the same ones its index documents hold), until the page is full. Paging and Total are
// as exact as with an index plan; the cost is the number of documents walked.
//
// With SortBy the walk is in that order too; no index serves it, so the database sorts every
// document matching filter before the walk starts (on MongoDB 6.0 and later a sort larger
// than its memory limit spills to disk by default).
func (s *Store) scan(ctx context.Context, cur *mongo.Collection, q *resources.Query, ord *order, filter bson.D, values []*valueClause, page *resources.Page) (*resources.Page, []doc, error) {
	matches := func(d *doc) bool {
		for _, vc := range values {
			if !vc.match(d.X) {
				return false
			}
		}
		return true
	}
	if q.Total {
		cursor, err := cur.Find(ctx, filter, options.Find().SetProjection(bson.D{{Key: "x", Value: 1}}))
		if err != nil {
			return nil, nil, fail(err, "search count")
		}
		n := int64(0)
		for cursor.Next(ctx) {
			var d doc
			if err := cursor.Decode(&d); err != nil {
				cursor.Close(context.WithoutCancel(ctx))
				return nil, nil, fail(err, "search count")
			}
			if matches(&d) {
				n++
			}
		}
		err = cursor.Err()
		cursor.Close(context.WithoutCancel(ctx))
		if err != nil {
			return nil, nil, fail(err, "search count")
		}
		page.Total = n
	}
	count := max(q.Count, 1)
	filter, err := keyset(q, ord, filter)
	if err != nil {
		return nil, nil, err
	}
	proj := scanProjection
	if len(q.SortBy) > 0 {
		proj = scanSortProjection
	}
	cursor, err := cur.Find(ctx, filter, options.Find().SetSort(ord.spec()).SetProjection(proj))
	if err != nil {
		return nil, nil, fail(err, "search")
	}
	defer cursor.Close(context.WithoutCancel(ctx))
	var docs []doc
	for len(docs) <= count && cursor.Next(ctx) {
		var d doc
		if err := cursor.Decode(&d); err != nil {
			return nil, nil, fail(err, "search")
		}
		if matches(&d) {
			docs = append(docs, d)
		}
	}
	if err := cursor.Err(); err != nil {
		return nil, nil, fail(err, "search")
	}
	fillSearchPage(page, docs, q, ord, count)
	return page, docs, nil
}

func find(ctx context.Context, c *mongo.Collection, filter bson.D, opts *options.FindOptionsBuilder, max int) ([]doc, error) {
	cursor, err := c.Find(ctx, filter, opts)
	if err != nil {
		return nil, err
	}
	defer cursor.Close(context.WithoutCancel(ctx))
	docs := make([]doc, 0, min(max, 64))
	for cursor.Next(ctx) {
		var d doc
		if err := cursor.Decode(&d); err != nil {
			return nil, err
		}
		docs = append(docs, d)
	}
	return docs, cursor.Err()
}

func fillPage(page *resources.Page, docs []doc, typ string, count int) {
	more := len(docs) > count
	if more {
		docs = docs[:count]
	}
	page.Resources = make([]*resources.Resource, len(docs))
	for i := range docs {
		page.Resources[i] = docs[i].resource(typ)
	}
	if more && len(docs) > 0 {
		last := page.Resources[len(docs)-1]
		page.Next = &resources.Cursor{LastUpdated: last.LastUpdated, ID: last.ID, Version: last.VersionID}
	}
}

// fillSearchPage is fillPage for a search: with SortBy, the next cursor also carries the last
// row's sort values.
func fillSearchPage(page *resources.Page, docs []doc, q *resources.Query, ord *order, count int) {
	fillPage(page, docs, q.Type, count)
	if page.Next != nil {
		page.Next.Values = ord.values(q, &docs[len(page.Resources)-1])
	}
}

// History implements resources.Store: newest first by (lu, id, v), keyset paging. Entries of
// transactions that are not committed (or were rolled back) are left out (see "Transactions"
// in the package comment).
func (s *Store) History(ctx context.Context, q *resources.HistoryQuery) (*resources.Page, error) {
	_, hist, err := s.colls(ctx, q.Type, false)
	if err != nil {
		return nil, err
	}
	filter := bson.D{}
	if q.ID != "" {
		filter = append(filter, bson.E{Key: "id", Value: q.ID})
	}
	if !q.Since.IsZero() {
		filter = append(filter, bson.E{Key: "lu", Value: bson.D{{Key: "$gte", Value: ceilMicro(q.Since)}}})
	}
	count := max(q.Count, 1)
	docs, err := s.historyPage(ctx, hist, filter, q.After, count)
	if err != nil {
		return nil, err
	}
	page := &resources.Page{}
	// The entries of transactions in progress and not committed are not counted. (An entry left
	// behind by a rollback that raced with its slow writer is, until a reader or writer meets
	// and deletes it: see "Transactions".)
	uncommitted, err := s.uncommittedTxs(ctx)
	if err != nil {
		return nil, err
	}
	countFilter := filter
	if len(uncommitted) > 0 {
		countFilter = and(filter, bson.D{{Key: "tx", Value: bson.D{{Key: "$nin", Value: uncommitted}}}})
	}
	if page.Total, err = hist.CountDocuments(ctx, countFilter); err != nil {
		return nil, fail(err, "history count")
	}
	fillPage(page, docs, q.Type, count)
	return page, nil
}

// historyPage reads up to count+1 visible entries after the cursor.
func (s *Store) historyPage(ctx context.Context, hist *mongo.Collection, filter bson.D, after *resources.Cursor, count int) ([]doc, error) {
	opts := options.Find().
		SetSort(bson.D{{Key: "lu", Value: -1}, {Key: "id", Value: -1}, {Key: "v", Value: -1}}).
		SetProjection(readProjection)
	var docs []doc
	for {
		f := filter
		if after != nil {
			f = and(filter, historyAfter(after))
		}
		limit := count + 1 - len(docs)
		got, err := find(ctx, hist, f, opts.SetLimit(int64(limit)), limit)
		if err != nil {
			return nil, fail(err, "history")
		}
		var ids []string
		for i := range got {
			if got[i].Tx != "" && !slices.Contains(ids, got[i].Tx) {
				ids = append(ids, got[i].Tx)
			}
		}
		fates, err := s.txFates(ctx, ids)
		if err != nil {
			return nil, err
		}
		for i, d := range got {
			switch {
			case d.Tx == "" || fates[d.Tx] == fateCommitted:
				docs = append(docs, d)
			case fates[d.Tx] == fateAborted:
				_ = dropOrphan(ctx, hist, &got[i]) // not counted either, then
			}
		}
		if len(docs) > count || len(got) < limit {
			return docs, nil
		}
		last := got[len(got)-1]
		after = &resources.Cursor{LastUpdated: time.UnixMicro(last.LU), ID: last.RID, Version: last.V}
	}
}

// uncommittedTxs lists the transactions in progress that are not committed (the transactions
// collection holds only those in progress).
func (s *Store) uncommittedTxs(ctx context.Context) (bson.A, error) {
	cursor, err := s.txs.Find(ctx, bson.D{}, options.Find().SetProjection(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		return nil, fail(err, "history count")
	}
	var recs []txRecord
	if err := cursor.All(ctx, &recs); err != nil {
		return nil, fail(err, "history count")
	}
	if len(recs) == 0 {
		return nil, nil
	}
	ids := make([]string, len(recs))
	for i, r := range recs {
		ids[i] = r.ID
	}
	infos, err := s.txStates(ctx, ids, false)
	if err != nil {
		return nil, err
	}
	var out bson.A
	for _, id := range ids {
		if info := infos[id]; info.rec && info.outcome != outcomeCommit {
			out = append(out, id)
		}
	}
	return out, nil
}

// historyAfter is the newest-first keyset condition: versions strictly older than c.
func historyAfter(c *resources.Cursor) bson.D {
	lu := micro(c.LastUpdated)
	return bson.D{{Key: "$or", Value: bson.A{
		bson.D{{Key: "lu", Value: bson.D{{Key: "$lt", Value: lu}}}},
		bson.D{{Key: "lu", Value: lu}, {Key: "id", Value: bson.D{{Key: "$lt", Value: c.ID}}}},
		bson.D{{Key: "lu", Value: lu}, {Key: "id", Value: c.ID}, {Key: "v", Value: bson.D{{Key: "$lt", Value: c.Version}}}},
	}}}
}
