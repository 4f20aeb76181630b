package resources

import (
	"context"
	"slices"
	"strings"
	"time"
)

// Snapshot paging.
//
// A keyset cursor alone keeps pages stable under creates, but not under updates: when results
// are ordered by _lastUpdated, an update moves a resource from before the cursor to after it,
// and the client meets it twice (and an update that moves one the other way hides it). So every
// search fixes a snapshot instant T when its first page is taken, and all its pages show the
// matches as they were at T, in the order they had at T; the cursor carries T.
//
// A page is the merge of two parts:
//   - resources not written since T (current lastUpdated <= T): the store's own search, with
//     one more condition on lastUpdated, so it stays one indexed query;
//   - resources written since T that existed at T: their version current at T, read from
//     history (the version before the first one written after T), judged against the query's
//     clauses in memory (Matches) and placed by that version's sort position.
//
// Resources created after T are left out of every page (a poller's next search, from the
// highest lastUpdated it saw, finds them); a resource deleted after T still shows its version
// of T. Every entry of a traversal thus has lastUpdated <= T, and no entry appears twice or is
// missed. What remains: a write whose lastUpdated was stamped before T but which committed only
// after the first page was read (a write in flight during that one read) is seen as a change
// made before T; so is, with several servers, a write stamped by a server whose clock is
// behind the one that fixed T (the stores assume clock skew far below a write's duration).
// System-wide searches (SearchSystem) page by keyset without a snapshot.

// maxSnapshotChanges bounds the versions written since a snapshot that one page examines; a
// traversal that has fallen further behind must start again.
const maxSnapshotChanges = 10000

// searchSnapshot runs one page of q as of its snapshot (a new one for a first page).
func (s *Service) searchSnapshot(ctx context.Context, q *Query) (*Page, error) {
	var at time.Time
	switch {
	case q.After == nil:
		at = s.now()
	case q.After.Snapshot.IsZero():
		return s.Store.Search(ctx, q) // a cursor issued without a snapshot: plain keyset paging
	default:
		at = q.After.Snapshot
	}
	settled := *q
	settled.Clauses = append(slices.Clip(q.Clauses), Clause{LastUpdated: []DateRange{{To: at.Add(time.Microsecond)}}})
	page, err := s.Store.Search(ctx, &settled)
	if err != nil {
		return nil, err
	}
	changed, err := s.versionsAt(ctx, q.Type, at)
	if err != nil {
		return nil, err
	}
	// The changed resources that matched at T, and (for this page) lie after the cursor.
	var later []ranked
	var matchedTotal int64
	members, needsMembers := s.newMemberLookup(), selectsMembers(q.Clauses)
	for _, r := range changed {
		k := s.keysOf(r)
		if k != nil && memberTypeSet[r.Type] && needsMembers {
			// Member keys are kept beside a version, not in its JSON (membership.go): add
			// the ones its patients have now, as the store's own keys would carry them.
			mk, err := members.keys(ctx, keyedPatients(&Resource{Type: r.Type, ID: r.ID, Keys: *k}))
			if err != nil {
				return nil, err
			}
			k.Eq = append(k.Eq, mk...)
			slices.Sort(k.Eq)
		}
		if k == nil || !Matches(q.Clauses, r, k) {
			continue
		}
		matchedTotal++
		rk := ranked{r: r, vals: sortValues(q, k)}
		if q.After == nil || q.compare(rk.pos(), cursorPos(q.After)) > 0 {
			later = append(later, rk)
		}
	}
	if page.Total >= 0 {
		page.Total += matchedTotal
	}
	if len(later) == 0 {
		if page.Next != nil {
			page.Next.Snapshot = at
		}
		return page, nil
	}
	merged := make([]ranked, 0, len(page.Resources)+len(later))
	seen := map[string]bool{}
	for _, r := range page.Resources {
		seen[r.ID] = true
		rk := ranked{r: r}
		if len(q.SortBy) > 0 {
			if k := s.keysOf(r); k != nil {
				rk.vals = sortValues(q, k)
			}
		}
		merged = append(merged, rk)
	}
	for _, rk := range later {
		// A store that shows a version whose successor is still being written can list the
		// same version in both parts: once is enough.
		if !seen[rk.r.ID] {
			merged = append(merged, rk)
		}
	}
	slices.SortStableFunc(merged, func(a, b ranked) int { return q.compare(a.pos(), b.pos()) })
	more := page.Next != nil || len(merged) > q.Count
	merged = merged[:min(len(merged), max(q.Count, 1))]
	page.Resources = page.Resources[:0]
	for _, rk := range merged {
		page.Resources = append(page.Resources, rk.r)
	}
	page.Next = nil
	if more {
		last := merged[len(merged)-1]
		page.Next = &Cursor{LastUpdated: last.r.LastUpdated, ID: last.r.ID, Values: last.vals, Snapshot: at}
	}
	return page, nil
}

// versionsAt returns, for the resources of typ written after at, the version current at at
// (leaving out those created after it, or deleted at it).
func (s *Service) versionsAt(ctx context.Context, typ string, at time.Time) ([]*Resource, error) {
	hq := &HistoryQuery{Type: typ, Since: at.Add(time.Microsecond), Count: MaxCount}
	first := map[string]int64{} // id -> its lowest version written after at
	seen := 0
	for {
		p, err := s.Store.History(ctx, hq)
		if err != nil {
			return nil, err
		}
		for _, r := range p.Resources {
			if v, ok := first[r.ID]; !ok || r.VersionID < v {
				first[r.ID] = r.VersionID
			}
		}
		if seen += len(p.Resources); seen > maxSnapshotChanges {
			return nil, Errorf(KindBadRequest, "more than %d %s versions were written since this search began; start the search again", maxSnapshotChanges, typ)
		}
		if p.Next == nil {
			break
		}
		hq.After = p.Next
	}
	ids := make([]string, 0, len(first))
	for id, v := range first {
		if v > 1 {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	var out []*Resource
	for _, id := range ids {
		r, err := s.Store.VRead(ctx, typ, id, first[id]-1)
		switch {
		case IsKind(err, KindGone), IsKind(err, KindNotFound):
			continue
		case err != nil:
			return nil, err
		case r.LastUpdated.After(at): // a clock that went backwards: not a version of T
			continue
		}
		out = append(out, r)
	}
	return out, nil
}

// ranked is a resource with its _sort values.
type ranked struct {
	r    *Resource
	vals []string
}

// position is a place in a search's order: the _sort values, lastUpdated, id.
type position struct {
	vals []string
	lu   time.Time
	id   string
}

func (rk ranked) pos() position { return position{rk.vals, rk.r.LastUpdated, rk.r.ID} }

func cursorPos(c *Cursor) position { return position{c.Values, c.LastUpdated, c.ID} }

// compare orders positions as the stores do: each _sort value (byte order, missing values
// encoded as sentinels), then lastUpdated and id in the direction of q.Sort.
func (q *Query) compare(a, b position) int {
	for i, f := range q.SortBy {
		var av, bv string
		if i < len(a.vals) {
			av = a.vals[i]
		}
		if i < len(b.vals) {
			bv = b.vals[i]
		}
		if c := strings.Compare(av, bv); c != 0 {
			if f.Desc {
				return -c
			}
			return c
		}
	}
	c := a.lu.Compare(b.lu)
	if c == 0 {
		c = strings.Compare(a.id, b.id)
	}
	if q.Sort == SortLastUpdatedDesc {
		return -c
	}
	return c
}

// sortValues are the values a resource with keys k has for q's _sort parameters, as the
// stores compare them.
func sortValues(q *Query, k *Keys) []string {
	if len(q.SortBy) == 0 {
		return nil
	}
	out := make([]string, len(q.SortBy))
	for i, f := range q.SortBy {
		out[i] = SortMissingAsc
		if f.Desc {
			out[i] = SortMissingDesc
		}
		for _, sk := range k.Sort {
			if sk.Param == f.Param {
				out[i] = sk.Asc
				if f.Desc {
					out[i] = sk.Desc
				}
			}
		}
	}
	return out
}
