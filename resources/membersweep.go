package resources

import (
	"context"
	"math/rand/v2"
	"slices"
	"time"
)

// Repairing member keys a settle left undone (membership.go).
//
// A write's member keys are checked, and a Coverage write fanned out, once it commits, by the
// process that wrote it (settleMembers). Two things stop that:
//   - the database is unreachable: settleMembers retries in the background until it succeeds,
//     with a growing pause, until the service closes;
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

// sweepPage is how many resources SweepMembers reads at a time. After each page it pauses as
// long as the page took, so that it never takes more than half of what one request would.
const sweepPage = 200

// SweepMembers settles the member keys of the resources written in window before the newest
// stored write: every Coverage written there is fanned out (as a Coverage write is), with the
// plans its previous version named, and every other current resource about patients gets the
// member keys it lacks. Returns how many of those lacked one (what the fan-outs set is not
// counted).
func (s *Service) SweepMembers(ctx context.Context, window time.Duration) (int, error) {
	// Coverage last (it is about patients too; its fan-outs cover it): they then only take
	// away the keys of plans a patient left and reach resources written before the window,
	// and what was missing is counted.
	types := slices.DeleteFunc(slices.Clone(memberTypes), func(t string) bool { return t == "Coverage" })
	var newest time.Time
	for _, typ := range append(slices.Clip(types), "Coverage") {
		page, err := s.Store.Search(ctx, &Query{Type: typ, Sort: SortLastUpdatedDesc, Count: 1})
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
		// The current versions written since: a search (keyset pages, no count).
		q := Query{Type: typ, Clauses: []Clause{{LastUpdated: []DateRange{{From: since}}}}, Count: sweepPage}
		for {
			began := time.Now()
			page, err := s.Store.Search(ctx, &q)
			if err != nil {
				return repaired, err
			}
			m := s.newMemberLookup() // a page's resources share patients (setVerified reads again)
			for _, r := range page.Resources {
				fixed, err := s.sweepOne(ctx, m, r)
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
			if err := pause(ctx, time.Since(began)); err != nil {
				return repaired, err
			}
		}
	}
	// Every Coverage version written since, tombstones included, and the version each
	// replaced: the patients and plans they named.
	named := map[string][]string{}
	add := func(v *Resource) {
		if !v.Deleted {
			doc, _ := decodeTop(v.JSON, []string{"beneficiary", "payor"})
			s.coverageDocPairs(doc, named)
		}
	}
	oldest := map[string]int64{} // id -> its oldest version in the window
	q := HistoryQuery{Type: "Coverage", Since: since, Count: sweepPage}
	for {
		began := time.Now()
		page, err := s.Store.History(ctx, &q)
		if err != nil {
			return repaired, err
		}
		for _, v := range page.Resources {
			add(v)
			oldest[v.ID] = v.VersionID // newest first: the last one seen is the oldest
		}
		if page.Next == nil {
			break
		}
		q.After = page.Next
		if err := pause(ctx, time.Since(began)); err != nil {
			return repaired, err
		}
	}
	for id, v := range oldest {
		if v <= 1 {
			continue
		}
		prev, err := s.Store.VRead(ctx, "Coverage", id, v-1)
		switch {
		case err == nil:
			add(prev)
		case IsKind(err, KindNotFound), IsKind(err, KindGone):
		default:
			return repaired, err
		}
	}
	if len(named) > 0 {
		if err := s.fanOut(ctx, pairsChange(named)); err != nil {
			return repaired, err
		}
	}
	return repaired, nil
}

// pause waits as long as the work before it took (the sweep's pace), or until ctx is done.
func pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// sweepOne gives r, a current version, the member keys it lacks, and reports whether it
// lacked one. The stores do not hand keys back, so the question is a search: this id, at this
// version, without one of the keys its patients' plans give it.
func (s *Service) sweepOne(ctx context.Context, m *memberLookup, r *Resource) (bool, error) {
	patients := s.storedPatients(r)
	want, err := m.keys(ctx, patients)
	if err != nil || len(want) == 0 {
		return false, err
	}
	var lacks [][]Clause
	for _, k := range want {
		lacks = append(lacks, []Clause{{NoKey: []string{k}}})
	}
	page, err := s.Store.Search(ctx, &Query{Type: r.Type, Count: 1, Clauses: []Clause{{IDs: []string{r.ID}}, {Or: lacks}}})
	if err != nil || len(page.Resources) == 0 {
		return false, err
	}
	return true, s.setVerified(ctx, r.Type, r.ID, page.Resources[0].VersionID, patients, want)
}

// memberRetryPause is the pause before the attempt-th background retry of a settle (from 1):
// growing to a minute, with up to a quarter more at random, so that the retries of writes
// that failed together (a database that went away) do not all come back at once.
func memberRetryPause(attempt int) time.Duration {
	d := min(time.Duration(attempt)*time.Second, time.Minute)
	return d + rand.N(d/4+1)
}
