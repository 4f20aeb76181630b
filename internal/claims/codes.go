package claims

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/calaimfhir/calaimfhir/profiles"
)

// Codes answers the code questions the checks ask. Rules implements it from the embedded
// catalog and Z-code table (or a deployment's replacement catalog); the terminology package
// can implement it later without the checks changing.
type Codes interface {
	// MatchService finds the catalog service billed by code (in system) with these modifiers
	// on date. The error is a *Problem: code-not-allowed, modifier-not-allowed or
	// service-not-effective.
	MatchService(system, code string, modifiers []string, date time.Time) (*Service, *Problem)
	// Program returns the program's rules (nil when unknown).
	Program(code string) *Program
	// DiagnosisProblem says why an ICD-10-CM code is not billable on date (nil when it is).
	DiagnosisProblem(code string, date time.Time) *Problem
}

// Program is one CalAIM program of the catalog.
type Program struct {
	Code    string `json:"code"`
	Display string `json:"display"`
	// Referral: services need an authorizing referral (ServiceRequest + accepted Task).
	Referral bool `json:"referral"`
	// AuthorizeByProgram: a referral coded with the program itself (calaim-program#ecm)
	// authorizes every service of the program.
	AuthorizeByProgram bool `json:"authorizeByProgram"`
	// Supervisor: claims need a supervising provider (careTeam role supervisor) with an NPI.
	Supervisor bool `json:"supervisor"`
	// OptionalModifiers may accompany any service of the program (telehealth, ...).
	OptionalModifiers []string `json:"optionalModifiers"`
}

// Service is one billable (code, modifier) of the catalog.
type Service struct {
	Program  string   `json:"program"`
	Service  string   `json:"service"` // the CalAIM service (calaim-service code)
	System   string   `json:"system"`  // "cpt" or "hcpcs"
	Codes    []string `json:"codes"`
	Modifier string   `json:"modifier"` // required modifier; "" for none
	From     string   `json:"from"`     // first date of service (inclusive), optional
	To       string   `json:"to"`       // end (exclusive), optional
	// GroupSize [min, max] is the number of patients the code stands for (CHW 98960-98962).
	GroupSize []int `json:"groupSize"`
	// Navigation marks services that are CHW health navigation whatever the item's category.
	Navigation bool `json:"navigation"`
	from, to   time.Time
}

// Catalog is the CalAIM service catalog: which codes and modifiers each program may bill.
type Catalog struct {
	Version  string     `json:"version"`
	Note     string     `json:"note"`
	Programs []*Program `json:"programs"`
	Services []*Service `json:"services"`
}

// dxCode is one row of the Z-code table.
type dxCode struct {
	Code     string `json:"code"`
	From     string `json:"from"`
	To       string `json:"to"`
	from, to time.Time
}

// Rules is the catalog and the diagnosis table together; it implements Codes.
type Rules struct {
	Catalog  *Catalog
	programs map[string]*Program
	byCode   map[string][]*Service // "system|code"
	dx       map[string]*dxCode
	dxCodes  []string // sorted, for header detection by prefix
}

//go:embed catalog.json
var defaultCatalog []byte

//go:embed zcodes.json
var defaultZCodes []byte

// DefaultRules returns the rules built from the embedded catalog and Z-code table.
func DefaultRules() *Rules {
	r, err := NewRules(defaultCatalog, defaultZCodes)
	if err != nil {
		panic("claims: embedded data is invalid: " + err.Error())
	}
	return r
}

// LoadRules reads a replacement catalog (JSON, the format of catalog.json) from path, with
// the embedded Z-code table; an empty path gives DefaultRules.
func LoadRules(path string) (*Rules, error) {
	if path == "" {
		return DefaultRules(), nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("claims catalog: %w", err)
	}
	r, err := NewRules(b, defaultZCodes)
	if err != nil {
		return nil, fmt.Errorf("claims catalog %s: %w", path, err)
	}
	return r, nil
}

// CodeSystemURI maps the catalog's short system names to their URIs.
var CodeSystemURI = map[string]string{"cpt": profiles.CPTSystem, "hcpcs": profiles.HCPCSSystem}

// NewRules parses a catalog and a Z-code table.
func NewRules(catalogJSON, zcodesJSON []byte) (*Rules, error) {
	var c Catalog
	dec := json.NewDecoder(strings.NewReader(string(catalogJSON)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	r := &Rules{Catalog: &c, programs: map[string]*Program{}, byCode: map[string][]*Service{}, dx: map[string]*dxCode{}}
	for _, p := range c.Programs {
		if p.Code == "" {
			return nil, fmt.Errorf("catalog: a program has no code")
		}
		r.programs[p.Code] = p
	}
	for i, s := range c.Services {
		if r.programs[s.Program] == nil {
			return nil, fmt.Errorf("catalog: services[%d]: unknown program %q", i, s.Program)
		}
		uri, ok := CodeSystemURI[s.System]
		if !ok {
			return nil, fmt.Errorf("catalog: services[%d]: system must be cpt or hcpcs, not %q", i, s.System)
		}
		if len(s.Codes) == 0 || s.Service == "" {
			return nil, fmt.Errorf("catalog: services[%d]: service and codes are required", i)
		}
		if len(s.GroupSize) != 0 && (len(s.GroupSize) != 2 || s.GroupSize[0] < 1 || s.GroupSize[1] < s.GroupSize[0]) {
			return nil, fmt.Errorf("catalog: services[%d]: groupSize must be [min, max]", i)
		}
		var err error
		if s.from, s.to, err = parseRange(s.From, s.To); err != nil {
			return nil, fmt.Errorf("catalog: services[%d]: %w", i, err)
		}
		for _, code := range s.Codes {
			r.byCode[uri+"|"+code] = append(r.byCode[uri+"|"+code], s)
		}
	}
	var z struct {
		Note  string    `json:"note"`
		Codes []*dxCode `json:"codes"`
	}
	if err := json.Unmarshal(zcodesJSON, &z); err != nil {
		return nil, fmt.Errorf("z-codes: %w", err)
	}
	for i, d := range z.Codes {
		var err error
		if d.from, d.to, err = parseRange(d.From, d.To); err != nil {
			return nil, fmt.Errorf("z-codes[%d]: %w", i, err)
		}
		r.dx[d.Code] = d
		r.dxCodes = append(r.dxCodes, d.Code)
	}
	slices.Sort(r.dxCodes)
	return r, nil
}

func parseRange(from, to string) (f, t time.Time, err error) {
	if from != "" {
		if f, err = time.Parse(time.DateOnly, from); err != nil {
			return f, t, fmt.Errorf("from: %w", err)
		}
	}
	if to != "" {
		if t, err = time.Parse(time.DateOnly, to); err != nil {
			return f, t, fmt.Errorf("to: %w", err)
		}
	}
	return f, t, nil
}

// effective reports whether date falls in [from, to).
func effective(from, to, date time.Time) bool {
	return (from.IsZero() || !date.Before(from)) && (to.IsZero() || date.Before(to))
}

// Program returns the program's rules.
func (r *Rules) Program(code string) *Program { return r.programs[code] }

// MatchService implements Codes. A service matches when the item carries its required
// modifier and every other modifier is optional for the program; exactly one service may
// match.
func (r *Rules) MatchService(system, code string, modifiers []string, date time.Time) (*Service, *Problem) {
	cands := r.byCode[system+"|"+code]
	if len(cands) == 0 {
		return nil, problem(CodeNotAllowed, "%s is not a service of the CalAIM catalog", code)
	}
	var matched []*Service
	for _, s := range cands {
		if s.Modifier != "" && !slices.Contains(modifiers, s.Modifier) {
			continue
		}
		ok := true
		for _, m := range modifiers {
			if m != s.Modifier && !slices.Contains(r.programs[s.Program].OptionalModifiers, m) {
				ok = false
			}
		}
		if ok {
			matched = append(matched, s)
		}
	}
	switch {
	case len(matched) == 0:
		var want []string
		for _, s := range cands {
			if s.Modifier != "" && !slices.Contains(want, s.Modifier) {
				want = append(want, s.Modifier)
			}
		}
		if len(want) == 0 {
			return nil, problem(ModifierNotAllowed, "modifiers %s are not allowed with %s", strings.Join(modifiers, ","), code)
		}
		return nil, problem(ModifierNotAllowed, "%s needs one of the modifiers %s (and no others but %s); got %q", code,
			strings.Join(want, ", "), strings.Join(r.programs[cands[0].Program].OptionalModifiers, ", "), strings.Join(modifiers, ","))
	case len(matched) > 1:
		return nil, problem(ModifierNotAllowed, "the modifiers %q of %s name more than one service", strings.Join(modifiers, ","), code)
	}
	s := matched[0]
	if !effective(s.from, s.to, date) {
		if !s.from.IsZero() && date.Before(s.from) {
			return nil, problem(ServiceNotEffective, "%s is billable only for dates of service from %s", code, s.From)
		}
		return nil, problem(ServiceNotEffective, "%s is not billable for dates of service from %s", code, s.To)
	}
	return s, nil
}

// DiagnosisProblem implements Codes with the Z-code table: a listed code is billable while
// effective; a code (listed or not) with a more specific child effective on the date is a
// header and not billable. Codes the table does not know are not judged.
func (r *Rules) DiagnosisProblem(code string, date time.Time) *Problem {
	i, _ := slices.BinarySearch(r.dxCodes, code)
	for _, c := range r.dxCodes[i:] {
		if !strings.HasPrefix(c, code) {
			break
		}
		if c == code {
			continue
		}
		child := r.dx[c]
		if effective(child.from, child.to, date) {
			return problem(DiagnosisNotBillable, "%s is a header code on %s: bill a more specific code such as %s", code, date.Format(time.DateOnly), c)
		}
	}
	d, ok := r.dx[code]
	if !ok || effective(d.from, d.to, date) {
		return nil
	}
	if !d.from.IsZero() && date.Before(d.from) {
		return problem(DiagnosisNotBillable, "%s is billable only for dates of service from %s", code, d.From)
	}
	return problem(DiagnosisNotBillable, "%s is not billable for dates of service from %s", code, d.To)
}
