// Package mongostore is the MongoDB implementation of resources.Store, and the only package that
// imports the MongoDB driver. It is tested against FerretDB (internal/ferrettest) and designed
// for MongoDB replica sets and, later, sharded clusters: it uses only single-document writes,
// unique-key inserts, lookups by _id and equality/range filters on precomputed fields, and never
// relies on a multi-document transaction for correctness.
//
// # Layout
//
// Per resource type T (T is a FHIR type name, so it never contains "_"):
//
//	T          current versions  {_id: id, v, lu, del, json, k, x, o, w, [tx], [txp]}
//	T_history  every version     {_id: "id/v", id, v, lu, del, json, k, x, o, w, at, [tx]}
//	T_idx      one per value     {_id: "w/n", rid, v, w, p, s | lo, hi | n}  (value searches)
//	conditional_claims           {_id: key|gen, key, g, id, at, rel, w, [tx]}  (see claims.go)
//	transactions                 {_id: T, at, w: [{t, id, v, w}]}  (see "Transactions")
//	transaction_decisions        {_id: T, at, o}
//
// v is the version (int64); lu is meta.lastUpdated in Unix microseconds (BSON dates only hold
// milliseconds, and keyset paging compares exact values); del marks a tombstone (always present);
// json is the resource as served, kept verbatim as a string (absent on tombstones); k are the
// equality search keys (Keys.Eq; empty on tombstones); x are the value keys (Keys.Strings, Dates,
// Numbers as {s: [{p, v}], d: [{p, lo, hi}], n: [{p, v}]}; absent on tombstones); o are the _sort
// values (Keys.Sort, see "Sorting by parameters"; absent on tombstones); w is a random
// token naming the Put that wrote the version, so it names one version of one resource; at is the
// wall-clock time the history entry was written; tx and txp are the markers of transactions
// (Apply without multi-document transactions, see "Transactions").
//
// # Writes without transactions
//
// FerretDB has no multi-document transactions, and its updates are not atomic either: an update
// filtered on {_id, v} reads the matching document and then writes it back by _id, so several
// concurrent "compare-and-set" updates of the same version can all report a match (measured in
// this package's tests: up to 13 of 30). Only unique-key inserts are atomic everywhere. So a Put
// of version v first inserts the history entry "id/v" — the unique _id makes exactly one writer
// the owner of version v, and a loser gets KindConflict — and only then moves the current
// document from v-1 to v (insert for v=1, replace filtered on {_id, v: v-1} otherwise). Because
// only the owner of version v ever writes the transition v-1 -> v, the non-atomic update of
// FerretDB cannot lose an update, and on MongoDB the filtered replace is atomic anyway.
//
// If the current document is not at v-1 (the caller's version was too high), the owner deletes
// its history entry again and returns KindConflict. The write token w lets a writer recognize its
// own documents when the driver retried an insert after a network error.
//
// Crash window: a writer that dies between the two writes leaves history entry v while the
// current document stays at v-1 (or absent for v=1). Until it is repaired, History and VRead show
// version v although Read shows v-1; Search is unaffected (it reads current documents only). The
// next Put of version v hits the duplicate history entry, sees the current document still at v-1
// and the entry older than rollForwardAfter, and rolls the entry forward (applies it to the current
// document; the content is exactly what the dead writer would have written, so doing it twice is
// harmless); it then returns KindConflict and the caller re-reads. A writer whose replace finds no
// match re-reads the current document and treats its own version as committed if someone rolled it
// forward meanwhile, so a repair racing a slow writer cannot lose that writer's version.
//
// A Put that fails with KindUnavailable after its history insert may still take effect later
// (the entry is rolled forward), like any write whose acknowledgement was lost.
//
// A create with an id the server just generated (CreateFresh, resources.FreshCreator) needs no
// owner of version 1: no other writer can know the id. It writes the history entry, the index
// documents and the current document at the same time, one round trip instead of two in a row
// (on FerretDB each is a PostgreSQL commit); what failed beside a current document that went
// in is written again, and without the current document the others are deleted.
// Readers may meet the current document a moment before its history entry or the reverse, as
// they may meet Put's history entry before its current document; VRead falls back to the
// current document when the entry is missing.
//
// When the deployment supports transactions (hello reports a replica set name, or "isdbgrid" for
// mongos) both writes run in one transaction and none of the above windows exist.
//
// A history entry marked by a transaction (tx, see "Transactions") is never rolled forward by
// this repair: only its transaction's commit makes it a version. A writer that meets one
// settles the transaction if it is abandoned (and removes an entry left behind by a rollback),
// and gets KindConflict.
//
// # Transactions
//
// Apply (resources.Transactor) writes several versions so that readers see all of them or none.
// With multi-document transactions it runs the writes of Put's transaction path for every
// version in one session transaction (WithTransaction, which retries transient conflicts) and
// searches the condition of each conditional create inside it. The conditional creates also
// take their claims (claims.go) before the transaction, as CreateIfNoneExist does: a condition
// search in a snapshot-isolated transaction does not conflict with another transaction that
// inserts a matching resource, so without the claim two such creates could both commit.
//
// Without them (FerretDB, standalone servers) Apply runs the protocol below. T is a random
// token naming the transaction. Its record {_id: T, at, w} in the transactions collection lists
// type, id, version and write token of every write; at is a heartbeat, refreshed every
// txTimeout/4 while a writer or recovery works on it; the record is deleted when the
// transaction is finished, so that collection stays small. Its decision {_id: T, at, o: "c" |
// "a"} in transaction_decisions is kept (one small document per transaction, like the claims).
//
//  1. Begin: insert the record.
//  2. Prepare, nothing of which any reader shows:
//     - conditional creates: search the condition (an earlier write of the transaction that
//     matches counts; a resource that an earlier write replaces is judged by that write's
//     version), then take the condition's claim naming T (claimCond); a match, or a claim
//     held by another creator at work for longer than claimWait, is KindConflict;
//     - insert the history entries "id/v", marked tx: T, one InsertMany per type: the unique
//     _id is Put's version gate, so the transaction owns every version it writes or gets
//     KindConflict (after the same repairs as Put);
//     - for each update whose previous version is not the transaction's own: read the current
//     document, which must be at v-1 (else KindConflict), and mark it txp: T. Both by _id
//     alone: the transaction owns v, so nobody else moves that document meanwhile;
//     - insert the index documents of every version (T_idx, one InsertMany per type;
//     unmatched until a current document carries their w).
//     A failure rolls everything back (clear the txp markers, delete T's index documents and
//     history entries, filtered on T's write tokens, then the record) and returns an
//     *resources.ApplyError naming the write.
//  3. Commit: insert the decision {_id: T, o: "c"}. This unique-key insert is the commit point:
//     a recovery aborts by inserting {_id: T, o: "a"}, so exactly one of the two wins on every
//     backend (an update of the record would not be atomic on FerretDB), and since decisions
//     are kept, a writer that was taken for dead finds the abort and fails (KindUnavailable,
//     after rolling back what it may have written since).
//  4. Apply: insert the current documents of new resources (one InsertMany per type), replace
//     the others from v-1 to v as Put does (the new documents carry tx: T and no txp), delete
//     the updated resources' older index documents, delete the record. Steps 3 and 4 run to
//     the end even when the caller's context is cancelled.
//
// A transaction is thus pending (record, no decision), committed and being applied (record,
// "c"), being rolled back (record, "a"), finished and committed (decision "c" only), or finished
// and rolled back (no record; decision "a" or none). The tx markers stay: on a history entry it
// says that the entry is a version only if T committed; on a current document, until the
// resource's next write, it names T's committed version. Clearing markers would take one update
// per version (about 11 ms each on FerretDB, against 0.2 ms for an insert), and on a current
// document a second writer besides the owner of the next version, which FerretDB's non-atomic
// updates cannot afford.
//
// Readers resolve the markers of the documents they read: records of unknown transactions in
// one request, decisions by _id. A finished transaction never changes again, so the process
// remembers finished ones (and when it learned it): the cache only spares lookups.
//   - A current document marked tx: T holds T's committed version. Unless T was finished before
//     the read started, the reader waits until it is (T's writer is moving the other versions),
//     so that no read after it can miss them; a search then runs again, since the other
//     documents it read may predate T's moves.
//   - A current document marked txp: T holds the previous version: shown as is while T is
//     pending or being rolled back (or finished before the read: a marker left by a rollback);
//     when T committed or finished during the read, the reader waits for T and reads again.
//   - A history entry marked tx: T (History, VRead) is a version if T committed (and, if T is
//     still being applied, after waiting for it); while T is pending or being rolled back it is
//     left out; once T is finished as rolled back, the entry (one that a slow writer inserted
//     after a recovery's rollback) is left out and deleted. History's Total leaves out the
//     entries of transactions in progress and not committed.
//
// What a reader observes: nothing of a pending or failed transaction, ever; a read that returns
// any version of a committed transaction returns only once all of its versions are applied, so
// every later read sees them all; and a search page never holds new versions of a transaction
// beside previous versions it replaces (both carry markers). What a search cannot detect is
// absence: a search running exactly while T's documents are moved can miss a resource whose
// previous version matched (read after its move) together with one whose new version matches
// (read before its move), the non-snapshot effect that Put has too ("Value searches"); and a
// search's Total is counted by a separate request, exact at its own instant. History's Total
// counts an entry left behind by a rolled-back slow writer until a reader or writer meets it.
//
// Crash windows and recovery. A record whose at is older than txTimeout belongs to a dead or
// stalled writer. Whoever meets the transaction settles it: a reader resolving a marker, a
// writer whose history insert hits one of its entries (Put, Apply), a conditional create
// waiting on its claim, and, at most once per txTimeout per Store, a sweep of the transactions
// collection at the start of an Apply. Settling inserts the abort decision unless there is a
// decision, then rolls back (abort) or runs step 4 from the history entries (commit),
// heartbeating meanwhile; every step is idempotent and filtered on T's tokens, so repeating it,
// even concurrently, is harmless. By window:
//   - in 1: nothing, or a lone record that is rolled back later;
//   - in 2: the entries are invisible and the txp documents read as their previous versions;
//     the versions and claims stay taken (KindConflict; conditional creates on the same
//     condition wait for claimWait) until the rollback after txTimeout;
//   - after 3 and in 4 (committed, not all applied): a reader meeting a marker waits, for up to
//     txTimeout, then applies the rest itself; a transaction of creates only offers no marker
//     to meet before it is applied, so its resources read as not found until the sweep.
//
// A stalled writer whose transaction was rolled back by a recovery fails at step 3 and rolls
// back what it wrote; an entry it inserted after the recovery and then abandoned is invisible
// and deleted by the next reader or writer that meets it. A writer whose commit request fails
// without an answer leaves the outcome to recovery and returns KindUnavailable: its writes may
// still take effect, like a Put whose acknowledgement was lost. The timing assumptions are those
// of the rest of the package: no live writer pauses for txTimeout (30s) between heartbeats, and
// clock skew between servers is far smaller.
//
// Cost, measured on FerretDB (SQLite backend, 1,000 Tasks stored; BenchmarkSixResources): six
// new resources of two types cost 3 + 3 requests per type (history, index documents, current
// documents), about 6 ms against 105 ms for six Puts (each Put of a version 1 also scans the index
// collection for older index documents, which an Apply of creates skips: a version 1 has none).
// Six updates cost three requests more per update than Put (check, mark; the replace and the
// index clean-up are Put's), about 1.4 s against 1.2 s for six Puts: FerretDB scans the current
// collection for every {_id, v} replace, Put's and Apply's alike. A reader pays one lookup
// (two for history entries) the first time it meets a transaction's marker.
//
// # Value searches
//
// Equality keys are answered by the multikey index on k ($in for AnyKey, a plain equality for
// a one-value AnyKey, $nin for NoKey: on an array, $nin matches when no element equals any
// listed value). One-value keys are written at the top level of the filter, where FerretDB
// pushes them down to its backend (see compile). String prefix/contains, date and
// number clauses need more: the bounds of one alternative must hold for ONE value (a resource
// with periods in January and March is not "within February" although one period starts after
// and one ends before it). On MongoDB that calls for $elemMatch on an array of subdocuments,
// which FerretDB answers wrongly (no match at all), and even on MongoDB a multikey index can
// bound only one side of such a range. So each value is one small document in the side
// collection T_idx, with p = kind + parameter ("s␟name", "d␟birthdate", "n␟value-quantity", the
// kind keeping "has any value" alternatives apart) and the value in s, lo/hi or n. One
// alternative of a clause is one conjunction on one index document, so it is exact by
// construction, and every one is a range on a compound index:
//
//	p_s {p, s}          string prefix: /^quoted/ (an index range); contains: /quoted/ (scans p's keys)
//	p_lo_hi {p, lo, hi}  date bounds on lo, or on both
//	p_hi {p, hi}        date bounds on hi only
//	p_n {p, n}          number bounds
//	rid_v {rid, v}      clean-up of older versions
//	w {w}               roll-back of a version; intersecting clauses
//
// Request values reach these filters only as numbers, as strings compared for equality, or in a
// regular expression built by regexp.QuoteMeta (plus \x00 for NUL, which BSON patterns cannot hold).
//
// A search with value clauses first evaluates them on T_idx and gets, per clause, the set of
// write tokens w (and resource ids) of the index documents that match; the sets are intersected,
// and the search on T adds {_id: {$in: ids}, w: {$in: tokens}}, keeping the keyset paging on
// (lu, _id) and an exact Total (CountDocuments). Joining on w rather than on the id is what makes
// the result exact while versions change: an index document of any other version (an older one
// not yet cleaned up, a newer one written ahead, one of a rolled-back Put) has another w and
// cannot select the current document. A clause matching more than probeLimit index documents is
// not listed: it is intersected inside T_idx with a narrower clause ({w: {$in: narrow set}} plus
// the clause, on the w index), or, when every value clause is that broad, the search walks the
// current documents matching the other clauses in page order and checks the value clauses in
// memory on their x (the same values, same semantics), until the page is full; Total then walks
// them all. So $in lists stay below probeLimit and paging and totals stay exact in every plan.
//
// Writes: after its history entry (which carries x, so a roll-forward can redo everything), a Put
// inserts the index documents of its version (_id "w/n": a retry or a roll-forward rewriting them
// only meets duplicate keys), then moves the current document to the version, then deletes the
// resource's index documents of versions up to its own with another w. A tombstone writes none.
// Because the new version's documents exist before the current document names them, a
// committed version is always fully indexed; leftovers of a crash are only garbage (never a
// wrong match) and the next Put of the resource removes them. The one visible effect of the
// non-atomic write is on concurrent searches: a search that reads T_idx before a Put and T after
// it misses that resource (it found the old w, the document has the new one), like a read that
// ran just before the write; it never returns a resource for values it does not hold. A Put that
// fails after its history insert leaves the resource at its previous version, indexed as such,
// until the version is rolled forward (with its index documents). On the transaction path all
// these writes are in the one transaction.
//
// Exactness notes: dates compare as exact int64 microseconds (resources.ValueMatch.MatchDate
// compares float64, which differs only beyond 2^53 µs, i.e. after the year 2255, by less than
// a millisecond); numbers compare as float64 like MatchNumber; a string clause whose value is not
// valid UTF-8 matches nothing (stored values always are, and neither MongoDB's PCRE nor Go's regexp
// accepts such a pattern).
//
// # Sorting by parameters
//
// A search with SortBy orders by the parameters' sort values (resources.SortKey: the lowest
// value ascending, the highest descending, encoded so that byte order is value order), then by
// lu and _id in q.Sort's direction. The values are in the o field, o.<param>.r and o.<param>.d
// (the parameter name escaped as a field name: '.', '$', '%' and NUL as %XX), so the sort
// pattern and the keyset condition are plain comparisons on fields; "strictly after the cursor"
// is the expanded lexicographic comparison (the first component after, or it equal and the
// second after, ...), each component in its own direction, and the next cursor carries the last
// row's values (Cursor.Values).
//
// A resource without a value for a parameter must sort last in both directions, like
// resources.SortMissingAsc / SortMissingDesc (the SQLite store's COALESCE). MongoDB sorts an
// absent field lowest, so last in descending order only. So both directions sort descending:
// descending on o.p.d, the highest value; ascending on o.p.r, the lowest value with its byte
// order reversed (revKey: two hex digits of 255-b per byte, then '~'). A resource without a
// value has no entry, hence sorts last either way; in the keyset condition "after v" is
// {$or: [{f: {$lt: v}}, {f: {$exists: false}}]}, and a cursor holding the missing sentinel is
// equal to {f: {$exists: false}} and has nothing after it in that component. (Until
// 2026-11-23 the current document stored the sentinels for every parameter it lacked, about 24
// subdocuments for a Task; FerretDB decodes every field of every document it reads, and with
// them a read by id on FerretDB/PostgreSQL took 1.6 times the raw driver's, 1.25 times
// without: see docs/benchmarks.md.) A real value
// equal to a sentinel ("" descending, one starting with U+10FFFF ascending) sorts just before
// the resources without one instead of among them. History entries and current documents hold
// the same entries (the parameters with values). A parameter that no document of the type
// carries (not one of resources.Params, or a composite) is a constant (every resource lacks
// it): it is left out of the sort pattern and decided in memory in the keyset condition.
// Documents written before a parameter was added to resources.Params lack its entry, so they
// sort as resources without a value until they are written again; so do documents written
// before the change above, whose o holds {a, d} entries (a database from before it needs its
// current documents written again, e.g. by an update, to sort by parameters as before).
//
// No index serves these orders: the filter is answered as for any search (k index, _id $in of
// the value candidates), and the database sorts the matches in memory, keeping count+1 of them
// (a top-k sort, bounded memory). The in-memory walk of broad value clauses uses the same
// pattern without a limit, so the database sorts all the matches of the other clauses before
// the walk (MongoDB 6.0 and later spill a sort beyond its memory limit to disk by default; the
// deployment uses 7.0). Searches without SortBy (the polling queries) keep the (lu, _id) order
// of the lu_id and k_lu_id indexes. A query may name at most 30 distinct sort fields (sort
// patterns hold 32 keys).
package mongostore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/connstring"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/topology"

	"github.com/calaimfhir/calaimfhir/resources"
)

// DefaultDatabase is used when the URI names no database.
const DefaultDatabase = "calaimfhir"

const (
	claimsCollection = "conditional_claims"
	historySuffix    = "_history"

	// rollForwardAfter is how old an unapplied history entry must be before another writer
	// applies it (see the package comment).
	rollForwardAfter = 10 * time.Second

	defaultServerSelectionTimeout = 5 * time.Second
)

// Options tune Open.
type Options struct {
	// ServerSelectionTimeout bounds how long an operation waits for a reachable server before
	// failing with KindUnavailable. Zero keeps the URI's serverSelectionTimeoutMS, or 5s.
	ServerSelectionTimeout time.Duration
	// DisableTransactions forces the transaction-free write path even on a replica set.
	DisableTransactions bool
}

// Store is a resources.Store on MongoDB.
type Store struct {
	client    *mongo.Client
	db        *mongo.Database
	claims    *mongo.Collection
	txs       *mongo.Collection // transaction records (see "Transactions")
	decisions *mongo.Collection // transaction decisions
	txn       bool              // the deployment supports multi-document transactions

	ensured sync.Map // type -> struct{}: collections whose indexes exist

	done      doneTxs      // transactions known to be finished (see settleTxs)
	lastSweep atomic.Int64 // Unix nanoseconds of the last sweep for abandoned transactions
}

var _ resources.Store = (*Store)(nil)

// Open connects to the MongoDB deployment at uri, whose path names the database (default
// "calaimfhir"), and creates the collections' indexes (idempotent).
// checkConsistency refuses URI options under which the server's reads would not see its own
// acknowledged writes. Every write is checked by reading back what it committed (version
// compare-and-set, conditional-create claims, the plan member keys' check after commit): a
// secondary may not have it yet, and w=0 does not wait for the write at all.
func checkConsistency(cs *connstring.ConnString) error {
	if rp := cs.ReadPreference; rp != "" && !strings.EqualFold(rp, "primary") {
		return resources.Errorf(resources.KindInternal, "the MongoDB URI asks for readPreference=%s: this server reads from the primary only (its writes are checked by reading them back); remove the option", rp)
	}
	if cs.WNumberSet && cs.WNumber == 0 {
		return resources.Errorf(resources.KindInternal, "the MongoDB URI asks for w=0 (unacknowledged writes): this server needs every write acknowledged; remove the option or use w=majority")
	}
	return nil
}

func Open(ctx context.Context, uri string, opts Options) (*Store, error) {
	cs, err := connstring.ParseAndValidate(uri)
	if err != nil {
		return nil, resources.Wrap(resources.KindInternal, err, "invalid MongoDB URI")
	}
	if err := checkConsistency(cs); err != nil {
		return nil, err
	}
	dbName := cs.Database
	if dbName == "" {
		dbName = DefaultDatabase
	}
	co := options.Client().ApplyURI(uri)
	switch {
	case opts.ServerSelectionTimeout > 0:
		co.SetServerSelectionTimeout(opts.ServerSelectionTimeout)
	case !cs.ServerSelectionTimeoutSet:
		co.SetServerSelectionTimeout(defaultServerSelectionTimeout)
	}
	client, err := mongo.Connect(co)
	if err != nil {
		return nil, resources.Wrap(resources.KindInternal, err, "invalid MongoDB client options")
	}
	s := &Store{client: client, db: client.Database(dbName)}
	s.claims = s.db.Collection(claimsCollection)
	s.txs = s.db.Collection(txCollection)
	s.decisions = s.db.Collection(decisionCollection)
	if err := s.init(ctx, opts); err != nil {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = client.Disconnect(dctx)
		return nil, err
	}
	return s, nil
}

func (s *Store) init(ctx context.Context, opts Options) error {
	var hello struct {
		SetName string `bson:"setName"`
		Msg     string `bson:"msg"`
	}
	err := s.db.RunCommand(ctx, bson.D{{Key: "hello", Value: 1}}).Decode(&hello)
	if err != nil {
		return fail(err, "hello")
	}
	s.txn = !opts.DisableTransactions && (hello.SetName != "" || hello.Msg == "isdbgrid")
	for _, typ := range resources.Types {
		if err := s.ensure(ctx, typ); err != nil {
			return err
		}
	}
	return nil
}

var (
	currentIndexes = []mongo.IndexModel{
		{Keys: bson.D{{Key: "k", Value: 1}, {Key: "lu", Value: 1}, {Key: "_id", Value: 1}}, Options: options.Index().SetName("k_lu_id")},
		{Keys: bson.D{{Key: "lu", Value: 1}, {Key: "_id", Value: 1}}, Options: options.Index().SetName("lu_id")},
	}
	idxIndexes = []mongo.IndexModel{
		{Keys: bson.D{{Key: "p", Value: 1}, {Key: "s", Value: 1}}, Options: options.Index().SetName("p_s")},
		{Keys: bson.D{{Key: "p", Value: 1}, {Key: "lo", Value: 1}, {Key: "hi", Value: 1}}, Options: options.Index().SetName("p_lo_hi")},
		{Keys: bson.D{{Key: "p", Value: 1}, {Key: "hi", Value: 1}}, Options: options.Index().SetName("p_hi")},
		{Keys: bson.D{{Key: "p", Value: 1}, {Key: "n", Value: 1}}, Options: options.Index().SetName("p_n")},
		{Keys: bson.D{{Key: "rid", Value: 1}, {Key: "v", Value: 1}}, Options: options.Index().SetName("rid_v")},
		{Keys: bson.D{{Key: "w", Value: 1}}, Options: options.Index().SetName("w")},
	}
	historyIndexes = []mongo.IndexModel{
		{Keys: bson.D{{Key: "id", Value: 1}, {Key: "v", Value: -1}}, Options: options.Index().SetName("id_v")},
		{Keys: bson.D{{Key: "lu", Value: -1}, {Key: "id", Value: -1}, {Key: "v", Value: -1}}, Options: options.Index().SetName("lu_id_v")},
	}
)

// ensure creates the indexes of typ's collections once per Store (createIndexes is idempotent,
// so concurrent or repeated calls by several servers are harmless).
func (s *Store) ensure(ctx context.Context, typ string) error {
	if _, ok := s.ensured.Load(typ); ok {
		return nil
	}
	// One index per command: FerretDB v1.24 panics on a createIndexes naming several indexes
	// that all exist already (a slice index bug in validateIndexesForCreation).
	for _, ix := range currentIndexes {
		if _, err := s.db.Collection(typ).Indexes().CreateOne(ctx, ix); err != nil {
			return fail(err, "create indexes")
		}
	}
	for _, ix := range historyIndexes {
		if _, err := s.db.Collection(typ+historySuffix).Indexes().CreateOne(ctx, ix); err != nil {
			return fail(err, "create indexes")
		}
	}
	for _, ix := range idxIndexes {
		if _, err := s.idx(typ).Indexes().CreateOne(ctx, ix); err != nil {
			return fail(err, "create indexes")
		}
	}
	s.ensured.Store(typ, struct{}{})
	return nil
}

var typePattern = regexp.MustCompile(`^[A-Z][A-Za-z0-9]{0,63}$`)

// colls returns the current and history collections of typ. Writes create the indexes of a type
// not in resources.Types on first use; reads never create anything (a missing collection reads
// as empty).
func (s *Store) colls(ctx context.Context, typ string, write bool) (cur, hist *mongo.Collection, err error) {
	if !typePattern.MatchString(typ) {
		return nil, nil, resources.Errorf(resources.KindBadRequest, "invalid resource type %q", typ)
	}
	if write {
		if err := s.ensure(ctx, typ); err != nil {
			return nil, nil, err
		}
	}
	return s.db.Collection(typ), s.db.Collection(typ + historySuffix), nil
}

// idx returns the value index collection of typ (see "Value searches" in the package comment).
// Callers have validated typ (colls).
func (s *Store) idx(typ string) *mongo.Collection { return s.db.Collection(typ + idxSuffix) }

// doc is a current document or a history entry.
type doc struct {
	ID   string     `bson:"_id"`
	RID  string     `bson:"id,omitempty"` // history only: the resource id
	V    int64      `bson:"v"`
	LU   int64      `bson:"lu"`
	Del  bool       `bson:"del"`
	JSON string     `bson:"json,omitempty"`
	K    []string   `bson:"k"`
	X    *valueKeys `bson:"x,omitempty"` // value keys (absent on tombstones and when none)
	// O are the _sort values per parameter (see "Sorting by parameters"): in a history entry
	// those of the parameters with values, in a current document every sortable parameter.
	O  map[string]sortVal `bson:"o,omitempty"`
	W  string             `bson:"w,omitempty"`
	At bson.DateTime      `bson:"at,omitempty"` // history only
	// Tx names the transaction (Apply) that wrote the version: in a history entry until the
	// transaction is finished, in the current document until the resource's next write. Txp,
	// in a current document only, names a transaction that is preparing the next version. See
	// "Transactions" in the package comment.
	Tx  string `bson:"tx,omitempty"`
	Txp string `bson:"txp,omitempty"`
}

func histID(id string, v int64) string { return id + "/" + strconv.FormatInt(v, 10) }

func (d *doc) resource(typ string) *resources.Resource {
	r := &resources.Resource{
		Type:        typ,
		ID:          d.ID,
		VersionID:   d.V,
		LastUpdated: time.UnixMicro(d.LU).UTC(),
		Deleted:     d.Del,
	}
	if d.RID != "" {
		r.ID = d.RID
	}
	if !d.Del {
		r.JSON = []byte(d.JSON)
	}
	return r
}

// current is the current document for history entry d (the same fields, keyed by the
// resource id).
func (d *doc) current() *doc {
	c := *d
	c.ID, c.RID, c.At = d.RID, "", 0
	return &c
}

// readProjection leaves out the keys, which reads do not return.
var readProjection = bson.D{{Key: "k", Value: 0}, {Key: "x", Value: 0}, {Key: "o", Value: 0}}

func gone(r *resources.Resource) error {
	return resources.Errorf(resources.KindGone, "%s/%s was deleted", r.Type, r.ID)
}

// Read implements resources.Store. A current document carrying a transaction marker is
// resolved first (see "Transactions" in the package comment).
func (s *Store) Read(ctx context.Context, typ, id string) (*resources.Resource, error) {
	cur, _, err := s.colls(ctx, typ, false)
	if err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		start := time.Now()
		var d doc
		err = cur.FindOne(ctx, bson.D{{Key: "_id", Value: id}}, options.FindOne().SetProjection(readProjection)).Decode(&d)
		if errors.Is(err, mongo.ErrNoDocuments) {
			return nil, resources.Errorf(resources.KindNotFound, "%s/%s is not known", typ, id)
		}
		if err != nil {
			return nil, fail(err, "read")
		}
		if marked(&d) {
			seen, err := s.settleTxs(ctx, markers([]doc{d}), start)
			if err != nil {
				return nil, err
			}
			if rereadCurrent(&d, seen, true) {
				if err := pause(ctx, attempt); err != nil {
					return nil, err
				}
				continue
			}
		}
		r := d.resource(typ)
		if r.Deleted {
			return r, gone(r)
		}
		return r, nil
	}
}

// VRead implements resources.Store. The version of a transaction that is not committed (or
// was rolled back) does not exist for readers.
func (s *Store) VRead(ctx context.Context, typ, id string, version int64) (*resources.Resource, error) {
	_, hist, err := s.colls(ctx, typ, false)
	if err != nil {
		return nil, err
	}
	var d doc
	err = hist.FindOne(ctx, bson.D{{Key: "_id", Value: histID(id, version)}}, options.FindOne().SetProjection(readProjection)).Decode(&d)
	if err == nil && d.Tx != "" {
		fates, ferr := s.txFates(ctx, []string{d.Tx})
		if ferr != nil {
			return nil, ferr
		}
		switch fates[d.Tx] {
		case fateAborted:
			_ = dropOrphan(ctx, hist, &d)
			err = mongo.ErrNoDocuments
		case fatePending:
			err = mongo.ErrNoDocuments
		}
	}
	if errors.Is(err, mongo.ErrNoDocuments) {
		// A CreateFresh whose history entry failed beside its current document leaves
		// version 1 only there.
		if r, rerr := s.Read(ctx, typ, id); r != nil && r.VersionID == version && (rerr == nil || resources.IsKind(rerr, resources.KindGone)) {
			return r, rerr
		}
		return nil, resources.Errorf(resources.KindNotFound, "%s/%s has no version %d", typ, id, version)
	}
	if err != nil {
		return nil, fail(err, "vread")
	}
	r := d.resource(typ)
	if r.Deleted {
		return r, gone(r)
	}
	return r, nil
}

func newToken() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func conflict(r *resources.Resource) error {
	return resources.Errorf(resources.KindConflict, "%s/%s: version %d was not the next version (another write came first)", r.Type, r.ID, r.VersionID)
}

// Put implements resources.Store. See the package comment for the protocol.
func (s *Store) Put(ctx context.Context, r *resources.Resource) error {
	if r.VersionID < 1 || r.ID == "" {
		return resources.Errorf(resources.KindInternal, "mongostore: Put of %s/%s with version %d", r.Type, r.ID, r.VersionID)
	}
	cur, hist, err := s.colls(ctx, r.Type, true)
	if err != nil {
		return err
	}
	h := newEntry(r)
	if s.txn {
		return s.putTxn(ctx, r, cur, hist, h)
	}
	return s.put(ctx, r, cur, hist, h)
}

// CreateFresh implements resources.FreshCreator: r is version 1 under an id that NewID just
// generated, so no other writer can race for it (see "Writes without transactions": the
// history entry is written first only to make one writer the owner of a version). Without
// transactions the history entry, the index documents and the current document are written
// at the same time, one round trip instead of Put's two in a row; with them (and for anything
// but a new version 1) it is Put.
//
// The writes run to their end even when the caller goes away (an insert abandoned half-way
// could land after a clean-up). Once the current document is in, the resource is visible (it
// may have been read, even updated) and is never taken back: a history entry or index
// documents that failed beside it are written once more, and if that fails too the create is
// reported unavailable while the resource stays, like a Put whose acknowledgement was lost
// (VRead then finds version 1 in the current document; without index documents, value
// searches find the resource from its next version). When the current document did not go
// in, the history entry and index documents are deleted again (by write token) and the error
// returned, so the resource does not exist. A duplicate key means the id was not fresh after
// all: KindConflict, with this call's documents deleted.
func (s *Store) CreateFresh(ctx context.Context, r *resources.Resource) error {
	if r.VersionID != 1 || r.Deleted || s.txn {
		return s.Put(ctx, r) // Put checks what it must (a tombstone needs no shortcut)
	}
	cur, hist, err := s.colls(ctx, r.Type, true)
	if err != nil {
		return err
	}
	h := newEntry(r)
	idx := s.idx(r.Type)
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), createTimeout)
	defer cancel()
	var wg sync.WaitGroup
	var hErr, iErr error
	wg.Add(2)
	go func() { defer wg.Done(); hErr = insertMine(wctx, hist, h) }()
	go func() { defer wg.Done(); iErr = writeIdx(wctx, idx, h, false) }()
	cErr := insertMine(wctx, cur, h.current())
	wg.Wait()
	undo := func(current bool) {
		if current {
			_, _ = cur.DeleteOne(wctx, bson.D{{Key: "_id", Value: r.ID}, {Key: "w", Value: h.W}})
		}
		_, _ = hist.DeleteOne(wctx, bson.D{{Key: "_id", Value: h.ID}, {Key: "w", Value: h.W}})
		s.dropIdx(wctx, idx, h, true)
	}
	if cErr != nil && !errors.Is(cErr, errNotMine) {
		// Did it go in after all? Only then is the resource visible.
		w, rerr := tokenOf(wctx, cur, r.ID)
		switch {
		case rerr == nil && w == h.W:
			cErr = nil
		case errors.Is(rerr, mongo.ErrNoDocuments):
			undo(false)
			return fail(cErr, "create")
		default:
			return fail(cErr, "create") // unknown: it may still take effect
		}
	}
	switch {
	case errors.Is(cErr, errNotMine):
		undo(false)
		return conflict(r)
	case errors.Is(hErr, errNotMine):
		undo(true) // the id was not fresh: someone's version 1 is recorded
		return conflict(r)
	}
	if hErr != nil {
		hErr = insertMine(wctx, hist, h)
	}
	if iErr != nil {
		iErr = writeIdx(wctx, idx, h, false)
	}
	if err := errors.Join(hErr, iErr); err != nil {
		return fail(err, "create (the resource was stored; its history entry or value index may be missing)")
	}
	return nil
}

// createTimeout bounds CreateFresh's writes, which do not end with the caller's context.
const createTimeout = 30 * time.Second

// errNotMine is a duplicate key held by another write's document.
var errNotMine = errors.New("the key is held by another write")

// insertMine inserts d; a duplicate key is fine when the stored document is d itself (the
// driver retried the insert after a network error), errNotMine otherwise.
func insertMine(ctx context.Context, coll *mongo.Collection, d *doc) error {
	_, err := coll.InsertOne(ctx, d)
	if !mongo.IsDuplicateKeyError(err) {
		return err
	}
	w, ferr := tokenOf(ctx, coll, d.ID)
	if ferr != nil {
		return err
	}
	if w == d.W {
		return nil
	}
	return fmt.Errorf("%w: %w", errNotMine, err)
}

// tokenOf reads the write token of the document with _id id (mongo.ErrNoDocuments if none).
func tokenOf(ctx context.Context, coll *mongo.Collection, id string) (string, error) {
	var d doc
	err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: id}}, options.FindOne().SetProjection(bson.D{{Key: "w", Value: 1}})).Decode(&d)
	return d.W, err
}

// newEntry is the history entry of version r, with a new write token.
func newEntry(r *resources.Resource) *doc {
	h := &doc{
		ID:  histID(r.ID, r.VersionID),
		RID: r.ID,
		V:   r.VersionID,
		LU:  r.LastUpdated.UnixMicro(),
		Del: r.Deleted,
		K:   []string{},
		W:   newToken(),
		At:  bson.NewDateTimeFromTime(time.Now()),
	}
	if !r.Deleted {
		h.JSON = string(r.JSON)
		if r.Keys.Eq != nil {
			h.K = r.Keys.Eq
		}
		h.X = newValueKeys(&r.Keys)
		h.O = newSortVals(r.Keys.Sort)
	}
	return h
}

// putTxn writes both documents in one transaction (replica sets, sharded clusters).
func (s *Store) putTxn(ctx context.Context, r *resources.Resource, cur, hist *mongo.Collection, h *doc) error {
	idx := s.idx(r.Type)
	sess, err := s.client.StartSession()
	if err != nil {
		return fail(err, "start session")
	}
	defer sess.EndSession(context.WithoutCancel(ctx))
	_, err = sess.WithTransaction(ctx, func(ctx context.Context) (any, error) {
		if _, err := hist.InsertOne(ctx, h); err != nil {
			if mongo.IsDuplicateKeyError(err) {
				return nil, conflict(r)
			}
			return nil, err
		}
		if err := writeIdx(ctx, idx, h, true); err != nil {
			return nil, err
		}
		ok, err := apply(ctx, cur, h)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, conflict(r)
		}
		if h.V == 1 {
			return nil, nil // no older versions to clean up (see put)
		}
		return nil, cleanIdx(ctx, idx, h)
	})
	return fail(err, "put")
}

// put is the transaction-free write path.
//
// The history entry and the index documents of the version are written at the same time (two
// requests in flight, so one write's latency instead of two): the index documents only ever
// match a current document that carries their w, which no current document does before this
// Put applies its version, so writing them first, or for a version this Put then fails to
// own, never changes an answer; a losing Put deletes them again (failures there leave garbage
// that the next Put of the resource removes, see cleanIdx).
func (s *Store) put(ctx context.Context, r *resources.Resource, cur, hist *mongo.Collection, h *doc) error {
	idx := s.idx(r.Type)
	var idxDone chan error
	if len(idxDocs(h)) > 0 {
		idxDone = make(chan error, 1)
		go func() { idxDone <- writeIdx(ctx, idx, h, false) }()
	}
	_, err := hist.InsertOne(ctx, h)
	var idxErr error
	if idxDone != nil {
		idxErr = <-idxDone
	}
	if err != nil {
		if !mongo.IsDuplicateKeyError(err) {
			s.dropIdx(ctx, idx, h, idxDone != nil)
			return fail(err, "put history")
		}
		// Version v is owned by another writer, unless the driver retried our own insert
		// after a network error. If the owner died before applying it, repair (roll
		// forward) so the resource does not stay wedged.
		mine, err := s.rollForward(ctx, cur, hist, idx, h)
		if err != nil || !mine {
			s.dropIdx(ctx, idx, h, idxDone != nil)
			if err != nil {
				return err
			}
			return conflict(r)
		}
	}
	// The index documents of version v go in before the current document names v (see
	// "Value searches" in the package comment).
	if idxErr != nil {
		// The history entry stays (it is the commit record); without the index documents
		// the version must not be applied yet. Its roll-forward writes them again.
		return fail(idxErr, "put index")
	}
	ok, err := apply(ctx, cur, h)
	if err != nil {
		// The replace may or may not have happened; the history entry stays (it is the
		// commit record and will be rolled forward if needed).
		return fail(err, "put")
	}
	if ok {
		// Older versions' index documents can no longer match (their w is not the current
		// one); a failure here only leaves garbage that the next Put removes. A version 1
		// has no older versions: what could be there is only the garbage of a Put of
		// version 1 that lost and failed to delete its own, which never matches either and
		// goes with the next version's clean-up (one request less per create).
		if h.V > 1 {
			_ = cleanIdx(ctx, idx, h)
		}
		return nil
	}
	// The current document was not at v-1. Someone may have rolled our version forward.
	var c doc
	err = cur.FindOne(ctx, bson.D{{Key: "_id", Value: r.ID}}, options.FindOne().SetProjection(bson.D{{Key: "v", Value: 1}, {Key: "w", Value: 1}})).Decode(&c)
	if err != nil && !errors.Is(err, mongo.ErrNoDocuments) {
		return fail(err, "put")
	}
	if err == nil && (c.V > h.V || c.V == h.V && c.W == h.W) {
		return nil
	}
	if _, err := hist.DeleteOne(ctx, bson.D{{Key: "_id", Value: h.ID}, {Key: "w", Value: h.W}}); err != nil {
		return fail(err, "put rollback")
	}
	if _, err := idx.DeleteMany(ctx, bson.D{{Key: "w", Value: h.W}}); err != nil {
		return fail(err, "put rollback")
	}
	return conflict(r)
}

// dropIdx deletes the index documents that a Put which does not own its version wrote (wrote
// reports whether it wrote any). Best effort: leftovers never match (no current document
// carries their w) and the resource's next Put removes them.
func (s *Store) dropIdx(ctx context.Context, idx *mongo.Collection, h *doc, wrote bool) {
	if wrote {
		_, _ = idx.DeleteMany(context.WithoutCancel(ctx), bson.D{{Key: "w", Value: h.W}})
	}
}

// apply moves the current document to the version in history entry h: an insert for version 1,
// otherwise a replace filtered on the previous version. It reports false when the current
// document was not at the previous version.
func apply(ctx context.Context, cur *mongo.Collection, h *doc) (bool, error) {
	c := h.current()
	if c.V == 1 {
		_, err := cur.InsertOne(ctx, c)
		if mongo.IsDuplicateKeyError(err) {
			return false, nil
		}
		return err == nil, err
	}
	res, err := cur.ReplaceOne(ctx, bson.D{{Key: "_id", Value: c.ID}, {Key: "v", Value: c.V - 1}}, c)
	if err != nil {
		return false, err
	}
	return res.MatchedCount == 1, nil
}

// rollForward is called when the history entry of mine's version exists already. It reports
// whether that entry is mine (same write token: a retried insert). Otherwise, when the entry was
// never applied to the current document and is older than rollForwardAfter, it applies it.
func (s *Store) rollForward(ctx context.Context, cur, hist, idx *mongo.Collection, mine *doc) (bool, error) {
	var h doc
	err := hist.FindOne(ctx, bson.D{{Key: "_id", Value: mine.ID}}).Decode(&h)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return false, nil // rolled back meanwhile
	}
	if err != nil {
		return false, fail(err, "put")
	}
	if h.W == mine.W {
		return true, nil
	}
	if h.Tx != "" {
		// A transaction's entry: never applied on its own (only its transaction's commit makes
		// it a version), but an abandoned transaction is settled, and an entry left behind by
		// a rollback is removed, so that the version does not stay taken.
		return false, s.settleEntry(ctx, hist, &h)
	}
	if time.Since(h.At.Time()) < rollForwardAfter {
		return false, nil // its writer is probably still at work
	}
	var c doc
	err = cur.FindOne(ctx, bson.D{{Key: "_id", Value: h.RID}}, options.FindOne().SetProjection(bson.D{{Key: "v", Value: 1}})).Decode(&c)
	switch {
	case errors.Is(err, mongo.ErrNoDocuments):
		if h.V != 1 {
			return false, nil
		}
	case err != nil:
		return false, fail(err, "put")
	case c.V != h.V-1:
		return false, nil
	}
	if err := writeIdx(ctx, idx, &h, false); err != nil {
		return false, fail(err, "put repair")
	}
	ok, err := apply(ctx, cur, &h)
	if err != nil {
		return false, fail(err, "put repair")
	}
	if ok {
		_ = cleanIdx(ctx, idx, &h)
	}
	return false, nil
}

// fail maps a driver error to a *resources.Error: unreachable database, network failures and
// timeouts are KindUnavailable, anything else is internal. *resources.Error values pass through.
func fail(err error, op string) error {
	if err == nil {
		return nil
	}
	var re *resources.Error
	if errors.As(err, &re) {
		return re
	}
	if unavailable(err) {
		e := resources.Wrap(resources.KindUnavailable, err, "database unavailable")
		e.RetryAfter = 1
		return e
	}
	return resources.Wrap(resources.KindInternal, err, fmt.Sprintf("database error (%s)", op))
}

func unavailable(err error) bool {
	var sse topology.ServerSelectionError
	var ce topology.ConnectionError
	return mongo.IsTimeout(err) || mongo.IsNetworkError(err) ||
		errors.As(err, &sse) || errors.As(err, &ce) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}

// Ping implements resources.Store.
func (s *Store) Ping(ctx context.Context) error {
	return fail(s.client.Ping(ctx, nil), "ping")
}

// Close implements resources.Store.
func (s *Store) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.client.Disconnect(ctx); err != nil && !errors.Is(err, mongo.ErrClientDisconnected) {
		return fail(err, "close")
	}
	return nil
}
