package resources

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Bundle processing (https://hl7.org/fhir/R4/http.html#transaction): a transaction is planned
// in full (ids, placeholders, conditions, versions), then written with one atomic Apply; a
// batch runs each entry on its own.

// DefaultMaxBundleEntries bounds the entries of one Bundle.
const DefaultMaxBundleEntries = 1000

// maxPlanAttempts bounds how often a transaction is re-planned after losing a race to
// another writer; attempts back off a little more each time, with jitter.
const maxPlanAttempts = 20

// BundleOptions adjust bundle processing.
type BundleOptions struct {
	// SkipUnsupported stores a transaction even when some entries are of types this server
	// does not store: those entries are left out and reported (Prefer: handling=lenient).
	SkipUnsupported bool
}

// EntryResult is the outcome of one entry, in the order of the request.
type EntryResult struct {
	Status       int
	Location     string
	ETag         string
	LastModified time.Time
	Resource     []byte // a read or search result, or the written resource
	Outcome      []Issue
}

// BundleResult is the answer to a batch or transaction.
type BundleResult struct {
	Type    string // "batch-response" or "transaction-response"
	Entries []EntryResult
}

type bundleIn struct {
	ResourceType string    `json:"resourceType"`
	Type         string    `json:"type"`
	Entry        []entryIn `json:"entry"`
}

type entryIn struct {
	FullURL  string          `json:"fullUrl"`
	Resource json.RawMessage `json:"resource"`
	Request  *struct {
		Method      string `json:"method"`
		URL         string `json:"url"`
		IfNoneExist string `json:"ifNoneExist"`
		IfMatch     string `json:"ifMatch"`
	} `json:"request"`
}

// entryError is the failure of one entry; in a transaction it fails the whole Bundle.
func entryError(i int, fullURL string, err error) error {
	var e *Error
	if !asError(err, &e) {
		return err
	}
	where := fmt.Sprintf("Bundle.entry[%d]", i)
	if fullURL != "" {
		where += " (" + fullURL + ")"
	}
	out := &Error{Kind: e.Kind, Message: where + ": " + e.Message, Err: e.Err, RetryAfter: e.RetryAfter}
	for _, is := range e.OutcomeIssues() {
		is.Diagnostics = where + ": " + is.Diagnostics
		for j, x := range is.Expression {
			is.Expression[j] = rebase(x, i)
		}
		out.Issues = append(out.Issues, is)
	}
	return out
}

// rebase turns "Patient.name" into "Bundle.entry[i].resource.name".
func rebase(expr string, i int) string {
	if strings.HasPrefix(expr, "Bundle.") {
		return expr
	}
	_, rest, _ := strings.Cut(expr, ".")
	out := fmt.Sprintf("Bundle.entry[%d].resource", i)
	if rest != "" {
		out += "." + rest
	}
	return out
}

func asError(err error, target **Error) bool {
	e, ok := err.(*Error)
	if ok {
		*target = e
		return true
	}
	if ae, ok := err.(*ApplyError); ok {
		return asError(ae.Err, target)
	}
	return false
}

// ProcessBundle runs a transaction or batch Bundle.
func (s *Service) ProcessBundle(ctx context.Context, body []byte, opts BundleOptions) (*BundleResult, error) {
	var b bundleIn
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&b); err != nil {
		return nil, Wrap(KindBadRequest, err, "the body is not a JSON Bundle")
	}
	if b.ResourceType != "Bundle" {
		return nil, Errorf(KindBadRequest, "POST /fhir takes a Bundle, not %q", b.ResourceType)
	}
	if b.Type != "transaction" && b.Type != "batch" {
		return nil, Errorf(KindBadRequest, "only transaction and batch Bundles can be processed, not %q", b.Type)
	}
	if len(b.Entry) > s.maxEntries() {
		return nil, Errorf(KindTooLarge, "the Bundle has %d entries; the limit is %d", len(b.Entry), s.maxEntries())
	}
	for i, e := range b.Entry {
		if e.Request == nil || e.Request.Method == "" || e.Request.URL == "" {
			return nil, entryError(i, e.FullURL, Errorf(KindBadRequest, "request.method and request.url are required"))
		}
	}
	if b.Type == "batch" {
		return s.batch(ctx, b.Entry), nil
	}
	var lastErr error
	for attempt := 0; attempt < maxPlanAttempts; attempt++ {
		res, err := s.transaction(ctx, b.Entry, opts)
		if err == nil {
			return res, nil
		}
		var ae *ApplyError
		if ok := errorsAs(err, &ae); ok && IsKind(err, KindConflict) {
			lastErr = err // lost a race with another writer: plan again on fresh reads
			backoff(ctx, attempt)
			continue
		}
		return nil, err
	}
	return nil, lastErr
}

func (s *Service) maxEntries() int {
	if s.MaxBundleEntries > 0 {
		return s.MaxBundleEntries
	}
	return DefaultMaxBundleEntries
}

func errorsAs(err error, target **ApplyError) bool {
	if ae, ok := err.(*ApplyError); ok {
		*target = ae
		return true
	}
	return false
}

// batch runs each entry independently, in order.
func (s *Service) batch(ctx context.Context, entries []entryIn) *BundleResult {
	out := &BundleResult{Type: "batch-response", Entries: make([]EntryResult, len(entries))}
	for i, e := range entries {
		res, err := s.batchEntry(ctx, e)
		if err != nil {
			var de *Error
			if !asError(err, &de) {
				de = &Error{Kind: KindInternal, Message: "internal error"}
			}
			res = EntryResult{Status: de.Kind.Status(), Outcome: de.OutcomeIssues()}
		}
		out.Entries[i] = res
	}
	return out
}

func (s *Service) batchEntry(ctx context.Context, e entryIn) (EntryResult, error) {
	method := strings.ToUpper(e.Request.Method)
	typ, id, query, err := splitRequestURL(e.Request.URL)
	if err != nil {
		return EntryResult{}, err
	}
	if err := s.authorize(ctx, typ, entryInteraction(method, id)); err != nil {
		return EntryResult{}, err
	}
	switch method {
	case http.MethodGet:
		return s.readEntry(ctx, e.Request.URL)
	case http.MethodPost, http.MethodPut:
		body, err := s.resolveConditionalRefs(ctx, e.Resource, nil)
		if err != nil {
			return EntryResult{}, err
		}
		if method == http.MethodPost {
			if id != "" || query != "" {
				return EntryResult{}, Errorf(KindBadRequest, "POST goes to a type, not %q", e.Request.URL)
			}
			r, created, err := s.Create(ctx, typ, body, e.Request.IfNoneExist)
			if err != nil {
				return EntryResult{}, err
			}
			return writeResult(r, created), nil
		}
		if query != "" {
			r, created, err := s.ConditionalUpdate(ctx, typ, query, body)
			if err != nil {
				return EntryResult{}, err
			}
			return writeResult(r, created), nil
		}
		ifMatch, err := ParseETag(e.Request.IfMatch)
		if err != nil {
			return EntryResult{}, err
		}
		r, created, err := s.Update(ctx, typ, id, body, ifMatch)
		if err != nil {
			return EntryResult{}, err
		}
		return writeResult(r, created), nil
	case http.MethodDelete:
		if query != "" {
			n, err := s.ConditionalDelete(ctx, typ, query)
			if err != nil {
				return EntryResult{}, err
			}
			return EntryResult{Status: http.StatusNoContent, Outcome: deletedOutcome(n)}, nil
		}
		ifMatch, err := ParseETag(e.Request.IfMatch)
		if err != nil {
			return EntryResult{}, err
		}
		r, err := s.Delete(ctx, typ, id, ifMatch, false)
		if err != nil {
			return EntryResult{}, err
		}
		return EntryResult{Status: http.StatusNoContent, ETag: etagOf(r), LastModified: r.LastUpdated}, nil
	case http.MethodPatch:
		format, doc, err := PatchFromEntry(e.Resource)
		if err != nil {
			return EntryResult{}, err
		}
		var r *Resource
		if query != "" {
			r, err = s.ConditionalPatch(ctx, typ, query, format, doc)
		} else {
			ifMatch, perr := ParseETag(e.Request.IfMatch)
			if perr != nil {
				return EntryResult{}, perr
			}
			r, err = s.Patch(ctx, typ, id, format, doc, ifMatch)
		}
		if err != nil {
			return EntryResult{}, err
		}
		return writeResult(r, false), nil
	}
	return EntryResult{}, Errorf(KindMethodNotAllowed, "request.method %q is not supported in a batch", e.Request.Method)
}

func deletedOutcome(n int) []Issue {
	return []Issue{{Severity: SeverityInformation, Code: IssueInformational, Diagnostics: fmt.Sprintf("%d resources deleted", n)}}
}

func etagOf(r *Resource) string { return `W/"` + strconv.FormatInt(r.VersionID, 10) + `"` }

func writeResult(r *Resource, created bool) EntryResult {
	status := http.StatusOK // an update, or a conditional create that found its match
	if created {
		status = http.StatusCreated
	}
	return EntryResult{Status: status, Location: r.Type + "/" + r.ID + "/_history/" + strconv.FormatInt(r.VersionID, 10),
		ETag: etagOf(r), LastModified: r.LastUpdated, Resource: r.JSON}
}

// readEntry runs a GET entry: a read, a vread or a search.
func (s *Service) readEntry(ctx context.Context, rawURL string) (EntryResult, error) {
	typ, id, query, err := splitRequestURL(rawURL)
	if err != nil {
		return EntryResult{}, err
	}
	if id != "" {
		path := strings.TrimPrefix(strings.SplitN(rawURL, "?", 2)[0], typ+"/")
		var r *Resource
		if idPart, version, ok := strings.Cut(path, "/_history/"); ok {
			r, err = s.VRead(ctx, typ, idPart, version)
		} else {
			r, err = s.Read(ctx, typ, id)
		}
		if err != nil {
			return EntryResult{}, err
		}
		return EntryResult{Status: http.StatusOK, Resource: r.JSON, ETag: etagOf(r), LastModified: r.LastUpdated}, nil
	}
	values, err := url.ParseQuery(query)
	if err != nil {
		return EntryResult{}, Wrap(KindBadRequest, err, "the search in request.url is not a valid query")
	}
	sr, err := ParseSearch(typ, values, s.Base, false)
	if err != nil {
		return EntryResult{}, err
	}
	page, err := s.Search(ctx, sr)
	if err != nil {
		return EntryResult{}, err
	}
	return EntryResult{Status: http.StatusOK, Resource: SearchsetJSON(s.Base, typ, sr, page)}, nil
}

// SearchsetJSON renders a search result as a Bundle (used inside bundle responses).
func SearchsetJSON(base, typ string, sr *SearchRequest, page *Page) []byte {
	var buf bytes.Buffer
	buf.WriteString(`{"resourceType":"Bundle","type":"searchset"`)
	if page.Total >= 0 {
		buf.WriteString(`,"total":` + strconv.FormatInt(page.Total, 10))
	}
	if len(page.Resources)+len(page.Included) > 0 {
		buf.WriteString(`,"entry":[`)
		n := 0
		for _, group := range []struct {
			rs   []*Resource
			mode string
		}{{page.Resources, "match"}, {page.Included, "include"}} {
			for _, r := range group.rs {
				if n > 0 {
					buf.WriteByte(',')
				}
				n++
				full, _ := json.Marshal(strings.TrimSuffix(base, "/") + "/" + r.Type + "/" + r.ID)
				buf.WriteString(`{"fullUrl":` + string(full) + `,"resource":`)
				buf.Write(sr.Shape(r.JSON))
				buf.WriteString(`,"search":{"mode":"` + group.mode + `"}}`)
			}
		}
		buf.WriteByte(']')
	}
	buf.WriteByte('}')
	return buf.Bytes()
}

// splitRequestURL splits "Type", "Type/id[/_history/n]" or "Type?query" (absolute URLs on
// this server are accepted by the callers after trimming the base).
func splitRequestURL(raw string) (typ, id, query string, err error) {
	path, query, _ := strings.Cut(raw, "?")
	parts := strings.Split(strings.Trim(path, "/"), "/")
	typ = parts[0]
	if !Supported(typ) {
		return "", "", "", Errorf(KindNotFound, "resource type %q is not supported", typ)
	}
	switch {
	case len(parts) == 1:
	case len(parts) == 2 || (len(parts) == 4 && parts[2] == "_history"):
		if !ValidID(parts[1]) {
			return "", "", "", Errorf(KindBadRequest, "%q is not a valid id", parts[1])
		}
		id = parts[1]
	default:
		return "", "", "", Errorf(KindBadRequest, "request.url %q is not Type, Type/id or Type?search", raw)
	}
	return typ, id, query, nil
}

// ParseETag reads W/"3" or "3" (empty: 0).
func ParseETag(h string) (int64, error) {
	h = strings.TrimSpace(h)
	if h == "" {
		return 0, nil
	}
	v := strings.Trim(strings.TrimPrefix(h, "W/"), `"`)
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 1 {
		return 0, Errorf(KindBadRequest, `If-Match must be a version ETag such as W/"3"`)
	}
	return n, nil
}

// resolveConditionalRefs replaces conditional references ("Patient?identifier=...") in a
// resource by the one resource they match, and placeholders by their targets.
func (s *Service) resolveConditionalRefs(ctx context.Context, raw json.RawMessage, placeholders map[string]string) ([]byte, error) {
	if len(raw) == 0 {
		return nil, Errorf(KindBadRequest, "the entry has no resource")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return nil, Wrap(KindBadRequest, err, "the entry's resource is not JSON")
	}
	var firstErr error
	changed := false
	rewriteReferences(doc, func(ref string) string {
		if firstErr != nil {
			return ref
		}
		if target, ok := placeholders[ref]; ok {
			changed = true
			return target
		}
		typ, query, isCond := strings.Cut(ref, "?")
		if !isCond || !Supported(typ) || strings.Contains(typ, "/") {
			return ref
		}
		matches, _, err := s.match(ctx, typ, query, 1)
		switch {
		case err != nil:
			firstErr = err
		case len(matches) == 0:
			firstErr = Errorf(KindNotFound, "the conditional reference %s matches nothing", ref)
		case len(matches) > 1:
			firstErr = Errorf(KindPreconditionFailed, "the conditional reference %s matches more than one %s", ref, typ)
		default:
			changed = true
			return typ + "/" + matches[0].ID
		}
		return ref
	})
	if firstErr != nil {
		return nil, firstErr
	}
	if !changed {
		return raw, nil
	}
	m, _ := doc.(map[string]any)
	if m == nil {
		return nil, Errorf(KindBadRequest, "the entry's resource is not a JSON object")
	}
	return EncodeResource(m)
}

// rewriteReferences calls fn on every Reference.reference in v (contained resources and
// extensions included) and stores what it returns.
func rewriteReferences(v any, fn func(string) string) {
	switch t := v.(type) {
	case map[string]any:
		for k, x := range t {
			if s, ok := x.(string); ok && k == "reference" {
				t[k] = fn(s)
				continue
			}
			rewriteReferences(x, fn)
		}
	case []any:
		for _, x := range t {
			rewriteReferences(x, fn)
		}
	}
}

// planned is one entry of a transaction as it will be carried out.
type planned struct {
	index   int
	entry   entryIn
	method  string
	typ, id string
	query   string
	skipped bool
	// for writes
	existing *Resource // a conditional create matched this resource: nothing is written
	cond     *Query    // a create that must still match nothing at commit
	ifMatch  int64
	write    *Write
	created  bool
	count    int // conditional delete: how many were deleted
}

// transaction plans every entry, then writes them with one Apply.
func (s *Service) transaction(ctx context.Context, entries []entryIn, opts BundleOptions) (*BundleResult, error) {
	plans := make([]*planned, len(entries))
	placeholders := map[string]string{}
	tx := pending{}
	fail := func(p *planned, err error) error { return entryError(p.index, p.entry.FullURL, err) }
	claim := func(p *planned, key string, written bool) error {
		if _, dup := tx[key]; dup {
			return fail(p, Errorf(KindBadRequest, "%s appears more than once in the transaction", key))
		}
		tx[key] = written
		return nil
	}

	for i, e := range entries {
		p := &planned{index: i, entry: e, method: strings.ToUpper(e.Request.Method)}
		plans[i] = p
		rawURL := strings.TrimPrefix(e.Request.URL, s.basePrefix())
		typ, id, query, err := splitRequestURL(rawURL)
		if err != nil {
			if opts.SkipUnsupported && IsKind(err, KindNotFound) {
				p.skipped = true
				continue
			}
			return nil, fail(p, err)
		}
		p.typ, p.id, p.query = typ, id, query
		if err := s.authorize(ctx, typ, entryInteraction(p.method, id)); err != nil {
			return nil, fail(p, err)
		}
		switch p.method {
		case http.MethodGet, http.MethodHead, http.MethodDelete, http.MethodPost, http.MethodPut, http.MethodPatch:
		default:
			return nil, fail(p, Errorf(KindMethodNotAllowed, "request.method %q is not supported in a transaction", e.Request.Method))
		}
	}
	order := func(method string) []*planned {
		var out []*planned
		for _, p := range plans {
			if !p.skipped && p.method == method {
				out = append(out, p)
			}
		}
		return out
	}

	// DELETE first: tombstones for the named or matching resources.
	var writes []*Write
	notes := map[*Write]accessNote{} // for the access-set cache, once the writes commit
	for _, p := range order(http.MethodDelete) {
		targets := []string{p.id}
		if p.query != "" {
			matches, _, err := s.conditionalMatches(ctx, p.typ, p.query, s.multipleDelete())
			if err != nil {
				return nil, fail(p, err)
			}
			targets = targets[:0]
			for _, m := range matches {
				targets = append(targets, m.ID)
			}
			p.count = len(targets)
		}
		ifMatch, err := ParseETag(p.entry.Request.IfMatch)
		if err != nil {
			return nil, fail(p, err)
		}
		for _, id := range targets {
			cur, err := s.Store.Read(ctx, p.typ, id)
			if IsKind(err, KindGone) {
				continue
			}
			if err != nil {
				return nil, fail(p, err)
			}
			if ifMatch > 0 && cur.VersionID != ifMatch {
				return nil, fail(p, Errorf(KindPreconditionFailed, "If-Match names version %d but the current version is %d", ifMatch, cur.VersionID))
			}
			note, err := s.checkTenantDelete(ctx, p.typ, id, cur)
			if err != nil {
				return nil, fail(p, err)
			}
			if err := claim(p, p.typ+"/"+id, false); err != nil {
				return nil, err
			}
			p.write = &Write{Resource: &Resource{Type: p.typ, ID: id, VersionID: cur.VersionID + 1, LastUpdated: s.now(), Deleted: true}}
			writes = append(writes, p.write)
			notes[p.write] = note
		}
	}

	// POST and PUT: decide ids so that placeholders can be rewritten everywhere.
	for _, p := range order(http.MethodPost) {
		if p.id != "" || p.query != "" {
			return nil, fail(p, Errorf(KindBadRequest, "POST goes to a type, not %q", p.entry.Request.URL))
		}
		if c := p.entry.Request.IfNoneExist; c != "" {
			matches, recheck, err := s.conditionalMatches(ctx, p.typ, c, false)
			if err != nil {
				return nil, fail(p, err)
			}
			if len(matches) == 1 {
				p.existing = matches[0]
				s.mapPlaceholder(placeholders, p.entry.FullURL, p.typ, p.existing.ID)
				continue
			}
			p.cond = recheck
		}
		p.id, p.created = NewID(), true
		if err := claim(p, p.typ+"/"+p.id, true); err != nil {
			return nil, err
		}
		s.mapPlaceholder(placeholders, p.entry.FullURL, p.typ, p.id)
	}
	for _, p := range order(http.MethodPut) {
		if p.query != "" {
			matches, recheck, err := s.conditionalMatches(ctx, p.typ, p.query, false)
			if err != nil {
				return nil, fail(p, err)
			}
			if len(matches) == 1 {
				// No If-Match: the version read below is checked by Apply (compare-and-set).
				p.id = matches[0].ID
			} else {
				p.cond = recheck
				p.id, p.created = NewID(), true
			}
		} else {
			ifMatch, err := ParseETag(p.entry.Request.IfMatch)
			if err != nil {
				return nil, fail(p, err)
			}
			p.ifMatch = ifMatch
		}
		if err := claim(p, p.typ+"/"+p.id, true); err != nil {
			return nil, err
		}
		s.mapPlaceholder(placeholders, p.entry.FullURL, p.typ, p.id)
	}

	for _, p := range order(http.MethodPatch) {
		if p.query != "" {
			matches, _, err := s.conditionalMatches(ctx, p.typ, p.query, false)
			if err != nil {
				return nil, fail(p, err)
			}
			if len(matches) == 0 {
				return nil, fail(p, Errorf(KindNotFound, "no %s matches %s", p.typ, p.query))
			}
			p.id = matches[0].ID
		}
		ifMatch, err := ParseETag(p.entry.Request.IfMatch)
		if err != nil {
			return nil, fail(p, err)
		}
		p.ifMatch = ifMatch
		if err := claim(p, p.typ+"/"+p.id, true); err != nil {
			return nil, err
		}
	}

	// Now every resource can be rewritten, validated, checked and stamped.
	for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodPatch} {
		for _, p := range order(method) {
			if p.existing != nil {
				continue
			}
			var body []byte
			var err error
			if method == http.MethodPatch {
				if s.ApplyPatch == nil {
					return nil, fail(p, Errorf(KindMethodNotAllowed, "PATCH is not enabled on this server"))
				}
				format, doc, perr := PatchFromEntry(p.entry.Resource)
				if perr != nil {
					return nil, fail(p, perr)
				}
				patchedBody, _, perr := s.patched(ctx, p.typ, p.id, format, doc)
				if perr != nil {
					return nil, fail(p, perr)
				}
				body, err = s.resolveConditionalRefs(ctx, patchedBody, placeholders)
			} else {
				body, err = s.resolveConditionalRefs(ctx, p.entry.Resource, placeholders)
			}
			if err != nil {
				return nil, fail(p, err)
			}
			prep, err := s.prepare(p.typ, body)
			if err != nil {
				return nil, fail(p, err)
			}
			if method != http.MethodPost && p.query == "" {
				if bodyID, _ := prep.doc["id"].(string); bodyID != p.id {
					return nil, fail(p, Errorf(KindBadRequest, "the resource id %q does not match the request URL id %q", bodyID, p.id))
				}
			}
			existingID := p.id
			if p.created {
				existingID = ""
			}
			if err := s.preWrite(ctx, p.typ, existingID); err != nil {
				return nil, fail(p, err)
			}
			if err := s.checkReferences(ctx, p.typ, prep.doc, tx, ""); err != nil {
				return nil, fail(p, err)
			}
			version := int64(1)
			var currentJSON []byte
			if !p.created {
				current, cj, err := s.currentVersion(ctx, p.typ, p.id)
				if err != nil {
					return nil, fail(p, err)
				}
				currentJSON = cj
				if p.ifMatch > 0 && current != p.ifMatch {
					return nil, fail(p, Errorf(KindPreconditionFailed, "If-Match names version %d but the current version is %d", p.ifMatch, current))
				}
				version, p.created = current+1, current == 0
			}
			note, err := s.checkWrite(ctx, p.typ, p.id, currentJSON, prep.doc)
			if err != nil {
				return nil, fail(p, err)
			}
			r, err := prep.stamp(p.typ, p.id, version, s.now(), s.Base)
			if err != nil {
				return nil, fail(p, err)
			}
			p.write = &Write{Resource: r, IfNoneMatch: p.cond}
			writes = append(writes, p.write)
			notes[p.write] = note
		}
	}

	// Deletes of resources others still refer to are refused, unless those go too.
	for _, p := range order(http.MethodDelete) {
		if p.write == nil {
			continue
		}
		r := p.write.Resource
		refs, err := s.referrers(ctx, r.Type, r.ID, tx, maxReferrersListed)
		if err != nil {
			return nil, fail(p, err)
		}
		if len(refs) > 0 {
			return nil, fail(p, s.refusedDelete(ctx, r.Type, r.ID, refs))
		}
	}

	if len(writes) > 0 {
		rs := make([]*Resource, len(writes))
		for i, w := range writes {
			rs[i] = w.Resource
		}
		if err := s.grantMembers(ctx, rs); err != nil {
			return nil, err
		}
		if err := s.apply(ctx, writes); err != nil {
			var ae *ApplyError
			if errorsAs(err, &ae) {
				for _, p := range plans {
					if p.write != nil && p.write == writes[ae.Index] {
						if IsKind(err, KindConflict) {
							return nil, &ApplyError{Index: ae.Index, Err: fail(p, ae.Err)}
						}
						return nil, fail(p, ae.Err)
					}
				}
			}
			return nil, err
		}
		var members memberChange
		for _, w := range writes {
			s.afterSets(ctx, w.Resource, notes[w])
			members.merge(notes[w].members)
		}
		s.settleMembers(ctx, rs, members)
	}

	out := &BundleResult{Type: "transaction-response", Entries: make([]EntryResult, len(plans))}
	for i, p := range plans {
		switch {
		case p.skipped:
			out.Entries[i] = EntryResult{Status: http.StatusNotFound, Outcome: []Issue{{Severity: SeverityWarning, Code: IssueNotSupported,
				Diagnostics: fmt.Sprintf("%s is not stored on this server: the entry was left out", p.entry.Request.URL)}}}
		case p.method == http.MethodGet || p.method == http.MethodHead:
			res, err := s.readEntry(ctx, strings.TrimPrefix(p.entry.Request.URL, s.basePrefix()))
			if err != nil {
				var de *Error
				if !asError(err, &de) {
					return nil, err
				}
				res = EntryResult{Status: de.Kind.Status(), Outcome: de.OutcomeIssues()}
			}
			out.Entries[i] = res
		case p.existing != nil:
			out.Entries[i] = writeResult(p.existing, false)
		case p.method == http.MethodDelete:
			out.Entries[i] = EntryResult{Status: http.StatusNoContent}
			if p.write != nil {
				out.Entries[i].ETag, out.Entries[i].LastModified = etagOf(p.write.Resource), p.write.Resource.LastUpdated
			}
			if p.query != "" {
				out.Entries[i].Outcome = deletedOutcome(p.count)
			}
		default:
			out.Entries[i] = writeResult(p.write.Resource, p.created)
		}
	}
	return out, nil
}

// mapPlaceholder records what a fullUrl stands for: urn:uuid:/urn:oid: placeholders and
// absolute URLs alike.
//
// An absolute fullUrl ".../Patient/a2" of a resource that gets a new id also maps the
// relative "Patient/a2" that other entries use for it (relative references in a Bundle
// resolve against the base of the fullUrl).
func (s *Service) mapPlaceholder(m map[string]string, fullURL, typ, id string) {
	if fullURL == "" {
		return
	}
	m[fullURL] = typ + "/" + id
	if strings.HasPrefix(fullURL, "http://") || strings.HasPrefix(fullURL, "https://") {
		parts := strings.Split(fullURL, "/")
		if n := len(parts); n >= 2 && parts[n-2] == typ && parts[n-1] != id {
			m[typ+"/"+parts[n-1]] = typ + "/" + id
		}
	}
}

func (s *Service) multipleDelete() bool { return s.MultipleConditionalDelete }

// conditionalMatches returns the current resources matching a condition that the caller may
// see: at most one unless several are allowed (then up to MaxResolved); more is
// KindPreconditionFailed. recheck is the condition a store tests again when it writes (match).
func (s *Service) conditionalMatches(ctx context.Context, typ, query string, several bool) (matches []*Resource, recheck *Query, err error) {
	limit := 1
	if several {
		limit = MaxResolved
	}
	matches, recheck, err = s.match(ctx, typ, query, limit)
	if err != nil {
		return nil, nil, err
	}
	if len(matches) > limit {
		return nil, nil, Errorf(KindPreconditionFailed, "the condition %s?%s matches more than %d resource(s)", typ, query, limit)
	}
	return matches, recheck, nil
}

// maxJudgedMatches bounds the matches of a condition that match judges one by one; a condition
// that matches more (across every organization) is searched with the caller's scope instead.
const maxJudgedMatches = 32

// match finds the current resources of typ that match the query of a conditional interaction
// and that ctx's caller may see: up to limit+1 of them. recheck is the condition a store tests
// again as it writes (Write.IfNoneMatch, Store.CreateIfNoneExist).
//
// A conditional interaction never matches, and so never reveals or changes, what its caller may
// not see. Putting the caller's scope into the query says so, but a provider's or a CBO's scope
// lists its patients and referrals, tens of thousands of ids for a busy clinic: every referral
// push would make the store build, bind and scan that list, twice, the second time in the
// embedded store's writer, which every write waits for (docs/benchmarks.md). A condition
// selects a handful of resources (an identifier), so match searches it without the scope and
// judges each match in memory as a read by id is judged (visibleAs). The matches the caller may
// not see are excluded from recheck by id: a store that finds a match at write time has found
// one the caller has not judged yet, which the caller looks at on its next round (a transaction
// plans again after a conflict, Create looks again). A condition with more than
// maxJudgedMatches matches is searched with the scope, whose results are judged all the same
// (a plan's member key can outlive the Coverage that gave it), and recheck carries the scope.
func (s *Service) match(ctx context.Context, typ, query string, limit int) (visible []*Resource, recheck *Query, err error) {
	q, err := s.ParseCondition(typ, query)
	if err != nil {
		return nil, nil, err
	}
	if t := s.tenant(ctx); t != nil {
		q.Partition = t.org
	}
	sc, err := s.access(ctx, typ)
	if err != nil {
		return nil, nil, err
	}
	if sc == nil {
		probe := *q
		probe.Count = limit + 1
		page, err := s.Store.Search(ctx, &probe)
		if err != nil {
			return nil, nil, err
		}
		return page.Resources, q, nil
	}
	probe := *q
	probe.Count = maxJudgedMatches + 1
	want := maxJudgedMatches + 1 // judge every match
	page, err := s.Store.Search(ctx, &probe)
	if err != nil {
		return nil, nil, err
	}
	if len(page.Resources) > maxJudgedMatches {
		// Too many to judge all: the scope selects, and what it lets through is judged too
		// (a plan's member key can outlive the Coverage that gave it).
		if _, err := s.scopeQuery(ctx, q); err != nil {
			return nil, nil, err
		}
		probe = *q
		probe.Count = limit + 1
		if page, err = s.Store.Search(ctx, &probe); err != nil {
			return nil, nil, err
		}
		want = limit + 1
	}
	var hidden []string
	for {
		for _, r := range page.Resources {
			ok, err := s.visibleAs(ctx, r)
			if err != nil {
				return nil, nil, err
			}
			if ok {
				visible = append(visible, r)
			} else {
				hidden = append(hidden, r.ID)
			}
		}
		if len(visible) >= want || page.Next == nil || len(hidden) > maxJudgedMatches {
			break
		}
		probe.After = page.Next
		if page, err = s.Store.Search(ctx, &probe); err != nil {
			return nil, nil, err
		}
	}
	if len(hidden) > 0 {
		q.Clauses = append(slices.Clip(q.Clauses), Clause{NotIDs: hidden})
	}
	return visible, q, nil
}

// ConditionalUpdate is PUT Type?query: no match creates (race-free, like a conditional
// create), one match is updated (compare-and-set on its version), several are 412.
func (s *Service) ConditionalUpdate(ctx context.Context, typ, query string, body []byte) (*Resource, bool, error) {
	for attempt := 0; attempt < maxWriteAttempts; attempt++ {
		matches, _, err := s.conditionalMatches(ctx, typ, query, false)
		if err != nil {
			return nil, false, err
		}
		if len(matches) == 1 {
			m := matches[0]
			withID, err := setID(body, m.ID)
			if err != nil {
				return nil, false, err
			}
			r, created, err := s.Update(ctx, typ, m.ID, withID, m.VersionID)
			if IsKind(err, KindPreconditionFailed) {
				continue // changed under us: look again
			}
			return r, created, err
		}
		r, created, err := s.Create(ctx, typ, body, query)
		if err != nil {
			return nil, false, err
		}
		if created {
			return r, true, nil
		}
		// Someone created a match meanwhile: update it on the next round.
	}
	return nil, false, Errorf(KindConflict, "%s?%s keeps changing; try again", typ, query)
}

// setID puts id into a resource body whose id is absent or already id.
func setID(body []byte, id string) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		return nil, Wrap(KindBadRequest, err, "the body is not a JSON object")
	}
	if got, ok := doc["id"].(string); ok && got != id {
		return nil, Errorf(KindBadRequest, "the resource id %q is not the id %q of the resource the condition matched", got, id)
	}
	doc["id"] = id
	return EncodeResource(doc)
}

// ConditionalDelete is DELETE Type?query: every match is deleted atomically when the
// server allows several (MultipleConditionalDelete), otherwise more than one is 412.
func (s *Service) ConditionalDelete(ctx context.Context, typ, query string) (int, error) {
	for attempt := 0; attempt < maxWriteAttempts; attempt++ {
		matches, _, err := s.conditionalMatches(ctx, typ, query, s.MultipleConditionalDelete)
		if err != nil {
			return 0, err
		}
		doomed := pending{}
		var writes []*Write
		var note accessNote
		for _, m := range matches {
			// The same rules as for DELETE Type/id: a match the caller sees is not
			// necessarily one it may delete (a CBO's Task, another writer's Organization).
			n, err := s.checkTenantDelete(ctx, typ, m.ID, m)
			if err != nil {
				return 0, err
			}
			note.merge(n)
			doomed[m.Type+"/"+m.ID] = false
			writes = append(writes, &Write{Resource: &Resource{Type: typ, ID: m.ID, VersionID: m.VersionID + 1, LastUpdated: s.now(), Deleted: true}})
		}
		for _, m := range matches {
			refs, err := s.referrers(ctx, typ, m.ID, doomed, maxReferrersListed)
			if err != nil {
				return 0, err
			}
			if len(refs) > 0 {
				return 0, s.refusedDelete(ctx, typ, m.ID, refs)
			}
		}
		switch len(writes) {
		case 0:
			return 0, nil
		case 1:
			err = s.Store.Put(ctx, writes[0].Resource)
		default:
			err = s.apply(ctx, writes)
		}
		if IsKind(err, KindConflict) {
			continue
		}
		if err == nil && len(writes) > 0 {
			s.afterWrite(ctx, writes[0].Resource, note)
		}
		return len(writes), err
	}
	return 0, Errorf(KindConflict, "%s?%s keeps changing; try again", typ, query)
}

// backoff sleeps before the next attempt: up to attempt milliseconds, at random.
func backoff(ctx context.Context, attempt int) {
	d := time.Duration(rand.Int64N(int64(attempt+1))) * time.Millisecond
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// PatchFromEntry reads the patch of a Bundle PATCH entry: a Binary holding a JSON Patch
// (contentType application/json-patch+json, base64 data) or a Parameters resource
// (FHIRPath Patch).
func PatchFromEntry(raw json.RawMessage) (PatchFormat, []byte, error) {
	var probe struct {
		ResourceType string `json:"resourceType"`
		ContentType  string `json:"contentType"`
		Data         []byte `json:"data"`
	}
	if err := json.Unmarshal(raw, &probe); err != nil {
		return 0, nil, Wrap(KindBadRequest, err, "a PATCH entry needs a Binary or Parameters resource")
	}
	switch {
	case probe.ResourceType == "Parameters":
		return FHIRPathPatch, raw, nil
	case probe.ResourceType == "Binary" && strings.HasPrefix(probe.ContentType, "application/json-patch+json"):
		return JSONPatch, probe.Data, nil
	}
	return 0, nil, Errorf(KindBadRequest, "a PATCH entry needs a Parameters resource or a Binary with contentType application/json-patch+json")
}

// entryInteraction names what a Bundle entry does, for authorization.
func entryInteraction(method, id string) string {
	switch method {
	case http.MethodPost:
		return "create"
	case http.MethodPut, http.MethodPatch:
		return "update"
	case http.MethodDelete:
		return "delete"
	}
	if id != "" {
		return "read"
	}
	return "search"
}
