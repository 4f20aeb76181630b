package mongostore

import (
	"fmt"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/calaimfhir/calaimfhir/resources"
)

// _sort by parameters (resources.Query.SortBy). See "Sorting by parameters" in the package comment.

// sortVal is the _sort entry of one parameter in the o field: the lowest value (ascending order)
// and the highest (descending order), encoded so that byte order is value order
// (resources.SortKey), or the sentinels resources.SortMissingAsc / SortMissingDesc for a
// parameter without value.
type sortVal struct {
	A string `bson:"a"`
	D string `bson:"d"`
}

// maxSortFields is how many distinct sort fields a query may name: MongoDB and FerretDB accept
// at most 32 keys in a sort pattern, and lu and _id always follow.
const maxSortFields = 30

// sortField is the name of param's entry in the o field. Parameter names are this server's own
// (they contain letters, digits, '-', '_'), but a name is escaped anyway so that it can never
// be read as a path ('.'), an operator ('$') or contain a NUL: those bytes and '%' itself are
// written as %XX.
func sortField(param string) string {
	var b strings.Builder
	for i := 0; i < len(param); i++ {
		switch c := param[i]; c {
		case '%', '.', '$', 0:
			fmt.Fprintf(&b, "%%%02X", c)
		default:
			b.WriteByte(c)
		}
	}
	if b.Len() == 0 {
		return "%" // no escape produces a lone '%'
	}
	return b.String()
}

// newSortVals is the o field of a history entry: the parameters that have values.
func newSortVals(keys []resources.SortKey) map[string]sortVal {
	if len(keys) == 0 {
		return nil
	}
	o := make(map[string]sortVal, len(keys))
	for _, k := range keys {
		o[sortField(k.Param)] = sortVal{A: k.Asc, D: k.Desc}
	}
	return o
}

// sortable reports whether the current documents of typ carry an o entry for param (with a
// value or the sentinels): every parameter of the type except composites.
func sortable(typ, param string) bool {
	for _, p := range resources.Params(typ) {
		if p.Name == param {
			return p.Type != resources.ParamComposite
		}
	}
	return false
}

// withMissing is the o field of a current document: present's entries plus the sentinels for
// every other sortable parameter of typ, so that a missing value sorts and compares like
// resources.SortMissingAsc / SortMissingDesc (MongoDB would put an absent field first in
// ascending order, and comparisons never match it).
func withMissing(typ string, present map[string]sortVal) map[string]sortVal {
	params := resources.Params(typ)
	o := make(map[string]sortVal, len(params)+len(present))
	for _, p := range params {
		if p.Type != resources.ParamComposite {
			o[sortField(p.Name)] = sortVal{A: resources.SortMissingAsc, D: resources.SortMissingDesc}
		}
	}
	for f, v := range present {
		o[f] = v
	}
	return o
}

// sortKey is one component of the page order: a document field, or a constant (a parameter no
// current document of the type carries, so every resource lacks a value: its sentinel).
type sortKey struct {
	path  string // "" for a constant
	konst string
	dir   int    // 1 or -1
	cmp   string // "$gt" or "$lt": strictly after in this direction
}

// order is the page order of q: its SortBy fields (deduplicated, constants kept for the
// cursor), then lu and _id in q.Sort's direction. slots maps each SortBy field to its
// component (Cursor.Values are in SortBy order).
type order struct {
	keys  []sortKey
	slots []int
}

func pageOrder(q *resources.Query) (*order, error) {
	o := &order{slots: make([]int, len(q.SortBy))}
	seen := map[string]int{}
	fields := 0
	for i, f := range q.SortBy {
		k := sortKey{dir: 1, cmp: "$gt", konst: resources.SortMissingAsc}
		sub := "a"
		if f.Desc {
			k = sortKey{dir: -1, cmp: "$lt", konst: resources.SortMissingDesc}
			sub = "d"
		}
		if sortable(q.Type, f.Param) {
			k.path = "o." + sortField(f.Param) + "." + sub
			k.konst = ""
		}
		name := k.path
		if name == "" {
			name = "\x00" + k.konst // constants of the same direction are the same component
		}
		if j, ok := seen[name]; ok {
			o.slots[i] = j
			continue
		}
		if k.path != "" {
			if fields++; fields > maxSortFields {
				return nil, resources.Errorf(resources.KindBadRequest, "_sort names more than %d distinct sort keys", maxSortFields)
			}
		}
		seen[name] = len(o.keys)
		o.slots[i] = len(o.keys)
		o.keys = append(o.keys, k)
	}
	dir, cmp := 1, "$gt"
	if q.Sort == resources.SortLastUpdatedDesc {
		dir, cmp = -1, "$lt"
	}
	o.keys = append(o.keys, sortKey{path: "lu", dir: dir, cmp: cmp}, sortKey{path: "_id", dir: dir, cmp: cmp})
	return o, nil
}

// spec is the sort pattern: the field components in order (constants do not order anything).
func (o *order) spec() bson.D {
	var d bson.D
	for _, k := range o.keys {
		if k.path != "" {
			d = append(d, bson.E{Key: k.path, Value: k.dir})
		}
	}
	return d
}

// after is the keyset condition "strictly after c" in this order, the lexicographic comparison
// of (values..., lu, id) expanded into one alternative per component: the components before it
// equal, it strictly after, each in its own direction. Constant components are decided here.
// all reports that every row is after c (no condition needed).
func (o *order) after(c *resources.Cursor, nSortBy int) (cond bson.D, all bool, err error) {
	if len(c.Values) != nSortBy {
		return nil, false, resources.Errorf(resources.KindBadRequest, "_cursor does not belong to this _sort")
	}
	vals := make([]any, len(o.keys))
	for i := len(o.slots) - 1; i >= 0; i-- { // the first occurrence of a duplicate wins
		vals[o.slots[i]] = c.Values[i]
	}
	n := len(o.keys)
	vals[n-2], vals[n-1] = micro(c.LastUpdated), c.ID
	var or bson.A
	var eq bson.D // the components so far are equal
	for i, k := range o.keys {
		if k.path == "" {
			v := vals[i].(string)
			if k.cmp == "$gt" && k.konst > v || k.cmp == "$lt" && k.konst < v {
				if len(eq) == 0 {
					return nil, true, nil
				}
				or = append(or, eq)
			}
			if k.konst != v {
				break // no later alternative can have this component equal
			}
			continue
		}
		alt := append(append(bson.D{}, eq...), bson.E{Key: k.path, Value: bson.D{{Key: k.cmp, Value: vals[i]}}})
		or = append(or, alt)
		eq = append(eq, bson.E{Key: k.path, Value: vals[i]})
	}
	switch len(or) {
	case 0:
		return bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: bson.A{}}}}}, false, nil // nothing is after c
	case 1:
		return or[0].(bson.D), false, nil
	}
	return bson.D{{Key: "$or", Value: or}}, false, nil
}

// values are d's sort values in SortBy order, for the next page's cursor.
func (o *order) values(q *resources.Query, d *doc) []string {
	if len(q.SortBy) == 0 {
		return nil
	}
	out := make([]string, len(q.SortBy))
	for i, f := range q.SortBy {
		k := o.keys[o.slots[i]]
		if k.path == "" {
			out[i] = k.konst
			continue
		}
		v, ok := d.O[sortField(f.Param)]
		switch {
		case !ok && f.Desc:
			out[i] = resources.SortMissingDesc
		case !ok:
			out[i] = resources.SortMissingAsc
		case f.Desc:
			out[i] = v.D
		default:
			out[i] = v.A
		}
	}
	return out
}
