package auth

import (
	"context"
	"strings"
)

// Roles a token may carry in its role claim.
const (
	RoleAdmin    = "admin"    // operates the server; every organization
	RolePlan     = "plan"     // a managed care plan
	RoleCBO      = "cbo"      // a community-based organization
	RoleProvider = "provider" // a clinical provider organization
)

// ValidRole reports whether r is one of the roles above.
func ValidRole(r string) bool {
	switch r {
	case RoleAdmin, RolePlan, RoleCBO, RoleProvider:
		return true
	}
	return false
}

// Caller is the authenticated client of one request, built from a verified token.
type Caller struct {
	Subject  string  // "sub"; the client id when the token has no sub
	ClientID string  // "client_id", or "azp" when client_id is absent
	Org      string  // "Organization/<id>": the tenant the caller acts for
	Role     string  // RoleAdmin, RolePlan, RoleCBO or RoleProvider
	Scopes   []Scope // the SMART resource scopes granted; non-resource scopes are dropped
}

// OrgID is the id part of Org ("abc" for "Organization/abc"), or "" when Org is not an
// Organization reference.
func (c *Caller) OrgID() string {
	if c == nil {
		return ""
	}
	id, ok := orgID(c.Org)
	if !ok {
		return ""
	}
	return id
}

// Allows reports whether the caller's scopes permit `in` on resourceType; a nil Caller is
// allowed nothing. See the package function Allows.
func (c *Caller) Allows(resourceType string, in Interaction) bool {
	return c != nil && Allows(c.Scopes, resourceType, in)
}

type callerKey struct{}

// WithCaller returns a context carrying c.
func WithCaller(ctx context.Context, c *Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// CallerFrom returns the caller stored by WithCaller; ok is false when there is none (or it
// is nil).
func CallerFrom(ctx context.Context) (*Caller, bool) {
	c, ok := ctx.Value(callerKey{}).(*Caller)
	return c, ok && c != nil
}

// orgID splits "Organization/<id>" where id is a valid FHIR id ([A-Za-z0-9\-.]{1,64}).
func orgID(ref string) (string, bool) {
	id, ok := strings.CutPrefix(ref, "Organization/")
	if !ok || id == "" || len(id) > 64 {
		return "", false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if (c < 'A' || c > 'Z') && (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' && c != '.' {
			return "", false
		}
	}
	return id, true
}
