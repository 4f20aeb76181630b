// Package auth authenticates FHIR API callers from OAuth 2.0 bearer tokens (signed JWTs) and
// answers what their SMART scopes permit.
//
// # Callers
//
// A Verifier checks a token and returns a Caller: subject, client id, the organization it acts
// for ("Organization/<id>"), its role (admin, plan, cbo, provider) and its SMART resource scopes.
// The HTTP layer stores it with WithCaller; handlers and stores read it with CallerFrom.
// Which resources a caller may see (its tenancy) is decided elsewhere from Org and Role; this
// package decides only whether the scopes permit an interaction on a resource type.
//
// # Tokens accepted
//
// Compact JWS, signed with RS256, RS384, ES256 or ES384 by an asymmetric key found by the "kid"
// header in a KeySource, the key's type matching the algorithm. "none" and HMAC algorithms are
// always refused, so a public key can never be misused as an HMAC secret. Required: exp, the
// configured iss, the configured audience in aud (string or array), an org claim, a role claim
// and a sub or client id; nbf and iat, when present, must not be in the future. Clock leeway
// (60 s by default) applies to exp, nbf and iat. Verify's errors are *resources.Error of
// KindUnauthorized with a message that never repeats the token (KindUnavailable when keys could
// not be fetched); Challenge turns one into a WWW-Authenticate value.
//
// # Key sources
//
// StaticKeys (fixed keys, tests and the development key), JWKSFile (an RFC 7517 file, reloaded
// when it changes) and JWKSURL (an identity provider's jwks_uri, cached, re-fetched on an
// unknown kid at most once per minRefresh).
//
// # Scopes
//
// ParseScopes reads SMART App Launch v1 ("patient/*.read", "user/Observation.write",
// "system/*.*") and v2 ("system/Task.rs", "system/*.cruds") resource scopes; other scopes
// (openid, fhirUser, launch/patient, offline_access) are ignored. Allows answers whether scopes
// permit an Interaction (Create, Read, Update, Delete, Search: the strings that
// resources.Service.Authorize passes) on a type. The patient/, user/ and system/ contexts all
// grant at this layer. v2 scopes with a search-parameter filter
// ("patient/Observation.rs?category=laboratory") are parsed and kept, but grant nothing
// through Allows until a layer that can enforce the filter does so: treating them as the
// unfiltered permission would widen access (fail closed).
//
// # Development key
//
// LoadOrCreateDevKey keeps an ECDSA P-256 key in <data>/dev-signing-key.pem (created on first
// use, mode 0600). `calaimfhir serve` verifies with it (issuer DevIssuer, audience DevAudience)
// and `calaimfhir token` mints with DevKey.Mint.
package auth
