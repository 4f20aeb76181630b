package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/calaimfhir/calaimfhir/internal/auth"
	"github.com/calaimfhir/calaimfhir/internal/claims"
	"github.com/calaimfhir/calaimfhir/resources"
)

// The exports read as the caller (no AsSystem): they return member details, so they see
// only what the caller may see, and need read scopes on everything they put in the file.

var exportReads = []string{"Patient", "Coverage", "Organization", "Practitioner"}

var npiPattern = regexp.MustCompile(`^[0-9]{10}$`)

// exportInvoice is GET /fhir/Claim/$export-invoice?provider=Organization/x|NPI&period=YYYY-MM:
// a CSV with one line per accepted item whose date of service is in the month.
func (s *Server) exportInvoice(c echo.Context) error {
	ctx := c.Request().Context()
	if err := s.exportAllowed(ctx, auth.Search); err != nil {
		return err
	}
	provider := strings.TrimPrefix(c.QueryParam("provider"), s.cfg.BaseURL+"/")
	period := c.QueryParam("period")
	from, err := time.Parse("2006-01", period)
	if err != nil {
		return badRequest("period must be a month, YYYY-MM")
	}
	to := from.AddDate(0, 1, 0)
	var queries []url.Values
	switch {
	case npiPattern.MatchString(provider):
		queries = append(queries, url.Values{"provider:identifier": {claims.NPISystem + "|" + provider}})
		orgs, err := searchPages(ctx, s, "Organization", url.Values{"identifier": {claims.NPISystem + "|" + provider}})
		if err != nil {
			return err
		}
		for _, raw := range orgs {
			var o claims.Organization
			json.Unmarshal(raw, &o)
			queries = append(queries, url.Values{"provider": {"Organization/" + o.ID}})
		}
	case strings.HasPrefix(provider, "Organization/") && resources.ValidID(strings.TrimPrefix(provider, "Organization/")):
		queries = append(queries, url.Values{"provider": {provider}})
	default:
		return badRequest("provider must be Organization/<id> or a 10-digit NPI")
	}
	r := &exportReader{s: s, ctx: ctx}
	var lines []claims.InvoiceLine
	seen := map[string]bool{}
	for _, q := range queries {
		q.Set("_revinclude", "ClaimResponse:request")
		found, err := searchPages(ctx, s, "Claim", q)
		if err != nil {
			return err
		}
		responses := latestResponses(found)
		for _, raw := range found {
			var cl claims.Claim
			if json.Unmarshal(raw, &cl) != nil || cl.ResourceType != "Claim" || seen[cl.ID] {
				continue
			}
			seen[cl.ID] = true
			cr := responses["Claim/"+cl.ID]
			if cr == nil {
				continue
			}
			p, cov, err := r.member(&cl)
			if err != nil {
				return err
			}
			lines = append(lines, claims.InvoiceLines(&cl, cr, p, cov, r.person, from, to)...)
		}
	}
	claims.SortInvoice(lines)
	var buf bytes.Buffer
	if err := claims.WriteInvoice(&buf, lines); err != nil {
		return err
	}
	c.Response().Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="invoice-%s.csv"`, from.Format("2006-01")))
	return c.Blob(http.StatusOK, "text/csv; charset=utf-8", buf.Bytes())
}

// export837 is POST /fhir/Claim/$export-837p with a Parameters resource: one or more
// "claim" (valueReference Claim/id), optional "controlNumber" (valuePositiveInt) and
// "production" (valueBoolean; test files by default). The answer is the X12 text.
func (s *Server) export837(c echo.Context) error {
	ctx := c.Request().Context()
	if err := s.exportAllowed(ctx, auth.Read); err != nil {
		return err
	}
	body, err := s.readResourceBody(c)
	if err != nil {
		return err
	}
	var params struct {
		ResourceType string `json:"resourceType"`
		Parameter    []struct {
			Name             string            `json:"name"`
			ValueReference   *claims.Reference `json:"valueReference"`
			ValuePositiveInt *int              `json:"valuePositiveInt"`
			ValueInteger     *int              `json:"valueInteger"`
			ValueBoolean     *bool             `json:"valueBoolean"`
		} `json:"parameter"`
	}
	if err := json.Unmarshal(body, &params); err != nil || params.ResourceType != "Parameters" {
		return badRequest("send a Parameters resource with one or more claim parameters (valueReference Claim/id)")
	}
	ic := claims.Interchange{At: time.Now(), Control: int(time.Now().Unix() % 1000000000)}
	var refs []string
	for _, p := range params.Parameter {
		switch p.Name {
		case "claim":
			if p.ValueReference == nil {
				return badRequest("parameter claim needs a valueReference")
			}
			ref := strings.TrimPrefix(p.ValueReference.Reference, s.cfg.BaseURL+"/")
			if !strings.HasPrefix(ref, "Claim/") || !resources.ValidID(strings.TrimPrefix(ref, "Claim/")) {
				return badRequest("parameter claim must refer to Claim/<id>")
			}
			refs = append(refs, ref)
		case "controlNumber":
			n := p.ValuePositiveInt
			if n == nil {
				n = p.ValueInteger
			}
			if n == nil || *n < 1 || *n > 999999999 {
				return badRequest("controlNumber must be 1..999999999")
			}
			ic.Control = *n
		case "production":
			ic.Production = p.ValueBoolean != nil && *p.ValueBoolean
		default:
			return badRequest("unknown parameter %q: use claim, controlNumber or production", p.Name)
		}
	}
	if len(refs) == 0 {
		return badRequest("give at least one claim parameter")
	}
	if len(refs) > 5000 {
		return resources.Errorf(resources.KindTooLarge, "at most 5000 claims per file")
	}
	r := &exportReader{s: s, ctx: ctx}
	for _, ref := range refs {
		cl837, payer, err := r.claim837(ref)
		if err != nil {
			return err
		}
		if len(ic.Claims) == 0 {
			ic.Sender, ic.Receiver = cl837.Billing, payer
		} else if payer.ID != ic.Receiver.ID {
			return resources.Errorf(resources.KindUnprocessable, "%s is for payer %s, the others for %s: export the claims of one payer per file", ref, payer.ID, ic.Receiver.ID)
		}
		ic.Claims = append(ic.Claims, cl837)
	}
	var buf bytes.Buffer
	if err := claims.Write837(&buf, ic); err != nil {
		return resources.Wrap(resources.KindUnprocessable, err, err.Error())
	}
	c.Response().Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="837p-%09d.x12"`, ic.Control))
	return c.Blob(http.StatusOK, "application/EDI-X12", buf.Bytes())
}

// exportAllowed checks the caller's scopes: Claim (search or read), ClaimResponse search,
// and read on what the files show.
func (s *Server) exportAllowed(ctx context.Context, claimIn auth.Interaction) error {
	if err := s.allowed(ctx, "Claim", claimIn); err != nil {
		return err
	}
	if err := s.allowed(ctx, "ClaimResponse", auth.Search); err != nil {
		return err
	}
	for _, t := range exportReads {
		if err := s.allowed(ctx, t, auth.Read); err != nil {
			return err
		}
	}
	return nil
}

// latestResponses picks, per Claim, its most recent ClaimResponse among found.
func latestResponses(found []json.RawMessage) map[string]*claims.ResponseView {
	out := map[string]*claims.ResponseView{}
	for _, raw := range found {
		var v claims.ResponseView
		if json.Unmarshal(raw, &v) != nil || v.Request == nil || v.Outcome == "" {
			continue
		}
		ref := v.Request.Reference
		if i := strings.LastIndex(ref, "Claim/"); i >= 0 {
			ref = ref[i:]
		}
		if old := out[ref]; old == nil || lastUpdated(&v) > lastUpdated(old) {
			out[ref] = &v
		}
	}
	return out
}

func lastUpdated(v *claims.ResponseView) string {
	if v.Meta == nil {
		return ""
	}
	return v.Meta.LastUpdated
}

// exportReader reads, as the caller, what the export files show; reads are cached.
type exportReader struct {
	s     *Server
	ctx   context.Context
	cache map[string]json.RawMessage
}

// read returns the resource, or nil when it is absent or deleted.
func (r *exportReader) read(ref string) (json.RawMessage, error) {
	if r.cache == nil {
		r.cache = map[string]json.RawMessage{}
	}
	if raw, ok := r.cache[ref]; ok {
		return raw, nil
	}
	typ, id, _ := strings.Cut(ref, "/")
	res, err := r.s.svc.Read(r.ctx, typ, id)
	switch {
	case err == nil:
		r.cache[ref] = res.JSON
		return res.JSON, nil
	case resources.IsKind(err, resources.KindNotFound), resources.IsKind(err, resources.KindGone):
		r.cache[ref] = nil
		return nil, nil
	}
	return nil, err
}

func (r *exportReader) decode(ref string, v any) (bool, error) {
	raw, err := r.read(ref)
	if err != nil || raw == nil {
		return false, err
	}
	return json.Unmarshal(raw, v) == nil, nil
}

func localRef(ref, typ string) string {
	if i := strings.LastIndex(ref, typ+"/"); i >= 0 {
		id := ref[i+len(typ)+1:]
		if resources.ValidID(id) {
			return typ + "/" + id
		}
	}
	return ""
}

// member returns the claim's Patient and focal Coverage (nil when not readable).
func (r *exportReader) member(cl *claims.Claim) (*claims.Patient, *claims.Coverage, error) {
	var p claims.Patient
	var cov claims.Coverage
	var pp *claims.Patient
	var cp *claims.Coverage
	if ref := localRef(cl.PatientRef(), "Patient"); ref != "" {
		ok, err := r.decode(ref, &p)
		if err != nil {
			return nil, nil, err
		}
		if ok {
			pp = &p
		}
	}
	covRef, _ := cl.FocalCoverage()
	if ref := localRef(covRef, "Coverage"); ref != "" {
		ok, err := r.decode(ref, &cov)
		if err != nil {
			return nil, nil, err
		}
		if ok {
			cp = &cov
		}
	}
	return pp, cp, nil
}

// person resolves a careTeam Practitioner to its name and NPI.
func (r *exportReader) person(ref *claims.Reference) *claims.Person {
	pr := localRef(ref.Reference, "Practitioner")
	if pr == "" {
		return nil
	}
	var p claims.Practitioner
	if ok, err := r.decode(pr, &p); err != nil || !ok {
		return nil
	}
	out := &claims.Person{ID: claims.NPI(p.Identifier)}
	if len(p.Name) > 0 {
		out.Family, out.Given = p.Name[0].Family, strings.Join(p.Name[0].Given, " ")
	}
	return out
}

// claim837 reads a claim, its latest ClaimResponse and the resources it refers to, and maps
// them for the 837P; it also returns the payer (the interchange's receiver).
func (r *exportReader) claim837(ref string) (claims.Claim837, claims.Party, error) {
	fail := func(format string, args ...any) (claims.Claim837, claims.Party, error) {
		return claims.Claim837{}, claims.Party{}, resources.Errorf(resources.KindUnprocessable, "%s: "+format, append([]any{ref}, args...)...)
	}
	var cl claims.Claim
	ok, err := r.decode(ref, &cl)
	if err != nil {
		return claims.Claim837{}, claims.Party{}, err
	}
	if !ok {
		return claims.Claim837{}, claims.Party{}, resources.Errorf(resources.KindNotFound, "%s is not known", ref)
	}
	found, err := searchPages(r.ctx, r.s, "ClaimResponse", url.Values{"request": {ref}})
	if err != nil {
		return claims.Claim837{}, claims.Party{}, err
	}
	cr := latestResponses(found)[ref]
	if cr == nil {
		return fail("the claim has no ClaimResponse: submit it with $submit first")
	}
	p, cov, err := r.member(&cl)
	if err != nil {
		return claims.Claim837{}, claims.Party{}, err
	}
	var billing, payer claims.Organization
	var bp, pp *claims.Organization
	if cl.Provider != nil {
		if or := localRef(cl.Provider.Reference, "Organization"); or != "" {
			if ok, err := r.decode(or, &billing); err != nil {
				return claims.Claim837{}, claims.Party{}, err
			} else if ok {
				bp = &billing
			}
		} else if cl.Provider.Identifier != nil {
			billing = claims.Organization{Name: cl.Provider.Display, Identifier: []claims.Identifier{*cl.Provider.Identifier}}
			bp = &billing
		}
	}
	payerRef := ""
	if cl.Insurer != nil {
		payerRef = cl.Insurer.Reference
	} else if cov != nil && len(cov.Payor) > 0 {
		payerRef = cov.Payor[0].Reference
	}
	if or := localRef(payerRef, "Organization"); or != "" {
		if ok, err := r.decode(or, &payer); err != nil {
			return claims.Claim837{}, claims.Party{}, err
		} else if ok {
			pp = &payer
		}
	}
	out, err := claims.Build837(&cl, cr, p, cov, bp, pp, r.person)
	if err != nil {
		return fail("%v", err)
	}
	return out, out.Payer, nil
}
