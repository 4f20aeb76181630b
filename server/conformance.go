package server

// Conformance and terminology: the CalAIM StructureDefinitions, CodeSystems and ValueSets are
// served read-only from the embedded set (they are not among the stored types); the
// terminology operations ($expand, $validate-code, $lookup) and $validate run over them.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/calaimfhir/calaimfhir/profiles"
	"github.com/calaimfhir/calaimfhir/resources"
)

// conformance holds the profile engine, the base R4 validator and the types whose CalAIM
// profile a deployment requires.
type conformance struct {
	engine  *profiles.Engine
	base    resources.Validator
	require map[string]bool
	enforce resources.Validator
}

// newConformance wraps the base validator with profile enforcement (enforceProfiles).
// Config.RequireProfiles was checked by the caller (cmd validates the flag); an unknown type
// here is a programming error.
func newConformance(cfg Config, base resources.Validator) *conformance {
	e := cfg.Profiles
	if e == nil {
		e = profiles.Default()
	}
	enforce, err := enforceProfiles(e, base, cfg.RequireProfiles)
	if err != nil {
		panic(err)
	}
	c := &conformance{engine: e, base: base, require: map[string]bool{}, enforce: enforce}
	for _, t := range cfg.RequireProfiles {
		c.require[t] = true
	}
	return c
}

// enforceProfiles wraps base R4 validation with the CalAIM profiles for the write path: a
// resource that names CalAIM profiles in meta.profile is checked against each of them, and a
// resource whose type is in require is checked against its type's CalAIM profile whether it
// names it or not. Error-level issues make the write fail with KindUnprocessable (422) listing
// every issue; warnings do not stop it. It returns an error for a required type that has no
// CalAIM profile.
func enforceProfiles(e *profiles.Engine, base resources.Validator, require []string) (resources.Validator, error) {
	req := map[string]string{}
	for _, typ := range require {
		url, ok := e.ProfileFor(typ)
		if !ok {
			return nil, fmt.Errorf("no CalAIM profile for %s (profiles exist for %s)", typ, strings.Join(profiles.RequirableTypes, ", "))
		}
		req[typ] = url
	}
	return func(body []byte) (string, error) {
		typ, err := base(body)
		if err != nil {
			return typ, err
		}
		required := req[typ]
		if required == "" && !bytes.Contains(body, []byte(profiles.Base)) {
			return typ, nil // claims no CalAIM profile: nothing more to check
		}
		doc, err := profiles.Decode(body)
		if err != nil {
			return "", resources.Wrap(resources.KindBadRequest, err, "the body is not a JSON object")
		}
		var issues []profiles.Issue
		for _, url := range profiles.ApplicableDoc(doc, required) {
			issues = append(issues, e.ValidateDoc(context.Background(), doc, url)...)
		}
		if errs := profiles.Errors(issues); len(errs) > 0 {
			return "", &resources.Error{Kind: resources.KindUnprocessable,
				Message: fmt.Sprintf("the %s does not conform to its CalAIM profile", typ), Issues: profileIssues(errs)}
		}
		return typ, nil
	}, nil
}

// profileIssues turns profile issues into OperationOutcome issues.
func profileIssues(issues []profiles.Issue) []resources.Issue {
	out := make([]resources.Issue, 0, len(issues))
	for _, is := range issues {
		ri := resources.Issue{Severity: resources.Severity(is.Severity), Code: resources.IssueType(is.Code), Diagnostics: is.Diagnostics()}
		if is.Expression != "" {
			ri.Expression = []string{is.Expression}
		}
		out = append(out, ri)
	}
	return out
}

// warnings lists the warning-level issues of the CalAIM profiles that apply to a stored
// resource, for a write answered with Prefer: return=OperationOutcome (errors never get this
// far: they fail the write).
func (c *conformance) warnings(ec echo.Context, r *resources.Resource) []resources.Issue {
	required := ""
	if c.require[r.Type] {
		required, _ = c.engine.ProfileFor(r.Type)
	}
	var out []profiles.Issue
	for _, u := range c.engine.Applicable(r.JSON, r.Type, required) {
		for _, is := range c.engine.Validate(ec.Request().Context(), r.JSON, u) {
			if is.Severity == "warning" {
				out = append(out, is)
			}
		}
	}
	return profileIssues(out)
}

// conformanceRoutes adds the read-only definition endpoints and the operations.
func (s *Server) conformanceRoutes(f *echo.Group, guarded []echo.MiddlewareFunc) {
	for _, typ := range []string{"StructureDefinition", "CodeSystem", "ValueSet"} {
		f.GET("/"+typ, func(c echo.Context) error { return s.definitionSearch(c, typ) }, guarded...)
		f.GET("/"+typ+"/:id", func(c echo.Context) error { return s.definitionRead(c, typ) }, guarded...)
	}
	for _, m := range []string{http.MethodGet, http.MethodPost} {
		f.Add(m, "/ValueSet/$expand", s.expand, guarded...)
		f.Add(m, "/ValueSet/:id/$expand", s.expand, guarded...)
		f.Add(m, "/ValueSet/$validate-code", s.validateCode, guarded...)
		f.Add(m, "/ValueSet/:id/$validate-code", s.validateCode, guarded...)
		f.Add(m, "/CodeSystem/$lookup", s.lookup, guarded...)
	}
	f.POST("/:type/$validate", s.validateOp, guarded...)
	f.POST("/:type/:id/$validate", s.validateOp, guarded...)
}

type definition struct {
	typ, id, url string
	json         []byte
}

func (s *Server) definitions(typ string) []definition {
	var out []definition
	switch typ {
	case "StructureDefinition":
		for _, d := range s.conf.engine.Definitions() {
			out = append(out, definition{typ, d.ID, d.URL, d.JSON})
		}
	case "CodeSystem":
		for _, r := range s.conf.engine.Terminology().CodeSystems() {
			out = append(out, definition{typ, r.ID, r.URL, r.JSON})
		}
	case "ValueSet":
		for _, r := range s.conf.engine.Terminology().ValueSets() {
			out = append(out, definition{typ, r.ID, r.URL, r.JSON})
		}
	}
	return out
}

func (s *Server) definitionRead(c echo.Context, typ string) error {
	id := c.Param("id")
	for _, d := range s.definitions(typ) {
		if d.id == id {
			return c.Blob(http.StatusOK, fhirJSON, d.json)
		}
	}
	return resources.Errorf(resources.KindNotFound, "%s/%s is not known", typ, id)
}

// definitionSearch supports url (with an optional |version), _id and type (StructureDefinition).
func (s *Server) definitionSearch(c echo.Context, typ string) error {
	q := c.QueryParams()
	for name := range q {
		switch name {
		case "url", "_id", "_format":
		case "type":
			if typ != "StructureDefinition" {
				return resources.Errorf(resources.KindBadRequest, "search parameter type is supported on StructureDefinition only")
			}
		default:
			return resources.Errorf(resources.KindBadRequest, "search parameter %q is not supported on %s (supported: url, _id; type on StructureDefinition)", name, typ)
		}
	}
	var entries []map[string]any
	for _, d := range s.definitions(typ) {
		if u := q.Get("url"); u != "" {
			u, _, _ = strings.Cut(u, "|")
			if d.url != u {
				continue
			}
		}
		if id := q.Get("_id"); id != "" && d.id != id {
			continue
		}
		if t := q.Get("type"); t != "" && !bytes.Contains(d.json, []byte(`"type":"`+t+`"`)) {
			continue
		}
		entries = append(entries, map[string]any{
			"fullUrl":  s.cfg.BaseURL + "/" + typ + "/" + d.id,
			"resource": json.RawMessage(d.json),
			"search":   map[string]string{"mode": "match"},
		})
	}
	b, err := json.Marshal(map[string]any{
		"resourceType": "Bundle", "type": "searchset", "total": len(entries),
		"link":  []map[string]string{{"relation": "self", "url": s.cfg.BaseURL + "/" + typ + "?" + q.Encode()}},
		"entry": entries,
	})
	if err != nil {
		return resources.Wrap(resources.KindInternal, err, "encoding the search result failed")
	}
	return c.Blob(http.StatusOK, fhirJSON, b)
}

// opParams gathers an operation's input parameters: from the query string, and for POST from
// a Parameters body. Each name maps to its values (query strings as strings; Parameters
// values as the JSON value of value[x] or resource).
type opParams map[string][]any

func (s *Server) readParams(c echo.Context) (opParams, error) {
	p := opParams{}
	for k, vs := range c.QueryParams() {
		for _, v := range vs {
			p[k] = append(p[k], v)
		}
	}
	if c.Request().Method != http.MethodPost {
		return p, nil
	}
	body, err := s.readBody(c)
	if err != nil {
		return nil, err
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return p, nil
	}
	var params struct {
		ResourceType string           `json:"resourceType"`
		Parameter    []map[string]any `json:"parameter"`
	}
	if err := json.Unmarshal(body, &params); err != nil || params.ResourceType != "Parameters" {
		return nil, resources.Errorf(resources.KindBadRequest, "the body must be a Parameters resource")
	}
	for _, prm := range params.Parameter {
		name, _ := prm["name"].(string)
		if name == "" {
			return nil, resources.Errorf(resources.KindBadRequest, "a parameter has no name")
		}
		for k, v := range prm {
			if strings.HasPrefix(k, "value") || k == "resource" {
				p[name] = append(p[name], v)
			}
		}
	}
	return p, nil
}

// str returns a single string parameter ("" when absent); several values are an error.
func (p opParams) str(name string) (string, error) {
	vs := p[name]
	if len(vs) == 0 {
		return "", nil
	}
	if len(vs) > 1 {
		return "", resources.Errorf(resources.KindBadRequest, "parameter %s is given more than once", name)
	}
	s, ok := vs[0].(string)
	if !ok {
		return "", resources.Errorf(resources.KindBadRequest, "parameter %s must be a string, uri, code or date", name)
	}
	return s, nil
}

func (p opParams) date(name string) (time.Time, error) {
	s, err := p.str(name)
	if err != nil || s == "" {
		return time.Time{}, err
	}
	t, err := time.Parse("2006-01-02", s[:min(len(s), 10)])
	if err != nil {
		return time.Time{}, resources.Errorf(resources.KindBadRequest, "parameter %s must be a date (YYYY-MM-DD)", name)
	}
	return t, nil
}

// coding returns system and code from the system/code parameters or a coding parameter.
func (p opParams) coding() (system, code string, err error) {
	if system, err = p.str("system"); err != nil {
		return
	}
	if code, err = p.str("code"); err != nil {
		return
	}
	if vs := p["coding"]; len(vs) == 1 {
		m, ok := vs[0].(map[string]any)
		if !ok {
			return "", "", resources.Errorf(resources.KindBadRequest, "parameter coding must be a Coding")
		}
		system, _ = m["system"].(string)
		code, _ = m["code"].(string)
	}
	return system, code, nil
}

// valueSetURL is the value set an operation is about: the instance in the path or the url
// parameter.
func (s *Server) valueSetURL(c echo.Context, p opParams) (string, error) {
	if id := c.Param("id"); id != "" {
		for _, d := range s.definitions("ValueSet") {
			if d.id == id {
				return d.url, nil
			}
		}
		return "", resources.Errorf(resources.KindNotFound, "ValueSet/%s is not known", id)
	}
	u, err := p.str("url")
	if err != nil {
		return "", err
	}
	if u == "" {
		return "", resources.Errorf(resources.KindBadRequest, "parameter url (the value set's canonical URL) is required")
	}
	if !s.conf.engine.Terminology().HasValueSet(u) {
		return "", resources.Errorf(resources.KindNotFound, "value set %s is not known", u)
	}
	return u, nil
}

func paramsJSON(params ...map[string]any) []byte {
	b, _ := json.Marshal(map[string]any{"resourceType": "Parameters", "parameter": params})
	return b
}

// expand implements ValueSet/$expand with url, filter, date, offset and count.
func (s *Server) expand(c echo.Context) error {
	p, err := s.readParams(c)
	if err != nil {
		return err
	}
	vsURL, err := s.valueSetURL(c, p)
	if err != nil {
		return err
	}
	filter, err := p.str("filter")
	if err != nil {
		return err
	}
	date, err := p.date("date")
	if err != nil {
		return err
	}
	offset, count := 0, 1000
	for name, dst := range map[string]*int{"offset": &offset, "count": &count} {
		v, err := p.str(name)
		if err != nil {
			return err
		}
		if v == "" {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return resources.Errorf(resources.KindBadRequest, "parameter %s must be a non-negative integer", name)
		}
		*dst = n
	}
	codes, err := s.conf.engine.Terminology().Expand(vsURL, date, filter)
	if err != nil {
		return resources.Wrap(resources.KindInternal, err, "the value set could not be expanded")
	}
	total := len(codes)
	codes = codes[min(offset, len(codes)):]
	codes = codes[:min(count, len(codes))]
	contains := make([]map[string]any, 0, len(codes))
	for _, cd := range codes {
		contains = append(contains, map[string]any{"system": cd.System, "code": cd.Code, "display": cd.Display})
	}
	raw := map[string]any{}
	plain, _, _ := strings.Cut(vsURL, "|")
	for _, d := range s.definitions("ValueSet") {
		if d.url == plain {
			json.Unmarshal(d.json, &raw)
		}
	}
	delete(raw, "compose")
	exp := map[string]any{"identifier": "urn:uuid:" + uuidLike(), "timestamp": time.Now().UTC().Format(time.RFC3339),
		"total": total, "offset": offset, "contains": contains}
	var eparams []map[string]any
	if filter != "" {
		eparams = append(eparams, map[string]any{"name": "filter", "valueString": filter})
	}
	if !date.IsZero() {
		eparams = append(eparams, map[string]any{"name": "date", "valueDateTime": date.Format("2006-01-02")})
	}
	if len(eparams) > 0 {
		exp["parameter"] = eparams
	}
	raw["expansion"] = exp
	b, err := json.Marshal(raw)
	if err != nil {
		return resources.Wrap(resources.KindInternal, err, "encoding the expansion failed")
	}
	return c.Blob(http.StatusOK, fhirJSON, b)
}

func uuidLike() string {
	id := resources.NewID()
	return id[:8] + "-" + id[8:12] + "-4" + id[13:16] + "-8" + id[17:20] + "-" + id[20:32]
}

// validateCode implements ValueSet/$validate-code with url, system, code, coding,
// codeableConcept and date (the date of service: codes outside their effective dates fail).
func (s *Server) validateCode(c echo.Context) error {
	p, err := s.readParams(c)
	if err != nil {
		return err
	}
	vsURL, err := s.valueSetURL(c, p)
	if err != nil {
		return err
	}
	date, err := p.date("date")
	if err != nil {
		return err
	}
	type sc struct{ system, code string }
	var tries []sc
	if vs := p["codeableConcept"]; len(vs) == 1 {
		m, _ := vs[0].(map[string]any)
		list, _ := m["coding"].([]any)
		for _, cd := range list {
			cm, _ := cd.(map[string]any)
			sys, _ := cm["system"].(string)
			code, _ := cm["code"].(string)
			tries = append(tries, sc{sys, code})
		}
	} else {
		system, code, err := p.coding()
		if err != nil {
			return err
		}
		if code != "" {
			tries = append(tries, sc{system, code})
		}
	}
	if len(tries) == 0 {
		return resources.Errorf(resources.KindBadRequest, "give code (with system), coding or codeableConcept")
	}
	var messages []string
	for _, t := range tries {
		res, err := s.conf.engine.Terminology().ValidateCode(vsURL, t.system, t.code, date)
		if err != nil {
			return resources.Wrap(resources.KindInternal, err, "the value set could not be evaluated")
		}
		if res.Valid {
			out := []map[string]any{{"name": "result", "valueBoolean": true}}
			if res.Display != "" {
				out = append(out, map[string]any{"name": "display", "valueString": res.Display})
			}
			return c.Blob(http.StatusOK, fhirJSON, paramsJSON(out...))
		}
		messages = append(messages, res.Message)
	}
	return c.Blob(http.StatusOK, fhirJSON, paramsJSON(
		map[string]any{"name": "result", "valueBoolean": false},
		map[string]any{"name": "message", "valueString": strings.Join(messages, "; ")}))
}

// lookup implements CodeSystem/$lookup with system, code (or coding) and date.
func (s *Server) lookup(c echo.Context) error {
	p, err := s.readParams(c)
	if err != nil {
		return err
	}
	system, code, err := p.coding()
	if err != nil {
		return err
	}
	if system == "" || code == "" {
		return resources.Errorf(resources.KindBadRequest, "parameters system and code (or coding) are required")
	}
	date, err := p.date("date")
	if err != nil {
		return err
	}
	terms := s.conf.engine.Terminology()
	concept, ok := terms.Lookup(system, code)
	if !ok {
		if known, _ := terms.KnowsSystem(system); !known {
			return resources.Errorf(resources.KindNotFound, "code system %s is not known to this server", system)
		}
		return resources.Errorf(resources.KindNotFound, "code %s is not in code system %s (as loaded here)", code, system)
	}
	name := system
	for _, r := range terms.CodeSystems() {
		if r.URL == system {
			var head struct{ Title string }
			json.Unmarshal(r.JSON, &head)
			name = head.Title
		}
	}
	out := []map[string]any{{"name": "name", "valueString": name}, {"name": "display", "valueString": concept.Display}}
	if concept.Definition != "" {
		out = append(out, map[string]any{"name": "definition", "valueString": concept.Definition})
	}
	for _, prop := range concept.Props {
		out = append(out, map[string]any{"name": "property", "part": []map[string]any{
			{"name": "code", "valueCode": prop.Code}, {"name": "value", prop.Element: prop.Value}}})
	}
	if !date.IsZero() {
		out = append(out, map[string]any{"name": "property", "part": []map[string]any{
			{"name": "code", "valueCode": "active-on-date"}, {"name": "value", "valueBoolean": concept.ActiveOn(date)}}})
	}
	return c.Blob(http.StatusOK, fhirJSON, paramsJSON(out...))
}

// validateOp implements $validate (https://hl7.org/fhir/R4/resource-operation-validate.html)
// on a type or instance. The body is the resource, or Parameters with resource, mode and
// profile; profile may also be a query parameter. The answer is 200 with an OperationOutcome
// listing every issue: base R4, then each CalAIM profile the resource names, the requested
// profile, or the one the deployment requires for the type.
func (s *Server) validateOp(c echo.Context) error {
	typ := c.Param("type")
	if !resources.Supported(typ) {
		return resources.Errorf(resources.KindNotFound, "resource type %q is not supported", typ)
	}
	body, err := s.readResourceBody(c)
	if err != nil {
		return err
	}
	q := c.QueryParams()
	mode, profile := q.Get("mode"), q.Get("profile")
	var head struct {
		ResourceType string           `json:"resourceType"`
		Parameter    []map[string]any `json:"parameter"`
	}
	if err := json.Unmarshal(body, &head); err != nil {
		return resources.Errorf(resources.KindBadRequest, "the body is not a JSON resource")
	}
	if head.ResourceType == "Parameters" && typ != "Parameters" {
		body = nil
		for _, prm := range head.Parameter {
			switch prm["name"] {
			case "resource":
				if r, ok := prm["resource"]; ok {
					body, _ = json.Marshal(r)
				}
			case "mode":
				mode, _ = prm["valueCode"].(string)
			case "profile":
				profile, _ = prm["valueUri"].(string)
				if profile == "" {
					profile, _ = prm["valueCanonical"].(string)
				}
			}
		}
	}
	switch mode {
	case "", "create", "update":
	case "delete":
		if c.Param("id") == "" {
			return resources.Errorf(resources.KindBadRequest, "mode delete needs an instance: POST [type]/[id]/$validate")
		}
		return c.Blob(http.StatusOK, fhirJSON, outcomeJSON([]resources.Issue{{Severity: resources.SeverityInformation, Code: resources.IssueInformational,
			Diagnostics: "no rule of this server prevents deleting the resource"}}))
	default:
		return resources.Errorf(resources.KindBadRequest, "mode must be create, update or delete")
	}
	if len(body) == 0 {
		return resources.Errorf(resources.KindBadRequest, "no resource to validate")
	}
	var issues []resources.Issue
	gotType, err := s.conf.base(body)
	if err != nil {
		if !resources.IsKind(err, resources.KindUnprocessable) {
			return err
		}
		issues = append(issues, toDomainError(err).OutcomeIssues()...)
		gotType = typ
	}
	if gotType != typ {
		return resources.Errorf(resources.KindBadRequest, "the body is a %s but the URL is for %s", gotType, typ)
	}
	var doc map[string]any
	json.Unmarshal(body, &doc)
	if id := c.Param("id"); id != "" {
		if rid, _ := doc["id"].(string); rid != id {
			issues = append(issues, resources.Issue{Severity: resources.SeverityError, Code: resources.IssueInvalid, Expression: []string{typ + ".id"},
				Diagnostics: fmt.Sprintf("the resource's id must be %q for this instance", id)})
		}
	} else if mode == "update" {
		if rid, _ := doc["id"].(string); rid == "" {
			issues = append(issues, resources.Issue{Severity: resources.SeverityError, Code: resources.IssueRequired, Expression: []string{typ + ".id"},
				Diagnostics: "an update needs the resource's id"})
		}
	}
	var urls []string
	if profile != "" {
		urls = []string{profile}
	} else {
		required := ""
		if s.conf.require[typ] {
			required, _ = s.conf.engine.ProfileFor(typ)
		}
		urls = s.conf.engine.Applicable(body, typ, required)
	}
	for _, u := range urls {
		issues = append(issues, profileIssues(s.conf.engine.ValidateDoc(c.Request().Context(), doc, u))...)
	}
	if len(issues) == 0 {
		msg := "the resource is valid R4"
		if len(urls) > 0 {
			msg += " and conforms to " + strings.Join(urls, ", ")
		}
		issues = []resources.Issue{{Severity: resources.SeverityInformation, Code: resources.IssueInformational, Diagnostics: msg}}
	}
	return c.Blob(http.StatusOK, fhirJSON, outcomeJSON(issues))
}

// withConformance adds the CalAIM profiles and the operations to the CapabilityStatement.
func (s *Server) withConformance(cs map[string]any) map[string]any {
	rest, _ := cs["rest"].([]map[string]any)
	if len(rest) == 0 {
		return cs
	}
	b, _ := json.Marshal(rest[0]["resource"])
	var rs []map[string]any
	json.Unmarshal(b, &rs)
	validate := map[string]any{"name": "validate", "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate"}
	for _, r := range rs {
		typ, _ := r["type"].(string)
		if u, ok := s.conf.engine.ProfileFor(typ); ok {
			r["supportedProfile"] = []string{u}
			if s.conf.require[typ] {
				r["documentation"] = "Writes must conform to " + u
			} else {
				r["documentation"] = "Writes that name " + u + " in meta.profile must conform to it"
			}
		}
		ops := []map[string]any{validate}
		if typ == "Claim" { // server/claims.go
			ops = append(ops,
				map[string]any{"name": "submit", "definition": "http://hl7.org/fhir/OperationDefinition/Claim-submit"},
				map[string]any{"name": "export-invoice", "definition": profiles.Base + "/OperationDefinition/Claim-export-invoice"},
				map[string]any{"name": "export-837p", "definition": profiles.Base + "/OperationDefinition/Claim-export-837p"})
		}
		r["operation"] = ops
	}
	read := []capInteraction{{"read"}, {"search-type"}}
	urlParam := []capSearchParam{{Name: "url", Type: "uri"}, {Name: "_id", Type: "token"}}
	rs = append(rs,
		map[string]any{"type": "StructureDefinition", "interaction": read, "searchParam": append(urlParam, capSearchParam{Name: "type", Type: "token"}),
			"documentation": "The CalAIM profiles and extensions (read-only, built in)"},
		map[string]any{"type": "CodeSystem", "interaction": read, "searchParam": urlParam, "documentation": "CalAIM code systems and fragments (read-only, built in)",
			"operation": []map[string]any{{"name": "lookup", "definition": "http://hl7.org/fhir/OperationDefinition/CodeSystem-lookup"}}},
		map[string]any{"type": "ValueSet", "interaction": read, "searchParam": urlParam, "documentation": "CalAIM value sets (read-only, built in)",
			"operation": []map[string]any{
				{"name": "expand", "definition": "http://hl7.org/fhir/OperationDefinition/ValueSet-expand"},
				{"name": "validate-code", "definition": "http://hl7.org/fhir/OperationDefinition/ValueSet-validate-code"}}},
	)
	// The audit trail (server/audit.go): read-only, administrators only, not a stored type.
	auditParams := []capSearchParam{{Name: "date", Type: "date"}, {Name: "agent", Type: "token"}, {Name: "entity", Type: "reference"},
		{Name: "entity-type", Type: "token"}, {Name: "action", Type: "token"}, {Name: "outcome", Type: "token"}, {Name: "subtype", Type: "token"}}
	rs = append(rs, map[string]any{"type": "AuditEvent", "interaction": read, "searchParam": auditParams,
		"documentation": "One AuditEvent per request, read-only; only tokens with role admin may read or search them"})
	rest[0]["resource"] = rs
	rest[0]["operation"] = []map[string]any{validate}
	return cs
}
