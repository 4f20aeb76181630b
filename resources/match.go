package resources

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
)

// Matches reports whether one version of a resource (its id, lastUpdated and search keys)
// satisfies every clause, with the semantics both stores give the clauses. It is used where a
// version is judged outside a store: the versions a search snapshot takes from history.
// Chained and _has clauses must have been resolved first; a clause with no alternatives, or
// of a kind this function does not know, matches nothing (as in the stores).
func Matches(clauses []Clause, r *Resource, k *Keys) bool {
	for _, c := range clauses {
		if !matchClause(c, r, k) {
			return false
		}
	}
	return true
}

func matchClause(c Clause, r *Resource, k *Keys) bool {
	hasKey := func(keys []string) bool {
		for _, key := range keys {
			if _, ok := slices.BinarySearch(k.Eq, key); ok {
				return true
			}
		}
		return false
	}
	switch {
	case len(c.AnyKey) > 0:
		return hasKey(c.AnyKey)
	case len(c.NoKey) > 0:
		return !hasKey(c.NoKey)
	case len(c.IDs) > 0:
		return slices.Contains(c.IDs, r.ID)
	case len(c.NotIDs) > 0:
		return !slices.Contains(c.NotIDs, r.ID)
	case len(c.LastUpdated) > 0:
		return slices.ContainsFunc(c.LastUpdated, func(dr DateRange) bool { return dr.Contains(r.LastUpdated) })
	case len(c.Strings) > 0:
		return slices.ContainsFunc(c.Strings, func(m StringMatch) bool {
			return slices.ContainsFunc(k.Strings, func(s StringKey) bool {
				if s.Param != m.Param {
					return false
				}
				if m.Contains {
					return strings.Contains(s.Value, m.Value)
				}
				return strings.HasPrefix(s.Value, m.Value)
			})
		})
	case len(c.Dates) > 0:
		return slices.ContainsFunc(c.Dates, func(m ValueMatch) bool { return slices.ContainsFunc(k.Dates, m.MatchDate) })
	case len(c.Numbers) > 0:
		return slices.ContainsFunc(c.Numbers, func(m ValueMatch) bool { return slices.ContainsFunc(k.Numbers, m.MatchNumber) })
	case len(c.Or) > 0:
		return slices.ContainsFunc(c.Or, func(alt []Clause) bool { return Matches(alt, r, k) })
	}
	return false
}

// keysOf extracts the search keys of a stored version (nil when its JSON cannot be read).
func (s *Service) keysOf(r *Resource) *Keys {
	dec := json.NewDecoder(bytes.NewReader(r.JSON))
	dec.UseNumber()
	var doc map[string]any
	if dec.Decode(&doc) != nil {
		return nil
	}
	k := ExtractKeysAt(r.Type, doc, s.Base)
	return &k
}
