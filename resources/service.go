package resources

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Validator parses and validates one resource against base R4 and returns its type. Errors
// are *Error: KindBadRequest when the body is not a resource, KindUnprocessable with one issue
// per problem otherwise.
type Validator func(body []byte) (resourceType string, err error)

// Service carries out the FHIR interactions on a Store: it validates, assigns ids and
// versions, stamps meta, extracts search keys, and leaves the store to make each write atomic.
type Service struct {
	Store    Store
	Validate Validator
	// Base is the absolute FHIR base URL (for treating absolute references as local).
	Base string
	// RequiredReferences lists, per type, the reference elements that must resolve to a
	// stored resource on every write (see DefaultRequiredReferences); nil checks none.
	RequiredReferences map[string][]string
	// MaxBundleEntries bounds Bundle size (DefaultMaxBundleEntries when 0).
	MaxBundleEntries int
	// MultipleConditionalDelete lets DELETE Type?query delete every match (up to
	// MaxResolved) instead of answering 412 when there are several.
	MultipleConditionalDelete bool
	// ApplyPatch applies PATCH documents; nil disables PATCH.
	ApplyPatch Patcher
	// Caller, when set, tells who is writing (for the referral Task workflow, CheckTask).
	Caller func(ctx context.Context) (CallerInfo, bool)
	// Authorize, when set, is asked before the service acts on a type on the caller's
	// behalf where the HTTP route alone does not say which types are touched: each Bundle
	// entry, each type of a system-wide search, each type _include/_revinclude would add.
	// interaction is create, read, update, delete or search.
	Authorize func(ctx context.Context, typ, interaction string) error
	// AccessCacheTTL bounds the age of an organization's cached access sets (accesscache.go):
	// how long a change made through another server process on the same database takes to
	// reach this one. 0 means 2 seconds.
	AccessCacheTTL time.Duration
	// MaxScopeResolved bounds the resources of one kind an access set may be resolved from
	// (tenancy.go); 0 means 50,000.
	MaxScopeResolved int
	// Log receives what the service does in the background (membership.go); nil: slog's
	// default logger. Nothing logged carries PHI.
	Log *slog.Logger

	clockMu sync.Mutex
	last    time.Time

	orgCache orgCache  // tenancy.go
	plans    planCache // plancache.go

	// closing ends the service's background work (the retries of membership.go): Close.
	makeClosing, closeOnce sync.Once
	closing                chan struct{}
}

// done is closed once Close is called.
func (s *Service) done() <-chan struct{} {
	s.makeClosing.Do(func() { s.closing = make(chan struct{}) })
	return s.closing
}

// Close stops the service's background work; call it before the store closes. The service's
// methods must not be called after it.
func (s *Service) Close() {
	s.done()
	s.closeOnce.Do(func() { close(s.closing) })
}

// authorize runs the Authorize hook, if any.
func (s *Service) authorize(ctx context.Context, typ, interaction string) error {
	if s.Authorize == nil {
		return nil
	}
	return s.Authorize(ctx, typ, interaction)
}

// maxWriteAttempts bounds the retries of an unconditional update that keeps losing races.
const maxWriteAttempts = 8

// now returns a UTC timestamp with microsecond precision that never goes backwards in this
// process, so versions written here have strictly increasing lastUpdated values.
func (s *Service) now() time.Time {
	s.clockMu.Lock()
	defer s.clockMu.Unlock()
	t := time.Now().UTC().Truncate(time.Microsecond)
	if !t.After(s.last) {
		t = s.last.Add(time.Microsecond)
	}
	s.last = t
	return t
}

// NewID returns a server-assigned id: 128 random bits in hex (a valid FHIR id).
func NewID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// FormatInstant renders t as a FHIR instant with microseconds.
func FormatInstant(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000000Z07:00")
}

// prepared is a validated body, decoded for stamping and key extraction.
type prepared struct {
	doc map[string]any
}

func (s *Service) prepare(typ string, body []byte) (*prepared, error) {
	if !Supported(typ) {
		return nil, Errorf(KindNotFound, "resource type %q is not supported", typ)
	}
	gotType, err := s.Validate(body)
	if err != nil {
		return nil, err
	}
	if gotType != typ {
		return nil, Errorf(KindBadRequest, "the body is a %s but the URL is for %s", gotType, typ)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		return nil, Wrap(KindBadRequest, err, "the body is not a JSON object")
	}
	return &prepared{doc: doc}, nil
}

// stamp sets id and meta on the document and returns the version to store.
func (p *prepared) stamp(typ, id string, version int64, at time.Time, base string) (*Resource, error) {
	p.doc["id"] = id
	meta, _ := p.doc["meta"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
	}
	meta["versionId"] = strconv.FormatInt(version, 10)
	meta["lastUpdated"] = FormatInstant(at)
	p.doc["meta"] = meta
	body, err := EncodeResource(p.doc)
	if err != nil {
		return nil, Wrap(KindInternal, err, "encoding the resource failed")
	}
	return &Resource{Type: typ, ID: id, VersionID: version, LastUpdated: at, JSON: body, Keys: ExtractKeysAt(typ, p.doc, base)}, nil
}

// EncodeResource writes a decoded resource compactly with resourceType, id and meta first and
// the other elements in name order; HTML characters are not escaped (narratives stay legible).
func EncodeResource(doc map[string]any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	keys := make([]string, 0, len(doc))
	for k := range doc {
		switch k {
		case "resourceType", "id", "meta":
		default:
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	keys = append([]string{"resourceType", "id", "meta"}, keys...)
	buf.WriteByte('{')
	first := true
	for _, k := range keys {
		v, ok := doc[k]
		if !ok {
			continue
		}
		if !first {
			buf.WriteByte(',')
		}
		first = false
		if err := enc.Encode(k); err != nil {
			return nil, err
		}
		buf.Truncate(buf.Len() - 1) // Encode appends a newline
		buf.WriteByte(':')
		if err := enc.Encode(v); err != nil {
			return nil, err
		}
		buf.Truncate(buf.Len() - 1)
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

// Create stores a new resource with a server-assigned id. With ifNoneExist (the query of an
// If-None-Exist header) it returns the existing match instead when there is exactly one
// (created=false), and KindPreconditionFailed when there are several.
func (s *Service) Create(ctx context.Context, typ string, body []byte, ifNoneExist string) (res *Resource, created bool, err error) {
	p, err := s.prepare(typ, body)
	if err != nil {
		return nil, false, err
	}
	if err := s.preWrite(ctx, typ, ""); err != nil {
		return nil, false, err
	}
	if err := s.checkReferences(ctx, typ, p.doc, nil, ""); err != nil {
		return nil, false, err
	}
	note, err := s.checkWrite(ctx, typ, "", nil, p.doc)
	if err != nil {
		return nil, false, err
	}
	r, err := p.stamp(typ, NewID(), 1, s.now(), s.Base)
	if err != nil {
		return nil, false, err
	}
	if err := s.grantMembers(ctx, []*Resource{r}); err != nil {
		return nil, false, err
	}
	if ifNoneExist == "" {
		put := s.Store.Put
		if fc, ok := s.Store.(FreshCreator); ok {
			put = fc.CreateFresh // r's id is NewID's
		}
		if err := put(ctx, r); err != nil {
			return nil, false, err
		}
		s.afterWrite(ctx, r, note)
		return r, true, nil
	}
	for attempt := 0; attempt < maxWriteAttempts; attempt++ {
		matches, recheck, err := s.conditionalMatches(ctx, typ, ifNoneExist, false)
		if err != nil {
			return nil, false, err
		}
		if len(matches) == 1 {
			return matches[0], false, nil
		}
		existing, err := s.Store.CreateIfNoneExist(ctx, r, recheck)
		if IsKind(err, KindPreconditionFailed) {
			// Several matches stored since the caller's look: judge them (a 412 is the
			// caller's to get only for matches it may see).
			backoff(ctx, attempt)
			continue
		}
		if err != nil {
			return nil, false, err
		}
		if existing == nil {
			s.afterWrite(ctx, r, note)
			return r, true, nil
		}
		// A match stored since the caller's matches were judged: judge it too.
		ok, err := s.visibleAs(ctx, existing)
		if err != nil {
			return nil, false, err
		}
		if ok {
			return existing, false, nil
		}
		backoff(ctx, attempt)
	}
	return nil, false, Errorf(KindConflict, "%s?%s keeps changing; try again", typ, ifNoneExist)
}

// ParseCondition parses the query of a conditional interaction. Unlike a search, every
// parameter must be understood and at least one must select: a condition that silently
// dropped a parameter would match (and act on) the wrong resources.
func (s *Service) ParseCondition(typ, query string) (*Query, error) {
	// Some clients write the whole search ("Patient?identifier=..."), not just its query.
	query = strings.TrimPrefix(query, typ+"?")
	values, err := url.ParseQuery(query)
	if err != nil {
		return nil, Wrap(KindBadRequest, err, "the condition is not a valid query string")
	}
	sr, err := ParseSearch(typ, values, s.Base, true)
	if err != nil {
		return nil, err
	}
	if len(sr.Query.Clauses) == 0 {
		return nil, Errorf(KindBadRequest, "the condition selects nothing: give at least one search parameter")
	}
	return &sr.Query, nil
}

// Update writes a new version of typ/id, creating it when it does not exist (the client
// chose the id). ifMatch > 0 requires the current version to be ifMatch (KindPreconditionFailed
// otherwise). Without ifMatch a concurrent writer's version is simply superseded.
func (s *Service) Update(ctx context.Context, typ, id string, body []byte, ifMatch int64) (res *Resource, created bool, err error) {
	if Supported(typ) && !ValidID(id) {
		return nil, false, Errorf(KindBadRequest, "%q is not a valid FHIR id", id)
	}
	p, err := s.prepare(typ, body)
	if err != nil {
		return nil, false, err
	}
	bodyID, _ := p.doc["id"].(string)
	if bodyID == "" {
		return nil, false, Errorf(KindBadRequest, "the resource has no id; an update must carry the id of the URL (%s)", id)
	}
	if bodyID != id {
		return nil, false, Errorf(KindBadRequest, "the resource id %q does not match the URL id %q", bodyID, id)
	}
	if err := s.preWrite(ctx, typ, id); err != nil {
		return nil, false, err
	}
	if err := s.checkReferences(ctx, typ, p.doc, nil, ""); err != nil {
		return nil, false, err
	}
	for attempt := 0; attempt < maxWriteAttempts; attempt++ {
		current, currentJSON, err := s.currentVersion(ctx, typ, id)
		if err != nil {
			return nil, false, err
		}
		if ifMatch > 0 && current != ifMatch {
			return nil, false, Errorf(KindPreconditionFailed, "If-Match names version %d but the current version is %d", ifMatch, current)
		}
		note, err := s.checkWrite(ctx, typ, id, currentJSON, p.doc)
		if err != nil {
			return nil, false, err
		}
		r, err := p.stamp(typ, id, current+1, s.now(), s.Base)
		if err != nil {
			return nil, false, err
		}
		if err := s.grantMembers(ctx, []*Resource{r}); err != nil {
			return nil, false, err
		}
		err = s.Store.Put(ctx, r)
		switch {
		case err == nil:
			s.afterWrite(ctx, r, note)
			return r, current == 0, nil
		case IsKind(err, KindConflict) && ifMatch > 0:
			return nil, false, Errorf(KindPreconditionFailed, "%s/%s changed after version %d", typ, id, ifMatch)
		case IsKind(err, KindConflict):
			backoff(ctx, attempt) // another writer won this version; build on theirs
			continue
		default:
			return nil, false, err
		}
	}
	return nil, false, Errorf(KindConflict, "%s/%s is being updated by others; try again", typ, id)
}

// currentVersion returns the current version number (tombstones count), 0 if none, and the
// current JSON when the resource exists and is not deleted.
func (s *Service) currentVersion(ctx context.Context, typ, id string) (int64, []byte, error) {
	r, err := s.Store.Read(ctx, typ, id)
	switch {
	case err == nil:
		return r.VersionID, r.JSON, nil
	case IsKind(err, KindGone):
		return r.VersionID, nil, nil
	case IsKind(err, KindNotFound):
		return 0, nil, nil
	default:
		return 0, nil, err
	}
}

// Delete writes a tombstone version. Deleting a deleted resource changes nothing and returns
// its tombstone; deleting one that never existed is KindNotFound. A resource that others
// still refer to is not deleted (KindConflict naming them) unless cascade is set: then the
// referrers are deleted with it, atomically, following their own referrers in turn.
func (s *Service) Delete(ctx context.Context, typ, id string, ifMatch int64, cascade bool) (*Resource, error) {
	if !Supported(typ) {
		return nil, Errorf(KindNotFound, "resource type %q is not supported", typ)
	}
	for attempt := 0; attempt < maxWriteAttempts; attempt++ {
		current, err := s.Store.Read(ctx, typ, id)
		if IsKind(err, KindGone) {
			return current, nil
		}
		if err != nil {
			return nil, err
		}
		note, err := s.checkTenantDelete(ctx, typ, id, current)
		if err != nil {
			return nil, err
		}
		if ifMatch > 0 && current.VersionID != ifMatch {
			return nil, Errorf(KindPreconditionFailed, "If-Match names version %d but the current version is %d", ifMatch, current.VersionID)
		}
		r := &Resource{Type: typ, ID: id, VersionID: current.VersionID + 1, LastUpdated: s.now(), Deleted: true}
		doomed := pending{typ + "/" + id: false}
		writes := []*Write{{Resource: r}}
		refs, err := s.referrers(ctx, typ, id, doomed, maxReferrersListed)
		if err != nil {
			return nil, err
		}
		if len(refs) > 0 && !cascade {
			return nil, s.refusedDelete(ctx, typ, id, refs)
		}
		if len(refs) > 0 {
			if writes, err = s.cascade(ctx, refs, doomed, writes, &note); err != nil {
				return nil, err
			}
		}
		if len(writes) == 1 {
			err = s.Store.Put(ctx, r)
		} else {
			err = s.apply(ctx, writes)
		}
		switch {
		case err == nil:
			s.afterWrite(ctx, r, note)
			return r, nil
		case IsKind(err, KindConflict) && ifMatch > 0:
			return nil, Errorf(KindPreconditionFailed, "%s/%s changed after version %d", typ, id, ifMatch)
		case IsKind(err, KindConflict):
			continue
		default:
			return nil, err
		}
	}
	return nil, Errorf(KindConflict, "%s/%s is being updated by others; try again", typ, id)
}

// maxCascade bounds how many resources one cascading delete may remove.
const maxCascade = 100

// cascade adds tombstones for the referrers, and for their referrers in turn.
func (s *Service) cascade(ctx context.Context, refs []*Resource, doomed pending, writes []*Write, note *accessNote) ([]*Write, error) {
	queue := refs
	for len(queue) > 0 {
		r := queue[0]
		queue = queue[1:]
		key := r.Type + "/" + r.ID
		if _, done := doomed[key]; done {
			continue
		}
		if len(doomed) >= maxCascade {
			return nil, Errorf(KindConflict, "a cascading delete would remove more than %d resources", maxCascade)
		}
		// A cascade deletes only what the caller could delete one by one: it must not reach
		// into other organizations' resources (and says nothing about which they are).
		n, err := s.checkTenantDelete(ctx, r.Type, r.ID, r)
		if err != nil {
			return nil, Errorf(KindConflict, "a cascading delete would remove resources the access token may not delete; nothing was deleted")
		}
		note.merge(n)
		doomed[key] = false
		writes = append(writes, &Write{Resource: &Resource{Type: r.Type, ID: r.ID, VersionID: r.VersionID + 1, LastUpdated: s.now(), Deleted: true}})
		more, err := s.referrers(ctx, r.Type, r.ID, doomed, maxCascade)
		if err != nil {
			return nil, err
		}
		queue = append(queue, more...)
	}
	return writes, nil
}

// apply writes atomically through the store's Transactor.
func (s *Service) apply(ctx context.Context, writes []*Write) error {
	tx, ok := s.Store.(Transactor)
	if !ok {
		return Errorf(KindMethodNotAllowed, "this store cannot write several resources atomically")
	}
	return tx.Apply(ctx, writes)
}

// Read returns the current version (KindGone with the tombstone after a delete).
func (s *Service) Read(ctx context.Context, typ, id string) (*Resource, error) {
	if !Supported(typ) {
		return nil, Errorf(KindNotFound, "resource type %q is not supported", typ)
	}
	if !ValidID(id) {
		return nil, Errorf(KindNotFound, "%s/%s is not known", typ, id)
	}
	r, err := s.Store.Read(ctx, typ, id)
	if err != nil && !IsKind(err, KindGone) {
		return r, err
	}
	// Visibility is decided on current resources, so to a restricted caller a deleted
	// resource is unknown (404), not gone (410).
	if err != nil { // gone
		if s.tenant(ctx) != nil {
			return nil, notVisible(typ, id)
		}
		return r, err
	}
	if ok, verr := s.visibleAs(ctx, r); verr != nil || !ok {
		if verr != nil {
			return nil, verr
		}
		return nil, notVisible(typ, id)
	}
	return r, nil
}

// VRead returns one version.
func (s *Service) VRead(ctx context.Context, typ, id, version string) (*Resource, error) {
	if !Supported(typ) {
		return nil, Errorf(KindNotFound, "resource type %q is not supported", typ)
	}
	v, err := strconv.ParseInt(version, 10, 64)
	if err != nil || v < 1 || !ValidID(id) {
		return nil, Errorf(KindNotFound, "%s/%s has no version %q", typ, id, version)
	}
	r, err := s.Store.VRead(ctx, typ, id, v)
	if err != nil {
		return r, err
	}
	if ok, verr := s.visible(ctx, typ, id); verr != nil || !ok {
		if verr != nil {
			return nil, verr
		}
		return nil, Errorf(KindNotFound, "%s/%s has no version %q", typ, id, version)
	}
	return r, nil
}

// Search runs a parsed search: chained and _has parameters are resolved first, and the page
// gets its _include and _revinclude resources.
func (s *Service) Search(ctx context.Context, sr *SearchRequest) (*Page, error) {
	if !Supported(sr.Query.Type) {
		return nil, Errorf(KindNotFound, "resource type %q is not supported", sr.Query.Type)
	}
	q := sr.Query
	if q.After != nil && len(q.After.Values) != len(q.SortBy) {
		return nil, Errorf(KindBadRequest, "_cursor does not belong to this _sort")
	}
	clauses, err := s.resolve(ctx, q.Type, q.Clauses, 0)
	if err != nil {
		return nil, err
	}
	q.Clauses = clauses
	gated, err := s.scopeQuery(ctx, &q)
	if err != nil {
		return nil, err
	}
	if sr.CountOnly || gated != nil {
		q.Total = true // consent checks compare counts
	}
	if sr.CountOnly {
		q.Count = 1
	}
	page, err := s.searchSnapshot(ctx, &q) // snapshot.go: stable pages under updates
	if err != nil {
		return nil, err
	}
	if page.Resources, err = s.guardMembers(ctx, page.Resources); err != nil {
		return nil, err
	}
	if page.Withheld, err = s.withheld(ctx, q, gated, page.Total); err != nil {
		return nil, err
	}
	if sr.CountOnly {
		page.Resources, page.Next = nil, nil
		return page, nil
	}
	if gated != nil && !sr.Query.Total {
		page.Total = -1 // counted for the consent check only; the rule below decides
	}
	// Counting every match costs a second scan, so Bundle.total is computed only when asked
	// (_total=accurate) or when it is free: a first page that holds every match.
	if page.Total < 0 && !sr.NoTotal && q.After == nil && page.Next == nil {
		page.Total = int64(len(page.Resources))
	}
	if err := s.include(ctx, sr, page); err != nil {
		return nil, err
	}
	if page.Included, err = s.guardMembers(ctx, page.Included); err != nil {
		return nil, err
	}
	return page, nil
}

// ParseHistory reads the _count, _since and _cursor parameters of a history interaction.
func ParseHistory(typ, id string, params url.Values) (*HistoryQuery, error) {
	q := &HistoryQuery{Type: typ, ID: id, Count: DefaultCount}
	if v := params.Get("_count"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return nil, Errorf(KindBadRequest, "_count must be a positive integer")
		}
		q.Count = min(n, MaxCount)
	}
	if v := params.Get("_since"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return nil, Errorf(KindBadRequest, "_since must be an instant such as 2024-05-01T00:00:00Z")
		}
		q.Since = t.UTC()
	}
	if v := params.Get("_cursor"); v != "" {
		c, err := DecodeCursor(v)
		if err != nil {
			return nil, err
		}
		q.After = c
	}
	return q, nil
}

// History returns instance history (id set) or type history. Instance history of a resource
// that never existed is KindNotFound.
func (s *Service) History(ctx context.Context, q *HistoryQuery) (*Page, error) {
	if !Supported(q.Type) {
		return nil, Errorf(KindNotFound, "resource type %q is not supported", q.Type)
	}
	if q.ID != "" {
		if _, err := s.Store.Read(ctx, q.Type, q.ID); IsKind(err, KindNotFound) || (err != nil && !IsKind(err, KindGone)) {
			return nil, err
		}
		if ok, err := s.visible(ctx, q.Type, q.ID); err != nil || !ok {
			if err != nil {
				return nil, err
			}
			return nil, notVisible(q.Type, q.ID)
		}
	}
	page, err := s.Store.History(ctx, q)
	if err != nil || q.ID != "" {
		return page, err
	}
	return s.visibleHistory(ctx, q.Type, page)
}

// visibleHistory leaves out of a type history page the versions of resources the caller may
// not see now. The page keeps its cursor, so paging goes on past what was left out.
func (s *Service) visibleHistory(ctx context.Context, typ string, page *Page) (*Page, error) {
	sc, err := s.scope(ctx, typ)
	if err != nil || sc == nil || len(page.Resources) == 0 {
		return page, err
	}
	idSet := map[string]bool{}
	for _, r := range page.Resources {
		idSet[r.ID] = true
	}
	ids := sortedSet(idSet)
	found, err := s.Store.Search(ctx, &Query{Type: typ, Clauses: []Clause{{IDs: ids}, sc.clause}, Count: len(ids)})
	if err != nil {
		return nil, err
	}
	ok := map[string]bool{}
	for _, r := range found.Resources {
		ok[r.ID] = true
	}
	kept := page.Resources[:0:0]
	for _, r := range page.Resources {
		if ok[r.ID] {
			kept = append(kept, r)
		}
	}
	page.Resources, page.Total = kept, -1
	return page, nil
}

// PatchFormat names the two PATCH formats.
type PatchFormat int

const (
	JSONPatch     PatchFormat = iota // application/json-patch+json (RFC 6902)
	FHIRPathPatch                    // a Parameters resource (FHIRPath Patch)
)

// Patcher applies a patch document to a decoded resource (see internal/patch).
type Patcher func(doc map[string]any, format PatchFormat, patch []byte) (map[string]any, error)

// Patch applies a patch to the current version and stores the result as the next version,
// validated like an update. With ifMatch the patch applies only to that version (412
// otherwise); without it, a concurrent change makes the patch re-apply to the newer version,
// so no update is lost either way.
func (s *Service) Patch(ctx context.Context, typ, id string, format PatchFormat, patch []byte, ifMatch int64) (*Resource, error) {
	if s.ApplyPatch == nil {
		return nil, Errorf(KindMethodNotAllowed, "PATCH is not enabled on this server")
	}
	if !Supported(typ) {
		return nil, Errorf(KindNotFound, "resource type %q is not supported", typ)
	}
	for attempt := 0; attempt < maxPlanAttempts; attempt++ {
		body, version, err := s.patched(ctx, typ, id, format, patch)
		if err != nil {
			return nil, err
		}
		if ifMatch > 0 && version != ifMatch {
			return nil, Errorf(KindPreconditionFailed, "If-Match names version %d but the current version is %d", ifMatch, version)
		}
		r, _, err := s.Update(ctx, typ, id, body, version)
		if IsKind(err, KindPreconditionFailed) && ifMatch == 0 {
			backoff(ctx, attempt) // changed while we patched: patch the newer version
			continue
		}
		return r, err
	}
	return nil, Errorf(KindConflict, "%s/%s is being updated by others; try again", typ, id)
}

// patched reads the current version and returns the patched body and the version it is
// based on.
func (s *Service) patched(ctx context.Context, typ, id string, format PatchFormat, patch []byte) ([]byte, int64, error) {
	cur, err := s.Read(ctx, typ, id)
	if err != nil {
		return nil, 0, err
	}
	dec := json.NewDecoder(bytes.NewReader(cur.JSON))
	dec.UseNumber()
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		return nil, 0, Wrap(KindInternal, err, "stored resource is not JSON")
	}
	out, err := s.ApplyPatch(doc, format, patch)
	if err != nil {
		return nil, 0, err
	}
	if out["resourceType"] != typ || out["id"] != id {
		return nil, 0, Errorf(KindUnprocessable, "a patch may not change resourceType or id")
	}
	body, err := EncodeResource(out)
	if err != nil {
		return nil, 0, Wrap(KindUnprocessable, err, "the patched resource cannot be encoded")
	}
	return body, cur.VersionID, nil
}

// ConditionalPatch is PATCH Type?query: the one match is patched (412 for several, 404 for
// none).
func (s *Service) ConditionalPatch(ctx context.Context, typ, query string, format PatchFormat, patch []byte) (*Resource, error) {
	matches, _, err := s.conditionalMatches(ctx, typ, query, false)
	if err != nil {
		return nil, err
	}
	if len(matches) == 0 {
		return nil, Errorf(KindNotFound, "no %s matches %s", typ, query)
	}
	return s.Patch(ctx, typ, matches[0].ID, format, patch, 0)
}
