package resources

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"
)

// Plan membership, kept at write time. A plan sees its members (the beneficiaries of the
// Coverage whose payor it is) and every resource about them (tenancy.go). Medi-Cal plans have
// hundreds of thousands to millions of members, so the member set is never resolved into a
// list: every current resource about a patient (the Patient itself, and every resource whose
// patient parameter names it) carries the search key MemberKey(plan) of each plan the patient
// is a member of, and a plan's searches select on that key like on any other. The keys are not
// part of the resource: the stores keep them with its other search keys, and change them in
// place (Store.SetKeys) when membership changes.
//
//   - Every write of a resource about patients gets the member keys of its patients' plans
//     just before it is stored (grantMembers): the plans are read from the store, Coverage by
//     beneficiary, plus what Coverage the same transaction writes.
//   - Once a Coverage write commits (any: one that changes nothing repairs a lost fan-out),
//     every current resource about the patients it names gets its keys set again (fanOut):
//     those that lack a key they should have, and those that carry a key of a plan the
//     Coverage named before.
//   - Once any write of a resource about patients commits, its patients' plans are read again
//     and its keys set if they changed meanwhile (settleMembers). A Coverage write that
//     commits between a resource's first lookup and its commit is otherwise missed by both: its
//     fan-out may run before the resource is stored. With the check after the commit, either
//     the check sees that Coverage, or it ran before the Coverage committed and so before its
//     fan-out, which then finds the stored resource.
//   - Every setting of a resource's keys is followed by a fresh read of its patients' plans,
//     and set again until it holds (setVerified): two settings computed from reads in one
//     order may land in the other.
//   - A database written before member keys existed gets them once (MigrateMemberKeys, run
//     at start-up by the server).
//
// Reads by id (visibleAs) do not need the keys: they ask for the patient's plans directly
// (memoized per scope), which is the same question the keys answer. A plan's search results
// are judged the same way (guardMembers), so a key that outlived its Coverage (a fan-out
// lost with its process) lets nothing through; one that is missing hides the resource from
// the plan's searches until the patient's Coverage is written again.

// MemberKeyPrefix starts the member keys (MemberKey).
const MemberKeyPrefix = "_member" + keySep

// MemberKey is the search key a resource about a plan's member carries: org is the plan
// ("Organization/<id>").
func MemberKey(org string) string { return MemberKeyPrefix + org }

// ReplacePrefixed is Store.SetKeys on a version's keys: old with its keys starting with prefix
// replaced by those of keys that do (sorted, without duplicates, as Keys.Eq), and which keys
// that adds and removes.
func ReplacePrefixed(old []string, prefix string, keys []string) (next, added, removed []string) {
	want := map[string]bool{}
	for _, k := range keys {
		if strings.HasPrefix(k, prefix) {
			want[k] = true
		}
	}
	had := map[string]bool{}
	for _, k := range old {
		if !strings.HasPrefix(k, prefix) {
			next = append(next, k)
			continue
		}
		had[k] = true
		if want[k] {
			next = append(next, k)
		} else {
			removed = append(removed, k)
		}
	}
	for k := range want {
		if !had[k] {
			added = append(added, k)
			next = append(next, k)
		}
	}
	slices.Sort(next)
	next = slices.Compact(next)
	slices.Sort(added)
	return next, added, removed
}

// memberTypes are the types whose resources are about patients: Patient, and every type with a
// patient reference parameter.
var memberTypes = func() []string {
	var out []string
	for _, typ := range Types {
		if typ == "Patient" || hasPatientParam(typ) {
			out = append(out, typ)
		}
	}
	return out
}()

var memberTypeSet = func() map[string]bool {
	m := map[string]bool{}
	for _, typ := range memberTypes {
		m[typ] = true
	}
	return m
}()

// keyedPatients are the Patient ids a version about patients is about, from its keys.
func keyedPatients(r *Resource) []string {
	if r.Type == "Patient" {
		return []string{r.ID}
	}
	var out []string
	for _, k := range r.Keys.Eq {
		if id, ok := strings.CutPrefix(k, patientRefPrefix); ok && ValidID(id) {
			out = append(out, id)
		}
	}
	return out
}

// storedPatients is keyedPatients for a stored version (which carries no keys).
func (s *Service) storedPatients(r *Resource) []string {
	if r.Type == "Patient" {
		return []string{r.ID}
	}
	set := map[string]bool{}
	s.refIDs(r, "patient", "Patient", set)
	return sortedSet(set)
}

// plansOf returns the plans ("Organization/<id>", sorted) patient is a member of: the payors
// of the Coverage whose beneficiary it is. The slice may be shared (plancache.go): callers
// must not change it.
func (s *Service) plansOf(ctx context.Context, patient string) ([]string, error) {
	clock, cached := s.coverageClock()
	if cached {
		if plans, ok := s.plans.get(patient, clock); ok {
			return plans, nil
		}
	}
	set := map[string]bool{}
	q := Query{Type: "Coverage", Clauses: []Clause{keysClause(RefKey("beneficiary", "Patient", patient))}}
	err := s.collectAll(ctx, q, func(r *Resource) { s.refIDs(r, "payor", "Organization", set) })
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(set))
	for id := range set {
		out = append(out, "Organization/"+id)
	}
	slices.Sort(out)
	if cached {
		s.plans.put(patient, clock, out)
	}
	return out, nil
}

// memberLookup answers plansOf once per patient, adding the plans of extra (the Coverage a
// transaction writes: patient -> plans).
type memberLookup struct {
	s     *Service
	plans map[string][]string
	extra map[string][]string
}

func (s *Service) newMemberLookup() *memberLookup {
	return &memberLookup{s: s, plans: map[string][]string{}}
}

// keys returns the member keys of the plans of patients, sorted.
func (m *memberLookup) keys(ctx context.Context, patients []string) ([]string, error) {
	var out []string
	for _, p := range patients {
		plans, ok := m.plans[p]
		if !ok {
			var err error
			if plans, err = m.s.plansOf(ctx, p); err != nil {
				return nil, err
			}
			m.plans[p] = plans
		}
		for _, org := range plans {
			out = append(out, MemberKey(org))
		}
		for _, org := range m.extra[p] {
			out = append(out, MemberKey(org))
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// coveragePairs adds, for a Coverage version with its keys, each beneficiary's plans (payors).
func coveragePairs(k *Keys, into map[string][]string) {
	var patients, plans []string
	benPrefix, payPrefix := RefKey("beneficiary", "Patient", ""), RefKey("payor", "Organization", "")
	for _, key := range k.Eq {
		if id, ok := strings.CutPrefix(key, benPrefix); ok {
			patients = append(patients, id)
		} else if id, ok := strings.CutPrefix(key, payPrefix); ok {
			plans = append(plans, "Organization/"+id)
		}
	}
	for _, p := range patients {
		into[p] = append(into[p], plans...)
	}
}

// selectsMembers reports whether clauses test a member key (a plan's scope).
func selectsMembers(clauses []Clause) bool {
	for _, c := range clauses {
		for _, k := range append(slices.Clip(c.AnyKey), c.NoKey...) {
			if strings.HasPrefix(k, MemberKeyPrefix) {
				return true
			}
		}
		for _, alt := range c.Or {
			if selectsMembers(alt) {
				return true
			}
		}
	}
	return false
}

// memberKeysOf are the member keys among keys (sorted, as Keys.Eq).
func memberKeysOf(keys []string) []string {
	i, _ := slices.BinarySearch(keys, MemberKeyPrefix)
	j := i
	for j < len(keys) && strings.HasPrefix(keys[j], MemberKeyPrefix) {
		j++
	}
	return keys[i:j]
}

// grantMembers adds to each version in rs about patients the member keys of its patients'
// plans, counting the Coverage rs itself writes.
func (s *Service) grantMembers(ctx context.Context, rs []*Resource) error {
	m := s.newMemberLookup()
	for _, r := range rs {
		if r.Type == "Coverage" && !r.Deleted {
			if m.extra == nil {
				m.extra = map[string][]string{}
			}
			coveragePairs(&r.Keys, m.extra)
		}
	}
	for _, r := range rs {
		if r.Deleted || !memberTypeSet[r.Type] {
			continue
		}
		keys, err := m.keys(ctx, keyedPatients(r))
		if err != nil {
			return err
		}
		if len(keys) > 0 {
			eq := append(slices.Clip(r.Keys.Eq), keys...)
			slices.Sort(eq)
			r.Keys.Eq = slices.Compact(eq)
		}
	}
	return nil
}

// memberChange is what a Coverage write may change in membership: the patients it names
// before and after, and the plans it named before (whose members may have left).
type memberChange struct {
	patients []string
	gone     []string
}

func (s *Service) coverageChange(typ string, old, doc map[string]any) memberChange {
	if typ != "Coverage" {
		return memberChange{}
	}
	before, after := map[string][]string{}, map[string][]string{}
	s.coverageDocPairs(old, before)
	s.coverageDocPairs(doc, after)
	// Every Coverage write fans out, also one that leaves the pairs as they were: a client
	// that writes it again after a failure (a fan-out lost with its process) repairs the keys.
	ch := pairsChange(before)
	ch.merge(memberChange{patients: slices.Collect(maps.Keys(after))})
	return ch
}

// coverageDocPairs adds, for a Coverage document (nil: none), each beneficiary's plans.
func (s *Service) coverageDocPairs(doc map[string]any, into map[string][]string) {
	if doc != nil {
		k := extractKeysFor("Coverage", doc, s.Base, map[string]bool{"beneficiary": true, "payor": true})
		coveragePairs(&k, into)
	}
}

// pairsChange is the fan-out of Coverage that named pairs (patient -> plans) before: every
// patient named, each of the plans named possibly gone.
func pairsChange(pairs map[string][]string) memberChange {
	gone := map[string]bool{}
	for _, plans := range pairs {
		for _, org := range plans {
			gone[org] = true
		}
	}
	return memberChange{patients: slices.Sorted(maps.Keys(pairs)), gone: sortedSet(gone)}
}

func (c *memberChange) merge(o memberChange) {
	c.patients = append(c.patients, o.patients...)
	c.gone = append(c.gone, o.gone...)
	slices.Sort(c.patients)
	c.patients = slices.Compact(c.patients)
	slices.Sort(c.gone)
	c.gone = slices.Compact(c.gone)
}

// settleMembers runs once writes have committed: the check of each written version's member
// keys, and the fan-out of the membership its Coverage writes changed. A failure is retried in
// the background until it succeeds (the writes stand; until then the keys lag the Coverage).
// What a process that stops leaves undone, SweepMembers does (membersweep.go).
func (s *Service) settleMembers(ctx context.Context, rs []*Resource, ch memberChange) {
	settle := func(ctx context.Context) error {
		if err := s.checkMembers(ctx, rs); err != nil || len(ch.patients) == 0 {
			return err
		}
		return s.fanOut(ctx, ch)
	}
	if settle(ctx) == nil {
		return
	}
	go func() {
		ctx := context.WithoutCancel(ctx)
		for attempt := 1; ; attempt++ {
			select {
			case <-time.After(memberRetryPause(attempt)):
			case <-s.done():
				s.logger().Warn("plan member keys left to the next start's sweep: the service closed", "attempts", attempt-1)
				return
			}
			err := settle(ctx)
			if err == nil {
				if attempt > 1 {
					s.logger().Info("plan member keys brought up to date", "attempts", attempt)
				}
				return
			}
			if attempt <= 5 || attempt%10 == 0 {
				s.logger().Warn("plan member keys not brought up to date", "attempt", attempt, "error", err)
			}
		}
	}()
}

// checkMembers sets the member keys of the versions in rs again where their patients' plans
// changed since grantMembers looked.
func (s *Service) checkMembers(ctx context.Context, rs []*Resource) error {
	m := s.newMemberLookup()
	for _, r := range rs {
		if r.Deleted || !memberTypeSet[r.Type] {
			continue
		}
		patients := keyedPatients(r)
		keys, err := m.keys(ctx, patients)
		if err != nil {
			return err
		}
		if slices.Equal(keys, memberKeysOf(r.Keys.Eq)) {
			continue
		}
		if err := s.setVerified(ctx, r.Type, r.ID, r.VersionID, patients, keys); err != nil {
			return err
		}
	}
	return nil
}

// setVerified sets the member keys of version of typ/id to keys, then reads its patients'
// plans again and sets them again while they changed. Two settings computed from reads made
// in one order can land in the other (a fan-out and a check, two fan-outs): without the read
// after its own setting, the last one could stay stale, leaving a plan's key on a resource
// about a patient who has left it, or removing another plan's. With it, the last setting is
// followed by a read by the same caller, and set again unless it still holds. A newer version
// (KindConflict) was given its keys by its own writer.
func (s *Service) setVerified(ctx context.Context, typ, id string, version int64, patients, keys []string) error {
	for range maxWriteAttempts {
		if err := s.Store.SetKeys(ctx, typ, id, version, MemberKeyPrefix, keys); err != nil {
			if IsKind(err, KindConflict) {
				return nil
			}
			return err
		}
		again, err := s.newMemberLookup().keys(ctx, patients)
		if err != nil {
			return err
		}
		if slices.Equal(again, keys) {
			return nil
		}
		keys = again
	}
	return Errorf(KindConflict, "the plans of %s/%s's patients keep changing", typ, id)
}

// fanOut sets the member keys of every current resource about ch's patients that lacks one it
// should carry, or carries one of a plan ch names as gone that the patient has left.
func (s *Service) fanOut(ctx context.Context, ch memberChange) error {
	m := s.newMemberLookup()
	fixed := map[string]bool{}
	fix := func(r *Resource) error {
		if fixed[r.Type+"/"+r.ID] {
			return nil
		}
		fixed[r.Type+"/"+r.ID] = true
		patients := s.storedPatients(r)
		keys, err := m.keys(ctx, patients)
		if err != nil {
			return err
		}
		return s.setVerified(ctx, r.Type, r.ID, r.VersionID, patients, keys)
	}
	for _, p := range ch.patients {
		want, err := m.keys(ctx, []string{p})
		if err != nil {
			return err
		}
		var wrong []Clause // clauses selecting resources whose keys are wrong
		for _, k := range want {
			wrong = append(wrong, Clause{NoKey: []string{k}})
		}
		for _, org := range ch.gone {
			if k := MemberKey(org); !slices.Contains(want, k) {
				wrong = append(wrong, keysClause(k))
			}
		}
		for _, typ := range memberTypes {
			about := keysClause(RefKey("patient", "Patient", p))
			if typ == "Patient" {
				about = Clause{IDs: []string{p}}
			}
			for _, c := range wrong {
				var found []*Resource
				if err := s.collectAll(ctx, Query{Type: typ, Clauses: []Clause{about, c}}, func(r *Resource) { found = append(found, r) }); err != nil {
					return err
				}
				for _, r := range found {
					if err := fix(r); err != nil {
						return err
					}
				}
			}
		}
	}
	return nil
}

// memberKeysMigration names the migration that gives a database written before member keys
// existed its keys.
const memberKeysMigration = "member-keys-1"

// MigrateMemberKeys gives every resource about a plan's member its member keys, once per
// database (Store.Migrated): the fan-out of every Coverage. Safe to run while the server
// serves, and by several servers at once (it only sets what the Coverage says).
func (s *Service) MigrateMemberKeys(ctx context.Context) error {
	ctx = AsSystem(ctx)
	if done, err := s.Store.Migrated(ctx, memberKeysMigration); err != nil || done {
		return err
	}
	patients := map[string]bool{}
	err := s.collectAll(ctx, Query{Type: "Coverage"}, func(r *Resource) { s.refIDs(r, "beneficiary", "Patient", patients) })
	if err != nil {
		return err
	}
	ids := sortedSet(patients)
	start := time.Now()
	if len(ids) > 0 {
		s.logger().Info("giving the resources of plans' members their member keys (once per database)", "patients", len(ids))
	}
	const batch = 256
	for i := 0; i < len(ids); i += batch {
		if err := s.fanOut(ctx, memberChange{patients: ids[i:min(i+batch, len(ids))]}); err != nil {
			return err
		}
	}
	if len(ids) > 0 {
		s.logger().Info("member keys given", "patients", len(ids), "seconds", time.Since(start).Seconds())
	}
	return s.Store.SetMigrated(ctx, memberKeysMigration)
}

func (s *Service) logger() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.Default()
}

// guardMembers leaves out of a plan's search results what the plan's member key let through
// although the resource's patients are not its members now, and sets that resource's keys
// again in the background. Keys that lag their Coverage (a fan-out that failed past its
// retries, a process that stopped between a commit and its fan-out) then withhold nothing
// from others' members: a plan's reads by id ask for the patients' plans anyway (admits),
// and its searches are judged the same way. Totals may count what was left out until the keys
// are set again.
func (s *Service) guardMembers(ctx context.Context, rs []*Resource) ([]*Resource, error) {
	if t := s.tenant(ctx); t == nil || t.role != RolePlan || len(rs) == 0 {
		return rs, nil
	}
	out := rs[:0:0]
	for _, r := range rs {
		if !memberTypeSet[r.Type] {
			out = append(out, r)
			continue
		}
		ok, err := s.visibleAs(ctx, r)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, r)
			continue
		}
		go func() {
			ctx := AsSystem(context.WithoutCancel(ctx))
			patients := s.storedPatients(r)
			keys, err := s.newMemberLookup().keys(ctx, patients)
			if err == nil {
				err = s.setVerified(ctx, r.Type, r.ID, r.VersionID, patients, keys)
			}
			if err != nil {
				s.logger().Warn("plan member keys not set again", "error", err)
			}
		}()
	}
	return out, nil
}

// isMember reports whether patient is a member of org, remembered in memo (one plan's
// scope: visibleAs).
func (s *Service) isMember(ctx context.Context, memo *answers, org, patient string) (bool, error) {
	if ok, hit := memo.get(patient); hit {
		return ok, nil
	}
	plans, err := s.plansOf(ctx, patient)
	if err != nil {
		return false, err
	}
	ok := slices.Contains(plans, org)
	memo.put(patient, ok)
	return ok, nil
}
