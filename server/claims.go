package server

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/calaimfhir/calaimfhir/internal/auth"
	"github.com/calaimfhir/calaimfhir/internal/claims"
	"github.com/calaimfhir/calaimfhir/resources"
)

// Claim operations (issue 8): POST /fhir/Claim/$submit checks and stores claims and answers
// with ClaimResponses; GET /fhir/Claim/$export-invoice and POST /fhir/Claim/$export-837p
// write what CBOs without 837 capability need. The checks live in internal/claims; this
// file looks things up for them, stores, and encodes.

const (
	// maxClaimsPerSubmission bounds one $submit.
	maxClaimsPerSubmission = 20000
	// submitMinBodyBytes: claim Bundles are large by nature (10,000 claims are ~15 MB), so
	// $submit reads at least this much whatever --max-body-bytes says.
	submitMinBodyBytes = 64 << 20
	// claimsPerTransaction: accepted claims are stored in transactions of this many
	// (Claim + ClaimResponse each), bounded by the Bundle entry limit.
	claimsPerTransaction = 100
	// maxSubmitPasses bounds how often claims that lost a race with a concurrent
	// submission are checked again.
	maxSubmitPasses = 3
)

// claimRules holds a replacement catalog per server (SetClaimsCatalog); servers without one
// use the embedded catalog.
var (
	claimRules   sync.Map // *Server → *claims.Rules
	defaultRules = sync.OnceValue(claims.DefaultRules)
)

// SetClaimsCatalog replaces the CalAIM service catalog the claim checks use with the one in
// path (the format of internal/claims/catalog.json); "" keeps the embedded one.
func (s *Server) SetClaimsCatalog(path string) error {
	if path == "" {
		claimRules.Delete(s)
		return nil
	}
	r, err := claims.LoadRules(path)
	if err != nil {
		return err
	}
	claimRules.Store(s, r)
	return nil
}

func (s *Server) claimChecker() *claims.Checker {
	if r, ok := claimRules.Load(s); ok {
		return &claims.Checker{Codes: r.(*claims.Rules)}
	}
	return &claims.Checker{Codes: defaultRules()}
}

// submitClaims is POST /fhir/Claim/$submit: one Claim, or a batch or collection Bundle of
// Claims. The answer is a batch-response Bundle with one entry per claim, in order, each
// holding its ClaimResponse.
func (s *Server) submitClaims(c echo.Context) error {
	ctx := c.Request().Context()
	for _, typ := range []string{"Claim", "ClaimResponse"} {
		if err := s.allowed(ctx, typ, auth.Create); err != nil {
			return err
		}
	}
	body, err := s.readClaimsBody(c)
	if err != nil {
		return err
	}
	bodies, err := claimBodies(body)
	if err != nil {
		return err
	}
	submitter, ownOnly := "", false
	if caller, ok := auth.CallerFrom(ctx); ok {
		submitter, ownOnly = caller.Org, caller.Role == auth.RoleCBO
	}
	subs := make([]claims.Submission, len(bodies))
	for i, b := range bodies {
		subs[i] = claims.Submission{Body: b, Submitter: submitter, OwnClaimsOnly: ownOnly}
	}
	entries, err := s.processClaims(ctx, subs)
	if err != nil {
		return err
	}
	b := newBundle("batch-response", -1, nil)
	for _, e := range entries {
		response := map[string]any{"status": strconv.Itoa(e.status) + " " + http.StatusText(e.status)}
		if e.location != "" {
			response["location"] = s.cfg.BaseURL + "/" + e.location
		}
		if len(e.outcome) > 0 {
			response["outcome"] = json.RawMessage(outcomeJSON(e.outcome))
		}
		if e.fullURL != "" {
			b.entry("fullUrl", e.fullURL, "resource", e.resource, "response", response)
		} else {
			b.entry("resource", e.resource, "response", response)
		}
	}
	return c.Blob(http.StatusOK, fhirJSON, b.bytes())
}

// readClaimsBody reads a JSON body with the $submit size limit (readResourceBody on a copy
// of the server whose limit is raised; it reads nothing else of it).
func (s *Server) readClaimsBody(c echo.Context) ([]byte, error) {
	cfg := s.cfg
	cfg.MaxBodyBytes = max(cfg.MaxBodyBytes, submitMinBodyBytes)
	return (&Server{cfg: cfg}).readResourceBody(c)
}

// claimBodies splits the request into claim bodies: a Claim, or the entries of a batch or
// collection Bundle (an entry without a resource gives an empty body, answered as
// claim-invalid).
func claimBodies(body []byte) ([][]byte, error) {
	var probe struct {
		ResourceType string          `json:"resourceType"`
		Type         json.RawMessage `json:"type"` // a code in a Bundle, a CodeableConcept in a Claim
		Entry        json.RawMessage `json:"entry"`
	}
	if err := json.Unmarshal(body, &probe); err != nil {
		return nil, resources.Wrap(resources.KindBadRequest, err, "the body is not a JSON Claim or Bundle")
	}
	switch probe.ResourceType {
	case "Claim":
		return [][]byte{body}, nil
	case "Bundle":
	default:
		return nil, resources.Errorf(resources.KindBadRequest, "$submit takes a Claim or a Bundle of Claims, not %q", probe.ResourceType)
	}
	var typ string
	json.Unmarshal(probe.Type, &typ)
	if typ != "batch" && typ != "collection" {
		return nil, resources.Errorf(resources.KindBadRequest, "$submit takes a batch or collection Bundle, not %q", typ)
	}
	var entries []struct {
		Resource json.RawMessage `json:"resource"`
	}
	if len(probe.Entry) > 0 {
		if err := json.Unmarshal(probe.Entry, &entries); err != nil {
			return nil, resources.Wrap(resources.KindBadRequest, err, "Bundle.entry must be an array of entries")
		}
	}
	if len(entries) == 0 {
		return nil, resources.Errorf(resources.KindBadRequest, "the Bundle holds no claims")
	}
	if len(entries) > maxClaimsPerSubmission {
		return nil, resources.Errorf(resources.KindTooLarge, "the Bundle holds %d claims; the limit is %d per submission", len(entries), maxClaimsPerSubmission)
	}
	out := make([][]byte, len(entries))
	for i, e := range entries {
		out[i] = e.Resource
	}
	return out, nil
}

// claimEntry is one entry of the $submit answer.
type claimEntry struct {
	status   int
	fullURL  string
	location string
	resource []byte
	outcome  []resources.Issue
}

// processClaims checks every claim (lookups batched over the whole submission), stores the
// checked claims with their ClaimResponses, and checks again the few that lost a race with
// a concurrent submission of the same claim or item.
func (s *Server) processClaims(ctx context.Context, subs []claims.Submission) ([]*claimEntry, error) {
	entries := make([]*claimEntry, len(subs))
	for i := range entries {
		entries[i] = &claimEntry{}
	}
	todo := make([]int, len(subs))
	for i := range todo {
		todo[i] = i
	}
	ck := s.claimChecker()
	lk := &claimLookup{s: s}
	for pass := 0; pass < maxSubmitPasses && len(todo) > 0; pass++ {
		batch := make([]claims.Submission, len(todo))
		for j, i := range todo {
			batch[j] = subs[i]
		}
		results, err := ck.Check(ctx, lk, batch)
		if err != nil {
			return nil, err
		}
		var retry []int
		var store []int // positions in todo/results
		for j, r := range results {
			e := entries[todo[j]]
			switch {
			case r.Replay != nil:
				e.setReplay(s, r.Replay)
			case r.Claim == nil:
				e.status = http.StatusUnprocessableEntity
				e.resource = mustJSON(claims.Response(r, time.Now()))
				e.outcome = []resources.Issue{{Severity: resources.SeverityError, Code: resources.IssueInvalid, Diagnostics: r.Problems[0].Message}}
			default:
				store = append(store, j)
			}
		}
		for start := 0; start < len(store); start += s.claimsPerTx() {
			chunk := store[start:min(start+s.claimsPerTx(), len(store))]
			again, err := s.storeClaims(ctx, results, chunk, todo, entries)
			if err != nil {
				return nil, err
			}
			retry = append(retry, again...)
		}
		todo = retry
	}
	for _, i := range todo {
		e := entries[i]
		e.status = http.StatusConflict
		e.resource = nil
		e.outcome = []resources.Issue{{Severity: resources.SeverityError, Code: resources.IssueConflict,
			Diagnostics: "the claim kept colliding with concurrent submissions of the same claim or items; send it again"}}
	}
	for _, e := range entries {
		if e.resource == nil {
			e.resource = []byte(`{"resourceType":"ClaimResponse","status":"active","use":"claim","outcome":"error"}`)
		}
	}
	return entries, nil
}

func (s *Server) claimsPerTx() int {
	limit := s.svc.MaxBundleEntries
	if limit <= 0 {
		limit = resources.DefaultMaxBundleEntries
	}
	return max(1, min(claimsPerTransaction, limit/2))
}

func (e *claimEntry) setReplay(s *Server, cr json.RawMessage) {
	var probe struct{ ID string }
	json.Unmarshal(cr, &probe)
	e.status = http.StatusOK
	e.resource = cr
	e.fullURL = s.cfg.BaseURL + "/ClaimResponse/" + probe.ID
	e.location = "ClaimResponse/" + probe.ID
	e.outcome = []resources.Issue{{Severity: resources.SeverityInformation, Code: resources.IssueInformational,
		Diagnostics: "this claim was accepted before under the same identifier: the original ClaimResponse is returned and nothing was stored"}}
}

// storeClaims writes the claims of chunk (positions into results and todo) in one
// transaction, falling back to one transaction per claim when it fails. It returns the
// submission indices to check again.
func (s *Server) storeClaims(ctx context.Context, results []*claims.Result, chunk, todo []int, entries []*claimEntry) ([]int, error) {
	now := time.Now()
	tx, err := claimTransaction(results, chunk, now)
	if err != nil {
		return nil, err
	}
	// The server writes as itself: the ClaimResponse is its own adjudication (a CBO may not
	// create one), and the claim was checked above, billing provider included. The caller's
	// scopes still apply to each entry, and both resources get the caller's tenant tag, so
	// the submitter sees them afterwards.
	res, err := s.svc.ProcessBundle(resources.AsSystem(ctx), tx, resources.BundleOptions{})
	if err == nil {
		return s.recordStored(results, chunk, todo, entries, res), nil
	}
	if len(chunk) == 1 {
		return s.recordFailure(results[chunk[0]], todo[chunk[0]], entries, err)
	}
	if k := resources.KindOf(err); k == resources.KindUnavailable || k == resources.KindInternal || k == resources.KindForbidden {
		return nil, err
	}
	var retry []int
	for _, j := range chunk {
		again, err := s.storeClaims(ctx, results, []int{j}, todo, entries)
		if err != nil {
			return nil, err
		}
		retry = append(retry, again...)
	}
	return retry, nil
}

// recordFailure handles a claim the service would not store alone: conflicts (a concurrent
// submission) are checked again; a claim refused as invalid is answered with its reasons.
func (s *Server) recordFailure(r *claims.Result, index int, entries []*claimEntry, err error) ([]int, error) {
	switch resources.KindOf(err) {
	case resources.KindConflict, resources.KindPreconditionFailed:
		return []int{index}, nil
	case resources.KindUnprocessable, resources.KindBadRequest, resources.KindNotFound:
	default:
		return nil, err
	}
	explained := false
	for _, p := range r.Problems {
		if p.Code == claims.PatientNotFound || p.Code == claims.CoverageNotFound {
			explained = true
		}
	}
	if !explained {
		r.Problems = append(r.Problems, &claims.Problem{Code: claims.ClaimInvalid, Message: "the claim is not valid FHIR R4: see the outcome of this entry"})
	}
	r.Outcome = "error"
	r.Identifiers, r.ConditionalKeys = nil, nil
	e := entries[index]
	e.status = http.StatusUnprocessableEntity
	e.resource = mustJSON(claims.Response(r, time.Now()))
	var re *resources.Error
	if asErr(err, &re) {
		e.outcome = re.OutcomeIssues()
	}
	return nil, nil
}

func asErr(err error, target **resources.Error) bool {
	e, ok := err.(*resources.Error)
	if ok {
		*target = e
	}
	return ok
}

// recordStored reads the transaction's answer. A conditional create that matched instead
// of creating means a concurrent submission stored the same claim or item first: that claim
// is checked again (and then answered as a resubmission or a duplicate).
func (s *Server) recordStored(results []*claims.Result, chunk, todo []int, entries []*claimEntry, res *resources.BundleResult) []int {
	var retry []int
	for k, j := range chunk {
		claimRes, crRes := res.Entries[2*k], res.Entries[2*k+1]
		if claimRes.Status != http.StatusCreated || crRes.Status != http.StatusCreated {
			retry = append(retry, todo[j])
			continue
		}
		e := entries[todo[j]]
		var probe struct{ ID string }
		json.Unmarshal(crRes.Resource, &probe)
		e.status = http.StatusCreated
		e.resource = crRes.Resource
		e.fullURL = s.cfg.BaseURL + "/ClaimResponse/" + probe.ID
		e.location = crRes.Location
	}
	return retry
}

// claimTransaction builds the transaction storing each claim of chunk with its
// ClaimResponse. Accepted claims are conditional creates on their keys, so that no two
// accepted claims share an identifier (per submitter) or an item, even when submitted at
// the same moment.
func claimTransaction(results []*claims.Result, chunk []int, now time.Time) ([]byte, error) {
	type request struct {
		Method      string `json:"method"`
		URL         string `json:"url"`
		IfNoneExist string `json:"ifNoneExist,omitempty"`
	}
	type entry struct {
		FullURL  string          `json:"fullUrl"`
		Resource json.RawMessage `json:"resource"`
		Request  request         `json:"request"`
	}
	out := struct {
		ResourceType string  `json:"resourceType"`
		Type         string  `json:"type"`
		Entry        []entry `json:"entry"`
	}{ResourceType: "Bundle", Type: "transaction"}
	for _, j := range chunk {
		r := results[j]
		delete(r.Doc, "id")
		dropTenantTags(r.Doc)
		claimJSON, err := json.Marshal(r.Doc)
		if err != nil {
			return nil, resources.Wrap(resources.KindBadRequest, err, "the claim cannot be encoded")
		}
		placeholder := "urn:uuid:" + uuidOf(resources.NewID())
		cr := claims.Response(r, now)
		cr["request"] = map[string]any{"reference": placeholder}
		// The condition names the submission key only: one key is one index range scan,
		// where several ORed keys would scan every Claim (see the README).
		var claimCond, crCond string
		if k := submissionKey(r.ConditionalKeys); k != "" {
			claimCond = "_tag=" + url.QueryEscape(k)
			crCond = "identifier=" + url.QueryEscape(k)
		}
		out.Entry = append(out.Entry,
			entry{FullURL: placeholder, Resource: claimJSON, Request: request{Method: "POST", URL: "Claim", IfNoneExist: claimCond}},
			entry{FullURL: "urn:uuid:" + uuidOf(resources.NewID()), Resource: mustJSON(cr), Request: request{Method: "POST", URL: "ClaimResponse", IfNoneExist: crCond}})
	}
	return json.Marshal(out)
}

// dropTenantTags removes tenant tags the client sent: the claim is written by the server on
// its own behalf, which would keep them, and a client must not claim or disown a resource.
// The service adds the submitter's own tag.
func dropTenantTags(doc map[string]any) {
	meta, _ := doc["meta"].(map[string]any)
	tags, _ := meta["tag"].([]any)
	if tags == nil {
		return
	}
	kept := tags[:0]
	for _, tg := range tags {
		if m, _ := tg.(map[string]any); m == nil || m["system"] != resources.TenantTagSystem {
			kept = append(kept, tg)
		}
	}
	meta["tag"] = kept
	if len(kept) == 0 {
		delete(meta, "tag")
	}
}

func submissionKey(keys []string) string {
	for _, k := range keys {
		if strings.HasPrefix(k, claims.SubmissionKeySystem+"|") {
			return k
		}
	}
	return ""
}

// uuidOf formats 32 hex digits as a UUID.
func uuidOf(h string) string {
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only maps of JSON values reach here
	}
	return b
}

// claimLookup answers the checks' questions through the service, acting as the server
// itself (resources.AsSystem): a claim is checked against the member's Coverage and
// referrals whoever stored them. Nothing read this way is returned to the caller; only the
// ClaimResponses are.
type claimLookup struct{ s *Server }

func (l *claimLookup) Read(ctx context.Context, refs []string) (map[string]json.RawMessage, error) {
	ctx = resources.AsSystem(ctx)
	out := make(map[string]json.RawMessage, len(refs))
	for _, ref := range refs {
		typ, id, _ := strings.Cut(ref, "/")
		r, err := l.s.svc.Read(ctx, typ, id)
		switch {
		case err == nil:
			out[ref] = r.JSON
		case resources.IsKind(err, resources.KindNotFound), resources.IsKind(err, resources.KindGone):
		default:
			return nil, err
		}
	}
	return out, nil
}

func (l *claimLookup) OrganizationsByNPI(ctx context.Context, npis []string) (map[string]json.RawMessage, error) {
	values := make([]string, len(npis))
	for i, n := range npis {
		values[i] = claims.NPISystem + "|" + n
	}
	found, err := l.searchAll(resources.AsSystem(ctx), "Organization", "identifier", values)
	if err != nil {
		return nil, err
	}
	out := map[string]json.RawMessage{}
	for _, raw := range found {
		var org claims.Organization
		if json.Unmarshal(raw, &org) == nil {
			if npi := claims.NPI(org.Identifier); npi != "" {
				out[npi] = raw
			}
		}
	}
	return out, nil
}

func (l *claimLookup) Referrals(ctx context.Context, patients []string) ([]json.RawMessage, []json.RawMessage, error) {
	ctx = resources.AsSystem(ctx)
	srs, err := l.searchAll(ctx, "ServiceRequest", "subject", patients)
	if err != nil || len(srs) == 0 {
		return nil, nil, err
	}
	focus := make([]string, 0, len(srs))
	for _, raw := range srs {
		var probe struct{ ID string }
		json.Unmarshal(raw, &probe)
		focus = append(focus, "ServiceRequest/"+probe.ID)
	}
	tasks, err := l.searchAll(ctx, "Task", "focus", focus)
	return srs, tasks, err
}

func (l *claimLookup) Responses(ctx context.Context, identifiers []string) ([]json.RawMessage, error) {
	return l.searchAll(resources.AsSystem(ctx), "ClaimResponse", "identifier", identifiers)
}

// searchAll runs typ?param=value for each value and returns every match of every page. One
// search per value: a single key is an index range scan on both stores, where a
// comma-separated list scans every resource of the type on the embedded store.
func (l *claimLookup) searchAll(ctx context.Context, typ, param string, values []string) ([]json.RawMessage, error) {
	var out []json.RawMessage
	seen := map[string]bool{}
	for _, v := range values {
		found, err := searchPages(ctx, l.s, typ, url.Values{param: {v}})
		if err != nil {
			return nil, err
		}
		for _, raw := range found {
			// A resource matching several values is returned once.
			var probe struct{ ID string }
			json.Unmarshal(raw, &probe)
			if !seen[probe.ID] {
				seen[probe.ID] = true
				out = append(out, raw)
			}
		}
	}
	return out, nil
}

// searchPages runs a search and follows its pages.
func searchPages(ctx context.Context, s *Server, typ string, params url.Values) ([]json.RawMessage, error) {
	params.Set("_count", strconv.Itoa(resources.MaxCount))
	sr, err := resources.ParseSearch(typ, params, s.cfg.BaseURL, true)
	if err != nil {
		return nil, err
	}
	var out []json.RawMessage
	for {
		page, err := s.svc.Search(ctx, sr)
		if err != nil {
			return nil, err
		}
		for _, r := range page.Resources {
			out = append(out, r.JSON)
		}
		for _, r := range page.Included {
			out = append(out, r.JSON)
		}
		if page.Next == nil {
			return out, nil
		}
		sr.Query.After = page.Next
	}
}

// badRequest is a shorthand for the operations' input errors.
func badRequest(format string, args ...any) error {
	return resources.Errorf(resources.KindBadRequest, format, args...)
}
