package claims

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/calaimfhir/calaimfhir/profiles"
)

// Systems the checks read.
const (
	NPISystem          = profiles.NPISystem
	CINSystem          = profiles.CINSystem
	ICD10CM            = profiles.ICD10CMSystem
	CareTeamRoleSystem = "http://terminology.hl7.org/CodeSystem/claimcareteamrole"
	ClaimTypeSystem    = "http://terminology.hl7.org/CodeSystem/claim-type"
	// InfoSystem codes Claim.supportingInfo.code; group-size carries the number of patients
	// in a CHW group session (valueQuantity).
	InfoSystem = profiles.Base + "/CodeSystem/claim-information"
	GroupSize  = "group-size"
	// NavigationCode in profiles.CHWServiceTypeSystem marks CHW health navigation (item.category).
	NavigationCode = "health-navigation"
)

// Key systems. The server tags accepted Claims (meta.tag) and their ClaimResponses
// (identifier) with hashed keys, so that resubmissions and duplicates are found by one
// indexed lookup and conditional creates keep them unique under concurrency.
const (
	// SubmissionKeySystem: one key per accepted claim, from the submitter and Claim.identifier.
	SubmissionKeySystem = profiles.Base + "/sid/claim-submission"
	// LineKeySystem: one key per accepted item, from member, code, modifiers, date and
	// billing provider NPI.
	LineKeySystem = profiles.Base + "/sid/claim-line"
	// CareMonthKeySystem: ECM and CHW-navigation months per member (for the overlap warning);
	// on ClaimResponses only, never unique.
	CareMonthKeySystem = profiles.Base + "/sid/claim-care-month"
)

// Lookup fetches the facts the checks need for a whole submission. Every method takes the
// complete list at once so an implementation can batch; absent things are simply missing
// from the answer. Errors are infrastructure failures (the store is down), not findings.
type Lookup interface {
	// Read returns the current resources named "Type/id".
	Read(ctx context.Context, refs []string) (map[string]json.RawMessage, error)
	// OrganizationsByNPI returns Organizations by NPI.
	OrganizationsByNPI(ctx context.Context, npis []string) (map[string]json.RawMessage, error)
	// Referrals returns the ServiceRequests whose subject is one of the patients ("Patient/id")
	// and the Tasks whose focus is one of those ServiceRequests.
	Referrals(ctx context.Context, patients []string) (serviceRequests, tasks []json.RawMessage, err error)
	// Responses returns the ClaimResponses carrying any of these identifiers ("system|value").
	Responses(ctx context.Context, identifiers []string) ([]json.RawMessage, error)
}

// Submission is one claim as sent, with who sent it.
type Submission struct {
	Body []byte
	// Submitter is the caller's organization ("Organization/x"); resubmissions are
	// recognized only from the same submitter.
	Submitter string
	// OwnClaimsOnly: the submitter may bill only as itself (a CBO): a claim whose billing
	// provider is another organization is rejected (provider-not-submitter).
	OwnClaimsOnly bool
}

// Result is the verdict on one claim.
type Result struct {
	// Claim is the decoded claim; Doc the same as a generic document, with the keys added
	// as meta.tag when accepted. Both are nil when the body is not a Claim (claim-invalid).
	Claim *Claim
	Doc   map[string]any
	// Outcome is complete, partial or error.
	Outcome  string
	Problems []*Problem
	Warnings []*Problem
	// Replay is the ClaimResponse stored for an earlier, accepted submission with the same
	// identifier: nothing is checked or stored again.
	Replay json.RawMessage
	// ConditionalKeys ("system|value": submission and line keys) must not exist yet when the
	// claim is stored; Identifiers are every key the ClaimResponse carries.
	ConditionalKeys []string
	Identifiers     []Identifier
	// Insurer for the ClaimResponse (Claim.insurer, else the Coverage's payor).
	Insurer *Reference
	// PreAuthRef of the focal insurance, echoed.
	PreAuthRef string
}

// Conformance checks a claim against the CalAIMClaim rules; the default is Conform. The
// profiles package can supply its validator here.
type Conformance func(c *Claim) []*Problem

// Checker runs the checks.
type Checker struct {
	Codes   Codes
	Conform Conformance
}

// facts is everything looked up for one submission.
type facts struct {
	resources map[string]json.RawMessage
	orgByNPI  map[string]json.RawMessage
	// referrals per patient ref
	referrals map[string][]referral
	// existing keys ("system|value") of accepted claims
	existing map[string]bool
	// accepted in this submission so far: key → claim index
	seen map[string]int
}

type referral struct {
	sr    ServiceRequest
	tasks []Task
}

// Check checks every submission and returns a result per submission, in order. The Lookup
// is called a fixed number of times, whatever the number of claims.
func (ck *Checker) Check(ctx context.Context, lk Lookup, subs []Submission) ([]*Result, error) {
	results := make([]*Result, len(subs))
	subKeys := make([]string, len(subs))
	for i, s := range subs {
		r := &Result{}
		results[i] = r
		c, doc, p := decodeClaim(s.Body)
		if p != nil {
			r.Problems = append(r.Problems, p)
			continue
		}
		r.Claim, r.Doc = c, doc
		if len(c.Identifier) > 0 && c.Identifier[0].Value != "" {
			subKeys[i] = SubmissionKeySystem + "|" + hashKey("submission", s.Submitter, refOrIdentifier(c.Provider), c.Identifier[0].System, c.Identifier[0].Value)
		}
	}
	// One lookup finds both resubmissions (the submission key) and the keys of accepted
	// items, so a claim accepted meanwhile is seen as one or the other consistently.
	f, err := ck.gather(ctx, lk, results, subKeys)
	if err != nil {
		return nil, err
	}
	for i, r := range results {
		if r.Claim == nil || r.Replay != nil {
			if r.Replay == nil {
				r.Outcome = "error"
			}
			continue
		}
		ck.checkClaim(r, f, subs[i], subKeys[i], i)
	}
	return results, nil
}

// decodeClaim decodes a body into the typed view and a generic document.
func decodeClaim(body []byte) (*Claim, map[string]any, *Problem) {
	var c Claim
	if err := json.Unmarshal(body, &c); err != nil {
		return nil, nil, problem(ClaimInvalid, "the claim cannot be read: %s", jsonProblem(err))
	}
	if c.ResourceType != "Claim" {
		return nil, nil, problem(ClaimInvalid, "the entry is a %q, not a Claim", c.ResourceType)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		return nil, nil, problem(ClaimInvalid, "the claim is not a JSON object")
	}
	return &c, doc, nil
}

// jsonProblem describes a decoding error without echoing values.
func jsonProblem(err error) string {
	var te *json.UnmarshalTypeError
	if ok := asType(err, &te); ok {
		return fmt.Sprintf("%s must be a JSON %s", te.Field, jsonKind(te.Type.Kind().String()))
	}
	return "it is not valid JSON"
}

func asType[T any](err error, target *T) bool {
	t, ok := err.(T)
	if ok {
		*target = t
	}
	return ok
}

func jsonKind(k string) string {
	switch k {
	case "struct", "map":
		return "object"
	case "slice":
		return "array"
	case "float64", "int":
		return "number"
	}
	return k
}

func refOrIdentifier(r *Reference) string {
	if r == nil {
		return ""
	}
	if r.Reference != "" {
		return r.Reference
	}
	if r.Identifier != nil {
		return r.Identifier.System + "|" + r.Identifier.Value
	}
	return ""
}

// hashKey is a 128-bit hex digest of the parts: keys identify without revealing.
func hashKey(parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "\x1f")))
	return hex.EncodeToString(h[:16])
}

// identifierKeys returns "system|value" of a resource's identifiers in system.
func identifierKeys(raw json.RawMessage, system string) []string {
	var r struct {
		Identifier []Identifier `json:"identifier"`
	}
	json.Unmarshal(raw, &r)
	var out []string
	for _, id := range r.Identifier {
		if system == "" || id.System == system {
			out = append(out, id.System+"|"+id.Value)
		}
	}
	return out
}

// gather looks up, in a handful of batched calls, everything the claims refer to.
func (ck *Checker) gather(ctx context.Context, lk Lookup, results []*Result, subKeys []string) (*facts, error) {
	f := &facts{referrals: map[string][]referral{}, existing: map[string]bool{}, seen: map[string]int{}}
	refs := map[string]bool{}
	npis := map[string]bool{}
	patients := map[string]bool{}
	var candidates []string
	for _, r := range results {
		c := r.Claim
		if c == nil {
			continue
		}
		if p := c.PatientRef(); refID(p, "Patient") != "" {
			refs["Patient/"+refID(p, "Patient")] = true
			patients["Patient/"+refID(p, "Patient")] = true
		}
		if cov, _ := c.FocalCoverage(); refID(cov, "Coverage") != "" {
			refs["Coverage/"+refID(cov, "Coverage")] = true
		}
		if c.Provider != nil {
			if id := refID(c.Provider.Reference, "Organization"); id != "" {
				refs["Organization/"+id] = true
			} else if c.Provider.Identifier != nil && c.Provider.Identifier.System == NPISystem {
				npis[c.Provider.Identifier.Value] = true
			}
		}
		for _, ct := range c.CareTeam {
			for _, typ := range []string{"Practitioner", "PractitionerRole"} {
				if id := refID(ct.Provider.Reference, typ); id != "" {
					refs[typ+"/"+id] = true
				}
			}
		}
	}
	var err error
	if f.resources, err = lk.Read(ctx, sortedKeys(refs)); err != nil {
		return nil, err
	}
	if len(npis) > 0 {
		if f.orgByNPI, err = lk.OrganizationsByNPI(ctx, sortedKeys(npis)); err != nil {
			return nil, err
		}
	}
	for _, r := range results {
		if r.Claim != nil {
			_, _, npi := f.provider(r.Claim)
			candidates = append(candidates, ck.candidateKeys(r.Claim, npi)...)
		}
	}
	if len(patients) > 0 {
		srs, tasks, err := lk.Referrals(ctx, sortedKeys(patients))
		if err != nil {
			return nil, err
		}
		byFocus := map[string][]Task{}
		for _, raw := range tasks {
			var t Task
			if json.Unmarshal(raw, &t) == nil && t.Focus != nil {
				if id := refID(t.Focus.Reference, "ServiceRequest"); id != "" {
					byFocus[id] = append(byFocus[id], t)
				}
			}
		}
		for _, raw := range srs {
			var sr ServiceRequest
			if json.Unmarshal(raw, &sr) != nil {
				continue
			}
			p := "Patient/" + refID(sr.Subject.Reference, "Patient")
			f.referrals[p] = append(f.referrals[p], referral{sr: sr, tasks: byFocus[sr.ID]})
		}
	}
	// Items first, submissions last: a claim accepted concurrently (its Claim and
	// ClaimResponse commit together) is then seen either not at all, or as a resubmission;
	// never only as duplicate items.
	if len(candidates) > 0 {
		slices.Sort(candidates)
		prior, err := lk.Responses(ctx, slices.Compact(candidates))
		if err != nil {
			return nil, err
		}
		for _, raw := range prior {
			if accepted(raw) {
				for _, k := range identifierKeys(raw, "") {
					f.existing[k] = true
				}
			}
		}
	}
	var want []string
	for _, k := range subKeys {
		if k != "" {
			want = append(want, k)
		}
	}
	if len(want) > 0 {
		prior, err := lk.Responses(ctx, want)
		if err != nil {
			return nil, err
		}
		replays := map[string]json.RawMessage{}
		for _, raw := range prior {
			if accepted(raw) {
				for _, k := range identifierKeys(raw, SubmissionKeySystem) {
					replays[k] = raw
				}
			}
		}
		// Resubmissions of accepted claims get their original answer.
		for i, k := range subKeys {
			if raw, ok := replays[k]; ok && k != "" {
				results[i].Replay = raw
			}
		}
	}
	return f, nil
}

func accepted(cr json.RawMessage) bool {
	var v struct {
		Outcome string `json:"outcome"`
	}
	json.Unmarshal(cr, &v)
	return v.Outcome == "complete" || v.Outcome == "partial"
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// candidateKeys are the line keys a claim's items would carry, and the care-month keys the
// overlap warning of its ECM and CHW items looks for, for the up-front lookup.
func (ck *Checker) candidateKeys(c *Claim, npi string) []string {
	var out []string
	member := "Patient/" + refID(c.PatientRef(), "Patient")
	for i := range c.Item {
		it := &c.Item[i]
		sys, code := it.Code()
		d := it.Date()
		if d.IsZero() {
			continue
		}
		if svc, _ := ck.Codes.MatchService(sys, code, it.Modifiers(), d); svc != nil {
			switch {
			case svc.Program == "ecm":
				out = append(out, careMonthKey("chw-navigation", member, d))
			case svc.Program == "chw" && (svc.Navigation || it.Category.Has(profiles.CHWServiceTypeSystem, NavigationCode)):
				out = append(out, careMonthKey("ecm", member, d))
			}
		}
		if npi != "" {
			out = append(out, lineKey(member, sys, code, it.Modifiers(), d, npi))
		}
	}
	return out
}

func lineKey(member, system, code string, modifiers []string, date time.Time, npi string) string {
	mods := slices.Clone(modifiers)
	slices.Sort(mods)
	return LineKeySystem + "|" + hashKey("line", member, system, code, strings.Join(mods, ":"), date.Format(time.DateOnly), npi)
}

func careMonthKey(kind, member string, date time.Time) string {
	return CareMonthKeySystem + "|" + hashKey(kind, member, date.Format("2006-01"))
}

// provider resolves the billing provider: a reference to an Organization (its NPI from its
// identifiers) or an NPI identifier (the Organization found by it).
func (f *facts) provider(c *Claim) (org Organization, ok bool, npi string) {
	switch {
	case c.Provider == nil:
	case refID(c.Provider.Reference, "Organization") != "":
		if f.resource("Organization/"+refID(c.Provider.Reference, "Organization"), &org) {
			return org, true, NPI(org.Identifier)
		}
	case c.Provider.Identifier != nil && c.Provider.Identifier.System == NPISystem:
		npi = c.Provider.Identifier.Value
		if raw, found := f.orgByNPI[npi]; found && json.Unmarshal(raw, &org) == nil {
			return org, true, npi
		}
	}
	return org, false, npi
}

// resource decodes a looked-up resource into v; false when absent.
func (f *facts) resource(ref string, v any) bool {
	raw, ok := f.resources[ref]
	return ok && json.Unmarshal(raw, v) == nil
}

var icd10 = regexp.MustCompile(`^[A-TV-Z][0-9][0-9A-Z](\.[0-9A-Z]{1,4})?$`)

// checkClaim runs every check on one claim and sets the verdict and keys.
func (ck *Checker) checkClaim(r *Result, f *facts, sub Submission, subKey string, index int) {
	c := r.Claim
	add := func(item int, code, format string, args ...any) {
		p := problem(code, format, args...)
		p.Item = item
		r.Problems = append(r.Problems, p)
	}
	conform := ck.Conform
	if conform == nil {
		conform = Conform
	}
	r.Problems = append(r.Problems, conform(c)...)

	// Member and coverage.
	member := "Patient/" + refID(c.PatientRef(), "Patient")
	var patient Patient
	if member == "Patient/" || !f.resource(member, &patient) {
		add(0, PatientNotFound, "Claim.patient %q is not a known Patient", c.PatientRef())
	}
	covRef, preAuth := c.FocalCoverage()
	if len(preAuth) > 0 {
		r.PreAuthRef = preAuth[0]
	}
	var cov Coverage
	haveCov := false
	if id := refID(covRef, "Coverage"); id == "" || !f.resource("Coverage/"+id, &cov) {
		add(0, CoverageNotFound, "the focal insurance's Coverage %q is not known", covRef)
	} else {
		haveCov = true
		if "Patient/"+refID(cov.Beneficiary.Reference, "Patient") != member {
			add(0, CoverageMismatch, "Coverage/%s is not the coverage of %s", cov.ID, member)
		}
		if cov.Status != "active" {
			add(0, CoverageInactive, "Coverage/%s is %s, not active", cov.ID, cov.Status)
		}
	}
	r.Insurer = c.Insurer
	if r.Insurer == nil && haveCov && len(cov.Payor) > 0 {
		r.Insurer = &cov.Payor[0]
	}

	// Billing provider.
	org, haveOrg, npi := f.provider(c)
	switch {
	case c.Provider == nil:
		// reported by conformance
	case !haveOrg || (org.Active != nil && !*org.Active):
		add(0, ProviderUnknown, "the billing provider is not a known, active Organization")
		if npi != "" && !ValidNPI(npi) {
			add(0, ProviderNPIInvalid, "the billing provider NPI %q is not valid (10 digits, Luhn check digit)", npi)
		}
	case npi == "":
		add(0, ProviderNPIInvalid, "the billing provider Organization/%s has no NPI identifier", org.ID)
	case !ValidNPI(npi):
		add(0, ProviderNPIInvalid, "the billing provider NPI %q is not valid (10 digits, Luhn check digit)", npi)
	}
	if sub.OwnClaimsOnly && haveOrg && "Organization/"+org.ID != sub.Submitter {
		add(0, ProviderNotSubmitter, "a community organization submits claims only with itself as the billing provider")
	}

	// Diagnoses, at the earliest date of service.
	first := time.Time{}
	for i := range c.Item {
		if d := c.Item[i].Date(); !d.IsZero() && (first.IsZero() || d.Before(first)) {
			first = d
		}
	}
	for _, d := range c.Diagnosis {
		code := d.DiagnosisCodeableConcept.Code(ICD10CM)
		switch {
		case d.DiagnosisCodeableConcept == nil:
			// reported by conformance
		case code == "" || !icd10.MatchString(code):
			add(0, DiagnosisInvalid, "diagnosis %d is not an ICD-10-CM code (system %s, dotted form)", d.Sequence, ICD10CM)
		case !first.IsZero():
			var dates []time.Time
			for i := range c.Item {
				if day := c.Item[i].Date(); !day.IsZero() && slices.Contains(c.Item[i].DiagnosisSequence, d.Sequence) {
					dates = append(dates, day)
				}
			}
			if len(dates) == 0 {
				dates = []time.Time{first}
			}
			for _, day := range dates {
				if p := ck.Codes.DiagnosisProblem(code, day); p != nil {
					add(0, p.Code, "diagnosis %d: %s", d.Sequence, p.Message)
					break
				}
			}
		}
	}

	// Items.
	claimLevel := len(r.Problems) > 0
	supervisorChecked := false
	var accepted []int
	type itemKeys struct{ line, month string }
	keys := map[int]itemKeys{}
	for i := range c.Item {
		it := &c.Item[i]
		seq := it.Sequence
		before := len(r.Problems)
		sys, code := it.Code()
		date := it.Date()
		if sys == "" || date.IsZero() {
			continue // conformance reported it
		}
		if u := it.Units(); it.Quantity == nil || it.Quantity.Value == nil || u <= 0 || u != math.Trunc(u) {
			add(seq, UnitsInvalid, "item %d: quantity (units) must be a whole number above 0", seq)
		}
		if haveCov && !covers(cov.Period, date) {
			add(seq, CoverageInactive, "item %d: Coverage/%s is not in force on %s", seq, cov.ID, it.ServicedDate)
		}
		svc, p := ck.Codes.MatchService(sys, code, it.Modifiers(), date)
		if p != nil {
			add(seq, p.Code, "item %d: %s", seq, p.Message)
		}
		if svc != nil {
			prog := ck.Codes.Program(svc.Program)
			if prog != nil && prog.Supervisor && !supervisorChecked {
				supervisorChecked = true
				if msg := ck.supervisorProblem(c, f); msg != "" {
					add(0, SupervisorMissing, "%s", msg)
					claimLevel = true
				}
			}
			if len(svc.GroupSize) == 2 {
				if n, ok := groupSize(c, it); !ok && svc.GroupSize[1] > 1 {
					add(seq, GroupSizeMismatch, "item %d: %s is for groups of %d-%d patients: give the group size (supportingInfo %s#%s)", seq, code, svc.GroupSize[0], svc.GroupSize[1], InfoSystem, GroupSize)
				} else if ok && (n < svc.GroupSize[0] || n > svc.GroupSize[1]) {
					add(seq, GroupSizeMismatch, "item %d: %s is for groups of %d-%d patients, not %d", seq, code, svc.GroupSize[0], svc.GroupSize[1], n)
				}
			}
			if prog != nil && prog.Referral && !authorized(f.referrals[member], svc, prog, sys, code, date, c.Provider, org) {
				add(seq, ReferralMissing, "item %d: no %s referral (ServiceRequest with an accepted, in-progress or completed Task owned by the billing provider) covers %s", seq, svc.Service, it.ServicedDate)
			}
			// ECM and CHW navigation in the same month for the same member.
			nav := svc.Program == "chw" && (svc.Navigation || it.Category.Has(profiles.CHWServiceTypeSystem, NavigationCode))
			switch {
			case nav:
				ecmKey := careMonthKey("ecm", member, date)
				if f.existing[ecmKey] || seenKey(f, ecmKey) || ecmReferral(f.referrals[member], date) {
					r.Warnings = append(r.Warnings, &Problem{Code: ECMCHWOverlap, Item: seq,
						Message: fmt.Sprintf("item %d: CHW navigation while the member is enrolled in ECM in %s: check for duplicated care management", seq, date.Format("2006-01"))})
				}
				keys[seq] = itemKeys{month: careMonthKey("chw-navigation", member, date)}
			case svc.Program == "ecm":
				navKey := careMonthKey("chw-navigation", member, date)
				if f.existing[navKey] || seenKey(f, navKey) {
					r.Warnings = append(r.Warnings, &Problem{Code: ECMCHWOverlap, Item: seq,
						Message: fmt.Sprintf("item %d: ECM while CHW navigation was billed for the member in %s: check for duplicated care management", seq, date.Format("2006-01"))})
				}
				keys[seq] = itemKeys{month: careMonthKey("ecm", member, date)}
			}
		}
		if len(r.Problems) == before && npi != "" {
			lk := lineKey(member, sys, code, it.Modifiers(), date, npi)
			if f.existing[lk] {
				add(seq, Duplicate, "item %d: an accepted claim already bills this member, service, modifiers, date and provider", seq)
			} else if j, ok := f.seen[lk]; ok {
				add(seq, Duplicate, "item %d: duplicates an item of claim entry %d of this submission", seq, j+1)
			} else {
				k := keys[seq]
				k.line = lk
				keys[seq] = k
			}
		}
		if len(r.Problems) == before {
			accepted = append(accepted, seq)
		}
	}
	for _, p := range r.Problems {
		if p.Item == 0 {
			claimLevel = true
		}
	}
	switch {
	case claimLevel || len(accepted) == 0:
		r.Outcome = "error"
		return
	case len(accepted) < len(c.Item):
		r.Outcome = "partial"
	default:
		r.Outcome = "complete"
	}
	// Accepted: record the keys, for the rest of this submission and for storage.
	if subKey != "" {
		r.ConditionalKeys = append(r.ConditionalKeys, subKey)
	}
	for _, seq := range accepted {
		k := keys[seq]
		if k.line != "" {
			f.seen[k.line] = index
			r.ConditionalKeys = append(r.ConditionalKeys, k.line)
		}
		if k.month != "" {
			f.seen[k.month] = index
			r.Identifiers = appendKey(r.Identifiers, k.month)
		}
	}
	for _, k := range r.ConditionalKeys {
		r.Identifiers = appendKey(r.Identifiers, k)
	}
	tagClaim(r.Doc, r.ConditionalKeys)
}

func seenKey(f *facts, k string) bool { _, ok := f.seen[k]; return ok }

func appendKey(ids []Identifier, key string) []Identifier {
	sys, val, _ := strings.Cut(key, "|")
	for _, id := range ids {
		if id.System == sys && id.Value == val {
			return ids
		}
	}
	return append(ids, Identifier{System: sys, Value: val})
}

// tagClaim adds the keys to the claim's meta.tag.
func tagClaim(doc map[string]any, keys []string) {
	if len(keys) == 0 {
		return
	}
	meta, _ := doc["meta"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
		doc["meta"] = meta
	}
	tags, _ := meta["tag"].([]any)
	for _, k := range keys {
		sys, val, _ := strings.Cut(k, "|")
		tags = append(tags, map[string]any{"system": sys, "code": val})
	}
	meta["tag"] = tags
}

// supervisorProblem checks for a supervising provider with a valid NPI ("" when fine).
func (ck *Checker) supervisorProblem(c *Claim, f *facts) string {
	sup := c.CareTeamRole("supervisor")
	if sup == nil {
		return "CHW services need a supervising provider: Claim.careTeam with role supervisor"
	}
	npi := ""
	if sup.Identifier != nil && sup.Identifier.System == NPISystem {
		npi = sup.Identifier.Value
	} else if id := refID(sup.Reference, "Practitioner"); id != "" {
		var p Practitioner
		if !f.resource("Practitioner/"+id, &p) {
			return "the supervising provider " + sup.Reference + " is not a known Practitioner"
		}
		npi = NPI(p.Identifier)
	}
	if !ValidNPI(npi) {
		return "the supervising provider needs a valid NPI (10 digits, Luhn check digit)"
	}
	return ""
}

// groupSize returns the group size that applies to an item: the supportingInfo it points at,
// or the claim's only group-size entry when no item points at supportingInfo.
func groupSize(c *Claim, it *Item) (int, bool) {
	var sizes []struct {
		seq int
		n   float64
	}
	for _, si := range c.SupportingInfo {
		if si.Code.Has(InfoSystem, GroupSize) && si.ValueQuantity != nil && si.ValueQuantity.Value != nil {
			sizes = append(sizes, struct {
				seq int
				n   float64
			}{si.Sequence, *si.ValueQuantity.Value})
		}
	}
	for _, s := range sizes {
		if slices.Contains(it.InformationSequence, s.seq) {
			return int(s.n), true
		}
	}
	pointed := false
	for i := range c.Item {
		pointed = pointed || len(c.Item[i].InformationSequence) > 0
	}
	if len(sizes) == 1 && !pointed {
		return int(sizes[0].n), true
	}
	return 0, false
}

// authorized reports whether a referral authorizes the service on date: a ServiceRequest
// (active or completed) coded with the item's code, the catalog service or (where the
// program allows) the program, with a Task accepted, in progress or completed, owned by the
// billing provider or the organization it is part of, whose window covers the date.
func authorized(refs []referral, svc *Service, prog *Program, sys, code string, date time.Time, provider *Reference, org Organization) bool {
	owners := map[string]bool{}
	if org.ID != "" {
		owners["Organization/"+org.ID] = true
	}
	if org.PartOf != nil {
		if id := refID(org.PartOf.Reference, "Organization"); id != "" {
			owners["Organization/"+id] = true
		}
	}
	for _, r := range refs {
		if r.sr.Status != "active" && r.sr.Status != "completed" {
			continue
		}
		if !r.sr.Code.Has(sys, code) && !r.sr.Code.Has(profiles.ServiceSystem, svc.Service) &&
			!(prog.AuthorizeByProgram && r.sr.Code.Has(profiles.ProgramSystem, svc.Program)) {
			continue
		}
		for _, t := range r.tasks {
			if t.Status != "accepted" && t.Status != "in-progress" && t.Status != "completed" {
				continue
			}
			if t.Owner == nil || !owners["Organization/"+refID(t.Owner.Reference, "Organization")] {
				continue
			}
			if referralCovers(r.sr, t, date) {
				return true
			}
		}
	}
	return false
}

// referralCovers: the Task's executionPeriod, else the ServiceRequest's occurrence period,
// else from the Task's (or request's) authoring date on.
func referralCovers(sr ServiceRequest, t Task, date time.Time) bool {
	switch {
	case t.ExecutionPeriod != nil:
		return covers(t.ExecutionPeriod, date)
	case sr.OccurrencePeriod != nil:
		return covers(sr.OccurrencePeriod, date)
	}
	start := parseDay(t.AuthoredOn)
	if start.IsZero() {
		start = parseDay(sr.AuthoredOn)
	}
	return start.IsZero() || !date.Before(start)
}

// ecmReferral reports whether an ECM referral in force covers date (enrollment), whoever
// owns it.
func ecmReferral(refs []referral, date time.Time) bool {
	for _, r := range refs {
		if r.sr.Status != "active" && r.sr.Status != "completed" {
			continue
		}
		if !r.sr.Code.Has(profiles.ProgramSystem, "ecm") && !r.sr.Code.Has(profiles.ServiceSystem, "ecm") {
			continue
		}
		for _, t := range r.tasks {
			if (t.Status == "accepted" || t.Status == "in-progress") && referralCovers(r.sr, t, date) {
				return true
			}
		}
	}
	return false
}
