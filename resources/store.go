package resources

import (
	"context"
	"strconv"
	"time"
)

// Resource is one stored version of a FHIR resource.
type Resource struct {
	Type        string
	ID          string
	VersionID   int64
	LastUpdated time.Time // UTC, microsecond precision
	Deleted     bool      // a tombstone version written by delete; JSON is nil
	// JSON is the complete resource as served, with id, meta.versionId and meta.lastUpdated
	// already set, compact, resourceType first. Stores keep and return these bytes verbatim.
	JSON []byte
	// Keys are the search keys extracted at write time (see ExtractKeys). Set on writes; stores
	// do not return them.
	Keys Keys
}

// Store is what both storage engines (embedded SQLite and MongoDB) implement. The conformance
// suite in internal/storetest runs the same tests against each.
//
// Stores hold bytes and keys; they never parse FHIR. Every method honours ctx, and returns a
// KindUnavailable *Error when the underlying database cannot be reached in time.
type Store interface {
	// Read returns the current version. Returns KindNotFound if the resource never existed,
	// and KindGone together with the tombstone (Deleted, VersionID, LastUpdated) if its
	// current version is a delete.
	Read(ctx context.Context, typ, id string) (*Resource, error)

	// VRead returns one version, KindNotFound if there is no such version. A deleted version
	// is returned with KindGone and the tombstone.
	VRead(ctx context.Context, typ, id string, version int64) (*Resource, error)

	// Put writes r as the next version of (r.Type, r.ID): r.VersionID must be one more than
	// the current version, or 1 when the resource does not exist yet. Returns KindConflict
	// when another write got there first (the current version is not r.VersionID-1); the
	// caller then re-reads and decides. The current row and its history entry are written
	// together: no reader ever sees one without the other.
	Put(ctx context.Context, r *Resource) error

	// CreateIfNoneExist stores r (version 1) unless resources of r.Type matching cond exist.
	// It returns (nil, nil) when r was stored, (existing, nil) when exactly one matched, and
	// KindPreconditionFailed when several matched. Concurrent calls with the same condition
	// create at most one resource: the store guarantees it, not a search before an insert.
	CreateIfNoneExist(ctx context.Context, r *Resource, cond *Query) (*Resource, error)

	// Search returns one page of current, non-deleted resources matching q.
	Search(ctx context.Context, q *Query) (*Page, error)

	// History returns one page of versions, newest first.
	History(ctx context.Context, q *HistoryQuery) (*Page, error)

	// SetKeys makes the equality keys of version of typ/id that start with prefix exactly keys
	// (each of which starts with prefix), in place: no version is written and JSON, lastUpdated
	// and history stay as they are. These are keys the service derives from other resources
	// (a plan's member keys, membership.go), which change when those do. It returns nil when
	// typ/id does not exist or its current version is a delete, and KindConflict when the
	// current version is not version (its writer derived the keys of the newer version).
	SetKeys(ctx context.Context, typ, id string, version int64, prefix string, keys []string) error

	// Migrated reports whether the one-time data migration name has completed on this
	// database; SetMigrated records that it has.
	Migrated(ctx context.Context, name string) (bool, error)
	SetMigrated(ctx context.Context, name string) error

	// Ping checks that the database answers; KindUnavailable if not.
	Ping(ctx context.Context) error

	// Close releases connections and files.
	Close() error
}

// FreshCreator is implemented by stores that can store a new resource in fewer steps than Put
// when its id was generated for this very write (NewID: 128 random bits). No other writer can
// know such an id before the write returns, so version 1 needs no gate against a concurrent
// writer of the same id. The outcome is Put's: afterwards the resource reads as version 1 with
// its history entry; on an error it does not exist, or (KindUnavailable, as when a write's
// acknowledgement is lost) it may.
type FreshCreator interface {
	CreateFresh(ctx context.Context, r *Resource) error
}

// Transactor is implemented by stores that can write several resources atomically.
type Transactor interface {
	// Apply performs the writes of a transaction atomically: all of them or none, and no
	// reader ever sees some of them without the others (nor any of a failed Apply). Each
	// write follows Put's version rule; a write with IfNoneMatch also requires that no
	// current resource of its type matches that condition (a conditional create). When a
	// rule fails, Apply returns an *ApplyError naming the write (KindConflict for a version
	// or condition race: the caller may re-plan and retry).
	Apply(ctx context.Context, writes []*Write) error
}

// Write is one write of a transaction.
type Write struct {
	Resource *Resource
	// IfNoneMatch, when set, makes the write a conditional create: it fails with
	// KindConflict if a resource of the type matches at commit time.
	IfNoneMatch *Query
}

// ApplyError says which write of an Apply failed and why.
type ApplyError struct {
	Index int // into the writes
	Err   error
}

func (e *ApplyError) Error() string { return "write " + strconv.Itoa(e.Index) + ": " + e.Err.Error() }
func (e *ApplyError) Unwrap() error { return e.Err }

// Page is one page of search or history results.
type Page struct {
	Resources []*Resource
	// Included are resources added by _include and _revinclude (set by the Service).
	Included []*Resource
	// Total is the number of matches over all pages, or -1 when not computed.
	Total int64
	// Next is the keyset cursor for the following page; nil on the last page.
	Next *Cursor
	// Withheld reports that consent rules left out resources the search otherwise matched
	// (set by the Service; the Bundle says so without saying what).
	Withheld bool
}

// Cursor marks a position in a result ordered by (LastUpdated, ID[, Version]). Pages resume
// strictly after it, so rows written between page fetches cannot shift a page (keyset paging).
type Cursor struct {
	LastUpdated time.Time
	ID          string
	Version     int64
	// Values are the sort values of the last row when the query has SortBy.
	Values []string
	// Snapshot is the instant a search's first page was taken: later pages show the
	// resources as they were then (see Service.Search). Zero for history cursors.
	Snapshot time.Time
}

// HistoryQuery selects versions for the instance (Type and ID), type (Type) history.
type HistoryQuery struct {
	Type  string
	ID    string    // empty for type history
	Since time.Time // zero for all; otherwise versions with LastUpdated >= Since
	Count int
	After *Cursor // newest-first keyset: versions strictly older than the cursor
}
