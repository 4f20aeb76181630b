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
	// SortBy, when set, orders by these parameters first (then by lastUpdated in Sort's
	// direction and id); After.Values then holds the last row's values for them.
	SortBy []SortField
	Count  int     // page size, > 0
	After  *Cursor // resume strictly after this position
	// Total asks for Page.Total to be computed.
	Total bool
	// Partition, on the condition of a conditional create (Write.IfNoneMatch,
	// Store.CreateIfNoneExist), names whom the condition is judged for: the caller's
	// organization (empty for an administrator or the server). A store that serializes
	// conditional creates by condition keeps callers of different organizations apart, so that
	// none waits for another's create or learns of it. Searches ignore it.
	Partition string
}

// Clause is one condition. Exactly one of its fields is set; the values inside a field are
// alternatives (OR).
type Clause struct {
	AnyKey      []string      // the resource carries at least one of these equality keys
	NoKey       []string      // the resource carries none of these equality keys (:not, :missing=true)
	IDs         []string      // the resource id is one of these
	NotIDs      []string      // the resource id is none of these
	LastUpdated []DateRange   // meta.lastUpdated falls in at least one range
	Strings     []StringMatch // some string value matches
	Dates       []ValueMatch  // some date value (Keys.Dates) satisfies the bounds
	Numbers     []ValueMatch  // some number value (Keys.Numbers) satisfies the bounds

	// Or holds when all the clauses of at least one alternative hold (an empty Or, like every
	// empty clause, matches nothing). Its clauses may only be AnyKey, NoKey, IDs or NotIDs clauses:
	// the Service builds them for tenancy and consent (tenancy.go), never from request syntax.
	Or [][]Clause

	// Chain and Has are resolved by the Service into AnyKey or IDs clauses before a query
	// reaches a store; stores never see them.
	Chain *Chain
	Has   *Has
}

// Chain is a chained parameter: param[:Type].name=value selects resources whose reference
// param points at a resource of one of Types matching name=value (name may chain again).
type Chain struct {
	Param string
	Types []string
	Name  string
	Value string
}

// Has is reverse chaining: _has:Type:param:name=value selects resources that some Type
// resource matching name=value refers to through its reference parameter param.
type Has struct {
	Type  string
	Param string
	Name  string
	Value string
}

// StringMatch matches a Keys.Strings value of Param that starts with Value (or contains it,
// with Contains). Value is normalized like the stored values (see NormalizeString).
type StringMatch struct {
	Param    string
	Value    string
	Contains bool
}

// ValueMatch matches when one value of Param satisfies at least one alternative of Any, each
// a conjunction of bounds on that same value. Dates compare the value's range [Lo, Hi) in
// microseconds; numbers compare the value V.
type ValueMatch struct {
	Param string
	Any   [][]Bound
}

// Bound is one comparison: value.Lo (or value.Hi when OnHi) Op operand. Dates use Micros,
// numbers Num.
type Bound struct {
	OnHi   bool
	Op     BoundOp
	Micros int64
	Num    float64
}

// BoundOp is a comparison operator of a Bound.
type BoundOp string

const (
	OpGE BoundOp = ">="
	OpGT BoundOp = ">"
	OpLE BoundOp = "<="
	OpLT BoundOp = "<"
)

// Holds reports whether x op operand (shared by every store's in-memory checks and tests).
func (op BoundOp) Holds(x, operand float64) bool {
	switch op {
	case OpGE:
		return x >= operand
	case OpGT:
		return x > operand
	case OpLE:
		return x <= operand
	case OpLT:
		return x < operand
	}
	return false
}

// MatchDate reports whether the date key satisfies m (for stores that check in memory).
func (m ValueMatch) MatchDate(k DateKey) bool {
	if k.Param != m.Param {
		return false
	}
	return m.any(func(b Bound) bool {
		v := k.Lo
		if b.OnHi {
			v = k.Hi
		}
		switch b.Op {
		case OpGE:
			return v >= b.Micros
		case OpGT:
			return v > b.Micros
		case OpLE:
			return v <= b.Micros
		case OpLT:
			return v < b.Micros
		}
		return false
	})
}

// MatchNumber reports whether the number key satisfies m.
func (m ValueMatch) MatchNumber(k NumberKey) bool {
	if k.Param != m.Param {
		return false
	}
	return m.any(func(b Bound) bool { return b.Op.Holds(k.V, b.Num) })
}

func (m ValueMatch) any(holds func(Bound) bool) bool {
	for _, conj := range m.Any {
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

// SortField is one _sort parameter: by its lowest value ascending, or highest descending.
// Resources without a value come last either way (SortKey sentinels).
type SortField struct {
	Param string
	Desc  bool
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

// PresentKey is carried by every resource that has at least one value for param:
// param:missing=false looks it up, param:missing=true asks for its absence. (A key for
// absence too would make :missing=true an index lookup, but writing one per missing
// parameter doubled the index pages each write touches; the polling search
// owner:missing=true&status=requested is driven by its status key instead.)
func PresentKey(param string) string {
	return param + keySep + presentMark
}

const presentMark = "\x1d"

// IsPresentKey says whether key is a PresentKey.
func IsPresentKey(key string) bool {
	return strings.HasSuffix(key, keySep+presentMark)
}

// Unindexed says whether a store may leave key out of its key index and test it on each
// candidate's own list of keys instead (Keys.Eq as stored with the version): present keys
// (param:missing), and every token key but the code-only form (param=code), alone or as a
// part of a composite: param=system|code, param=|code, param=system|. Every resource with
// a system|code or |code key also has the code-only key (Relaxed), which a store can
// search by instead and then test the key itself: a code is rarely shared by two systems,
// so the code-only key selects about the same resources. The :exact keys of string
// parameters (which take the no-system form) stay indexed, and identifier:of-type keys
// keep theirs unless their system is empty. Unindexed keys were 40% of a screening
// Observation's keys before the system|code forms joined them, and now half; every key in
// an index is a B-tree insert on each write and pages its commit must write.
func Unindexed(key string) bool {
	if IsPresentKey(key) {
		return true
	}
	param, first, second, composite := keyParts(key)
	switch {
	case strings.HasSuffix(param, ":exact"):
		return false
	case param == "identifier:of-type":
		return strings.HasPrefix(first, keySep)
	}
	return !codeOnly(first) || composite && !codeOnly(second)
}

// keyParts splits a key into its parameter and what follows, and that into a composite's
// two parts (composite false: first is all of it).
func keyParts(key string) (param, first, second string, composite bool) {
	param, rest, _ := strings.Cut(key, keySep)
	first, second, composite = strings.Cut(rest, "$"+keySep)
	return param, first, second, composite
}

// codeOnly says whether part of a key (after the parameter, or a composite's second part)
// is indexed: not a token (a reference, URL or uri), or a token's code-only form.
func codeOnly(part string) bool {
	return !strings.Contains(part, keySep) ||
		strings.HasPrefix(part, keyAny+keySep) && !strings.HasSuffix(part, keySep+keyAny)
}

// Relaxed returns an indexed key that every resource with key also has: key itself if it is
// indexed, else its code-only form (each token part's system dropped). ok is false when
// there is none: a present key, or a system-only part (any code of a system).
func Relaxed(key string) (string, bool) {
	if !Unindexed(key) {
		return key, true
	}
	if IsPresentKey(key) {
		return "", false
	}
	param, first, second, composite := keyParts(key)
	if param == "identifier:of-type" {
		return "", false
	}
	relax := func(part string) (string, bool) {
		_, code, ok := strings.Cut(part, keySep)
		switch {
		case !ok:
			return part, true
		case code == keyAny || strings.Contains(code, keySep):
			return "", false
		}
		return keyAny + keySep + code, true
	}
	f, ok := relax(first)
	if !ok {
		return "", false
	}
	out := param + keySep + f
	if composite {
		sec, ok := relax(second)
		if !ok {
			return "", false
		}
		out += "$" + keySep + sec
	}
	return out, !Unindexed(out)
}

// KeyParam returns the parameter name a key belongs to.
func KeyParam(key string) string {
	param, _, _ := strings.Cut(key, keySep)
	return param
}
