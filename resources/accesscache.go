package resources

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The access-set cache. Each organization's resolved access sets (tenancy.go: a provider's
// patients, a CBO's referrals, a CBO's consent grants) and the scopes built
// from them are kept across requests. Rebuilding a set reads every resource it is computed
// from, so the cache is kept current instead of being dropped on every write:
//
//   - A committed creation (the common write: every referral push adds a Patient, a
//     ServiceRequest and a Task) extends the sets it adds to, through the set's extender, which
//     mirrors its build for one resource. Creations can only add to a set.
//   - A write that can take access away (an update that changes an owner, requester,
//     performer, payor, subject or tenant tag; a delete; any Consent write) drops the sets of
//     the organizations it names, before it is written and again once it commits, so a set
//     rebuilt in between does not keep what the write took away.
//   - A build that ran while creations committed replays them (the log) before it is stored;
//     one that ran while a drop happened is used by its own request and not stored.
//   - Entries without an extender (the scopes, made from the sets) are valid only while
//     nothing changed for their organization. Making a scope again costs no more than a few
//     lookups (tenancy.go, limit): a scope's clauses, which list the sets' members in order,
//     are made only when a search asks for them.
//   - The TTL (Service.AccessCacheTTL) bounds the age of entries: the only way a change made
//     through another server process (several servers on one MongoDB) reaches this one's
//     cache. On a store with a change stamp (ChangeStamper: the embedded store), a set past
//     its TTL is kept while no other process has written since it was built. Otherwise it is
//     served while one rebuild runs in the background; past twice the TTL the request
//     rebuilds it first. Another process's change therefore shows within twice the TTL,
//     usually within the TTL and one rebuild.
//   - One build per entry at a time; concurrent requests wait for it.

// orgCacheTTL is the default bound on the age of an organization's cached access sets
// (Service.AccessCacheTTL).
const orgCacheTTL = 2 * time.Second

func (s *Service) accessTTL() time.Duration {
	if s.AccessCacheTTL > 0 {
		return s.AccessCacheTTL
	}
	return orgCacheTTL
}

// maxOrgCacheEntries bounds the cache (it is cleared when full).
const maxOrgCacheEntries = 10000

// maxAccessLog bounds the creations kept for builds in flight. A build that outlives this many
// creations is not stored.
const maxAccessLog = 4096

type orgCache struct {
	mu       sync.Mutex
	seq      uint64 // numbers every change: creations and drops
	orgs     map[string]*orgState
	log      []*accessChange // committed creations, ascending seq
	logFloor uint64          // creations with seq <= logFloor have left the log
	flights  map[string]*flight
	// recentDrops are the resources ("Type/id") whose access changed recently: a creation
	// whose extension arrives after such a change (a client-chosen id updated at once) is
	// treated as a drop, since the version it would add may no longer be current.
	recentDrops map[string]time.Time
	builds      atomic.Int64 // entries computed (tests count rebuilds)
	entryCount  int

	// The last stamp asked of the store, and when: one question serves every entry for a
	// short while.
	stampMu sync.Mutex
	stampAt time.Time
	stampV  uint64
	stampOK bool
}

// stampMaxAge is how long one answer of the store's ChangeStamper is reused.
const stampMaxAge = 100 * time.Millisecond

// currentStamp returns the store's stamp, asking it at most every stampMaxAge and always when
// the last answer is older than notBefore; ok is false when the store has none or could not
// answer.
func (s *Service) currentStamp(ctx context.Context, notBefore time.Time) (uint64, bool) {
	cs, ok := s.Store.(ChangeStamper)
	if !ok {
		return 0, false
	}
	c := &s.orgCache
	c.stampMu.Lock()
	defer c.stampMu.Unlock()
	if time.Since(c.stampAt) < stampMaxAge && !c.stampAt.Before(notBefore) {
		return c.stampV, c.stampOK
	}
	v, err := cs.ExternalChangeStamp(ctx)
	c.stampAt, c.stampV, c.stampOK = time.Now(), v, err == nil
	return v, err == nil
}

type orgState struct {
	changed uint64 // seq of the last change that concerns the organization
	dropped uint64 // seq of the last drop of its entries
	entries map[string]orgEntry
	// failed are the sets whose last resolution reached the bound (scopeTooLarge), with
	// the organization's dropped and the time then: served as failures while no drop came
	// (creations only make sets larger).
	failed map[string]orgFailure
}

type orgFailure struct {
	err     error
	dropped uint64
	at      time.Time
}

// scopeFailureTTL is how long a set too large to resolve is not tried again (unless a write
// that can take access away from the organization comes first); then it is tried in the
// background while the failure is still served.
var scopeFailureTTL atomic.Int64 // nanoseconds; 0 means a minute (tests set it: export_test.go)

func failureTTL() time.Duration {
	if d := scopeFailureTTL.Load(); d > 0 {
		return time.Duration(d)
	}
	return time.Minute
}

type orgEntry struct {
	v       any
	changed uint64 // the organization's changed when v was built or last extended
	at      time.Time
	// stamp is the store's ChangeStamper stamp taken before v was built (stamped: one was).
	stamp   uint64
	stamped bool
}

// ChangeStamper is implemented by stores that can tell whether another process has written
// since an earlier stamp (the embedded store). Past its TTL, a set built under the current
// stamp is still exact and is kept without reading the store again; that matters at scale:
// a CBO with 5,000 Tasks re-read every 2 s took half of the CPU (docs/benchmarks.md).
type ChangeStamper interface {
	ExternalChangeStamp(ctx context.Context) (uint64, error)
}

type flight struct {
	done chan struct{}
	v    any
	err  error
}

// accessChange is one committed creation of an access type, with what the extenders need,
// resolved before the cache is locked.
type accessChange struct {
	seq      uint64
	typ, id  string
	keys     *Keys
	orgs     map[string]bool // organizations its keys name (references, tenant tags)
	patients []string        // Patient ids of its patient parameter
	focus    []string        // ServiceRequest ids of a Task's focus
	// focusPatients are the Patient ids of those ServiceRequests (read after the commit).
	focusPatients []string
	beneficiaries []string // Patient ids of a Coverage's beneficiary
	// consentPatient and consentGrants: a Consent's patient id, and for each organization it
	// names what it grants that organization now (consentPermits).
	consentPatient string
	consentGrants  map[string]labelMask
}

func (ch *accessChange) hasKey(keys ...string) bool {
	for _, k := range keys {
		if _, ok := slices.BinarySearch(ch.keys.Eq, k); ok {
			return true
		}
	}
	return false
}

// extender adds what ch contributes to v, an organization's set under one name, and reports
// whether v grew. It may add to v in place (idSet: sets only grow while cached, and a
// committed creation's access holds for the requests that hold v too) or return a new value;
// it never takes anything away.
type extender func(t *tenant, v any, ch *accessChange) (any, bool)

// extenders are keyed by entry name (see the builds in tenancy.go and consent.go).
var extenders = map[string]extender{
	"provider-patients": extendProviderPatients,
	"cbo-referrals":     extendCBOReferrals,
	"consent-grants":    extendConsentGrants,
}

func (c *orgCache) state(org string) *orgState {
	if c.orgs == nil {
		c.orgs = map[string]*orgState{}
		c.flights = map[string]*flight{}
		c.recentDrops = map[string]time.Time{}
	}
	st := c.orgs[org]
	if st == nil {
		st = &orgState{entries: map[string]orgEntry{}, failed: map[string]orgFailure{}}
		c.orgs[org] = st
	}
	return st
}

// cached returns the value build makes for t's organization under name (see the top of this
// file for when it is reused). A request keeps what it was given while nothing changes for
// the organization, so a search with _include and _has judges every part alike.
func (s *Service) cached(ctx context.Context, t *tenant, name string, build func(context.Context) (any, error)) (any, error) {
	c := &s.orgCache
	key := t.org + "|" + name
	m := memoOf(ctx)
	for attempt := 0; ; attempt++ {
		c.mu.Lock()
		st := c.state(t.org)
		memoKey := name + "@" + strconv.FormatUint(st.changed, 10)
		if m != nil {
			m.mu.Lock()
			v, hit := m.sets[memoKey]
			m.mu.Unlock()
			if hit {
				c.mu.Unlock()
				return v, nil
			}
		}
		if fl, ok := st.failed[name]; ok && fl.dropped == st.dropped {
			// Kept failures are served at once; past scopeFailureTTL one resolution runs
			// again in the background (it takes as long as the failed one did).
			if time.Since(fl.at) >= failureTTL() && c.flights[key] == nil {
				c.rebuildInBackground(ctx, s, t, name, key, build)
			}
			c.mu.Unlock()
			return nil, fl.err
		}
		if e, ok := st.entries[name]; ok && e.changed == st.changed && e.stamped && extenders[name] != nil && time.Since(e.at) > s.accessTTL() {
			// Past its TTL: still exact if no other process wrote since it was built (asked
			// after the TTL ran out, so that a renewal never rests on an older answer).
			c.mu.Unlock()
			cur, ok := s.currentStamp(ctx, e.at.Add(s.accessTTL()))
			c.mu.Lock()
			if now, still := st.entries[name]; ok && cur == e.stamp && still && now.changed == st.changed && now.at == e.at {
				now.at = time.Now()
				st.entries[name] = now
				c.mu.Unlock()
				remember(m, memoKey, now.v)
				return now.v, nil
			}
		}
		if e, ok := st.entries[name]; ok && e.changed == st.changed {
			age, ttl := time.Since(e.at), s.accessTTL()
			// Past its TTL, a set read from the store is still served while one rebuild runs in
			// the background, so that no request waits for it; past twice the TTL (nobody asked
			// for a while, or rebuilds keep failing) the request rebuilds it itself.
			if age <= ttl || (age <= 2*ttl && extenders[name] != nil) {
				if age > ttl && c.flights[key] == nil {
					c.rebuildInBackground(ctx, s, t, name, key, build)
				}
				c.mu.Unlock()
				remember(m, memoKey, e.v)
				return e.v, nil
			}
		}
		if f := c.flights[key]; f != nil && attempt == 0 {
			c.mu.Unlock()
			select {
			case <-f.done:
			case <-ctx.Done():
				return nil, Wrap(KindUnavailable, ctx.Err(), "the request ended while its access scope was being resolved")
			}
			if f.err == nil {
				remember(m, memoKey, f.v)
				return f.v, nil
			}
			if isScopeTooLarge(f.err) {
				// It would fail here too, after the same reads, unless a drop came during
				// that build (then the failure was not kept: try again).
				c.mu.Lock()
				fl, kept := c.state(t.org).failed[name]
				kept = kept && fl.err == f.err
				c.mu.Unlock()
				if kept {
					return nil, f.err
				}
			}
			continue // the other request failed (its own deadline, say): build here
		}
		f := &flight{done: make(chan struct{})}
		if c.flights[key] == nil {
			c.flights[key] = f
		}
		start := c.seq
		c.mu.Unlock()

		var stamp uint64
		var stamped bool
		if extenders[name] != nil {
			c.builds.Add(1) // a set read from the store (a scope is built from sets in memory)
			// Taken before the build reads: a stamp older than the reads is safe (at worst
			// the set is rebuilt once more), a newer one would hide a write the reads missed.
			stamp, stamped = s.currentStamp(ctx, time.Time{})
		}
		v, err := build(ctx)
		v = c.land(f, t, name, key, v, err, start, stamp, stamped)
		if err != nil {
			return nil, err
		}
		remember(m, memoKey, v)
		return v, nil
	}
}

// rebuildInBackground starts a build of an expired entry that requests do not wait for.
// Called with c.mu held.
func (c *orgCache) rebuildInBackground(ctx context.Context, s *Service, t *tenant, name, key string, build func(context.Context) (any, error)) {
	f := &flight{done: make(chan struct{})}
	c.flights[key] = f
	start := c.seq
	c.builds.Add(1)
	go func() {
		bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		stamp, stamped := s.currentStamp(bctx, time.Time{})
		v, err := build(bctx)
		c.land(f, t, name, key, v, err, start, stamp, stamped)
	}()
}

// land ends flight f with what its build returned: settles and stores the value (settle),
// hands it to the requests waiting for f, and returns the value the builder uses.
func (c *orgCache) land(f *flight, t *tenant, name, key string, v any, err error, start, stamp uint64, stamped bool) any {
	c.mu.Lock()
	if err == nil {
		v = c.settle(t, name, v, start, stamp, stamped)
		delete(c.state(t.org).failed, name)
	} else if st := c.state(t.org); isScopeTooLarge(err) && st.dropped <= start {
		// Kept only when no drop came since the build began (one may have made the set
		// small enough); a creation cannot.
		st.failed[name] = orgFailure{err: err, dropped: st.dropped, at: time.Now()}
	}
	if c.flights[key] == f {
		delete(c.flights, key)
	}
	f.v, f.err = v, err
	c.mu.Unlock()
	close(f.done)
	return v
}

func remember(m *scopeMemo, key string, v any) {
	if m == nil {
		return
	}
	m.mu.Lock()
	m.sets[key] = v
	m.mu.Unlock()
}

// settle brings v, built from what the store held at some point after seq start, up to the
// present and stores it, or leaves it unstored when that cannot be done: a drop since start,
// a change the entry cannot replay (no extender), or creations that left the log. Returns
// the value the builder's request uses. Called with c.mu held.
func (c *orgCache) settle(t *tenant, name string, v any, start, stamp uint64, stamped bool) any {
	st := c.state(t.org)
	if st.dropped > start || c.logFloor > start {
		return v
	}
	ext := extenders[name]
	if st.changed > start {
		if ext == nil {
			return v
		}
		i, _ := slices.BinarySearchFunc(c.log, start+1, func(ch *accessChange, seq uint64) int {
			switch {
			case ch.seq < seq:
				return -1
			case ch.seq > seq:
				return 1
			}
			return 0
		})
		for _, ch := range c.log[i:] {
			v, _ = ext(t, v, ch)
		}
	}
	if c.entryCount >= maxOrgCacheEntries {
		for _, o := range c.orgs {
			clear(o.entries)
		}
		c.entryCount = 0
	}
	if _, had := st.entries[name]; !had {
		c.entryCount++
	}
	st.entries[name] = orgEntry{v: v, changed: st.changed, at: time.Now(), stamp: stamp, stamped: stamped}
	return v
}

// add applies a committed creation to the cached sets. Called with c.mu held.
func (c *orgCache) add(ch *accessChange) {
	c.seq++
	ch.seq = c.seq
	c.log = append(c.log, ch)
	if len(c.log) > maxAccessLog {
		drop := len(c.log) - maxAccessLog/2
		c.logFloor = c.log[drop-1].seq
		c.log = slices.Clone(c.log[drop:])
	}
	visit := func(org string, st *orgState) {
		touched := ch.orgs[org]
		t := tenantOfOrg(org)
		_, hasReferrals := st.entries["cbo-referrals"]
		for name, e := range st.entries {
			ext := extenders[name]
			if ext == nil || e.changed != st.changed {
				continue
			}
			if nv, grew := ext(t, e.v, ch); grew {
				touched = true
				// The entry keeps its stamp: this process's own writes do not move the store's
				// change stamp, so a set extended with them is as exact past its TTL as one
				// that was not (dropping the stamp had every extended set, the pushing EHR's
				// and the CBO's on every referral, read from the store again each TTL).
				e.v = nv
				st.entries[name] = e
			}
		}
		// A ServiceRequest can join a CBO's referrals by id, without naming the CBO (a Task
		// of the CBO named it first). Without the CBO's referral set at hand to tell, its
		// other entries are treated as changed.
		if ch.typ == "ServiceRequest" && !hasReferrals && len(st.entries) > 0 {
			touched = true
		}
		if !touched {
			return
		}
		was := st.changed
		st.changed = ch.seq
		for name, e := range st.entries {
			if extenders[name] != nil && e.changed == was {
				e.changed = ch.seq
				st.entries[name] = e
			}
		}
	}
	if ch.typ == "ServiceRequest" {
		for org, st := range c.orgs {
			visit(org, st)
		}
		return
	}
	for org := range ch.orgs {
		if st := c.orgs[org]; st != nil {
			visit(org, st)
		}
	}
}

// drop discards the entries of orgs, for a write that can take access away. Called with c.mu
// held.
func (c *orgCache) drop(orgs map[string]bool, resource string) {
	c.seq++
	for org := range orgs {
		st := c.state(org)
		st.changed, st.dropped = c.seq, c.seq
		c.entryCount -= len(st.entries)
		clear(st.entries)
	}
	if resource != "" {
		now := time.Now()
		if len(c.recentDrops) > maxOrgCacheEntries {
			for k, at := range c.recentDrops {
				if now.Sub(at) > time.Minute {
					delete(c.recentDrops, k)
				}
			}
		}
		c.recentDrops[resource] = now
	}
}

func tenantOfOrg(org string) *tenant {
	id, _ := strings.CutPrefix(org, "Organization/")
	return &tenant{org: org, orgID: id}
}

// orgsInKeys are the organizations a resource's search keys name: references to
// Organization/<id> under any parameter, and tenant tags.
func orgsInKeys(k *Keys) map[string]bool {
	out := map[string]bool{}
	tagPrefix := "_tag" + keySep + TenantTagSystem + keySep
	for _, key := range k.Eq {
		if org, ok := strings.CutPrefix(key, tagPrefix); ok {
			if strings.HasPrefix(org, "Organization/") {
				out[org] = true
			}
			continue
		}
		if strings.HasPrefix(key, MemberKeyPrefix) {
			continue // a plan's member key: only Coverage changes membership (membership.go)
		}
		_, rest, ok := strings.Cut(key, keySep)
		if ok && strings.HasPrefix(rest, "Organization/") && !strings.Contains(rest, keySep) {
			out[rest] = true
		}
	}
	return out
}

// accessNote is what checkWrite learned about a write for the cache: whether it can only add
// to the sets (a creation, or an update that only adds a tenant tag), and which
// organizations' sets it may shrink.
type accessNote struct {
	extend bool
	drops  map[string]bool
	// members is what a Coverage write changes in plan membership (membership.go).
	members memberChange
}

// noteAccess decides, before a write of typ is stored, how it touches the cache, and drops
// the sets it may shrink. old is the current version (nil when the write creates it), doc the
// new one (nil for a delete).
func (s *Service) noteAccess(typ, id string, old, doc map[string]any) accessNote {
	n := s.noteSets(typ, id, old, doc)
	n.members = s.coverageChange(typ, old, doc)
	return n
}

func (s *Service) noteSets(typ, id string, old, doc map[string]any) accessNote {
	if !accessTypes[typ] {
		return accessNote{}
	}
	if old == nil {
		return accessNote{extend: true}
	}
	if doc != nil && typ != "Consent" && accessProjection(typ, old, false) == accessProjection(typ, doc, false) {
		switch oldTags, newTags := tenantTags(old), tenantTags(doc); {
		case slices.Equal(oldTags, newTags):
			// An update that leaves the elements access depends on alone (a CBO moving its
			// Task through the workflow, the common write) changes no one's sets.
			return accessNote{}
		case !slices.ContainsFunc(oldTags, func(tag string) bool { return !slices.Contains(newTags, tag) }):
			// It only adds a writer's tenant tag (a CBO's first update of a Task it was
			// sent): that can only add to the sets.
			return accessNote{extend: true}
		}
	}
	orgs := map[string]bool{}
	for _, d := range []map[string]any{old, doc} {
		if d != nil {
			k := ExtractKeysAt(typ, d, s.Base)
			for org := range orgsInKeys(&k) {
				orgs[org] = true
			}
		}
	}
	if len(orgs) == 0 {
		return accessNote{}
	}
	c := &s.orgCache
	c.mu.Lock()
	c.drop(orgs, typ+"/"+id)
	c.mu.Unlock()
	return accessNote{drops: orgs}
}

// afterWrite brings the cache up to date once a write has committed: the drops again (a set
// rebuilt while the write was under way may still hold what it took away), or the creation
// added to the sets it extends.
func (s *Service) afterWrite(ctx context.Context, r *Resource, note accessNote) {
	if r == nil {
		return
	}
	s.afterSets(ctx, r, note)
	s.settleMembers(ctx, []*Resource{r}, note.members)
}

// afterSets is afterWrite's part for the access-set cache.
func (s *Service) afterSets(ctx context.Context, r *Resource, note accessNote) {
	c := &s.orgCache
	if len(note.drops) > 0 {
		c.mu.Lock()
		c.drop(note.drops, "")
		c.mu.Unlock()
	}
	if !note.extend || r.Deleted || !accessTypes[r.Type] {
		return
	}
	ch := s.accessChangeOf(ctx, r)
	c.mu.Lock()
	defer c.mu.Unlock()
	if at, ok := c.recentDrops[r.Type+"/"+r.ID]; ok && time.Since(at) <= time.Minute {
		c.drop(ch.orgs, "")
		return
	}
	c.add(ch)
}

// accessChangeOf collects what the extenders need from a committed creation.
func (s *Service) accessChangeOf(ctx context.Context, r *Resource) *accessChange {
	ch := &accessChange{typ: r.Type, id: r.ID, keys: &r.Keys}
	if len(r.Keys.Eq) == 0 && len(r.JSON) > 0 {
		ch.keys = s.keysOf(r)
		if ch.keys == nil {
			ch.keys = &Keys{}
		}
	}
	ch.orgs = orgsInKeys(ch.keys)
	var doc map[string]any
	if json.Unmarshal(r.JSON, &doc) != nil {
		return ch
	}
	ids := func(param, typ string) []string {
		var out []string
		for _, ref := range s.refsIn(doc, r.Type, param) {
			if rt, id, _ := strings.Cut(ref, "/"); rt == typ {
				out = append(out, id)
			}
		}
		return out
	}
	switch r.Type {
	case "Task":
		ch.patients = ids("patient", "Patient")
		ch.focus = ids("focus", "ServiceRequest")
		for _, sr := range ch.focus {
			if got, err := s.Store.Read(ctx, "ServiceRequest", sr); err == nil {
				s.refIDsInto(got, "patient", "Patient", &ch.focusPatients)
			}
		}
	case "ServiceRequest":
		ch.patients = ids("patient", "Patient")
	case "Coverage":
		ch.beneficiaries = ids("beneficiary", "Patient")
	case "Consent":
		ch.consentPatient, _ = strings.CutPrefix(refOf(doc["patient"]), "Patient/")
		now := consentNow()
		for org := range ch.orgs {
			if mask, ok := consentPermits(doc, org, now); ok {
				if ch.consentGrants == nil {
					ch.consentGrants = map[string]labelMask{}
				}
				ch.consentGrants[org] = mask
			}
		}
	}
	return ch
}

func (s *Service) refIDsInto(r *Resource, param, typ string, into *[]string) {
	for _, ref := range s.references(r, param) {
		if rt, id, _ := strings.Cut(ref, "/"); rt == typ {
			*into = append(*into, id)
		}
	}
}

// merge adds the drops of o to n (a cascade deletes several resources in one write).
func (n *accessNote) merge(o accessNote) {
	n.members.merge(o.members)
	if len(o.drops) == 0 {
		return
	}
	if n.drops == nil {
		n.drops = map[string]bool{}
	}
	for org := range o.drops {
		n.drops[org] = true
	}
}

// AccessSetBuilds counts the access sets computed from the store since the service started
// (a metric: the rest were served from the cache or extended in place).
func (s *Service) AccessSetBuilds() int64 { return s.orgCache.builds.Load() }
