package auth

import (
	"fmt"
	"net/url"
	"strings"
)

// Interaction is what a request does to a resource type, in the vocabulary of
// resources.Service.Authorize, so that hook's string converts directly: Interaction("read").
// A value other than the five constants is never allowed.
type Interaction string

const (
	Create Interaction = "create" // create, conditional create (SMART v2 "c")
	Read   Interaction = "read"   // read, vread (SMART v2 "r")
	Update Interaction = "update" // update, patch and their conditional forms (SMART v2 "u")
	Delete Interaction = "delete" // delete, conditional delete (SMART v2 "d")
	Search Interaction = "search" // search-type, search-system, history (SMART v2 "s")
)

// Permissions is the set of interactions a scope grants, one bit per SMART v2 letter.
type Permissions uint8

const (
	PermCreate Permissions = 1 << iota
	PermRead
	PermUpdate
	PermDelete
	PermSearch

	PermAll = PermCreate | PermRead | PermUpdate | PermDelete | PermSearch
)

// permLetters is the SMART v2 permission order: c, r, u, d, s.
var permLetters = [...]struct {
	letter byte
	perm   Permissions
	in     Interaction
}{
	{'c', PermCreate, Create},
	{'r', PermRead, Read},
	{'u', PermUpdate, Update},
	{'d', PermDelete, Delete},
	{'s', PermSearch, Search},
}

// perm is the bit for in, 0 for an unknown interaction.
func (in Interaction) perm() Permissions {
	for _, l := range permLetters {
		if l.in == in {
			return l.perm
		}
	}
	return 0
}

// Has reports whether the set includes in.
func (p Permissions) Has(in Interaction) bool {
	b := in.perm()
	return b != 0 && p&b == b
}

// String spells the set as SMART v2 letters in c, r, u, d, s order ("rs"), or "none".
func (p Permissions) String() string {
	var b strings.Builder
	for _, l := range permLetters {
		if p&l.perm != 0 {
			b.WriteByte(l.letter)
		}
	}
	if b.Len() == 0 {
		return "none"
	}
	return b.String()
}

// Scope contexts (the part before the slash).
const (
	ContextPatient = "patient"
	ContextUser    = "user"
	ContextSystem  = "system"
)

// Scope is one SMART App Launch resource scope (v1 or v2), e.g. "system/Task.rs",
// "patient/*.read" or "patient/Observation.rs?category=laboratory".
type Scope struct {
	Context      string      // ContextPatient, ContextUser or ContextSystem
	ResourceType string      // a FHIR resource type, or "*" for every type
	Permissions  Permissions // what the scope grants on ResourceType
	// Query is the SMART v2 search-parameter filter after '?', nil when the scope has none.
	// A filtered scope grants nothing through Allows (see Scope.Grants).
	Query url.Values
	Raw   string // the scope as written in the token
}

func (s Scope) String() string { return s.Raw }

// Grants reports whether this one scope permits in on resourceType.
//
// Context (patient/user/system) is not considered: at this layer all three grant the
// permission, and which resources the caller may see (its organization, its patients) is
// decided by the tenancy rules elsewhere.
//
// A scope with a Query filter (SMART v2 "patient/Observation.rs?category=laboratory") grants
// nothing here: enforcing the filter would need the search layer, and treating it as the
// unfiltered permission would widen access beyond what the authorization server issued (for
// example to sensitive categories). Such scopes are parsed and kept on the Caller so that a
// later layer can enforce them; until one does, they fail closed.
func (s Scope) Grants(resourceType string, in Interaction) bool {
	if resourceType == "" || s.Query != nil {
		return false
	}
	if s.ResourceType != "*" && s.ResourceType != resourceType {
		return false
	}
	return s.Permissions.Has(in)
}

// Allows reports whether any of scopes permits in on resourceType. resourceType "*" asks
// about all types at once (e.g. a search across types) and is granted only by wildcard
// scopes. An empty type or an unknown interaction is never allowed. See Scope.Grants for how
// contexts and filtered scopes are treated.
func Allows(scopes []Scope, resourceType string, in Interaction) bool {
	for _, s := range scopes {
		if s.Grants(resourceType, in) {
			return true
		}
	}
	return false
}

// ParseScopes parses a space-separated OAuth scope string. Tokens whose prefix is "patient/",
// "user/" or "system/" are SMART resource scopes and must be well-formed; every other token
// ("openid", "fhirUser", "launch/patient", "offline_access", an identity provider's own scopes)
// is ignored. The result is nil when no resource scope is present.
//
// Accepted forms:
//
//	context/Type.perms           context = patient | user | system; Type = a resource type or *
//	perms (v2)                   any non-empty set of the letters c r u d s, each at most once
//	perms (v1)                   read (= r s), write (= c u d), * (= c r u d s)
//	context/Type.perms?query     v2 filter, kept in Scope.Query (see Scope.Grants)
func ParseScopes(s string) ([]Scope, error) {
	var out []Scope
	for _, tok := range strings.Fields(s) {
		ctx, rest, ok := strings.Cut(tok, "/")
		if !ok || (ctx != ContextPatient && ctx != ContextUser && ctx != ContextSystem) {
			continue // not a resource scope
		}
		sc, err := parseResourceScope(ctx, rest)
		if err != nil {
			return nil, fmt.Errorf("scope %q: %w", tok, err)
		}
		sc.Raw = tok
		out = append(out, sc)
	}
	return out, nil
}

func parseResourceScope(ctx, rest string) (Scope, error) {
	sc := Scope{Context: ctx}
	body, query, hasQuery := strings.Cut(rest, "?")
	typ, perms, ok := strings.Cut(body, ".")
	if !ok {
		return sc, fmt.Errorf("no permissions after the resource type (want Type.rs or Type.read)")
	}
	if typ != "*" && !validResourceType(typ) {
		return sc, fmt.Errorf("resource type must be a FHIR resource type name or *")
	}
	sc.ResourceType = typ
	switch perms {
	case "read":
		sc.Permissions = PermRead | PermSearch
	case "write":
		sc.Permissions = PermCreate | PermUpdate | PermDelete
	case "*":
		sc.Permissions = PermAll
	default:
		if perms == "" {
			return sc, fmt.Errorf("empty permissions")
		}
		for i := 0; i < len(perms); i++ {
			p := letterPerm(perms[i])
			if p == 0 {
				return sc, fmt.Errorf("permissions must be letters of cruds, or read, write or *")
			}
			if sc.Permissions&p != 0 {
				return sc, fmt.Errorf("permission %q repeated", perms[i])
			}
			sc.Permissions |= p
		}
	}
	if hasQuery {
		if query == "" {
			return sc, fmt.Errorf("empty filter after '?'")
		}
		q, err := url.ParseQuery(query)
		if err != nil {
			return sc, fmt.Errorf("malformed filter: %w", err)
		}
		sc.Query = q
	}
	return sc, nil
}

func letterPerm(c byte) Permissions {
	for _, l := range permLetters {
		if l.letter == c {
			return l.perm
		}
	}
	return 0
}

// validResourceType checks the shape of a FHIR resource type name (an upper-case letter, then
// letters), not membership in R4's list: scopes for types this server does not serve are
// harmless.
func validResourceType(s string) bool {
	if s == "" || len(s) > 64 || s[0] < 'A' || s[0] > 'Z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if (c < 'A' || c > 'Z') && (c < 'a' || c > 'z') {
			return false
		}
	}
	return true
}
