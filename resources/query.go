package resources

import (
	"strings"
	"time"
)

// Query is a parsed search: the plan each store compiles (to SQL joins on its key table, or
// to a MongoDB filter on its indexed key array). Nothing a caller typed reaches a store except
// as an opaque key string or a time, so no value can become SQL or a MongoDB operator.
type Query struct {
	Type    string
	Clauses []Clause // all must hold (AND)
	Sort    Sort
	Count   int     // page size, > 0
	After   *Cursor // resume strictly after this position
	// Total asks for Page.Total to be computed.
	Total bool
}

// Clause is one condition. Exactly one of its fields is set; the values inside a field are
// alternatives (OR).
type Clause struct {
	AnyKey      []string    // the resource carries at least one of these equality keys
	IDs         []string    // the resource id is one of these
	LastUpdated []DateRange // meta.lastUpdated falls in at least one range
}

// DateRange is [From, To) with zero meaning unbounded; Not selects the complement.
type DateRange struct {
	From, To time.Time
	Not      bool
}

// Contains reports whether t is in the range (used by tests and by in-memory checks).
func (r DateRange) Contains(t time.Time) bool {
	in := (r.From.IsZero() || !t.Before(r.From)) && (r.To.IsZero() || t.Before(r.To))
	return in != r.Not
}

// Sort orders results; every order ends with id as a tie-breaker, so pages are stable.
type Sort int

const (
	SortLastUpdatedAsc Sort = iota
	SortLastUpdatedDesc
)

// Equality keys. Token, reference and uri search values are flattened at write time into
// strings "param␟part␟part" so that both stores answer them with one indexed equality lookup.
// FHIR strings cannot contain control characters, so the separator (U+001F) and the wildcard
// marker (U+001E) never collide with data.
const (
	keySep = "\x1f"
	keyAny = "\x1e"
)

// TokenKey matches `param=system|code` (system may be empty: `param=|code`).
func TokenKey(param, system, code string) string {
	return param + keySep + system + keySep + code
}

// TokenCodeKey matches `param=code` whatever the system.
func TokenCodeKey(param, code string) string {
	return param + keySep + keyAny + keySep + code
}

// TokenSystemKey matches `param=system|` (any code in the system).
func TokenSystemKey(param, system string) string {
	return param + keySep + system + keySep + keyAny
}

// RefKey matches `param=Type/id` (and absolute URLs on this server's base).
func RefKey(param, typ, id string) string {
	return param + keySep + typ + "/" + id
}

// RefIDKey matches `param=id` whatever the target type.
func RefIDKey(param, id string) string {
	return param + keySep + keyAny + "/" + id
}

// RefURLKey matches a reference to a resource elsewhere (absolute URL) or a canonical.
func RefURLKey(param, url string) string {
	return param + keySep + url
}

// KeyParam returns the parameter name a key belongs to.
func KeyParam(key string) string {
	param, _, _ := strings.Cut(key, keySep)
	return param
}
