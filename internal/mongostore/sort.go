package mongostore

import (
	"fmt"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/calaimfhir/calaimfhir/resources"
)

// _sort by parameters (resources.Query.SortBy). See "Sorting by parameters" in the package comment.

// sortVal is the _sort entry of one parameter with values in the o field: the lowest value
// (ascending order) reversed by revKey, and the highest (descending order), both encoded by
// resources.SortKey so that byte order is value order. A parameter without value has no entry.
type sortVal struct {
	R string `bson:"r"`
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
		o[sortField(k.Param)] = sortVal{R: revKey(k.Asc), D: k.Desc}
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

// revKey encodes s so that byte order is reversed: each byte b as two lowercase hex digits of
// 255-b, then '~', which is above every hex digit, so that a prefix sorts after the longer
// strings it starts (ascending "ab" < "abc" becomes "9e9d~" > "9e9d9c~"). Ascending order is
// then a descending sort on the encoded value, where an absent field comes last, as a missing
// value must in both directions.
func revKey(s string) string {
	const hexdigits = "0123456789abcdef"
	b := make([]byte, 0, 2*len(s)+1)
	for i := 0; i < len(s); i++ {
		c := 255 - s[i]
		b = append(b, hexdigits[c>>4], hexdigits[c&15])
	}
	return string(append(b, '~'))
}

// unrevKey decodes revKey's encoding; ok is false for anything revKey does not produce.
func unrevKey(r string) (s string, ok bool) {
	if len(r)%2 != 1 || r[len(r)-1] != '~' {
		return "", false
	}
	b := make([]byte, 0, len(r)/2)
	for i := 0; i+1 < len(r); i += 2 {
		hi, lo := strings.IndexByte("0123456789abcdef", r[i]), strings.IndexByte("0123456789abcdef", r[i+1])
		if hi < 0 || lo < 0 {
			return "", false
		}
		b = append(b, 255-byte(hi<<4|lo))
	}
	return string(b), true
}

// sortKey is one component of the page order: a document field, or a constant (a parameter no
// current document of the type carries, so every resource lacks a value: its sentinel).
type sortKey struct {
	path  string // "" for a constant
	konst string
	dir   int    // 1 or -1
	cmp   string // "$gt" or "$lt": strictly after in this direction
	// opt marks a sort value field (o.<param>.r or .d), absent when the resource has no
	// value: missing is the cursor value that stands for absent (SortMissingAsc or
	// SortMissingDesc), and rev says that cursor values are revKey-encoded to compare (.r).
	opt     bool
	missing string
	rev     bool
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
		if f.Desc {
			k = sortKey{dir: -1, cmp: "$lt", konst: resources.SortMissingDesc}
		}
		if sortable(q.Type, f.Param) {
			// Both directions sort descending on a stored field, so that resources without
			// a value (no field) come last: ascending on the reversed lowest value (.r),
			// descending on the highest (.d).
			k = sortKey{path: "o." + sortField(f.Param) + ".d", dir: -1, cmp: "$lt", opt: true, missing: resources.SortMissingDesc}
			if !f.Desc {
				k.path, k.missing, k.rev = "o."+sortField(f.Param)+".r", resources.SortMissingAsc, true
			}
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
		if k.opt {
			v := vals[i].(string)
			if v == k.missing {
				// The cursor's row has no value: only rows without one are equal, and none
				// is after it in this component (absent fields sort last).
				eq = append(eq, bson.E{Key: k.path, Value: bson.D{{Key: "$exists", Value: false}}})
				continue
			}
			if k.rev {
				v = revKey(v)
			}
			after := bson.A{
				bson.D{{Key: k.path, Value: bson.D{{Key: "$lt", Value: v}}}},
				bson.D{{Key: k.path, Value: bson.D{{Key: "$exists", Value: false}}}},
			}
			or = append(or, append(append(bson.D{}, eq...), bson.E{Key: "$or", Value: after}))
			eq = append(eq, bson.E{Key: k.path, Value: v})
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
		case f.Desc && ok:
			out[i] = v.D
		case f.Desc:
			out[i] = resources.SortMissingDesc
		default:
			out[i] = resources.SortMissingAsc
			if a, valid := unrevKey(v.R); ok && valid {
				out[i] = a
			}
		}
	}
	return out
}
