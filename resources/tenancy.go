package resources

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Tenancy: what a caller may see and write, decided by the role and organization its token
// names (issue 5). The decision becomes one more Clause in every store query the service
// runs for the caller (searches, reads, _include, _revinclude, _has and chain resolution,
// conditional interactions), so totals, paging and includes never count or carry what the
// caller may not see. Out-of-scope reads are "not found": existence is not revealed.
//
// Rules, by role (admin and the server itself, see AsSystem, are not restricted):
//   - every role: directory resources (Organization, Practitioner, PractitionerRole,
//     Location, HealthcareService, Questionnaire) carry no member data and are open to read;
//     and whatever the caller's organization wrote (the tenant tag, below).
//   - cbo: Tasks it owns or requested; their focus ServiceRequests (and requests naming it as
//     performer); the Patients those are for, and those Patients' Consents, Coverage and
//     RelatedPersons; their Conditions, Observations, QuestionnaireResponses and
//     DocumentReferences only under an active Consent naming the CBO (consent.go); Claims it
//     bills (Claim.provider).
//   - plan: its members (beneficiaries of Coverage whose payor it is) and every resource about
//     them; its Coverage; Tasks and ServiceRequests it requested or owns.
//   - provider: Tasks and ServiceRequests it requested (or owns, or performs), the Patients
//     those are for, and every resource about those Patients.
//
// The tenant tag: every resource a caller writes gets meta.tag {TenantTagSystem,
// "Organization/<id>"}; tags from earlier versions are kept, and tags of that system sent by a
// non-admin client are dropped, so a client cannot claim or disown a resource.
//
// Scale: a plan's members are not resolved into a set; resources about them carry the plan's
// member key, kept at write time (membership.go). A CBO's and a provider's patient and
// referral sets are resolved per request into id lists (bounded by maxScopeResolved; a
// resolution past it fails, and the access-set cache keeps the failure until a drop, resolving
// again in the background every scopeFailureTTL), which suits organizations of thousands of
// referrals.

// TenantTagSystem is the meta.tag system of the tenant tag (profiles.TenantTagSystem).
const TenantTagSystem = "https://calaimfhir.org/fhir/sid/tenant"

// ServerTagPrefix starts the meta.tag systems only the server (and administrators) set: the
// tenant tag and the claim submission keys (internal/claims). Tags under it sent by other
// callers are dropped, so no client can plant a key that makes another claim a duplicate.
const ServerTagPrefix = "https://calaimfhir.org/fhir/sid/"

// Roles a caller may have (as internal/auth names them).
const (
	RoleAdmin    = "admin"
	RolePlan     = "plan"
	RoleCBO      = "cbo"
	RoleProvider = "provider"
)

// maxScopeResolved bounds the resources one scope resolution may read (Service.MaxScopeResolved).
const maxScopeResolved = 50000

func (s *Service) scopeLimit() int {
	if s.MaxScopeResolved > 0 {
		return s.MaxScopeResolved
	}
	return maxScopeResolved
}

// scopeTooLarge is the failure of a resolution that reached the bound. It repeats until the
// organization's data shrinks, so the access-set cache keeps it (accesscache.go) instead of
// letting every request read the same resources again (at 100,000 members a plan's requests,
// each reading 50,000 Coverage resources for about 10 s before failing, starved everyone).
type scopeTooLarge struct{ err *Error }

func (e *scopeTooLarge) Error() string { return e.err.Error() }
func (e *scopeTooLarge) Unwrap() error { return e.err }

func isScopeTooLarge(err error) bool {
	var e *scopeTooLarge
	return errors.As(err, &e)
}

// directoryTypes hold no member data: every authenticated caller may read them.
var directoryTypes = map[string]bool{
	"Organization": true, "Practitioner": true, "PractitionerRole": true, "Location": true,
	"HealthcareService": true, "Questionnaire": true,
}

// consentGated are the clinical types a CBO receives only under a Consent.
var consentGated = map[string]bool{
	"Condition": true, "Observation": true, "QuestionnaireResponse": true, "DocumentReference": true,
}

// cboCreates are the types a CBO may create (and update or delete when it wrote them).
var cboCreates = map[string]bool{
	"Procedure": true, "Encounter": true, "Observation": true, "QuestionnaireResponse": true,
	"Claim": true, "Condition": true, "Goal": true, "DocumentReference": true,
	"Practitioner": true, "PractitionerRole": true,
}

// cboTaskFields are the Task elements a CBO may change on a Task it owns: the workflow state
// and what it reports back.
var cboTaskFields = []string{"status", "statusReason", "businessStatus", "output", "note",
	"lastModified", "executionPeriod", "meta", "text"}

// tenant is a restricted caller.
type tenant struct {
	role  string
	org   string // "Organization/<id>"
	orgID string
}

// tenant returns the restricted caller of ctx, or nil when nothing is restricted (admin, the
// server itself, or a service without a Caller hook).
func (s *Service) tenant(ctx context.Context) *tenant {
	if IsSystem(ctx) || s.Caller == nil {
		return nil
	}
	c, ok := s.Caller(ctx)
	if !ok || c.Admin {
		return nil
	}
	t := &tenant{role: c.Role, org: c.Org}
	if id, ok := strings.CutPrefix(c.Org, "Organization/"); ok && ValidID(id) {
		t.orgID = id
	}
	return t
}

func (t *tenant) tagKey() string { return TokenKey("_tag", TenantTagSystem, t.org) }

func (t *tenant) orgKey(param string) string { return RefKey(param, "Organization", t.orgID) }

// scoped is the limit on one type for one caller. ungated, when set, is the limit without
// the consent rules: what consent withholds is the difference.
type scoped struct {
	limit   limit
	ungated *limit
	// params are the search parameters whose keys limit tests: judging one resource
	// against it needs only those keys (accessKeys).
	params map[string]bool
	// judged remembers visibleAs' answers for stored versions ("Type/id/version/lu"): a scope
	// is replaced, not changed, when the organization's sets change, and a plan's answers,
	// which also depend on Coverage (membership.go), are replaced with its scope by every
	// Coverage write that names the plan.
	judged answers
	// clause and gated are limit and ungated as clauses for store queries, made on the first
	// query that needs them (scope), not with the scope: see limit.
	once   sync.Once
	clause Clause
	gated  *Clause
}

// limit is what a scope lets through: a resource carrying one of own's keys, or one some
// alternative admits. The alternatives hold the access sets themselves, not copies (sets
// only grow while cached: idSet), so making a limit costs nothing however large the sets are. visibleAs judges one resource with a few map lookups (admits); the Clause a store
// query needs lists every member of the sets, sorted, and is made only when a query asks for
// it (clause). A CBO's scopes are made again whenever its sets change, which each of its first
// writes to a Task does, and the Task update's reference check judges just two resources:
// making their clauses too (sorting ≈ 5,000 ids, a key for every patient) was 12–18% of the
// CPU of a Task-update mix at 50,000 members (docs/benchmarks.md, 2026-12-04), ≈ 1.8 ms a
// check (BenchmarkTaskReferenceCheck).
type limit struct {
	own  []string
	alts []setAlt
	// plain: the clause is own's keys alone (keysClause), not a disjunction with alternatives
	// (anyOf); both mean the same, plain is the form the stores have always been given.
	plain bool
	// member, when set, is a plan ("Organization/<id>") whose member key is among own: a
	// resource about one of its members passes. The key is not in a resource's JSON, so
	// judging one resource asks for its patients' plans instead (Service.admits).
	member  string
	members *answers
}

// setAlt admits a resource whose own id (byID) or patient reference is one of ids, and that
// carries none of the noKey keys. An alternative over no ids admits nothing, and its clause
// is left out.
type setAlt struct {
	ids   *idSet
	byID  bool
	noKey []string
}

// patientRefPrefix starts the keys of references to Patients through "patient": RefKey is
// this prefix and the id.
var patientRefPrefix = RefKey("patient", "Patient", "")

// admits is what Matches of the limit's clause answers for the resource id with keys k.
func (l *limit) admits(id string, k *Keys) bool {
	if hasAnyKey(k, l.own) {
		return true
	}
	for _, a := range l.alts {
		if a.admits(id, k) && !hasAnyKey(k, a.noKey) {
			return true
		}
	}
	return false
}

func (a *setAlt) admits(id string, k *Keys) bool {
	if a.byID {
		return a.ids.has(id)
	}
	for _, key := range k.Eq {
		if pid, ok := strings.CutPrefix(key, patientRefPrefix); ok && a.ids.has(pid) {
			return true
		}
	}
	return false
}

// hasAnyKey is an AnyKey clause of keys, as matchClause judges it.
func hasAnyKey(k *Keys, keys []string) bool {
	for _, key := range keys {
		if _, ok := slices.BinarySearch(k.Eq, key); ok {
			return true
		}
	}
	return false
}

// clause is the limit as a store query's clause.
func (l *limit) clause() Clause {
	if l.plain {
		return keysClause(l.own...)
	}
	or := [][]Clause{{keysClause(l.own...)}}
	for _, a := range l.alts {
		ids := a.ids.sorted()
		if len(ids) == 0 {
			continue // an empty alternative would match everything
		}
		c := Clause{IDs: ids}
		if !a.byID {
			keys := make([]string, len(ids))
			for i, id := range ids {
				keys[i] = patientRefPrefix + id
			}
			c = Clause{AnyKey: keys}
		}
		alt := []Clause{c}
		if len(a.noKey) > 0 {
			alt = append(alt, Clause{NoKey: a.noKey})
		}
		or = append(or, alt)
	}
	return Clause{Or: or}
}

// addParams adds the parameters whose keys the limit tests.
func (l *limit) addParams(into map[string]bool) {
	keyParams(into, l.own)
	if l.member != "" {
		into["patient"] = true
	}
	for _, a := range l.alts {
		if a.ids.len() == 0 {
			continue
		}
		if !a.byID {
			into["patient"] = true
		}
		keyParams(into, a.noKey)
	}
}

// maxJudged bounds a scope's remembered answers (cleared when full).
const maxJudged = 20000

// answers remembers yes/no answers by key, up to maxJudged (then it starts over): a scope's
// visibility judgments, a plan's member patients.
type answers struct {
	mu sync.Mutex
	m  map[string]bool
}

func (a *answers) get(key string) (ok, hit bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	ok, hit = a.m[key]
	return ok, hit
}

func (a *answers) put(key string, ok bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.m == nil || len(a.m) >= maxJudged {
		a.m = map[string]bool{}
	}
	a.m[key] = ok
}

// scopeMemo caches a request's scopes and access sets: a search with _include and _has asks
// for several.
type scopeMemo struct {
	mu   sync.Mutex
	sets map[string]any
}

type scopeMemoKey struct{}

// WithScopeCache lets the scopes computed for one request be reused within it. The server
// calls it once per request after authentication.
func WithScopeCache(ctx context.Context) context.Context {
	return context.WithValue(ctx, scopeMemoKey{}, &scopeMemo{sets: map[string]any{}})
}

func memoOf(ctx context.Context) *scopeMemo {
	m, _ := ctx.Value(scopeMemoKey{}).(*scopeMemo)
	return m
}

// scope returns the limit on typ for ctx's caller with its clauses made, for store queries;
// nil when nothing is hidden.
func (s *Service) scope(ctx context.Context, typ string) (*scoped, error) {
	sc, err := s.access(ctx, typ)
	if err != nil || sc == nil {
		return nil, err
	}
	sc.once.Do(func() {
		sc.clause = sc.limit.clause()
		if sc.ungated != nil {
			g := sc.ungated.clause()
			sc.gated = &g
		}
	})
	return sc, nil
}

// access returns the limit on typ for ctx's caller, nil when nothing is hidden. Its clauses
// are not made (scope makes them): judging one resource does not need them.
func (s *Service) access(ctx context.Context, typ string) (*scoped, error) {
	t := s.tenant(ctx)
	if t == nil || directoryTypes[typ] {
		return nil, nil
	}
	// The limit is cached with the organization's access sets (same invalidation), and with
	// it the answers visibleAs gave and the clauses once made.
	v, err := s.cached(ctx, t, "scope|"+typ, func(ctx context.Context) (any, error) {
		sc, err := s.buildScope(ctx, t, typ)
		if err == nil {
			sc.params = map[string]bool{}
			sc.limit.addParams(sc.params)
		}
		return sc, err
	})
	if err != nil {
		return nil, err
	}
	return v.(*scoped), nil
}

func keysClause(keys ...string) Clause { return Clause{AnyKey: keys} }

func keysLimit(keys ...string) limit { return limit{own: keys, plain: true} }

// anyOf is the disjunction of the caller's own keys and further alternatives.
func anyOf(own []string, alts ...setAlt) limit {
	return limit{own: own, alts: alts}
}

// patientAlt is the alternative "about one of these patients" for typ: one of them, for
// Patients; for other types, a reference to one of them through the patient parameter, and
// nothing when typ has none.
func patientAlt(typ string, patients *idSet) setAlt {
	switch {
	case typ == "Patient":
		return setAlt{ids: patients, byID: true}
	case hasPatientParam(typ):
		return setAlt{ids: patients}
	}
	return setAlt{}
}

func hasPatientParam(typ string) bool {
	for _, p := range Params(typ) {
		if p.Name == "patient" && p.Type == ParamReference {
			return true
		}
	}
	return false
}

func sortedSet(m map[string]bool) []string {
	return slices.Sorted(maps.Keys(m))
}

// idSet is an access set of resource ids (a CBO's referrals and their patients, a provider's
// patients). A creation adds to it in place (the extenders, accesscache.go): while a set is
// cached it only grows, and what a creation adds is visible once it has committed, so a request
// that holds the set may as well see the addition. A change that can shrink a set drops it from
// the cache and the next request builds a new one. (Copying the set for every addition was 6%
// of the CPU of the mixed workload at 100,000 members, under the cache's lock: sets of 10,000
// to 25,000 ids; docs/benchmarks.md.)
type idSet struct {
	mu sync.RWMutex
	m  map[string]bool
}

func newIDSet(m map[string]bool) *idSet {
	if m == nil {
		m = map[string]bool{}
	}
	return &idSet{m: m}
}

func (s *idSet) has(id string) bool {
	if s == nil {
		return false
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.m[id]
}

func (s *idSet) len() int {
	if s == nil {
		return 0
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.m)
}

// sorted returns the ids in order.
func (s *idSet) sorted() []string {
	if s == nil {
		return nil
	}
	s.mu.RLock()
	ids := slices.Collect(maps.Keys(s.m))
	s.mu.RUnlock()
	slices.Sort(ids) // outside the lock: add waits for it under the cache's lock
	return ids
}

// add adds ids and reports whether the set grew.
func (s *idSet) add(ids ...[]string) bool {
	grew := false
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, list := range ids {
		for _, id := range list {
			if !s.m[id] {
				s.m[id] = true
				grew = true
			}
		}
	}
	return grew
}

func (s *Service) buildScope(ctx context.Context, t *tenant, typ string) (*scoped, error) {
	if t.orgID == "" {
		return &scoped{limit: keysLimit()}, nil // no organization: nothing but the directory
	}
	own := []string{t.tagKey()}
	switch t.role {
	case RoleCBO:
		switch typ {
		case "Task":
			return &scoped{limit: keysLimit(append(own, t.orgKey("owner"), t.orgKey("requester"))...)}, nil
		case "Claim":
			return &scoped{limit: keysLimit(append(own, t.orgKey("provider"))...)}, nil
		}
		refs, err := s.cboReferrals(ctx, t)
		if err != nil {
			return nil, err
		}
		switch {
		case typ == "ServiceRequest":
			return &scoped{limit: anyOf(append(own, t.orgKey("performer")), setAlt{ids: refs.requests, byID: true})}, nil
		case typ == "Patient", typ == "Consent", typ == "Coverage", typ == "RelatedPerson":
			return &scoped{limit: anyOf(own, patientAlt(typ, refs.patients))}, nil
		case consentGated[typ]:
			grants, err := s.consentGrants(ctx, t, refs.patients)
			if err != nil {
				return nil, err
			}
			ungated := anyOf(own, patientAlt(typ, refs.patients))
			return &scoped{limit: gatedLimit(typ, own, grants), ungated: &ungated}, nil
		}
		return &scoped{limit: keysLimit(own...)}, nil
	case RolePlan:
		switch typ {
		case "Coverage":
			own = append(own, t.orgKey("payor"))
		case "Task":
			own = append(own, t.orgKey("requester"), t.orgKey("owner"))
		case "ServiceRequest":
			own = append(own, t.orgKey("requester"), t.orgKey("performer"))
		}
		if typ != "Patient" && !hasPatientParam(typ) {
			return &scoped{limit: keysLimit(own...)}, nil
		}
		// Its members' resources carry its member key (membership.go).
		l := keysLimit(append(own, MemberKey(t.org))...)
		l.member, l.members = t.org, &answers{}
		return &scoped{limit: l}, nil
	case RoleProvider:
		switch typ {
		case "Task":
			own = append(own, t.orgKey("requester"), t.orgKey("owner"))
		case "ServiceRequest":
			own = append(own, t.orgKey("requester"), t.orgKey("performer"))
		}
		patients, err := s.providerPatients(ctx, t)
		if err != nil {
			return nil, err
		}
		return &scoped{limit: anyOf(own, patientAlt(typ, patients))}, nil
	}
	return &scoped{limit: keysLimit()}, nil // unknown role: nothing
}

// collectAny is collect for the resources of typ carrying any of keys, one query per key: each
// is served by the key index, where one query for any of them would scan the type. A resource
// with several of the keys is passed to fn once.
func (s *Service) collectAny(ctx context.Context, typ string, keys []string, fn func(*Resource)) error {
	seen := map[string]bool{}
	for _, k := range keys {
		err := s.collect(ctx, Query{Type: typ, Clauses: []Clause{keysClause(k)}}, func(r *Resource) {
			if !seen[r.ID] {
				seen[r.ID] = true
				fn(r)
			}
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// collect pages through every resource matching q (unrestricted: scope resolution itself),
// failing with scopeTooLarge past the scope bound.
func (s *Service) collect(ctx context.Context, q Query, fn func(*Resource)) error {
	return s.collectUpTo(ctx, q, s.scopeLimit(), fn)
}

// collectAll is collect without a bound (membership.go: one patient's resources, a migration).
func (s *Service) collectAll(ctx context.Context, q Query, fn func(*Resource)) error {
	return s.collectUpTo(ctx, q, 0, fn)
}

func (s *Service) collectUpTo(ctx context.Context, q Query, limit int, fn func(*Resource)) error {
	q.Count = MaxCount
	if limit > 0 {
		q.Count = min(MaxCount, limit)
	}
	n := 0
	for {
		page, err := s.Store.Search(ctx, &q)
		if err != nil {
			return err
		}
		for _, r := range page.Resources {
			fn(r)
		}
		n += len(page.Resources)
		if page.Next == nil {
			return nil
		}
		if limit > 0 && n >= limit {
			return &scopeTooLarge{Errorf(KindInternal, "the caller's organization has more than %d %s resources; its access scope cannot be resolved", limit, q.Type)}
		}
		q.After = page.Next
	}
}

// accessElements are, per type, the elements the access sets are computed from (tenancy.go,
// consent.go); nil means every element (a Consent's whole content matters).
var accessElements = map[string][]string{
	"Task":           {"owner", "requester", "focus", "for", "meta"},
	"ServiceRequest": {"subject", "requester", "performer", "meta"},
	"Coverage":       {"beneficiary", "payor", "meta"},
	"Patient":        {"meta"},
}

// accessProjection is the part of doc the access sets depend on, as comparable text, with
// or without its tags (meta counts by its tags only: versionId and lastUpdated change on
// every write).
func accessProjection(typ string, doc map[string]any, withTags bool) string {
	els, ok := accessElements[typ]
	if !ok {
		out := make(map[string]any, len(doc))
		for k, v := range doc {
			if k == "meta" {
				if !withTags {
					continue
				}
				m, _ := v.(map[string]any)
				v = m["tag"]
			}
			out[k] = v
		}
		b, _ := json.Marshal(out)
		return string(b)
	}
	proj := map[string]any{}
	for _, e := range els {
		if e == "meta" {
			if withTags {
				m, _ := doc["meta"].(map[string]any)
				proj["tag"] = m["tag"]
			}
			continue
		}
		proj[e] = doc[e]
	}
	b, _ := json.Marshal(proj)
	return string(b)
}

// accessTypes are the types whose writes can change what an organization may see.
var accessTypes = map[string]bool{"Task": true, "ServiceRequest": true, "Coverage": true, "Consent": true, "Patient": true}

// refIDs adds the ids of the typ resources r refers to through param.
func (s *Service) refIDs(r *Resource, param, typ string, into map[string]bool) {
	for _, ref := range s.references(r, param) {
		if rt, id, _ := strings.Cut(ref, "/"); rt == typ {
			into[id] = true
		}
	}
}

type cboRefs struct {
	requests *idSet // ServiceRequest ids: the focus of its Tasks
	patients *idSet // Patient ids: whom its Tasks and their requests are for
}

func (s *Service) cboReferrals(ctx context.Context, t *tenant) (*cboRefs, error) {
	v, err := s.cached(ctx, t, "cbo-referrals", func(ctx context.Context) (any, error) {
		requests, patients := map[string]bool{}, map[string]bool{}
		refs := &cboRefs{requests: newIDSet(requests), patients: newIDSet(patients)}
		err := s.collectAny(ctx, "Task", []string{t.tagKey(), t.orgKey("owner"), t.orgKey("requester")}, func(r *Resource) {
			s.refIDs(r, "focus", "ServiceRequest", requests)
			s.refIDs(r, "patient", "Patient", patients)
		})
		if err != nil {
			return nil, err
		}
		// Requests naming the CBO as performer join the Tasks' focus requests; the patients
		// are whom all of those are for. (Two queries: each is served by an index, their
		// disjunction would scan every ServiceRequest.)
		seen := map[string]bool{}
		add := func(r *Resource) {
			if !seen[r.ID] {
				seen[r.ID] = true
				requests[r.ID] = true
				s.refIDs(r, "patient", "Patient", patients)
			}
		}
		if len(requests) > 0 {
			if err := s.collect(ctx, Query{Type: "ServiceRequest", Clauses: []Clause{{IDs: sortedSet(requests)}}}, add); err != nil {
				return nil, err
			}
		}
		err = s.collect(ctx, Query{Type: "ServiceRequest", Clauses: []Clause{keysClause(t.orgKey("performer"))}}, add)
		return refs, err
	})
	if err != nil {
		return nil, err
	}
	return v.(*cboRefs), nil
}

// extendCBOReferrals is cboReferrals' build for one created resource.
func extendCBOReferrals(t *tenant, v any, ch *accessChange) (any, bool) {
	refs := v.(*cboRefs)
	var requests []string
	var patients [][]string
	switch ch.typ {
	case "Task":
		if !ch.hasKey(t.tagKey(), t.orgKey("owner"), t.orgKey("requester")) {
			return v, false
		}
		requests = ch.focus
		patients = [][]string{ch.patients, ch.focusPatients}
	case "ServiceRequest":
		if !ch.hasKey(t.orgKey("performer")) && !refs.requests.has(ch.id) {
			return v, false
		}
		requests = []string{ch.id}
		patients = [][]string{ch.patients}
	default:
		return v, false
	}
	grewR := refs.requests.add(requests)
	grewP := refs.patients.add(patients...)
	return v, grewR || grewP
}

func (s *Service) providerPatients(ctx context.Context, t *tenant) (*idSet, error) {
	v, err := s.cached(ctx, t, "provider-patients", func(ctx context.Context) (any, error) {
		set := map[string]bool{}
		for _, typ := range []string{"ServiceRequest", "Task"} {
			if err := s.collectAny(ctx, typ, []string{t.tagKey(), t.orgKey("requester")}, func(r *Resource) { s.refIDs(r, "patient", "Patient", set) }); err != nil {
				return nil, err
			}
		}
		q := Query{Type: "Patient", Clauses: []Clause{keysClause(t.tagKey())}}
		err := s.collect(ctx, q, func(r *Resource) { set[r.ID] = true })
		return newIDSet(set), err
	})
	if err != nil {
		return nil, err
	}
	return v.(*idSet), nil
}

// extendProviderPatients is providerPatients' build for one created resource.
func extendProviderPatients(t *tenant, v any, ch *accessChange) (any, bool) {
	set := v.(*idSet)
	switch ch.typ {
	case "ServiceRequest", "Task":
		if ch.hasKey(t.tagKey(), t.orgKey("requester")) {
			return v, set.add(ch.patients)
		}
	case "Patient":
		if ch.hasKey(t.tagKey()) {
			return v, set.add([]string{ch.id})
		}
	}
	return v, false
}

// visible reports whether ctx's caller may see the current version of typ/id.
func (s *Service) visible(ctx context.Context, typ, id string) (bool, error) {
	if s.tenant(ctx) == nil {
		return true, nil
	}
	r, err := s.Store.Read(ctx, typ, id)
	switch {
	case IsKind(err, KindNotFound), IsKind(err, KindGone):
		return false, nil
	case err != nil:
		return false, err
	}
	return s.visibleAs(ctx, r)
}

// visibleAs reports whether ctx's caller may see r, the current version of its resource (a
// tombstone is never visible to a restricted caller). The scope is judged in memory against
// r's search keys, with the stores' semantics (limit.admits answers what Matches would for
// the scope's clause): cheaper than asking the store again.
func (s *Service) visibleAs(ctx context.Context, r *Resource) (bool, error) {
	sc, err := s.access(ctx, r.Type)
	if err != nil || sc == nil {
		return err == nil, err
	}
	if r.Deleted || len(r.JSON) == 0 {
		return false, nil
	}
	key := r.Type + "/" + r.ID + "/" + strconv.FormatInt(r.VersionID, 10) + "/" + strconv.FormatInt(r.LastUpdated.UnixMicro(), 10)
	ok, hit := sc.judged.get(key)
	if hit {
		return ok, nil
	}
	k := s.accessKeys(r, sc.params)
	if k != nil {
		if ok, err = s.admits(ctx, &sc.limit, r.Type, r.ID, k); err != nil {
			return false, err
		}
	}
	sc.judged.put(key, ok)
	return ok, nil
}

// keyParams adds the parameters of keys (search keys, as clauses list them).
func keyParams(into map[string]bool, keys []string) {
	for _, k := range keys {
		if p, _, ok := strings.Cut(k, keySep); ok {
			p, _, _ = strings.Cut(p, ":") // patient:identifier keys come with patient
			into[p] = true
		}
	}
}

// accessKeys are r's search keys for params only, from the top-level elements they read:
// a read judged against a scope needs a handful of keys, not every key of the resource.
func (s *Service) accessKeys(r *Resource, params map[string]bool) *Keys {
	doc, ok := decodeTop(r.JSON, paramFields(r.Type, func(p Param) bool { return params[p.Name] }))
	if !ok {
		return nil
	}
	k := extractKeysFor(r.Type, doc, s.Base, params)
	return &k
}

// visibleDoc is visibleAs for a current version already decoded (doc, of typ/id).
func (s *Service) visibleDoc(ctx context.Context, typ, id string, doc map[string]any) (bool, error) {
	sc, err := s.access(ctx, typ)
	if err != nil || sc == nil {
		return err == nil, err
	}
	k := extractKeysFor(typ, doc, s.Base, sc.params)
	return s.admits(ctx, &sc.limit, typ, id, &k)
}

// admits is l.admits, and for a plan's limit also whether typ/id (with keys k) is about one of
// its members.
func (s *Service) admits(ctx context.Context, l *limit, typ, id string, k *Keys) (bool, error) {
	if ok := l.admits(id, k); ok || l.member == "" {
		return ok, nil
	}
	patients := []string{id}
	if typ != "Patient" {
		patients = keyedPatients(&Resource{Type: typ, Keys: *k})
	}
	for _, p := range patients {
		if ok, err := s.isMember(ctx, l.members, l.member, p); err != nil || ok {
			return ok, err
		}
	}
	return false, nil
}

// scopeQuery adds the caller's limit to q; withheld is set when consent rules hide matches of
// q that the caller's organization would otherwise see.
func (s *Service) scopeQuery(ctx context.Context, q *Query) (gated *Clause, err error) {
	sc, err := s.scope(ctx, q.Type)
	if err != nil || sc == nil {
		return nil, err
	}
	q.Clauses = append(slices.Clip(q.Clauses), sc.clause)
	return sc.gated, nil
}

// withheld counts the matches of q (already scoped, its last clause the scope) under the
// ungated limit, and reports whether consent hid some of them.
func (s *Service) withheld(ctx context.Context, q Query, gated *Clause, shown int64) (bool, error) {
	if gated == nil {
		return false, nil
	}
	q.Clauses = append(slices.Clone(q.Clauses[:len(q.Clauses)-1]), *gated)
	q.Total, q.Count, q.After, q.SortBy = true, 1, nil, nil
	page, err := s.Store.Search(ctx, &q)
	if err != nil {
		return false, err
	}
	return page.Total > shown, nil
}

// notVisible is the answer for an out-of-scope read: the same as for an unknown id.
func notVisible(typ, id string) error {
	return Errorf(KindNotFound, "%s/%s is not known", typ, id)
}

// checkWrite applies the rules a write must pass once its references resolve: the referral
// Task workflow (taskflow.go) and the tenancy write rules, then stamps the tenant tag. oldJSON
// is the current version (nil for a create), decoded once for both.
func (s *Service) checkWrite(ctx context.Context, typ, id string, oldJSON []byte, doc map[string]any) (accessNote, error) {
	var old map[string]any
	if oldJSON != nil {
		dec := json.NewDecoder(bytes.NewReader(oldJSON))
		dec.UseNumber()
		if err := dec.Decode(&old); err != nil {
			return accessNote{}, Wrap(KindInternal, err, "stored resource is not JSON")
		}
	}
	if err := s.checkTaskWrite(ctx, typ, old, doc); err != nil {
		return accessNote{}, err
	}
	t := s.tenant(ctx)
	if t != nil {
		if err := s.mayWrite(ctx, t, typ, id, old, doc); err != nil {
			return accessNote{}, err
		}
	}
	s.stampTenant(ctx, t, doc, old)
	return s.noteAccess(typ, id, old, doc), nil
}

// preWrite is the part of the write rules decided before the body is examined further (its
// references in particular, whose checks would otherwise tell a caller about resources it may
// not see): the caller's role may create typ, and an existing typ/id must be visible.
func (s *Service) preWrite(ctx context.Context, typ, id string) error {
	t := s.tenant(ctx)
	if t == nil {
		return nil
	}
	if t.orgID == "" {
		return Errorf(KindForbidden, "the access token names no organization (Organization/<id>) to write for")
	}
	if id != "" {
		r, err := s.Store.Read(ctx, typ, id)
		switch {
		case err == nil:
			ok, err := s.visibleAs(ctx, r)
			if err != nil {
				return err
			}
			if !ok {
				return notVisible(typ, id)
			}
			return nil
		case !IsKind(err, KindNotFound) && !IsKind(err, KindGone):
			return err
		}
	}
	if t.role == RoleCBO && !cboCreates[typ] {
		return Errorf(KindForbidden, "a community organization may not create %s resources", typ)
	}
	return nil
}

// mayWrite decides whether t may write typ (update when old is set).
func (s *Service) mayWrite(ctx context.Context, t *tenant, typ, id string, old, doc map[string]any) error {
	if t.orgID == "" {
		return Errorf(KindForbidden, "the access token names no organization (Organization/<id>) to write for")
	}
	if old != nil {
		ok, err := s.visibleDoc(ctx, typ, id, old)
		if err != nil {
			return err
		}
		if !ok {
			return notVisible(typ, id)
		}
		if directoryTypes[typ] && !hasTenantTag(old, t.org) {
			return Errorf(KindForbidden, "only the organization that wrote %s/%s may change it", typ, id)
		}
	}
	if t.role != RoleCBO {
		return nil
	}
	switch {
	case typ == "Task" && old != nil:
		for k := range mergedKeys(old, doc) {
			if slices.Contains(cboTaskFields, k) || k == "id" || k == "resourceType" {
				continue
			}
			if !jsonEqual(old[k], doc[k]) {
				return Errorf(KindForbidden, "a community organization may change a Task's status, statusReason, businessStatus, output and notes, not %s", k)
			}
		}
		return nil
	case old == nil && !cboCreates[typ]:
		return Errorf(KindForbidden, "a community organization may not create %s resources", typ)
	case cboCreates[typ]:
		// Claims billed by the CBO are its own even when a clearinghouse or the plan wrote them.
		if old != nil && !hasTenantTag(old, t.org) && !(typ == "Claim" && refOf(old["provider"]) == t.org) {
			return Errorf(KindForbidden, "only the organization that wrote %s/%s may change it", typ, id)
		}
		return nil
	}
	return Errorf(KindForbidden, "a community organization may not write %s resources", typ)
}

// checkTenantDelete applies the write rules to a delete of typ/id, and drops the access sets
// the delete shrinks (afterWrite drops them again once it commits).
func (s *Service) checkTenantDelete(ctx context.Context, typ, id string, current *Resource) (accessNote, error) {
	t := s.tenant(ctx)
	if t == nil && !accessTypes[typ] {
		return accessNote{}, nil
	}
	var old map[string]any
	if err := json.Unmarshal(current.JSON, &old); err != nil {
		return accessNote{}, Wrap(KindInternal, err, "stored resource is not JSON")
	}
	if t != nil {
		if err := s.mayWrite(ctx, t, typ, id, old, old); err != nil {
			return accessNote{}, err
		}
		if t.role == RoleCBO && typ == "Task" {
			return accessNote{}, Errorf(KindForbidden, "a community organization may not delete a Task; set its status")
		}
	}
	return s.noteAccess(typ, id, old, nil), nil
}

func mergedKeys(a, b map[string]any) map[string]bool {
	out := map[string]bool{}
	for k := range a {
		out[k] = true
	}
	for k := range b {
		out[k] = true
	}
	return out
}

func jsonEqual(a, b any) bool {
	x, err1 := json.Marshal(a)
	y, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(x, y)
}

func tenantTags(doc map[string]any) []string {
	meta, _ := doc["meta"].(map[string]any)
	tags, _ := meta["tag"].([]any)
	var out []string
	for _, tg := range tags {
		m, _ := tg.(map[string]any)
		if sys, _ := m["system"].(string); sys == TenantTagSystem {
			if code, _ := m["code"].(string); code != "" {
				out = append(out, code)
			}
		}
	}
	return out
}

func hasTenantTag(doc map[string]any, org string) bool {
	return slices.Contains(tenantTags(doc), org)
}

// stampTenant sets the tenant tags of doc: those of the previous version, the writer's own,
// and (from an administrator only) those the client sent.
func (s *Service) stampTenant(ctx context.Context, t *tenant, doc, old map[string]any) {
	var keep []string
	if t == nil {
		keep = tenantTags(doc) // administrators and the server may set them
	}
	keep = append(keep, tenantTags(old)...)
	if s.Caller != nil {
		if c, ok := s.Caller(ctx); ok && !c.Admin && strings.HasPrefix(c.Org, "Organization/") && ValidID(strings.TrimPrefix(c.Org, "Organization/")) {
			keep = append(keep, c.Org)
		}
	}
	slices.Sort(keep)
	keep = slices.Compact(keep)
	meta, _ := doc["meta"].(map[string]any)
	var tags []any
	if meta != nil {
		sent, _ := meta["tag"].([]any)
		for _, tg := range sent {
			m, _ := tg.(map[string]any)
			sys, _ := m["system"].(string)
			if sys != TenantTagSystem && (t == nil || !strings.HasPrefix(sys, ServerTagPrefix)) {
				tags = append(tags, tg)
			}
		}
	}
	if t != nil && old != nil {
		// Server tags a restricted client cannot set; an update keeps the stored ones.
		oldMeta, _ := old["meta"].(map[string]any)
		stored, _ := oldMeta["tag"].([]any)
		for _, tg := range stored {
			m, _ := tg.(map[string]any)
			if sys, _ := m["system"].(string); sys != TenantTagSystem && strings.HasPrefix(sys, ServerTagPrefix) {
				tags = append(tags, tg)
			}
		}
	}
	for _, org := range keep {
		tags = append(tags, map[string]any{"system": TenantTagSystem, "code": org})
	}
	if len(tags) == 0 {
		if meta != nil {
			delete(meta, "tag")
		}
		return
	}
	if meta == nil {
		meta = map[string]any{}
		doc["meta"] = meta
	}
	meta["tag"] = tags
}

// now for consent periods; the service clock is for versions.
var consentNow = func() time.Time { return time.Now().UTC() }
