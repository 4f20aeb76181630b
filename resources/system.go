package resources

import "context"

type systemKey struct{}

// AsSystem marks ctx as the server acting on its own behalf (a claim check reading a member's
// Coverage, an import resolving an Organization by NPI): tenancy and consent filters do not
// apply to it. Only server code calls this, never with a caller-chosen query, and what it reads
// this way must not be returned to the caller unfiltered.
func AsSystem(ctx context.Context) context.Context {
	return context.WithValue(ctx, systemKey{}, true)
}

// IsSystem reports whether ctx was marked by AsSystem.
func IsSystem(ctx context.Context) bool {
	v, _ := ctx.Value(systemKey{}).(bool)
	return v
}
