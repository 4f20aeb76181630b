package resources

import (
	"context"
	"time"
)

// Hooks for the external tests (package resources_test): tests on the embedded store cannot be
// internal tests, since internal/sqlitestore imports this package.

// CheckReferencesForTest is checkReferences for doc written outside a transaction.
func (s *Service) CheckReferencesForTest(ctx context.Context, typ string, doc map[string]any) error {
	return s.checkReferences(ctx, typ, doc, nil, "")
}

// ExtendAccessForTest tells the access-set cache that r, stored, was just written by a write
// that can only add to the sets (a creation, or a first update that adds a tenant tag), as
// afterWrite does after such a write commits.
func (s *Service) ExtendAccessForTest(ctx context.Context, r *Resource) {
	s.afterWrite(ctx, r, accessNote{extend: true})
}

// VisibleAsForTest is visibleAs: whether ctx's caller may see r, a current version.
func (s *Service) VisibleAsForTest(ctx context.Context, r *Resource) (bool, error) {
	return s.visibleAs(ctx, r)
}

// VisibleDocForTest is visibleDoc: visibleAs for the decoded current version of typ/id.
func (s *Service) VisibleDocForTest(ctx context.Context, typ, id string, doc map[string]any) (bool, error) {
	return s.visibleDoc(ctx, typ, id, doc)
}

// ScopeClauseForTest is the clause a search of typ gets for ctx's caller (ok false when
// nothing is hidden from it).
func (s *Service) ScopeClauseForTest(ctx context.Context, typ string) (c Clause, ok bool, err error) {
	q := Query{Type: typ}
	if _, err := s.scopeQuery(ctx, &q); err != nil || len(q.Clauses) == 0 {
		return Clause{}, false, err
	}
	return q.Clauses[0], true, nil
}

// SetScopeFailureTTLForTest sets how long a set too large to resolve is not tried again, and
// returns the restore.
func SetScopeFailureTTLForTest(d time.Duration) func() {
	old := scopeFailureTTL.Swap(int64(d))
	return func() { scopeFailureTTL.Store(old) }
}
