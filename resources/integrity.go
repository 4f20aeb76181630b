package resources

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// DefaultRequiredReferences are the references that must resolve to a stored resource when a
// resource is written: the ones a CalAIM referral or claim cannot do without. Keys are types,
// values element paths below them.
var DefaultRequiredReferences = map[string][]string{
	"Task":           {"focus", "for"},
	"ServiceRequest": {"subject"},
	"Consent":        {"patient"},
	"Claim":          {"patient", "insurance.coverage"},
}

// pending lists what a transaction is about to write, so references between its own
// resources count as resolved and references to what it deletes do not.
type pending map[string]bool // "Type/id" → true if written, false if deleted

// checkReferences reports, as one 422 error, every required reference of doc that does not
// resolve to a current resource (or to one the same transaction writes).
func (s *Service) checkReferences(ctx context.Context, typ string, doc map[string]any, tx pending, exprPrefix string) error {
	paths := s.RequiredReferences[typ]
	if len(paths) == 0 {
		return nil
	}
	var issues []Issue
	for _, path := range paths {
		i := 0
		var refs []string
		walk(doc, strings.Split(path, "."), func(v any) {
			if m, ok := v.(map[string]any); ok {
				if ref, ok := m["reference"].(string); ok {
					refs = append(refs, ref)
				}
			}
		})
		for _, ref := range refs {
			expr := fmt.Sprintf("%s%s.%s", exprPrefix, typ, path)
			if len(refs) > 1 {
				expr = fmt.Sprintf("%s[%d]", expr, i)
			}
			i++
			ref = strings.TrimPrefix(ref, s.basePrefix())
			rt, id, ok := SplitLocalRef(ref)
			if !ok {
				continue // absolute URLs elsewhere and contained references are not ours to check
			}
			if written, inTx := tx[rt+"/"+id]; inTx {
				if !written {
					issues = append(issues, Issue{Severity: SeverityError, Code: IssueNotFound, Expression: []string{expr},
						Diagnostics: fmt.Sprintf("%s/%s is deleted by this same transaction", rt, id)})
				}
				continue
			}
			if !Supported(rt) {
				issues = append(issues, Issue{Severity: SeverityError, Code: IssueNotFound, Expression: []string{expr},
					Diagnostics: fmt.Sprintf("%s resources are not stored on this server", rt)})
				continue
			}
			target, err := s.Store.Read(ctx, rt, id)
			if err == nil {
				// A reference to what the caller may not see is reported like a missing one,
				// so writes cannot be used to probe other tenants' ids.
				var ok bool
				if ok, err = s.visibleAs(ctx, target); err == nil && !ok {
					err = notVisible(rt, id)
				}
			}
			switch {
			case err == nil:
			case IsKind(err, KindNotFound), IsKind(err, KindGone):
				issues = append(issues, Issue{Severity: SeverityError, Code: IssueNotFound, Expression: []string{expr},
					Diagnostics: fmt.Sprintf("%s/%s does not exist on this server", rt, id)})
			default:
				return err
			}
		}
	}
	if len(issues) > 0 {
		return &Error{Kind: KindUnprocessable, Message: "references do not resolve", Issues: issues}
	}
	return nil
}

// maxReferrersListed bounds the referrers a refused delete names.
const maxReferrersListed = 10

// referrers finds current resources that refer to typ/id through any reference parameter,
// leaving out those in skip.
func (s *Service) referrers(ctx context.Context, typ, id string, skip pending, limit int) ([]*Resource, error) {
	var out []*Resource
	for _, t := range Types {
		var keys []string
		for _, p := range Params(t) {
			if p.Type == ParamReference && (len(p.Targets) == 0 || slices.Contains(p.Targets, typ)) {
				keys = append(keys, RefKey(p.Name, typ, id))
			}
		}
		if len(keys) == 0 {
			continue
		}
		page, err := s.Store.Search(ctx, &Query{Type: t, Clauses: []Clause{{AnyKey: keys}}, Count: limit + len(skip)})
		if err != nil {
			return nil, err
		}
		for _, r := range page.Resources {
			if _, skipped := skip[r.Type+"/"+r.ID]; !skipped && !(r.Type == typ && r.ID == id) {
				out = append(out, r)
			}
		}
		if len(out) >= limit {
			return out[:limit], nil
		}
	}
	return out, nil
}

// refusedDelete is the 409 for a delete of a resource others still refer to.
func (s *Service) refusedDelete(ctx context.Context, typ, id string, refs []*Resource) error {
	var names []string
	hidden := 0
	for _, r := range refs {
		// Name only what the caller may see; the others are counted, not named.
		if ok, err := s.visibleAs(ctx, r); err != nil || !ok {
			hidden++
			continue
		}
		names = append(names, r.Type+"/"+r.ID)
	}
	if hidden > 0 {
		names = append(names, fmt.Sprintf("%d resource(s) of other organizations", hidden))
	}
	return Errorf(KindConflict, "%s/%s is still referred to by %s; delete or update those first, or ask for _cascade=delete",
		typ, id, strings.Join(names, ", "))
}
