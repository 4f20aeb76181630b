package terminology

import (
	"slices"
	"strings"
	"time"
)

// Billing is one way a CalAIM service is billed: a CPT or HCPCS code with its modifiers.
type Billing struct {
	System    string   // CPT or HCPCS system URI
	Code      string   // e.g. H0043
	Modifiers []string // e.g. [U6]; empty when the code is billed without modifiers
}

// Key renders the billing as in the code tables: H0043-U6.
func (b Billing) Key() string { return strings.Join(append([]string{b.Code}, b.Modifiers...), "-") }

// Service is a CalAIM service of the catalog with its billing options.
type Service struct {
	Code       string // calaim-service code, e.g. cs-recuperative-care
	Display    string
	Program    string // calaim-program code: ecm, community-supports, chw
	Billing    []Billing
	Start      time.Time // first date of service (zero: open)
	Unverified bool      // the billing table is UNVERIFIED data
}

// Services lists the CalAIM services of the catalog (the calaim-service code system).
// The slice is shared: callers must not modify it.
func (s *Set) Services() []Service { return s.services }

// Service returns one service of the catalog by its calaim-service code.
func (s *Set) Service(code string) (Service, bool) {
	c, ok := s.Lookup(serviceSystem, code)
	if !ok {
		return Service{}, false
	}
	return serviceOf(c), true
}

func serviceOf(c *Concept) Service {
	sv := Service{Code: c.Code, Display: c.Display, Start: c.Start, Unverified: c.Unverified()}
	if p := c.Strings("program"); len(p) > 0 {
		sv.Program = p[0]
	}
	for prop, system := range map[string]string{"cpt": cptSystem, "hcpcs": hcpcsSystem} {
		for _, v := range c.Strings(prop) {
			parts := strings.Split(v, "-")
			sv.Billing = append(sv.Billing, Billing{System: system, Code: parts[0], Modifiers: parts[1:]})
		}
	}
	slices.SortFunc(sv.Billing, func(a, b Billing) int { return strings.Compare(a.System+a.Key(), b.System+b.Key()) })
	return sv
}

// ServicesIn lists the services of one program (calaim-program code: ecm,
// community-supports, chw).
func (s *Set) ServicesIn(program string) []Service {
	var out []Service
	for _, sv := range s.services {
		if sv.Program == program {
			out = append(out, sv)
		}
	}
	return out
}

// ServicesFor lists the CalAIM services a claim line belongs to: those billed with system|code
// and exactly the given modifiers, in any order. An empty result means the combination is not
// in the catalog.
func (s *Set) ServicesFor(system, code string, modifiers []string) []Service {
	var out []Service
	for _, sv := range s.services {
		for _, b := range sv.Billing {
			if b.System == system && b.Code == code && sameModifiers(b.Modifiers, modifiers) {
				out = append(out, sv)
				break
			}
		}
	}
	return out
}

func sameModifiers(table, given []string) bool {
	if len(table) != len(given) {
		return false
	}
	a, b := slices.Clone(table), slices.Clone(given)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
