package server

import (
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/calaimfhir/calaimfhir/resources"
)

// One handler per interaction: decode the request, call the service, encode the answer.

func (s *Server) create(c echo.Context) error {
	typ, err := supportedType(c)
	if err != nil {
		return err
	}
	body, err := s.readResourceBody(c)
	if err != nil {
		return err
	}
	res, created, err := s.svc.Create(c.Request().Context(), typ, body, c.Request().Header.Get("If-None-Exist"))
	if err != nil {
		return err
	}
	return s.respondResource(c, writeStatus(created), res, created)
}

func (s *Server) update(c echo.Context) error {
	typ, err := supportedType(c)
	if err != nil {
		return err
	}
	ifMatch, err := parseIfMatch(c)
	if err != nil {
		return err
	}
	body, err := s.readResourceBody(c)
	if err != nil {
		return err
	}
	res, created, err := s.svc.Update(c.Request().Context(), typ, c.Param("id"), body, ifMatch)
	if err != nil {
		return err
	}
	return s.respondResource(c, writeStatus(created), res, created)
}

func (s *Server) delete(c echo.Context) error {
	typ, err := supportedType(c)
	if err != nil {
		return err
	}
	ifMatch, err := parseIfMatch(c)
	if err != nil {
		return err
	}
	cascade := c.QueryParam("_cascade") == "delete"
	res, err := s.svc.Delete(c.Request().Context(), typ, c.Param("id"), ifMatch, cascade)
	if err != nil {
		return err
	}
	setVersionHeaders(c, res)
	return c.NoContent(http.StatusNoContent)
}

func (s *Server) read(c echo.Context) error {
	res, err := s.svc.Read(c.Request().Context(), c.Param("type"), c.Param("id"))
	if err != nil {
		return err
	}
	if inm := c.Request().Header.Get("If-None-Match"); inm != "" && inm == etag(res) {
		setVersionHeaders(c, res)
		return c.NoContent(http.StatusNotModified)
	}
	body, err := shapeRead(c, res.JSON) // summary.go: _summary, _elements
	if err != nil {
		return err
	}
	setVersionHeaders(c, res)
	return c.Blob(http.StatusOK, fhirJSON, body)
}

func (s *Server) vread(c echo.Context) error {
	res, err := s.svc.VRead(c.Request().Context(), c.Param("type"), c.Param("id"), c.Param("vid"))
	if err != nil {
		return err
	}
	body, err := shapeRead(c, res.JSON)
	if err != nil {
		return err
	}
	setVersionHeaders(c, res)
	return c.Blob(http.StatusOK, fhirJSON, body)
}

func (s *Server) search(c echo.Context) error {
	return s.runSearch(c, c.QueryParams())
}

// searchPost is POST /fhir/Type/_search: form-encoded parameters in the body, possibly more
// in the URL; the answer is the same as for GET with all of them.
func (s *Server) searchPost(c echo.Context) error {
	if _, err := supportedType(c); err != nil {
		return err
	}
	params := c.QueryParams()
	ct := c.Request().Header.Get(echo.HeaderContentType)
	if c.Request().ContentLength != 0 {
		if !strings.HasPrefix(strings.ToLower(ct), "application/x-www-form-urlencoded") {
			return resources.Errorf(resources.KindUnsupportedMediaType, "send search parameters as application/x-www-form-urlencoded")
		}
		body, err := s.readBody(c)
		if err != nil {
			return err
		}
		form, perr := url.ParseQuery(string(body))
		if perr != nil {
			return resources.Wrap(resources.KindBadRequest, perr, "the form body is not valid")
		}
		for k, vs := range form {
			for _, v := range vs {
				params.Add(k, v)
			}
		}
	}
	return s.runSearch(c, params)
}

func (s *Server) runSearch(c echo.Context, params url.Values) error {
	typ, err := supportedType(c)
	if err != nil {
		return err
	}
	sr, err := resources.ParseSearch(typ, params, s.cfg.BaseURL, preferStrict(c))
	if err != nil {
		return err
	}
	page, err := s.svc.Search(c.Request().Context(), sr)
	if err != nil {
		return err
	}
	return c.Blob(http.StatusOK, fhirJSON, s.searchBundle(typ, sr, page))
}

// bundle is POST /fhir: a transaction or batch Bundle.
func (s *Server) bundle(c echo.Context) error {
	body, err := s.readResourceBody(c)
	if err != nil {
		return err
	}
	opts := resources.BundleOptions{SkipUnsupported: preferences(c)["handling"] == "lenient"}
	res, err := s.svc.ProcessBundle(c.Request().Context(), body, opts)
	if err != nil {
		return err
	}
	noteSubtype(c, strings.TrimSuffix(res.Type, "-response"))
	return c.Blob(http.StatusOK, fhirJSON, s.bundleResponse(res))
}

// conditionalUpdate is PUT /fhir/Type?search.
func (s *Server) conditionalUpdate(c echo.Context) error {
	typ, err := supportedType(c)
	if err != nil {
		return err
	}
	query := c.Request().URL.RawQuery
	if query == "" {
		return resources.Errorf(resources.KindMethodNotAllowed, "PUT needs an id (Type/id) or a search (Type?identifier=...)")
	}
	body, err := s.readResourceBody(c)
	if err != nil {
		return err
	}
	res, created, err := s.svc.ConditionalUpdate(c.Request().Context(), typ, query, body)
	if err != nil {
		return err
	}
	return s.respondResource(c, writeStatus(created), res, created)
}

// conditionalDelete is DELETE /fhir/Type?search.
func (s *Server) conditionalDelete(c echo.Context) error {
	typ, err := supportedType(c)
	if err != nil {
		return err
	}
	query := c.Request().URL.RawQuery
	if query == "" {
		return resources.Errorf(resources.KindMethodNotAllowed, "DELETE needs an id (Type/id) or a search (Type?identifier=...)")
	}
	if _, err := s.svc.ConditionalDelete(c.Request().Context(), typ, query); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// patch is PATCH /fhir/Type/id (or /fhir/Type?search): a JSON Patch
// (application/json-patch+json) or a FHIRPath Patch (a Parameters resource).
func (s *Server) patch(c echo.Context) error {
	typ, err := supportedType(c)
	if err != nil {
		return err
	}
	ifMatch, err := parseIfMatch(c)
	if err != nil {
		return err
	}
	ct := c.Request().Header.Get(echo.HeaderContentType)
	mt, _, _ := mime.ParseMediaType(ct)
	var format resources.PatchFormat
	switch {
	case mt == "application/json-patch+json":
		format = resources.JSONPatch
	case jsonTypes[mt]:
		format = resources.FHIRPathPatch
	default:
		return resources.Errorf(resources.KindUnsupportedMediaType, "send a JSON Patch (application/json-patch+json) or a FHIRPath Patch Parameters resource (application/fhir+json)")
	}
	body, err := s.readBody(c)
	if err != nil {
		return err
	}
	var res *resources.Resource
	if id := c.Param("id"); id != "" {
		res, err = s.svc.Patch(c.Request().Context(), typ, id, format, body, ifMatch)
	} else if q := c.Request().URL.RawQuery; q != "" {
		res, err = s.svc.ConditionalPatch(c.Request().Context(), typ, q, format, body)
	} else {
		return resources.Errorf(resources.KindMethodNotAllowed, "PATCH needs an id (Type/id) or a search (Type?identifier=...)")
	}
	if err != nil {
		return err
	}
	return s.respondResource(c, http.StatusOK, res, false)
}

// systemSearch is GET /fhir?_type=A,B&...: one search over several types.
func (s *Server) systemSearch(c echo.Context) error {
	ss, err := resources.ParseSystemSearch(c.QueryParams(), s.cfg.BaseURL, preferStrict(c))
	if err != nil {
		return err
	}
	page, err := s.svc.SearchSystem(c.Request().Context(), ss)
	if err != nil {
		return err
	}
	return c.Blob(http.StatusOK, fhirJSON, s.searchsetBundle(s.cfg.BaseURL, ss.Applied, ss.Ignored, ss.PerType[0].Shape, page))
}

func (s *Server) typeHistory(c echo.Context) error {
	typ, err := supportedType(c)
	if err != nil {
		return err
	}
	return s.history(c, typ, "")
}

func (s *Server) instanceHistory(c echo.Context) error {
	typ, err := supportedType(c)
	if err != nil {
		return err
	}
	return s.history(c, typ, c.Param("id"))
}

func (s *Server) history(c echo.Context, typ, id string) error {
	q, err := resources.ParseHistory(typ, id, c.QueryParams())
	if err != nil {
		return err
	}
	page, err := s.svc.History(c.Request().Context(), q)
	if err != nil {
		return err
	}
	return c.Blob(http.StatusOK, fhirJSON, s.historyBundle(q, c.QueryParams(), page))
}

func supportedType(c echo.Context) (string, error) {
	typ := c.Param("type")
	if !resources.Supported(typ) {
		return "", resources.Errorf(resources.KindNotFound, "resource type %q is not supported by this server", typ)
	}
	return typ, nil
}

// parseIfMatch reads If-Match: W/"3" or "3"; 0 when absent.
func parseIfMatch(c echo.Context) (int64, error) {
	return resources.ParseETag(c.Request().Header.Get("If-Match"))
}

// writeStatus is 201 for a write that created the resource, 200 otherwise (an update, or a
// conditional create that found its match).
func writeStatus(created bool) int {
	if created {
		return http.StatusCreated
	}
	return http.StatusOK
}

func etag(r *resources.Resource) string {
	return `W/"` + strconv.FormatInt(r.VersionID, 10) + `"`
}

func setVersionHeaders(c echo.Context, r *resources.Resource) {
	h := c.Response().Header()
	h.Set("ETag", etag(r))
	h.Set("Last-Modified", r.LastUpdated.UTC().Format(http.TimeFormat))
}

// preferences parses the Prefer header (RFC 7240) into name → value.
func preferences(c echo.Context) map[string]string {
	prefs := map[string]string{}
	for _, h := range c.Request().Header.Values("Prefer") {
		for _, p := range strings.Split(h, ",") {
			name, value, _ := strings.Cut(strings.TrimSpace(p), "=")
			prefs[strings.ToLower(strings.TrimSpace(name))] = strings.Trim(strings.TrimSpace(value), `"`)
		}
	}
	return prefs
}

func preferStrict(c echo.Context) bool { return preferences(c)["handling"] == "strict" }

// respondResource answers a write per Prefer: return=minimal (headers only),
// return=OperationOutcome, or the resource (the default).
func (s *Server) respondResource(c echo.Context, status int, r *resources.Resource, created bool) error {
	setVersionHeaders(c, r)
	if created || status == http.StatusCreated {
		c.Response().Header().Set(echo.HeaderLocation, s.cfg.BaseURL+"/"+r.Type+"/"+r.ID+"/_history/"+strconv.FormatInt(r.VersionID, 10))
	}
	switch preferences(c)["return"] {
	case "minimal":
		return c.NoContent(status)
	case "OperationOutcome":
		msg := r.Type + "/" + r.ID + " version " + strconv.FormatInt(r.VersionID, 10)
		if created {
			msg += " created"
		} else {
			msg += " stored"
		}
		return c.Blob(status, fhirJSON, outcomeJSON(append([]resources.Issue{{
			Severity: resources.SeverityInformation, Code: resources.IssueInformational, Diagnostics: msg}}, s.conf.warnings(c, r)...)))
	}
	return c.Blob(status, fhirJSON, r.JSON)
}
