package resources

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"net/url"
	"slices"
	"strings"
)

// Limits on the work one search may cause beyond its page.
const (
	// MaxResolved bounds the resources a chained parameter or _has may match: the ids become
	// part of the outer query.
	MaxResolved = 1000
	// MaxIncluded bounds the resources _include and _revinclude add to one page.
	MaxIncluded = 1000
	// maxChainDepth is how many levels of chaining are followed (patient.organization.name).
	maxChainDepth = 2
	// maxIterate is how many rounds :iterate follows.
	maxIterate = 3
)

// resolve replaces chained and _has clauses by the key or id clauses they stand for, by
// running the inner searches first.
func (s *Service) resolve(ctx context.Context, typ string, clauses []Clause, depth int) ([]Clause, error) {
	out := make([]Clause, 0, len(clauses))
	for _, c := range clauses {
		switch {
		case c.Chain != nil:
			rc, err := s.resolveChain(ctx, c.Chain, depth)
			if err != nil {
				return nil, err
			}
			out = append(out, rc)
		case c.Has != nil:
			rc, err := s.resolveHas(ctx, typ, c.Has, depth)
			if err != nil {
				return nil, err
			}
			out = append(out, rc)
		default:
			out = append(out, c)
		}
	}
	return out, nil
}

func (s *Service) resolveChain(ctx context.Context, ch *Chain, depth int) (Clause, error) {
	if depth >= maxChainDepth {
		return Clause{}, Errorf(KindBadRequest, "chained parameters are followed %d levels deep at most", maxChainDepth)
	}
	var keys []string
	understood := false
	for _, target := range ch.Types {
		inner, err := parseClause(target, ch.Name, ch.Value, s.Base)
		if _, ok := err.(*unsupported); ok {
			continue
		}
		if err != nil {
			return Clause{}, err
		}
		understood = true
		matches, err := s.matchAll(ctx, target, inner, depth+1)
		if err != nil {
			return Clause{}, err
		}
		for _, r := range matches {
			keys = append(keys, RefKey(ch.Param, target, r.ID))
		}
	}
	if !understood {
		return Clause{}, Errorf(KindBadRequest, "%s.%s: no target type of %s has that parameter", ch.Param, ch.Name, ch.Param)
	}
	return Clause{AnyKey: keys}, nil // no keys: matches nothing
}

func (s *Service) resolveHas(ctx context.Context, typ string, h *Has, depth int) (Clause, error) {
	if depth >= maxChainDepth {
		return Clause{}, Errorf(KindBadRequest, "_has is followed %d levels deep at most", maxChainDepth)
	}
	inner, err := parseClause(h.Type, h.Name, h.Value, s.Base)
	if u, ok := err.(*unsupported); ok {
		return Clause{}, Errorf(KindBadRequest, "_has:%s:%s:%s: %s", h.Type, h.Param, h.Name, u.why)
	}
	if err != nil {
		return Clause{}, err
	}
	matches, err := s.matchAll(ctx, h.Type, inner, depth+1)
	if err != nil {
		return Clause{}, err
	}
	var ids []string
	for _, r := range matches {
		for _, ref := range s.references(r, h.Param) {
			if rt, id, _ := strings.Cut(ref, "/"); rt == typ && !slices.Contains(ids, id) {
				ids = append(ids, id)
			}
		}
	}
	return Clause{IDs: ids}, nil // no ids: matches nothing
}

// matchAll returns every resource of typ matching the clause, up to MaxResolved.
func (s *Service) matchAll(ctx context.Context, typ string, c Clause, depth int) ([]*Resource, error) {
	if err := s.authorize(ctx, typ, "search"); err != nil {
		return nil, err
	}
	clauses, err := s.resolve(ctx, typ, []Clause{c}, depth)
	if err != nil {
		return nil, err
	}
	q := &Query{Type: typ, Clauses: clauses, Count: MaxResolved + 1}
	if _, err := s.scopeQuery(ctx, q); err != nil {
		return nil, err
	}
	page, err := s.Store.Search(ctx, q)
	if err != nil {
		return nil, err
	}
	if len(page.Resources) > MaxResolved {
		return nil, Errorf(KindBadRequest, "an inner search on %s matches more than %d resources; narrow it", typ, MaxResolved)
	}
	return page.Resources, nil
}

// references returns the local references ("Type/id") a resource makes through a reference
// parameter ("*" for all of them), as the search keys index them.
func (s *Service) references(r *Resource, param string) []string {
	doc := decodeFields(r, param)
	if doc == nil {
		return nil
	}
	return s.refsIn(doc, r.Type, param)
}

// refsIn is references on a decoded resource of typ.
func (s *Service) refsIn(doc map[string]any, typ, param string) []string {
	var refs []string
	for _, p := range Params(typ) {
		if p.Type != ParamReference || (param != "*" && p.Name != param) {
			continue
		}
		keys := &Keys{}
		for _, path := range p.Paths {
			walk(doc, strings.Split(path, "."), func(v any) { keys.Eq = appendRefKeys(keys.Eq, p, v, s.basePrefix()) })
		}
		for _, k := range keys.Eq {
			ref := strings.TrimPrefix(k, p.Name+keySep)
			if strings.HasPrefix(ref, keyAny) {
				continue // the id-only key
			}
			if _, _, ok := SplitLocalRef(ref); ok && !slices.Contains(refs, ref) {
				refs = append(refs, ref)
			}
		}
	}
	return refs
}

func (s *Service) basePrefix() string {
	if s.Base == "" {
		return ""
	}
	return strings.TrimSuffix(s.Base, "/") + "/"
}

// include adds the _include and _revinclude resources of a page.
func (s *Service) include(ctx context.Context, sr *SearchRequest, page *Page) error {
	if len(sr.Includes) == 0 || len(page.Resources) == 0 {
		return nil
	}
	seen := map[string]bool{}
	for _, r := range page.Resources {
		seen[r.Type+"/"+r.ID] = true
	}
	round := page.Resources
	for iteration := 0; iteration <= maxIterate && len(round) > 0; iteration++ {
		var added []*Resource
		for _, inc := range sr.Includes {
			if iteration > 0 && !inc.Iterate {
				continue
			}
			var found []*Resource
			var err error
			var withheld bool
			if inc.Rev {
				found, withheld, err = s.revIncluded(ctx, inc, round)
			} else {
				found, withheld, err = s.included(ctx, inc, round)
			}
			if err != nil {
				return err
			}
			page.Withheld = page.Withheld || withheld
			for _, r := range found {
				if s.authorize(ctx, r.Type, "read") != nil {
					continue // not the caller's to see: left out, not an error
				}
				if key := r.Type + "/" + r.ID; !seen[key] {
					seen[key] = true
					added = append(added, r)
				}
			}
		}
		if len(page.Included)+len(added) > MaxIncluded {
			return Errorf(KindBadRequest, "_include and _revinclude would add more than %d resources to a page; use a smaller _count", MaxIncluded)
		}
		page.Included = append(page.Included, added...)
		round = added
	}
	return nil
}

// scopedFind runs q limited to what the caller may see, and reports whether consent rules
// withheld some of its matches.
func (s *Service) scopedFind(ctx context.Context, q *Query) (*Page, bool, error) {
	gated, err := s.scopeQuery(ctx, q)
	if err != nil {
		return nil, false, err
	}
	page, err := s.Store.Search(ctx, q)
	if err != nil {
		return nil, false, err
	}
	withheld, err := s.withheld(ctx, *q, gated, int64(len(page.Resources)))
	return page, withheld, err
}

// included reads the resources that resources of inc.Source refer to through inc.Param.
func (s *Service) included(ctx context.Context, inc Include, from []*Resource) ([]*Resource, bool, error) {
	byType := map[string][]string{}
	for _, r := range from {
		if r.Type != inc.Source {
			continue
		}
		for _, ref := range s.references(r, inc.Param) {
			typ, id, _ := strings.Cut(ref, "/")
			if (inc.Target == "" || inc.Target == typ) && Supported(typ) && !slices.Contains(byType[typ], id) {
				byType[typ] = append(byType[typ], id)
			}
		}
	}
	var out []*Resource
	var withheld bool
	for _, typ := range sortedKeys(byType) {
		page, w, err := s.scopedFind(ctx, &Query{Type: typ, Clauses: []Clause{{IDs: byType[typ]}}, Count: len(byType[typ])})
		if err != nil {
			return nil, false, err
		}
		out = append(out, page.Resources...)
		withheld = withheld || w
	}
	return out, withheld, nil
}

// revIncluded finds resources of inc.Source that refer to the given ones through inc.Param.
func (s *Service) revIncluded(ctx context.Context, inc Include, to []*Resource) ([]*Resource, bool, error) {
	params := []string{inc.Param}
	if inc.Param == "*" {
		params = nil
		for _, p := range Params(inc.Source) {
			if p.Type == ParamReference {
				params = append(params, p.Name)
			}
		}
	}
	var keys []string
	for _, r := range to {
		if inc.Target != "" && r.Type != inc.Target {
			continue
		}
		for _, p := range params {
			keys = append(keys, RefKey(p, r.Type, r.ID))
		}
	}
	if len(keys) == 0 {
		return nil, false, nil
	}
	page, withheld, err := s.scopedFind(ctx, &Query{Type: inc.Source, Clauses: []Clause{{AnyKey: keys}}, Count: MaxIncluded + 1})
	if err != nil {
		return nil, false, err
	}
	if len(page.Resources) > MaxIncluded {
		return nil, false, Errorf(KindBadRequest, "_revinclude=%s:%s matches more than %d resources; use a smaller _count", inc.Source, inc.Param, MaxIncluded)
	}
	return page.Resources, withheld, nil
}

func sortedKeys(m map[string][]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Shape applies _elements and _summary (true, text, data) to one match (see ShapeResource).
func (sr *SearchRequest) Shape(raw []byte) []byte {
	return ShapeResource(raw, sr.Summary, sr.Elements)
}

// SystemSearch is a search across types (GET /fhir?_type=...): the same parameters are
// parsed for each type and the per-type pages are merged in (lastUpdated, type, id) order.
type SystemSearch struct {
	Types   []string
	PerType []*SearchRequest
	Applied url.Values
	Ignored []Issue
	Count   int
	After   *Cursor // ID holds "Type/id"
	Sort    Sort
}

// ParseSystemSearch parses a system-wide search. _type lists the types (all stored types
// when absent); every other parameter must be understood by each listed type in strict mode.
func ParseSystemSearch(params url.Values, base string, strict bool) (*SystemSearch, error) {
	ss := &SystemSearch{Applied: url.Values{}}
	if v := params.Get("_type"); v != "" {
		for _, t := range strings.Split(v, ",") {
			if !Supported(t) {
				return nil, Errorf(KindBadRequest, "_type names %q, which this server does not store", t)
			}
			if !slices.Contains(ss.Types, t) {
				ss.Types = append(ss.Types, t)
			}
		}
		ss.Applied.Set("_type", strings.Join(ss.Types, ","))
	} else {
		ss.Types = Types
	}
	rest := url.Values{}
	for k, v := range params {
		if k != "_type" && k != "_cursor" {
			rest[k] = v
		}
	}
	seen := map[string]bool{}
	for _, t := range ss.Types {
		sr, err := ParseSearch(t, rest, base, strict)
		if err != nil {
			return nil, err
		}
		if len(sr.Includes) > 0 {
			return nil, Errorf(KindBadRequest, "_include and _revinclude are not supported in system-wide searches")
		}
		for k, v := range sr.Applied {
			ss.Applied[k] = v
		}
		for _, is := range sr.Ignored {
			if !seen[is.Diagnostics] {
				seen[is.Diagnostics] = true
				ss.Ignored = append(ss.Ignored, is)
			}
		}
		ss.Count, ss.Sort = sr.Query.Count, sr.Query.Sort
		ss.PerType = append(ss.PerType, sr)
	}
	if v := params.Get("_cursor"); v != "" {
		c, err := DecodeSystemCursor(v)
		if err != nil {
			return nil, err
		}
		ss.After = c
	}
	return ss, nil
}

// Search runs a system-wide search.
func (s *Service) SearchSystem(ctx context.Context, ss *SystemSearch) (*Page, error) {
	first := ss.PerType[0] // result parameters are the same for every type
	countAll := first.Query.Total || first.CountOnly
	var all []*Resource
	var total int64
	var withheld bool
	for i, t := range ss.Types {
		if err := s.authorize(ctx, t, "search"); err != nil {
			return nil, err
		}
		q := ss.PerType[i].Query
		clauses, err := s.resolve(ctx, t, q.Clauses, 0)
		if err != nil {
			return nil, err
		}
		q.Clauses, q.Total = clauses, countAll
		q.After = typeCursor(ss.After, t, ss.Sort)
		q.Count = ss.Count + 1
		gated, err := s.scopeQuery(ctx, &q)
		if err != nil {
			return nil, err
		}
		if gated != nil {
			q.Total = true
		}
		p, err := s.Store.Search(ctx, &q)
		if err != nil {
			return nil, err
		}
		w, err := s.withheld(ctx, q, gated, p.Total)
		if err != nil {
			return nil, err
		}
		withheld = withheld || w
		total += p.Total
		all = append(all, p.Resources...)
	}
	page := &Page{Total: -1, Withheld: withheld}
	if first.CountOnly {
		page.Total = total
		return page, nil
	}
	order := func(a, b *Resource) int {
		if c := a.LastUpdated.Compare(b.LastUpdated); c != 0 {
			return c
		}
		return strings.Compare(a.Type+"/"+a.ID, b.Type+"/"+b.ID)
	}
	slices.SortFunc(all, func(a, b *Resource) int {
		if ss.Sort == SortLastUpdatedDesc {
			return order(b, a)
		}
		return order(a, b)
	})
	if len(all) > ss.Count {
		all = all[:ss.Count]
		last := all[len(all)-1]
		page.Next = &Cursor{LastUpdated: last.LastUpdated, ID: last.Type + "/" + last.ID}
	}
	page.Resources = all
	switch {
	case countAll:
		page.Total = total
	case !first.NoTotal && ss.After == nil && page.Next == nil:
		page.Total = int64(len(all))
	}
	return page, nil
}

// typeCursor turns a system cursor (lastUpdated, "Type/id") into the cursor for one type,
// ordering types by name within one instant.
func typeCursor(c *Cursor, typ string, sort Sort) *Cursor {
	if c == nil {
		return nil
	}
	ct, cid, _ := strings.Cut(c.ID, "/")
	after := typ > ct
	if sort == SortLastUpdatedDesc {
		after = typ < ct
	}
	switch {
	case typ == ct:
		return &Cursor{LastUpdated: c.LastUpdated, ID: cid}
	case after: // every resource of typ at this instant comes after the cursor
		if sort == SortLastUpdatedDesc {
			return &Cursor{LastUpdated: c.LastUpdated, ID: "\x7f"}
		}
		return &Cursor{LastUpdated: c.LastUpdated, ID: ""}
	default: // none of typ at this instant does
		if sort == SortLastUpdatedDesc {
			return &Cursor{LastUpdated: c.LastUpdated, ID: ""}
		}
		return &Cursor{LastUpdated: c.LastUpdated, ID: "\x7f"}
	}
}

// DecodeSystemCursor reads the cursor of a system-wide search, whose id is "Type/id".
func DecodeSystemCursor(s string) (*Cursor, error) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, Errorf(KindBadRequest, "_cursor is not a cursor this server issued")
	}
	parts := strings.SplitN(string(raw), "|", 3)
	if len(parts) == 3 {
		if t, id, ok := strings.Cut(parts[2], "/"); ok && Supported(t) && ValidID(id) {
			c, err := DecodeCursor(base64.RawURLEncoding.EncodeToString([]byte(parts[0] + "|" + parts[1] + "|" + id)))
			if err == nil {
				c.ID = t + "/" + id
				return c, nil
			}
		}
	}
	return nil, Errorf(KindBadRequest, "_cursor is not a cursor this server issued")
}

// decodeFields decodes the parts of r that the reference parameter param reads: only the
// top-level elements its paths start at ("*": the whole resource). Access-set resolution
// (tenancy.go) reads one reference of thousands of resources; decoding each whole costs
// several times more.
func decodeFields(r *Resource, param string) map[string]any {
	var fields []string
	if param != "*" {
		fields = paramFields(r.Type, func(p Param) bool { return p.Type == ParamReference && p.Name == param })
	}
	if len(fields) == 0 {
		dec := json.NewDecoder(bytes.NewReader(r.JSON))
		dec.UseNumber()
		var doc map[string]any
		if dec.Decode(&doc) != nil {
			return nil
		}
		return doc
	}
	doc, _ := decodeTop(r.JSON, fields)
	return doc
}
