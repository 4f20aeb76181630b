package mongostore

import (
	"context"
	"errors"
	"math"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/calaimfhir/calaimfhir/resources"
)

// Value keys (Keys.Strings, Keys.Dates, Keys.Numbers) and the clauses on them. See the package
// comment ("Value searches") for the design; this file holds the encoding, the writes of the side
// collection and the search plan.

const idxSuffix = "_idx"

// Kinds prefix the p field of an index document ("s␟name"), so that an alternative without
// bounds ({p} alone: "param has a value") never matches values of another kind.
const (
	kindString = "s\x1f"
	kindDate   = "d\x1f"
	kindNumber = "n\x1f"
)

// valueKeys are the value keys of one version, kept in its history entry (so that a roll-forward
// can rebuild the index documents) and in the current document (so that a search can check a
// clause in memory while it walks the current documents in order).
type valueKeys struct {
	S []strVal  `bson:"s,omitempty"`
	D []dateVal `bson:"d,omitempty"`
	N []numVal  `bson:"n,omitempty"`
}

type strVal struct {
	P string `bson:"p"`
	V string `bson:"v"`
}

type dateVal struct {
	P  string `bson:"p"`
	Lo int64  `bson:"lo"`
	Hi int64  `bson:"hi"`
}

type numVal struct {
	P string  `bson:"p"`
	V float64 `bson:"v"`
}

// newValueKeys converts k; nil when k has no value keys. Neither JSON nor the key extraction
// produce NaN or infinite numbers; should one come anyway, a NaN is left out (no bound holds for
// it) and an infinity is stored as the largest finite number of its sign (FerretDB rejects
// infinities; the two compare alike with every finite operand except that number itself).
func newValueKeys(k *resources.Keys) *valueKeys {
	x := &valueKeys{}
	for _, s := range k.Strings {
		x.S = append(x.S, strVal{P: s.Param, V: s.Value})
	}
	for _, d := range k.Dates {
		x.D = append(x.D, dateVal{P: d.Param, Lo: d.Lo, Hi: d.Hi})
	}
	for _, n := range k.Numbers {
		switch {
		case math.IsNaN(n.V):
		case math.IsInf(n.V, 0):
			x.N = append(x.N, numVal{P: n.Param, V: math.Copysign(math.MaxFloat64, n.V)})
		default:
			x.N = append(x.N, numVal{P: n.Param, V: n.V})
		}
	}
	if len(x.S)+len(x.D)+len(x.N) == 0 {
		return nil
	}
	return x
}

// idxDocs are the index documents of version h: one per value, with _id "w/n" so that writing
// them again (a retried insert, a roll-forward) only produces duplicate-key errors.
func idxDocs(h *doc) []any {
	x := h.X
	if x == nil || h.Del {
		return nil
	}
	docs := make([]any, 0, len(x.S)+len(x.D)+len(x.N))
	base := func(p string) bson.D {
		return bson.D{
			{Key: "_id", Value: h.W + "/" + strconv.Itoa(len(docs))},
			{Key: "rid", Value: h.RID},
			{Key: "v", Value: h.V},
			{Key: "w", Value: h.W},
			{Key: "p", Value: p},
		}
	}
	for _, s := range x.S {
		docs = append(docs, append(base(kindString+s.P), bson.E{Key: "s", Value: s.V}))
	}
	for _, d := range x.D {
		docs = append(docs, append(base(kindDate+d.P), bson.E{Key: "lo", Value: d.Lo}, bson.E{Key: "hi", Value: d.Hi}))
	}
	for _, n := range x.N {
		docs = append(docs, append(base(kindNumber+n.P), bson.E{Key: "n", Value: n.V}))
	}
	return docs
}

// writeIdx inserts the index documents of version h. Documents that exist already (same _id, so
// the same version written by the same Put) are fine; inTxn reports a duplicate as an error
// instead (it aborts a transaction anyway).
func writeIdx(ctx context.Context, idx *mongo.Collection, h *doc, inTxn bool) error {
	docs := idxDocs(h)
	if len(docs) == 0 {
		return nil
	}
	_, err := idx.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
	if err == nil || inTxn {
		return err
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

// cleanIdx deletes the index documents of versions of h's resource up to h's own version that
// are not h's: those of older versions, and those of a version v whose writer rolled back. It
// never touches a newer version's documents, which a concurrent writer may have written already.
func cleanIdx(ctx context.Context, idx *mongo.Collection, h *doc) error {
	_, err := idx.DeleteMany(ctx, bson.D{
		{Key: "rid", Value: h.RID},
		{Key: "v", Value: bson.D{{Key: "$lte", Value: h.V}}},
		{Key: "w", Value: bson.D{{Key: "$ne", Value: h.W}}},
	})
	return err
}

// valueClause is one Strings, Dates or Numbers clause: a filter on index documents and the same
// condition checked in memory on a current document's value keys.
type valueClause struct {
	filter bson.D // on index documents; nil when no alternative can hold
	match  func(*valueKeys) bool
}

// compileValue compiles a Strings, Dates or Numbers clause. Request values appear only as
// numbers, as strings compared for equality (p), or inside a regular expression after quoting.
func compileValue(c resources.Clause) *valueClause {
	var or bson.A
	switch {
	case len(c.Strings) > 0:
		ms := c.Strings
		for _, m := range ms {
			if !utf8.ValidString(m.Value) {
				continue // stored values are valid UTF-8, and a pattern must be
			}
			pat := "^" + quoteRegex(m.Value)
			if m.Contains {
				pat = quoteRegex(m.Value)
			}
			or = append(or, bson.D{{Key: "p", Value: kindString + m.Param}, {Key: "s", Value: bson.Regex{Pattern: pat}}})
		}
		return finish(or, func(x *valueKeys) bool {
			if x == nil {
				return false
			}
			for _, m := range ms {
				if !utf8.ValidString(m.Value) {
					continue
				}
				for _, s := range x.S {
					if s.P == m.Param && (m.Contains && strings.Contains(s.V, m.Value) || !m.Contains && strings.HasPrefix(s.V, m.Value)) {
						return true
					}
				}
			}
			return false
		})
	case len(c.Dates) > 0:
		ms := c.Dates
		for _, m := range ms {
		dates:
			for _, conj := range m.Any {
				f := bson.D{{Key: "p", Value: kindDate + m.Param}}
				lo, hi := &bounds{}, &bounds{}
				for _, b := range conj {
					if !validOp(b.Op) {
						continue dates // never holds
					}
					if b.OnHi {
						hi.add(b.Op, b.Micros)
					} else {
						lo.add(b.Op, b.Micros)
					}
				}
				f = lo.appendTo(f, "lo")
				f = hi.appendTo(f, "hi")
				or = append(or, f)
			}
		}
		return finish(or, func(x *valueKeys) bool {
			if x == nil {
				return false
			}
			for _, m := range ms {
				for _, d := range x.D {
					if d.P == m.Param && anyConj(m.Any, func(b resources.Bound) bool {
						v := d.Lo
						if b.OnHi {
							v = d.Hi
						}
						return holdsInt(b.Op, v, b.Micros)
					}) {
						return true
					}
				}
			}
			return false
		})
	case len(c.Numbers) > 0:
		ms := c.Numbers
		for _, m := range ms {
		numbers:
			for _, conj := range m.Any {
				n := &bounds{}
				for _, b := range conj {
					if math.IsNaN(b.Num) || !validOp(b.Op) {
						continue numbers // never holds
					}
					n.add(b.Op, b.Num)
				}
				or = append(or, n.appendTo(bson.D{{Key: "p", Value: kindNumber + m.Param}}, "n"))
			}
		}
		return finish(or, func(x *valueKeys) bool {
			if x == nil {
				return false
			}
			for _, m := range ms {
				for _, n := range x.N {
					if m.MatchNumber(resources.NumberKey{Param: n.P, V: n.V}) {
						return true
					}
				}
			}
			return false
		})
	}
	return nil
}

func finish(or bson.A, match func(*valueKeys) bool) *valueClause {
	vc := &valueClause{match: match}
	switch len(or) {
	case 0:
	case 1:
		vc.filter = or[0].(bson.D)
	default:
		vc.filter = bson.D{{Key: "$or", Value: or}}
	}
	return vc
}

func anyConj(alts [][]resources.Bound, holds func(resources.Bound) bool) bool {
	for _, conj := range alts {
		ok := true
		for _, b := range conj {
			if !holds(b) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

func validOp(op resources.BoundOp) bool {
	switch op {
	case resources.OpGE, resources.OpGT, resources.OpLE, resources.OpLT:
		return true
	}
	return false
}

// holdsInt is BoundOp.Holds on exact integers, as MongoDB compares the stored int64 values.
func holdsInt(op resources.BoundOp, x, operand int64) bool {
	switch op {
	case resources.OpGE:
		return x >= operand
	case resources.OpGT:
		return x > operand
	case resources.OpLE:
		return x <= operand
	case resources.OpLT:
		return x < operand
	}
	return false
}

// bounds collects the comparisons on one field of one alternative, keeping the tightest operand
// per operator, so that the filter names each operator once.
type bounds struct {
	ops  []string
	vals map[string]any
}

var mongoOps = map[resources.BoundOp]string{resources.OpGE: "$gte", resources.OpGT: "$gt", resources.OpLE: "$lte", resources.OpLT: "$lt"}

func (b *bounds) add(op resources.BoundOp, v any) {
	mop := mongoOps[op] // callers pass valid operators only
	if b.vals == nil {
		b.vals = map[string]any{}
	}
	old, seen := b.vals[mop]
	if !seen {
		b.ops = append(b.ops, mop)
		b.vals[mop] = v
		return
	}
	lower := op == resources.OpGE || op == resources.OpGT // keep the largest lower bound
	switch o := old.(type) {
	case int64:
		if n := v.(int64); lower && n > o || !lower && n < o {
			b.vals[mop] = n
		}
	case float64:
		if n := v.(float64); lower && n > o || !lower && n < o {
			b.vals[mop] = n
		}
	}
}

func (b *bounds) appendTo(f bson.D, field string) bson.D {
	if len(b.ops) == 0 {
		return f
	}
	cond := make(bson.D, 0, len(b.ops))
	for _, op := range b.ops {
		cond = append(cond, bson.E{Key: op, Value: b.vals[op]})
	}
	return append(f, bson.E{Key: field, Value: cond})
}

// quoteRegex makes s a pattern matching s literally, for PCRE (MongoDB) and Go's regexp
// (FerretDB): QuoteMeta escapes every metacharacter both share, and a NUL, which a BSON regular
// expression cannot contain, is written as an escape.
func quoteRegex(s string) string {
	return strings.ReplaceAll(regexp.QuoteMeta(s), "\x00", `\x00`)
}

// probeLimit is how many index documents a clause may match for its result to be used as a
// candidate list (an $in on the current documents). A broader clause is either intersected with
// a narrower one inside the index collection, or, when every clause is broad, checked in memory
// while the current documents are walked in order.
var probeLimit = 10000

// candidates evaluates the value clauses on the index collection. It returns the matching
// current documents as ids and write tokens (w identifies one version of one resource), or
// scan=true when every clause is broad (more than probeLimit index documents): then the caller
// walks the current documents and checks the clauses in memory. none reports that nothing matches.
func (s *Store) candidates(ctx context.Context, idx *mongo.Collection, vcs []*valueClause) (ids, ws bson.A, scan, none bool, err error) {
	var set map[string]string // w -> rid; nil until a clause was evaluated completely
	var broad []*valueClause
	proj := options.Find().SetProjection(bson.D{{Key: "_id", Value: 0}, {Key: "w", Value: 1}, {Key: "rid", Value: 1}})
	for _, vc := range vcs {
		if vc.filter == nil {
			return nil, nil, false, true, nil
		}
		if set == nil {
			got, complete, err := idxFind(ctx, idx, vc.filter, proj, probeLimit)
			if err != nil {
				return nil, nil, false, false, err
			}
			if !complete {
				broad = append(broad, vc)
				continue
			}
			set = got
		} else {
			set, err = restrict(ctx, idx, vc.filter, set, proj)
			if err != nil {
				return nil, nil, false, false, err
			}
		}
		if len(set) == 0 {
			return nil, nil, false, true, nil
		}
	}
	if set == nil {
		return nil, nil, true, false, nil
	}
	for _, vc := range broad {
		if set, err = restrict(ctx, idx, vc.filter, set, proj); err != nil {
			return nil, nil, false, false, err
		}
		if len(set) == 0 {
			return nil, nil, false, true, nil
		}
	}
	rids := map[string]bool{}
	for w, rid := range set {
		ws = append(ws, w)
		if !rids[rid] {
			rids[rid] = true
			ids = append(ids, rid)
		}
	}
	return ids, ws, false, false, nil
}

// restrict returns the part of set whose index documents also match filter.
func restrict(ctx context.Context, idx *mongo.Collection, filter bson.D, set map[string]string, proj *options.FindOptionsBuilder) (map[string]string, error) {
	in := make(bson.A, 0, len(set))
	for w := range set {
		in = append(in, w)
	}
	got, _, err := idxFind(ctx, idx, bson.D{{Key: "w", Value: bson.D{{Key: "$in", Value: in}}}, {Key: "$and", Value: bson.A{filter}}}, proj, 0)
	return got, err
}

// idxFind collects the write tokens and resource ids of the index documents matching filter.
// With limit > 0 it stops after limit documents and reports complete=false if there were more.
func idxFind(ctx context.Context, idx *mongo.Collection, filter bson.D, proj *options.FindOptionsBuilder, limit int) (map[string]string, bool, error) {
	opts := []options.Lister[options.FindOptions]{proj}
	if limit > 0 {
		opts = append(opts, options.Find().SetLimit(int64(limit)+1))
	}
	cursor, err := idx.Find(ctx, filter, opts...)
	if err != nil {
		return nil, false, err
	}
	defer cursor.Close(context.WithoutCancel(ctx))
	got := map[string]string{}
	n := 0
	for cursor.Next(ctx) {
		if n++; limit > 0 && n > limit {
			return nil, false, nil
		}
		var d struct {
			W   string `bson:"w"`
			RID string `bson:"rid"`
		}
		if err := cursor.Decode(&d); err != nil {
			return nil, false, err
		}
		got[d.W] = d.RID
	}
	return got, true, cursor.Err()
}
