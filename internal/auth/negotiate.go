package auth

import (
	"slices"
	"strings"
)

// NegotiateScopes returns the scopes to grant a client that asked for requested (a
// space-separated scope string) and is registered for registered: the intersection,
// scope by scope. A requested scope wholly inside a registered one is granted as written
// (so a v1 "system/*.read" stays v1); one that overlaps only partly is narrowed to the
// overlap, spelled in SMART v2 letters ("system/*.cruds" against a registration of
// "system/Task.rs" gives "system/Task.rs"). Contexts (system/user/patient) must match.
// A filtered scope ("…?category=x") is granted only under an unfiltered registered scope
// that covers it, or one written identically. Scopes that are not resource scopes (openid,
// launch, offline_access…) are never granted: backend clients have no use for them.
//
// The result is "" when nothing overlaps. An error means requested is malformed.
func NegotiateScopes(requested string, registered []Scope) (string, error) {
	asked, err := ParseScopes(requested)
	if err != nil {
		return "", err
	}
	var granted []string
	add := func(s string) {
		if !slices.Contains(granted, s) {
			granted = append(granted, s)
		}
	}
	for _, r := range asked {
		for _, g := range registered {
			if s, ok := intersect(r, g); ok {
				add(s)
			}
		}
	}
	return strings.Join(granted, " "), nil
}

// intersect is the part of requested scope r that registered scope g allows, as a scope
// string; ok is false when they do not overlap.
func intersect(r, g Scope) (string, bool) {
	if r.Context != g.Context {
		return "", false
	}
	covers := (g.ResourceType == "*" || g.ResourceType == r.ResourceType) && r.Permissions&g.Permissions == r.Permissions
	if r.Query != nil || g.Query != nil {
		// Filters are not combined: only a whole, unfiltered cover or an identical scope.
		if r.Raw == g.Raw || (g.Query == nil && covers) {
			return r.Raw, true
		}
		return "", false
	}
	if covers {
		return r.Raw, true
	}
	typ := r.ResourceType
	switch {
	case g.ResourceType == "*":
	case r.ResourceType == "*" || r.ResourceType == g.ResourceType:
		typ = g.ResourceType
	default:
		return "", false
	}
	perms := r.Permissions & g.Permissions
	if perms == 0 {
		return "", false
	}
	return r.Context + "/" + typ + "." + perms.String(), true
}
