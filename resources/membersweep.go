package resources

import (
	"context"
	"maps"
	"slices"
	"time"
)

// Repairing member keys a settle left undone (membership.go).
//
// A write's member keys are checked, and a Coverage write fanned out, once it commits, by the
// process that wrote it (settleMembers). Two things stop that:
//   - the database is unreachable: settleMembers retries in the background until it succeeds,
//     with a growing pause, for as long as the process runs;
//   - the process stops between the commit and the settle (killed, crashed, redeployed).
//     SweepMembers, which the server starts in the background with every process, settles
//     again what was written in the SweepWindow before the newest write the store holds. A
//     process that stopped is restarted (by its supervisor, or as a new instance on the same
//     database) within that window, and the writes it may have left unsettled are the last it
//     made. A database left alone for days still has those writes at its newest end.
//
// Until then, a missing key hides a resource from its plan's searches (not from reads by id);
// an extra key is harmless, since a plan's search results are judged by Coverage
// (guardMembers), and it is removed by the next fan-out of that patient.

// SweepWindow is how far back before the newest stored write SweepMembers looks.
const SweepWindow = 15 * time.Minute

// sweepPage is how many versions SweepMembers reads at a time.
const sweepPage = 500

// SweepMembers settles the member keys of the resources written in window before the newest
// stored write: every Coverage written there is fanned out (as a Coverage write is), and every
// other current resource about patients gets the member keys it lacks. Returns how many of
// those lacked one (what the fan-outs set is not counted).
func (s *Service) SweepMembers(ctx context.Context, window time.Duration) (int, error) {
	// Coverage last (it is about patients too; its fan-outs cover it): they then only take
	// away the keys of plans a patient left and reach resources written before the window,
	// and what was missing is counted.
	types := append(slices.DeleteFunc(slices.Clone(memberTypes), func(t string) bool { return t == "Coverage" }), "Coverage")
	var newest time.Time
	for _, typ := range types {
		page, err := s.Store.History(ctx, &HistoryQuery{Type: typ, Count: 1})
		if err != nil {
			return 0, err
		}
		if len(page.Resources) > 0 && page.Resources[0].LastUpdated.After(newest) {
			newest = page.Resources[0].LastUpdated
		}
	}
	if newest.IsZero() {
		return 0, nil
	}
	since := newest.Add(-window)
	repaired := 0
	for _, typ := range types {
		// History is newest first: the first version of each id is its latest in the window.
		seen := map[string]bool{}
		named := map[string][]string{} // Coverage: patient -> plans, over the versions in the window
		q := HistoryQuery{Type: typ, Since: since, Count: sweepPage}
		for {
			page, err := s.Store.History(ctx, &q)
			if err != nil {
				return repaired, err
			}
			m := s.newMemberLookup() // a page's resources share patients (setVerified reads again)
			for _, v := range page.Resources {
				if typ == "Coverage" {
					// Every version in the window: the patients and plans each named.
					if k := s.keysOf(v); !v.Deleted && k != nil {
						coveragePairs(k, named)
					}
					continue
				}
				if seen[v.ID] {
					continue
				}
				seen[v.ID] = true
				fixed, err := s.sweepOne(ctx, m, typ, v.ID)
				if err != nil {
					return repaired, err
				}
				if fixed {
					repaired++
				}
			}
			if page.Next == nil {
				break
			}
			q.After = page.Next
		}
		if len(named) > 0 {
			gone := map[string]bool{}
			for _, plans := range named {
				for _, org := range plans {
					gone[org] = true
				}
			}
			ch := memberChange{patients: slices.Sorted(maps.Keys(named)), gone: sortedSet(gone)}
			if err := s.fanOut(ctx, ch); err != nil {
				return repaired, err
			}
		}
	}
	return repaired, nil
}

// sweepOne gives the current version of typ/id the member keys it lacks, and reports whether
// it lacked one. The stores do not hand keys back, so the question is a search: this id,
// without one of the keys its patients' plans give it.
func (s *Service) sweepOne(ctx context.Context, m *memberLookup, typ, id string) (bool, error) {
	cur, err := s.Store.Read(ctx, typ, id)
	switch {
	case IsKind(err, KindNotFound), IsKind(err, KindGone):
		return false, nil
	case err != nil:
		return false, err
	}
	patients := s.storedPatients(cur)
	want, err := m.keys(ctx, patients)
	if err != nil || len(want) == 0 {
		return false, err
	}
	var lacks [][]Clause
	for _, k := range want {
		lacks = append(lacks, []Clause{{NoKey: []string{k}}})
	}
	page, err := s.Store.Search(ctx, &Query{Type: typ, Count: 1, Clauses: []Clause{{IDs: []string{id}}, {Or: lacks}}})
	if err != nil || len(page.Resources) == 0 {
		return false, err
	}
	return true, s.setVerified(ctx, typ, id, page.Resources[0].VersionID, patients, want)
}

// memberRetryPause is the pause before the attempt-th background retry of a settle (from 1):
// growing to a minute.
func memberRetryPause(attempt int) time.Duration {
	return min(time.Duration(attempt)*time.Second, time.Minute)
}
