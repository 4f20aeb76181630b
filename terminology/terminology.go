package terminology

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

//go:embed data/*.json
var embedded embed.FS

// System URIs the package's own functions consult. They equal the constants of
// profiles/canon.go (a test checks it); terminology cannot import profiles, which imports it.
const (
	base          = "https://calaimfhir.org/fhir"
	serviceSystem = base + "/CodeSystem/calaim-service"
	icd10cm       = "http://hl7.org/fhir/sid/icd-10-cm"
	cptSystem     = "http://www.ama-assn.org/go/cpt"
	hcpcsSystem   = "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
)

// Concept is one code of a code system.
type Concept struct {
	System     string
	Code       string
	Display    string
	Definition string
	// Properties holds the concept's property values by property code, in file order; each
	// value is the JSON value of the value[x] (string, bool, number).
	Properties map[string][]any
	// Props lists the same values with the value[x] element they came in (valueString,
	// valueDateTime, ...), in file order, for answers that echo them ($lookup).
	Props []Property
	// Start and End bound the dates of service on which the code may be used (zero: open).
	Start, End time.Time
}

// Property is one property value of a concept.
type Property struct {
	Code    string // the property code
	Element string // valueString, valueCode, valueBoolean, valueDateTime, valueInteger, ...
	Value   any
}

// Unverified reports whether the concept carries unverified=true.
func (c *Concept) Unverified() bool {
	for _, v := range c.Properties["unverified"] {
		if b, ok := v.(bool); ok && b {
			return true
		}
	}
	return false
}

// Strings returns the property values that are strings or codes.
func (c *Concept) Strings(prop string) []string {
	var out []string
	for _, v := range c.Properties[prop] {
		if s, ok := v.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// ActiveOn reports whether the concept may be used on date d (zero d: any date).
func (c *Concept) ActiveOn(d time.Time) bool {
	if d.IsZero() {
		return true
	}
	if !c.Start.IsZero() && d.Before(c.Start) {
		return false
	}
	if !c.End.IsZero() && d.After(c.End) {
		return false
	}
	return true
}

// Resource is one stored CodeSystem or ValueSet.
type Resource struct {
	Type string // CodeSystem or ValueSet
	ID   string
	URL  string
	JSON []byte
}

type codeSystem struct {
	res      Resource
	content  string
	concepts map[string]*Concept
	order    []string
}

type include struct {
	System  string `json:"system"`
	Concept []struct {
		Code    string `json:"code"`
		Display string `json:"display"`
	} `json:"concept"`
	Filter []struct {
		Property string `json:"property"`
		Op       string `json:"op"`
		Value    string `json:"value"`
	} `json:"filter"`
	ValueSet []string `json:"valueSet"`
}

type valueSet struct {
	res     Resource
	title   string
	include []include
	exclude []include
	// members indexes the expansion (all dates) by system|code and by code alone, built once
	// at load so that validation does not expand on every call.
	bySystemCode map[[2]string]Coding
	byCode       map[string][]Coding
}

// Set is a loaded set of code systems and value sets. It is read-only after Load and safe for
// concurrent use.
type Set struct {
	systems   map[string]*codeSystem // by url; fragments of one system are merged
	sysRes    []Resource             // every CodeSystem resource, in id order
	valueSets map[string]*valueSet
	vsRes     []Resource
	services  []Service // the catalog, from the calaim-service code system
}

var defaultSet = sync.OnceValues(func() (*Set, error) { return Load(nil) })

// Default returns the embedded set. It panics if the embedded data is broken, which the
// package's tests rule out.
func Default() *Set {
	s, err := defaultSet()
	if err != nil {
		panic(err)
	}
	return s
}

// Load reads the embedded resources and then, when overlay is not nil, every *.json file at
// the overlay's root: a CodeSystem or ValueSet there replaces the embedded one with the same
// id, or is added. Files that are not CodeSystems or ValueSets are an error.
func Load(overlay fs.FS) (*Set, error) {
	files := map[string][]byte{} // by resource type/id
	read := func(fsys fs.FS, dir string) error {
		entries, err := fs.ReadDir(fsys, dir)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if e.IsDir() || !strings.HasSuffix(e.Name(), ".json") {
				continue
			}
			b, err := fs.ReadFile(fsys, path.Join(dir, e.Name()))
			if err != nil {
				return err
			}
			var head struct{ ResourceType, ID string }
			if err := json.Unmarshal(b, &head); err != nil {
				return fmt.Errorf("%s: %w", e.Name(), err)
			}
			if head.ResourceType != "CodeSystem" && head.ResourceType != "ValueSet" || head.ID == "" {
				return fmt.Errorf("%s: not a CodeSystem or ValueSet with an id", e.Name())
			}
			files[head.ResourceType+"/"+head.ID] = b
		}
		return nil
	}
	if err := read(embedded, "data"); err != nil {
		return nil, err
	}
	if overlay != nil {
		if err := read(overlay, "."); err != nil {
			return nil, err
		}
	}
	s := &Set{systems: map[string]*codeSystem{}, valueSets: map[string]*valueSet{}}
	keys := make([]string, 0, len(files))
	for k := range files {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		var err error
		if strings.HasPrefix(k, "CodeSystem/") {
			err = s.addCodeSystem(files[k])
		} else {
			err = s.addValueSet(files[k])
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
	}
	for url, vs := range s.valueSets {
		for _, inc := range append(slices.Clone(vs.include), vs.exclude...) {
			if inc.System == "" && len(inc.ValueSet) == 0 {
				return nil, fmt.Errorf("ValueSet %s: an include without system", url)
			}
			if len(inc.Concept) == 0 && inc.System != "" && s.systems[inc.System] == nil {
				return nil, fmt.Errorf("ValueSet %s includes all of %s, which is not loaded", url, inc.System)
			}
		}
	}
	for _, vs := range s.valueSets {
		all, err := s.expand(vs, time.Time{}, "", 0)
		if err != nil {
			return nil, err
		}
		vs.bySystemCode = make(map[[2]string]Coding, len(all))
		vs.byCode = make(map[string][]Coding, len(all))
		for _, c := range all {
			vs.bySystemCode[[2]string{c.System, c.Code}] = c
			vs.byCode[c.Code] = append(vs.byCode[c.Code], c)
		}
	}
	if cs := s.systems[serviceSystem]; cs != nil {
		for _, code := range cs.order {
			s.services = append(s.services, serviceOf(cs.concepts[code]))
		}
	}
	return s, nil
}

type rawConcept struct {
	Code       string `json:"code"`
	Display    string `json:"display"`
	Definition string `json:"definition"`
	Property   []map[string]any
	Concept    []rawConcept `json:"concept"`
}

func (s *Set) addCodeSystem(b []byte) error {
	var raw struct {
		ID, URL, Content string
		Concept          []rawConcept
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	if raw.URL == "" {
		return fmt.Errorf("no url")
	}
	cs := s.systems[raw.URL]
	if cs == nil {
		cs = &codeSystem{concepts: map[string]*Concept{}, content: raw.Content}
		s.systems[raw.URL] = cs
	}
	res := Resource{Type: "CodeSystem", ID: raw.ID, URL: raw.URL, JSON: compact(b)}
	cs.res = res
	s.sysRes = append(s.sysRes, res)
	var walk func([]rawConcept) error
	walk = func(list []rawConcept) error {
		for _, rc := range list {
			c := &Concept{System: raw.URL, Code: rc.Code, Display: rc.Display, Definition: rc.Definition, Properties: map[string][]any{}}
			for _, p := range rc.Property {
				code, _ := p["code"].(string)
				for k, v := range p {
					if strings.HasPrefix(k, "value") {
						c.Properties[code] = append(c.Properties[code], v)
						c.Props = append(c.Props, Property{Code: code, Element: k, Value: v})
					}
				}
			}
			var err error
			if c.Start, err = dateProp(c, "effective-start"); err != nil {
				return err
			}
			if c.End, err = dateProp(c, "effective-end"); err != nil {
				return err
			}
			if _, dup := cs.concepts[c.Code]; !dup {
				cs.order = append(cs.order, c.Code)
			}
			cs.concepts[c.Code] = c
			if err := walk(rc.Concept); err != nil {
				return err
			}
		}
		return nil
	}
	return walk(raw.Concept)
}

func dateProp(c *Concept, prop string) (time.Time, error) {
	vals := c.Strings(prop)
	if len(vals) == 0 {
		return time.Time{}, nil
	}
	t, err := time.Parse("2006-01-02", vals[0][:min(len(vals[0]), 10)])
	if err != nil {
		return time.Time{}, fmt.Errorf("concept %s: %s %q: %w", c.Code, prop, vals[0], err)
	}
	return t, nil
}

func (s *Set) addValueSet(b []byte) error {
	var raw struct {
		ID, URL, Title string
		Compose        struct {
			Include []include
			Exclude []include
		}
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	if raw.URL == "" {
		return fmt.Errorf("no url")
	}
	res := Resource{Type: "ValueSet", ID: raw.ID, URL: raw.URL, JSON: compact(b)}
	s.valueSets[raw.URL] = &valueSet{res: res, title: raw.Title, include: raw.Compose.Include, exclude: raw.Compose.Exclude}
	s.vsRes = append(s.vsRes, res)
	return nil
}

func compact(b []byte) []byte {
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return b
	}
	return buf.Bytes()
}

// CodeSystems lists every CodeSystem resource in id order.
func (s *Set) CodeSystems() []Resource { return s.sysRes }

// ValueSets lists every ValueSet resource in id order.
func (s *Set) ValueSets() []Resource { return s.vsRes }

// HasValueSet reports whether url (optionally |version) names a loaded value set.
func (s *Set) HasValueSet(url string) bool {
	_, ok := s.valueSets[stripVersion(url)]
	return ok
}

func stripVersion(url string) string {
	if i := strings.IndexByte(url, '|'); i >= 0 {
		return url[:i]
	}
	return url
}

// Lookup finds a code in a loaded code system. ok is false when the system is unknown or does
// not hold the code (for a fragment, the code may still exist in the full system: see Complete).
func (s *Set) Lookup(system, code string) (c *Concept, ok bool) {
	cs := s.systems[system]
	if cs == nil {
		return nil, false
	}
	c, ok = cs.concepts[code]
	return c, ok
}

// KnowsSystem reports whether any code system with that url is loaded, and whether it is
// complete (every code of the system is here) rather than a fragment.
func (s *Set) KnowsSystem(system string) (known, complete bool) {
	cs := s.systems[system]
	if cs == nil {
		return false, false
	}
	return true, cs.content == "complete"
}

// Coding is one member of an expansion.
type Coding struct {
	System, Code, Display string
	Inactive              bool // outside its effective dates on the date asked for
}

// ErrUnknownValueSet is returned for a value set url that is not loaded.
type ErrUnknownValueSet struct{ URL string }

func (e *ErrUnknownValueSet) Error() string { return "unknown value set " + e.URL }

// Expand lists the codes of a value set, in definition order. With a non-zero date, codes
// not usable on that date are left out; filter, when set, keeps codes whose code or display
// contains it (case-insensitive).
func (s *Set) Expand(url string, date time.Time, filter string) ([]Coding, error) {
	vs := s.valueSets[stripVersion(url)]
	if vs == nil {
		return nil, &ErrUnknownValueSet{URL: url}
	}
	return s.expand(vs, date, filter, 0)
}

func (s *Set) expand(vs *valueSet, date time.Time, filter string, depth int) ([]Coding, error) {
	if depth > 8 {
		return nil, fmt.Errorf("value set %s nests too deeply", vs.res.URL)
	}
	var out []Coding
	seen := map[[2]string]bool{}
	excluded := map[[2]string]bool{}
	for _, ex := range vs.exclude {
		for _, c := range s.members(ex) {
			excluded[[2]string{c.System, c.Code}] = true
		}
	}
	filter = strings.ToLower(filter)
	for _, inc := range vs.include {
		var codings []Coding
		for _, ref := range inc.ValueSet {
			sub := s.valueSets[stripVersion(ref)]
			if sub == nil {
				return nil, &ErrUnknownValueSet{URL: ref}
			}
			list, err := s.expand(sub, date, "", depth+1)
			if err != nil {
				return nil, err
			}
			codings = append(codings, list...)
		}
		if inc.System != "" {
			codings = append(codings, s.members(inc)...)
		}
		for _, c := range codings {
			k := [2]string{c.System, c.Code}
			if seen[k] || excluded[k] {
				continue
			}
			if concept, ok := s.Lookup(c.System, c.Code); ok && !concept.ActiveOn(date) {
				continue
			}
			if filter != "" && !strings.Contains(strings.ToLower(c.Code), filter) && !strings.Contains(strings.ToLower(c.Display), filter) {
				continue
			}
			seen[k] = true
			out = append(out, c)
		}
	}
	return out, nil
}

// members lists the codes an include selects (before dates).
func (s *Set) members(inc include) []Coding {
	cs := s.systems[inc.System]
	var out []Coding
	if len(inc.Concept) > 0 {
		for _, ic := range inc.Concept {
			display := ic.Display
			if cs != nil && display == "" {
				if c, ok := cs.concepts[ic.Code]; ok {
					display = c.Display
				}
			}
			out = append(out, Coding{System: inc.System, Code: ic.Code, Display: display})
		}
		return out
	}
	if cs == nil {
		return nil
	}
	for _, code := range cs.order {
		c := cs.concepts[code]
		if matchesFilters(c, inc) {
			out = append(out, Coding{System: c.System, Code: c.Code, Display: c.Display})
		}
	}
	return out
}

func matchesFilters(c *Concept, inc include) bool {
	for _, f := range inc.Filter {
		switch f.Op {
		case "=":
			if !slices.Contains(c.Strings(f.Property), f.Value) {
				return false
			}
		default:
			return false // unsupported operators select nothing rather than everything
		}
	}
	return true
}

// Validation is the result of ValidateCode.
type Validation struct {
	Valid   bool
	Display string // the code's display, when known
	Message string // why it is not valid, in plain language
}

// ValidateCode checks that system|code is in the value set, and usable on date when date is
// not zero. system may be empty: then any system of the value set matches. An unknown value set
// is an *ErrUnknownValueSet error.
func (s *Set) ValidateCode(url, system, code string, date time.Time) (Validation, error) {
	vs := s.valueSets[stripVersion(url)]
	if vs == nil {
		return Validation{}, &ErrUnknownValueSet{URL: url}
	}
	var candidates []Coding
	if system != "" {
		if c, ok := vs.bySystemCode[[2]string{system, code}]; ok {
			candidates = []Coding{c}
		}
	} else {
		candidates = vs.byCode[code]
	}
	for _, c := range candidates {
		if concept, ok := s.Lookup(c.System, c.Code); ok && !concept.ActiveOn(date) {
			return Validation{Display: c.Display, Message: fmt.Sprintf("code %s is not usable on %s (%s)", code, date.Format("2006-01-02"), effective(concept))}, nil
		}
		return Validation{Valid: true, Display: c.Display}, nil
	}
	if system != "" {
		return Validation{Message: fmt.Sprintf("code %s|%s is not in value set %s", system, code, vs.res.URL)}, nil
	}
	return Validation{Message: fmt.Sprintf("code %s is not in value set %s", code, vs.res.URL)}, nil
}

func effective(c *Concept) string {
	switch {
	case !c.Start.IsZero() && !c.End.IsZero():
		return "usable from " + c.Start.Format("2006-01-02") + " to " + c.End.Format("2006-01-02")
	case !c.Start.IsZero():
		return "usable from " + c.Start.Format("2006-01-02")
	case !c.End.IsZero():
		return "usable until " + c.End.Format("2006-01-02")
	}
	return "always usable"
}

// ActiveOn tells whether system|code may be used on date. known is false when the code is
// not in the loaded set (callers decide: a fragment does not hold every code of its system).
// reason explains an inactive code.
func (s *Set) ActiveOn(system, code string, date time.Time) (active, known bool, reason string) {
	c, ok := s.Lookup(system, code)
	if !ok {
		return false, false, ""
	}
	if c.ActiveOn(date) {
		return true, true, ""
	}
	return false, true, effective(c)
}

// ZCodeBillable reports whether ICD-10-CM code (dotted, as in FHIR) is a billable SDOH Z-code
// on the date of service. known is false for codes outside the Z-code table.
func (s *Set) ZCodeBillable(code string, date time.Time) (billable, known bool, reason string) {
	return s.ActiveOn(icd10cm, code, date)
}
