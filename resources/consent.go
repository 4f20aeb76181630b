package resources

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"time"
)

// Consent-aware disclosure (issue 5): a CBO receives a member's Conditions, Observations,
// QuestionnaireResponses and DocumentReferences only while an active Consent permits
// disclosure to its organization, and resources labeled sensitive in meta.security only when
// that Consent's provisions cover the label. Consents are read at every request, so a revoked
// (status inactive) or expired Consent takes effect at once.
//
// What a Consent grants, as evaluated here (CalAIM ASCMI authorization, see the domain brief):
//   - status active; provision present and not of type deny;
//   - the organization is a top-level provision.actor (the indexed `actor` search parameter);
//   - now lies in provision.period, when one is given;
//   - sensitive labels granted: provision.securityLabel, plus the securityLabel of nested
//     permit provisions that apply to the organization (no actor, or the organization among
//     them) and are in period; labels of nested deny provisions that apply are taken back.

// Sensitive labels (v3-ActCode): substance use (42 CFR Part 2), psychiatry, HIV/AIDS.
var sensitiveLabels = []string{"ETH", "PSY", "HIV"}

// labelMask has bit i set for sensitiveLabels[i].
type labelMask uint8

const allLabels labelMask = 1<<3 - 1

func labelBit(code string) labelMask {
	if i := slices.Index(sensitiveLabels, code); i >= 0 {
		return 1 << i
	}
	return 0
}

// consentGrants returns, for each patient in patients with a Consent that permits disclosure
// to t's organization now, the sensitive labels that Consent covers.
func (s *Service) consentGrants(ctx context.Context, t *tenant, patients *idSet) (map[string]labelMask, error) {
	if patients.len() == 0 {
		return nil, nil
	}
	// Cached for every patient a Consent names the organization for (they are few next to
	// the organization's referrals), so that a new referral leaves the entry valid.
	v, err := s.cached(ctx, t, "consent-grants", func(ctx context.Context) (any, error) { return s.readConsentGrants(ctx, t) })
	if err != nil {
		return nil, err
	}
	all := v.(map[string]labelMask)
	grants := make(map[string]labelMask, min(len(all), patients.len()))
	for pid, mask := range all {
		if patients.has(pid) {
			grants[pid] = mask
		}
	}
	return grants, nil
}

func (s *Service) readConsentGrants(ctx context.Context, t *tenant) (map[string]labelMask, error) {
	grants := map[string]labelMask{}
	now := consentNow()
	q := Query{Type: "Consent", Clauses: []Clause{
		keysClause(t.orgKey("actor")),
		keysClause(TokenCodeKey("status", "active")),
	}}
	err := s.collect(ctx, q, func(r *Resource) {
		dec := json.NewDecoder(bytes.NewReader(r.JSON))
		dec.UseNumber()
		var doc map[string]any
		if dec.Decode(&doc) != nil {
			return
		}
		pid, ok := strings.CutPrefix(refOf(doc["patient"]), "Patient/")
		if !ok {
			return
		}
		if mask, ok := consentPermits(doc, t.org, now); ok {
			grants[pid] |= mask
		}
	})
	return grants, err
}

// extendConsentGrants is readConsentGrants for one created resource: a new Consent can only
// add to what the organization is granted.
func extendConsentGrants(t *tenant, v any, ch *accessChange) (any, bool) {
	mask, ok := ch.consentGrants[t.org]
	if ch.typ != "Consent" || !ok || ch.consentPatient == "" {
		return v, false
	}
	// The build's query: the organization as actor, status active.
	if !ch.hasKey(t.orgKey("actor")) || !ch.hasKey(TokenCodeKey("status", "active")) {
		return v, false
	}
	grants := v.(map[string]labelMask)
	if have, ok := grants[ch.consentPatient]; ok && have|mask == have {
		return v, false
	}
	out := make(map[string]labelMask, len(grants)+1)
	for k, m := range grants {
		out[k] = m
	}
	out[ch.consentPatient] |= mask
	return out, true
}

// consentPermits evaluates one Consent for disclosure to org at now: ok when it permits
// disclosure at all, and the sensitive labels it covers.
func consentPermits(doc map[string]any, org string, now time.Time) (labelMask, bool) {
	if st, _ := doc["status"].(string); st != "active" {
		return 0, false
	}
	prov, _ := doc["provision"].(map[string]any)
	if prov == nil || provisionType(prov) == "deny" || !actorIs(prov, org) || !inPeriod(prov, now) {
		return 0, false
	}
	granted := labelsOf(prov)
	var denied labelMask
	nested, _ := prov["provision"].([]any)
	for _, n := range nested {
		p, _ := n.(map[string]any)
		if p == nil || !inPeriod(p, now) {
			continue
		}
		if actors, _ := p["actor"].([]any); len(actors) > 0 && !actorIs(p, org) {
			continue
		}
		if provisionType(p) == "deny" {
			denied |= labelsOf(p)
		} else {
			granted |= labelsOf(p)
		}
	}
	return granted &^ denied, true
}

func provisionType(p map[string]any) string {
	t, _ := p["type"].(string)
	return t
}

func actorIs(p map[string]any, org string) bool {
	actors, _ := p["actor"].([]any)
	for _, a := range actors {
		m, _ := a.(map[string]any)
		ref := refOf(m["reference"])
		if ref == org || strings.HasSuffix(ref, "/"+org) {
			return true
		}
	}
	return false
}

func labelsOf(p map[string]any) labelMask {
	var mask labelMask
	labels, _ := p["securityLabel"].([]any)
	for _, l := range labels {
		m, _ := l.(map[string]any)
		code, _ := m["code"].(string)
		mask |= labelBit(code)
	}
	return mask
}

// inPeriod reports whether now lies in p.period (open ends allowed; a date end includes its
// whole day).
func inPeriod(p map[string]any, now time.Time) bool {
	period, _ := p["period"].(map[string]any)
	if period == nil {
		return true
	}
	if start, _ := period["start"].(string); start != "" {
		lo, _, err := ParseDateRange(start)
		if err != nil || now.Before(lo) {
			return false
		}
	}
	if end, _ := period["end"].(string); end != "" {
		_, hi, err := ParseDateRange(end)
		if err != nil || !now.Before(hi) {
			return false
		}
	}
	return true
}

// gatedLimit limits a consent-gated type for a CBO: what it wrote, or what is about a
// patient whose Consent names it, without sensitive labels the Consent does not cover.
func gatedLimit(typ string, own []string, grants map[string]labelMask) limit {
	byMask := map[labelMask]map[string]bool{}
	for pid, mask := range grants {
		if byMask[mask] == nil {
			byMask[mask] = map[string]bool{}
		}
		byMask[mask][pid] = true
	}
	var alts []setAlt
	for mask := labelMask(0); mask <= allLabels; mask++ {
		alt := patientAlt(typ, newIDSet(byMask[mask]))
		if alt.ids.len() == 0 {
			continue
		}
		for i, code := range sensitiveLabels {
			if mask&(1<<i) == 0 {
				alt.noKey = append(alt.noKey, TokenCodeKey("_security", code))
			}
		}
		alts = append(alts, alt)
	}
	return anyOf(own, alts...)
}
