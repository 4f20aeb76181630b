package mongostore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/calaimfhir/calaimfhir/resources"
)

// Conditional create (If-None-Exist) without transactions.
//
// A search followed by an insert lets two concurrent requests both see "no match" and both
// create. The gate here is a unique _id in the conditional_claims collection. The key of a
// condition is the resource type plus a hash of its canonical encoding (clauses normalized and
// sorted, so equal conditions written differently share a key) and of its Partition (the
// caller's organization; the clauses the Service adds for the caller, its scope and the matches
// it may not see, are left out). Claims form a chain of generations "key|0", "key|1", ...; at
// any time the highest generation is the live one:
//
//  1. Search the condition: one match => return it; several => KindPreconditionFailed.
//  2. Insert claim "key|g" (starting at g=0) naming the new resource id. The insert succeeds for
//     exactly one caller: it stores the resource (Put version 1) and returns (nil, nil). If that
//     Put fails, it marks its claim released (rel: true) on the way out.
//  3. A caller whose insert hits the duplicate reads the claim, then checks whether the claimed
//     resource exists (any version, deleted or not), then searches again:
//     - one match => return it; several => KindPreconditionFailed;
//     - no match, and the claim is released, or its resource exists (so it was deleted or changed
//     and no longer matches), or the claim is older than claimLease (its creator died before
//     storing the resource) => the claim is stale: go to 2 with g+1;
//     - no match and the claimed resource is not visible yet => its creator is at work: wait
//     with a short backoff and repeat 3, for at most claimWait, then KindUnavailable (retry).
//
// Existence is checked before the search so that a resource created in between is found by the
// search rather than mistaken for a stale claim. Stale claims are replaced by inserting the next
// generation instead of by a compare-and-set update: updates are not atomic on FerretDB, unique
// inserts are, so exactly one caller takes over a stale claim on every backend.
//
// The conditional creates of a transaction (Apply) take claims of the same chains, so they are
// serialized with CreateIfNoneExist and with each other; such a claim names its transaction and
// is judged by that transaction's state rather than by claimLease (see claimCond).
//
// The only timing assumption is claimLease: a creator that needs longer than that between its
// claim and its Put, and whose clock is that far off, could be overtaken; both the lease and
// clock skew between servers are in seconds, the Put in milliseconds. Claims are never
// deleted (a gap in a chain could admit two live claims); the chain of a condition grows by one
// each time its resource is deleted or changed and the condition is used again.
var (
	claimLease = 30 * time.Second
	claimWait  = 5 * time.Second
)

type claim struct {
	ID  string        `bson:"_id"`
	Key string        `bson:"key"`
	G   int64         `bson:"g"`
	RID string        `bson:"id"`
	At  bson.DateTime `bson:"at"`
	Rel bool          `bson:"rel"`
	W   string        `bson:"w"`            // token of the claiming call (recognizes a retried insert)
	Tx  string        `bson:"tx,omitempty"` // the transaction (Apply) that took the claim
}

// condKey is the canonical key of a condition on typ.
func condKey(typ string, cond *resources.Query) string {
	parts := make([]string, 0, len(cond.Clauses))
	for _, c := range cond.Clauses {
		if len(c.NotIDs) > 0 || len(c.Or) > 0 {
			// What the Service adds to a condition for its caller (Service.match): the caller's
			// scope (an Or, never request syntax) and the matches it may not see (NotIDs).
			// A caller's creates of one condition share a chain whatever it excludes, and
			// whichever way its matches were found; other organizations' creates have chains
			// of their own (Partition).
			continue
		}
		var enc []any
		switch {
		case len(c.AnyKey) > 0:
			enc = []any{"k", sortedUnique(c.AnyKey)}
		case len(c.NoKey) > 0:
			enc = []any{"nk", sortedUnique(c.NoKey)}
		case len(c.IDs) > 0:
			enc = []any{"i", sortedUnique(c.IDs)}
		case len(c.Strings) > 0:
			ms := make([]string, 0, len(c.Strings))
			for _, m := range c.Strings {
				b, _ := json.Marshal([]any{m.Param, m.Value, m.Contains})
				ms = append(ms, string(b))
			}
			enc = []any{"s", sortedUnique(ms)}
		case len(c.Dates) > 0:
			enc = []any{"d", valueMatches(c.Dates)}
		case len(c.Numbers) > 0:
			enc = []any{"n", valueMatches(c.Numbers)}
		case len(c.LastUpdated) > 0:
			rs := make([]string, 0, len(c.LastUpdated))
			for _, r := range c.LastUpdated {
				rs = append(rs, bound(r.From)+":"+bound(r.To)+":"+strconv.FormatBool(r.Not))
			}
			enc = []any{"u", sortedUnique(rs)}
		default:
			enc = []any{"none"}
		}
		b, _ := json.Marshal(enc)
		parts = append(parts, string(b))
	}
	if cond.Partition != "" {
		parts = append(parts, `["p",`+strconv.Quote(cond.Partition)+`]`)
	}
	b, _ := json.Marshal(sortedUnique(parts))
	sum := sha256.Sum256(b)
	return typ + "|" + hex.EncodeToString(sum[:])
}

// valueMatches encodes value matches canonically (alternatives and bounds sorted). Invalid
// UTF-8 in a parameter name is replaced by json.Marshal, which at worst makes two conditions share
// a claim chain: a claim only serializes creates, the search decides.
func valueMatches(ms []resources.ValueMatch) []string {
	out := make([]string, 0, len(ms))
	for _, m := range ms {
		alts := make([]string, 0, len(m.Any))
		for _, conj := range m.Any {
			bs := make([]string, 0, len(conj))
			for _, b := range conj {
				bs = append(bs, strconv.FormatBool(b.OnHi)+string(b.Op)+strconv.FormatInt(b.Micros, 10)+"|"+strconv.FormatFloat(b.Num, 'g', -1, 64))
			}
			alts = append(alts, strings.Join(sortedUnique(bs), "&"))
		}
		b, _ := json.Marshal([]any{m.Param, sortedUnique(alts)})
		out = append(out, string(b))
	}
	return sortedUnique(out)
}

func bound(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return strconv.FormatInt(ceilMicro(t), 10)
}

func sortedUnique(v []string) []string {
	v = slices.Clone(v)
	slices.Sort(v)
	return slices.Compact(v)
}

// CreateIfNoneExist implements resources.Store. See the protocol above.
func (s *Store) CreateIfNoneExist(ctx context.Context, r *resources.Resource, cond *resources.Query) (*resources.Resource, error) {
	if r.VersionID != 1 {
		return nil, resources.Errorf(resources.KindInternal, "mongostore: conditional create of %s/%s with version %d", r.Type, r.ID, r.VersionID)
	}
	if _, _, err := s.colls(ctx, r.Type, true); err != nil {
		return nil, err
	}
	if cond == nil {
		return nil, s.Put(ctx, r)
	}
	q := &resources.Query{Type: r.Type, Clauses: cond.Clauses, Count: 2}
	check := func(ctx context.Context) (*resources.Resource, bool, error) { return s.matchOne(ctx, q) }
	if res, done, err := check(ctx); done {
		return res, err
	}
	cl, res, err := s.claimCond(ctx, r.Type, r.ID, "", cond, check)
	switch {
	case errors.Is(err, errClaimBusy):
		e := resources.Errorf(resources.KindUnavailable, "a conditional create with the same condition is still in progress; retry")
		e.RetryAfter = 1
		return nil, e
	case cl == nil:
		return res, err
	}
	return nil, s.createClaimed(ctx, r, cl)
}

// errClaimBusy: the live claim of the condition is held by a creator still at work (for
// longer than claimWait). errOwnClaim: the live claim is held by the calling transaction itself
// (an earlier write of the same Apply with the same condition).
var (
	errClaimBusy = errors.New("a conditional create with the same condition is in progress")
	errOwnClaim  = errors.New("an earlier write of the transaction holds the condition")
)

// claimCond takes the live claim of cond's chain for resource rid of type typ (steps 2 and 3
// of the protocol above). check searches the condition: when it reports done, claimCond
// returns its result with a nil claim. txid names the transaction taking the claim (Apply
// without multi-document transactions), "" otherwise.
//
// A claim taken by a transaction is not judged by its age but by the state of its transaction
// (see "Transactions" in the package comment): in progress while the transaction is pending or
// being applied (however long it runs: its writer keeps it alive), stale once it is finished,
// whether it committed (the resource exists) or was rolled back (it never will). A transaction
// whose writer died is settled first (rolled back, or finished if it had committed).
func (s *Store) claimCond(ctx context.Context, typ, rid, txid string, cond *resources.Query, check func(context.Context) (*resources.Resource, bool, error)) (*claim, *resources.Resource, error) {
	cur := s.db.Collection(typ)
	key := condKey(typ, cond)
	start := time.Now()
	backoff := 2 * time.Millisecond
	token := newToken()
	for g := int64(0); ; {
		cl := claim{ID: key + "|" + strconv.FormatInt(g, 10), Key: key, G: g, RID: rid, At: bson.NewDateTimeFromTime(time.Now()), W: token, Tx: txid}
		_, err := s.claims.InsertOne(ctx, cl)
		if err == nil {
			return &cl, nil, nil
		}
		if !mongo.IsDuplicateKeyError(err) {
			return nil, nil, fail(err, "conditional create")
		}
	held:
		for {
			var h claim
			err := s.claims.FindOne(ctx, bson.D{{Key: "_id", Value: cl.ID}}).Decode(&h)
			if errors.Is(err, mongo.ErrNoDocuments) {
				break held // not expected (claims are not deleted): try to take it
			}
			if err != nil {
				return nil, nil, fail(err, "conditional create")
			}
			if h.W == token {
				return &cl, nil, nil // our insert, retried by the driver
			}
			if txid != "" && h.Tx == txid {
				return nil, nil, errOwnClaim
			}
			// The holder's transaction is settled before the search, so that a resource it
			// committed is found by the search (like the existence check below).
			txDone := false
			if h.Tx != "" {
				seen, err := s.settleTxs(ctx, []string{h.Tx}, time.Time{})
				if err != nil {
					return nil, nil, err
				}
				txDone = seen[h.Tx] != seenPending
			}
			exists, err := exists(ctx, cur, h.RID)
			if err != nil {
				return nil, nil, err
			}
			if res, done, err := check(ctx); done {
				return nil, res, err
			}
			if h.Rel || exists || txDone || h.Tx == "" && time.Since(h.At.Time()) > claimLease {
				g++
				break held
			}
			if time.Since(start) > claimWait {
				return nil, nil, errClaimBusy
			}
			select {
			case <-ctx.Done():
				return nil, nil, fail(ctx.Err(), "conditional create")
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 50*time.Millisecond)
		}
	}
}

// createClaimed stores r after its caller won claim cl; on failure the claim is released.
func (s *Store) createClaimed(ctx context.Context, r *resources.Resource, cl *claim) error {
	err := s.Put(ctx, r)
	if err != nil {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_, _ = s.claims.UpdateOne(rctx,
			bson.D{{Key: "_id", Value: cl.ID}, {Key: "id", Value: cl.RID}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "rel", Value: true}}}})
	}
	return err
}

// matchOne runs the condition: done is false when nothing matched.
func (s *Store) matchOne(ctx context.Context, q *resources.Query) (res *resources.Resource, done bool, err error) {
	page, err := s.Search(ctx, q)
	if err != nil {
		return nil, true, err
	}
	switch len(page.Resources) {
	case 0:
		return nil, false, nil
	case 1:
		return page.Resources[0], true, nil
	default:
		return nil, true, resources.Errorf(resources.KindPreconditionFailed, "several %s resources match the condition", q.Type)
	}
}

// exists reports whether a current document (deleted or not) exists for id.
func exists(ctx context.Context, cur *mongo.Collection, id string) (bool, error) {
	err := cur.FindOne(ctx, bson.D{{Key: "_id", Value: id}}, options.FindOne().SetProjection(bson.D{{Key: "_id", Value: 1}})).Err()
	if errors.Is(err, mongo.ErrNoDocuments) {
		return false, nil
	}
	if err != nil {
		return false, fail(err, "conditional create")
	}
	return true, nil
}
