package auth

import (
	"context"
	"crypto"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/calaimfhir/calaimfhir/resources"
	"github.com/golang-jwt/jwt/v5"
)

// acceptedAlgs are the only JWS algorithms Verify accepts. Keys are asymmetric, so "none" and
// the HMAC algorithms (HS256...) are refused whatever the key.
var acceptedAlgs = []string{"RS256", "RS384", "ES256", "ES384"}

const (
	// DefaultLeeway is VerifierConfig.Leeway when it is zero.
	DefaultLeeway = 60 * time.Second
	// maxTokenLen bounds the work done on a bearer string before it is rejected.
	maxTokenLen = 16 << 10
	// unavailableRetryAfter is the Retry-After (seconds) sent when keys cannot be obtained.
	unavailableRetryAfter = 5
)

// ErrNoToken is the cause (Error.Err) of the error Verify returns for an empty bearer string,
// so that the HTTP layer and Challenge can tell "no credentials" from "bad credentials".
var ErrNoToken = errors.New("auth: no bearer token")

// VerifierConfig configures a Verifier.
type VerifierConfig struct {
	Issuer   string    // required; the token's "iss" must equal it
	Audience string    // required; the token's "aud" (string or array) must contain it
	Keys     KeySource // required; finds the key for the token's "kid"
	// Leeway is the clock skew allowed on exp, nbf and iat: zero means DefaultLeeway (60 s),
	// a negative value means none.
	Leeway    time.Duration
	OrgClaim  string // claim holding "Organization/<id>"; default "org"
	RoleClaim string // claim holding the role; default "role"
}

// Verifier checks bearer tokens and turns them into Callers. It is safe for concurrent use.
type Verifier struct {
	cfg    VerifierConfig
	parser *jwt.Parser
	cache  verified
	also   []*Verifier // other issuers' Verifiers, chosen by the token's iss (see Trust)
}

// verified remembers tokens that passed verification, so that a client sending the same token
// on every request pays for the signature check once. An entry lives until the token's exp
// but at most cacheTTL, so a key removed from the JWKS stops being honoured within cacheTTL.
type verified struct {
	mu      sync.Mutex
	entries map[[sha256.Size]byte]verifiedEntry
}

type verifiedEntry struct {
	caller *Caller
	until  time.Time
}

const (
	cacheTTL     = 5 * time.Minute
	cacheEntries = 4096
)

func (c *verified) get(key [sha256.Size]byte, now time.Time) (*Caller, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok || !now.Before(e.until) {
		return nil, false
	}
	copied := *e.caller
	copied.Scopes = slices.Clone(e.caller.Scopes)
	return &copied, true
}

func (c *verified) put(key [sha256.Size]byte, caller *Caller, exp, now time.Time) {
	until := now.Add(cacheTTL)
	if exp.Before(until) {
		until = exp
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil || len(c.entries) >= cacheEntries {
		c.entries = make(map[[sha256.Size]byte]verifiedEntry) // crude but bounded
	}
	c.entries[key] = verifiedEntry{caller: caller, until: until}
}

// NewVerifier checks cfg and applies its defaults.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	switch {
	case cfg.Issuer == "":
		return nil, errors.New("auth: VerifierConfig.Issuer is required")
	case cfg.Audience == "":
		return nil, errors.New("auth: VerifierConfig.Audience is required")
	case cfg.Keys == nil:
		return nil, errors.New("auth: VerifierConfig.Keys is required")
	}
	switch {
	case cfg.Leeway == 0:
		cfg.Leeway = DefaultLeeway
	case cfg.Leeway < 0:
		cfg.Leeway = 0
	}
	if cfg.OrgClaim == "" {
		cfg.OrgClaim = "org"
	}
	if cfg.RoleClaim == "" {
		cfg.RoleClaim = "role"
	}
	if cfg.OrgClaim == cfg.RoleClaim {
		return nil, errors.New("auth: OrgClaim and RoleClaim must differ")
	}
	parser := jwt.NewParser(
		jwt.WithValidMethods(acceptedAlgs),
		jwt.WithIssuer(cfg.Issuer),
		jwt.WithAudience(cfg.Audience),
		jwt.WithLeeway(cfg.Leeway),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithStrictDecoding(),
	)
	return &Verifier{cfg: cfg, parser: parser}, nil
}

func unauthorized(msg string) *resources.Error {
	return &resources.Error{Kind: resources.KindUnauthorized, Message: msg}
}

// Verify checks a bearer token (with or without a leading "Bearer ") and returns its Caller.
//
// The token must be a compact JWS signed with RS256, RS384, ES256 or ES384 by the key its "kid"
// names, and that key must be of the algorithm's type (RSA for RS*, EC P-256 for ES256, P-384
// for ES384). It must carry exp (in the future), the configured iss, the configured audience
// in aud, nbf and iat (when present) not in the future, a "sub" or client id, a well-formed
// scope ("scope" string, or "scp" string or array), an org claim "Organization/<id>" and a
// known role. Leeway applies to exp, nbf and iat. A "crit" header is refused (no extension is
// understood). "jti" is not tracked: tokens are not single-use.
//
// Errors are *resources.Error: KindUnauthorized with a plain message that never repeats the
// token (an empty bearer has Err == ErrNoToken), or KindUnavailable (with RetryAfter) when the
// KeySource could not obtain keys.
func (v *Verifier) Verify(ctx context.Context, bearer string) (*Caller, error) {
	tok := strings.TrimSpace(bearer)
	if scheme, rest, ok := strings.Cut(tok, " "); ok && strings.EqualFold(scheme, "bearer") {
		tok = strings.TrimSpace(rest)
	} else if strings.EqualFold(tok, "bearer") {
		tok = ""
	}
	if tok == "" {
		return nil, &resources.Error{Kind: resources.KindUnauthorized, Message: "no bearer token was supplied", Err: ErrNoToken}
	}
	if len(tok) > maxTokenLen {
		return nil, unauthorized("the token is too large")
	}
	if other := v.delegate(tok); other != nil {
		return other.Verify(ctx, tok)
	}

	now := time.Now()
	digest := sha256.Sum256([]byte(tok))
	if c, ok := v.cache.get(digest, now); ok {
		return c, nil
	}
	var keyErr error
	claims := jwt.MapClaims{}
	token, err := v.parser.ParseWithClaims(tok, claims, func(t *jwt.Token) (any, error) {
		key, err := v.keyFor(ctx, t)
		keyErr = err
		return key, err
	})
	if err != nil {
		return nil, v.classify(token, claims, err, keyErr)
	}
	c, err := v.caller(claims)
	if err != nil {
		return nil, err
	}
	if exp, err := claims.GetExpirationTime(); err == nil && exp != nil {
		stored := *c
		stored.Scopes = slices.Clone(c.Scopes)
		v.cache.put(digest, &stored, exp.Time, now)
	}
	return c, nil
}

// keyFor finds the key for t's kid and checks that it is of the type t's algorithm needs.
// The algorithm itself has already been checked against acceptedAlgs by the parser.
func (v *Verifier) keyFor(ctx context.Context, t *jwt.Token) (crypto.PublicKey, error) {
	if _, ok := t.Header["crit"]; ok {
		return nil, unauthorized("the token has critical header extensions this server does not understand")
	}
	kid, ok := t.Header["kid"].(string)
	if !ok || kid == "" {
		return nil, unauthorized("the token has no key id (kid)")
	}
	key, err := v.cfg.Keys.Key(ctx, kid)
	if errors.Is(err, ErrUnknownKey) {
		return nil, unauthorized("the token's signing key is not known")
	}
	if err != nil {
		return nil, &resources.Error{Kind: resources.KindUnavailable, Message: "the token signing keys are unavailable; try again shortly",
			Err: err, RetryAfter: unavailableRetryAfter}
	}
	if !keyMatchesAlg(key, t.Method.Alg()) {
		return nil, unauthorized("the token's signing algorithm does not match its key")
	}
	return key, nil
}

// classify turns a parse/validation failure into the error Verify returns.
func (v *Verifier) classify(token *jwt.Token, claims jwt.MapClaims, err, keyErr error) error {
	if keyErr != nil {
		var re *resources.Error
		if errors.As(keyErr, &re) {
			return re
		}
		return unauthorized("the token could not be verified")
	}
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return unauthorized("the token is malformed")
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		if token != nil && token.Method != nil && !algAccepted(token.Method.Alg()) {
			return unauthorized("the token's signing algorithm is not accepted")
		}
		return unauthorized("the token signature is invalid")
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		// the alg header is missing or names no algorithm the library knows
		return unauthorized("the token's signing algorithm is not accepted")
	case errors.Is(err, jwt.ErrInvalidType):
		return unauthorized("a time, issuer or audience claim of the token has the wrong type")
	}
	// Claims validation: report the first failure in a fixed order.
	if _, ok := claims["exp"]; !ok {
		return unauthorized("the token has no expiry (exp)")
	}
	if errors.Is(err, jwt.ErrTokenExpired) {
		return unauthorized("the token has expired")
	}
	if errors.Is(err, jwt.ErrTokenNotValidYet) {
		return unauthorized("the token is not valid yet (nbf)")
	}
	if errors.Is(err, jwt.ErrTokenUsedBeforeIssued) {
		return unauthorized("the token was issued in the future (iat)")
	}
	if _, ok := claims["iss"]; !ok {
		return unauthorized("the token has no issuer (iss)")
	}
	if errors.Is(err, jwt.ErrTokenInvalidIssuer) {
		return unauthorized("the token's issuer is not accepted")
	}
	if _, ok := claims["aud"]; !ok || errors.Is(err, jwt.ErrTokenRequiredClaimMissing) {
		return unauthorized("the token has no audience (aud)")
	}
	if errors.Is(err, jwt.ErrTokenInvalidAudience) {
		return unauthorized("the token's audience does not include this server")
	}
	return unauthorized("the token is invalid")
}

func algAccepted(alg string) bool {
	for _, a := range acceptedAlgs {
		if a == alg {
			return true
		}
	}
	return false
}

// caller builds the Caller from verified claims.
func (v *Verifier) caller(claims jwt.MapClaims) (*Caller, error) {
	var c Caller
	var err error
	if c.Subject, err = stringClaim(claims, "sub"); err != nil {
		return nil, err
	}
	if c.ClientID, err = stringClaim(claims, "client_id"); err != nil {
		return nil, err
	}
	if c.ClientID == "" {
		if c.ClientID, err = stringClaim(claims, "azp"); err != nil {
			return nil, err
		}
	}
	if c.Subject == "" {
		c.Subject = c.ClientID
	}
	if c.Subject == "" {
		return nil, unauthorized("the token has no subject (sub) or client id")
	}

	scope, err := scopeClaim(claims)
	if err != nil {
		return nil, err
	}
	if c.Scopes, err = ParseScopes(scope); err != nil {
		return nil, unauthorized("the token's scope is malformed")
	}

	if c.Org, err = stringClaim(claims, v.cfg.OrgClaim); err != nil {
		return nil, err
	}
	if c.Org == "" {
		return nil, unauthorized(fmt.Sprintf("the token has no organization (%s) claim", v.cfg.OrgClaim))
	}
	if _, ok := orgID(c.Org); !ok {
		return nil, unauthorized(fmt.Sprintf("the token's %s claim is not an Organization reference (Organization/<id>)", v.cfg.OrgClaim))
	}

	if c.Role, err = stringClaim(claims, v.cfg.RoleClaim); err != nil {
		return nil, err
	}
	if c.Role == "" {
		return nil, unauthorized(fmt.Sprintf("the token has no role (%s) claim", v.cfg.RoleClaim))
	}
	if !ValidRole(c.Role) {
		return nil, unauthorized(fmt.Sprintf("the token's %s claim is not one of admin, plan, cbo, provider", v.cfg.RoleClaim))
	}
	return &c, nil
}

// stringClaim returns claim name, "" when absent; a non-string value is an error.
func stringClaim(claims jwt.MapClaims, name string) (string, error) {
	raw, ok := claims[name]
	if !ok || raw == nil {
		return "", nil
	}
	s, ok := raw.(string)
	if !ok {
		return "", unauthorized(fmt.Sprintf("the token's %s claim is not a string", name))
	}
	return s, nil
}

// scopeClaim reads "scope" (a space-separated string) or, when absent, "scp" (an array of
// strings, or a string).
func scopeClaim(claims jwt.MapClaims) (string, error) {
	if _, ok := claims["scope"]; ok {
		return stringClaim(claims, "scope")
	}
	switch scp := claims["scp"].(type) {
	case nil:
		return "", nil
	case string:
		return scp, nil
	case []any:
		parts := make([]string, 0, len(scp))
		for _, p := range scp {
			s, ok := p.(string)
			if !ok || strings.ContainsAny(s, " \t\r\n") {
				return "", unauthorized("the token's scp claim is not an array of scopes")
			}
			parts = append(parts, s)
		}
		return strings.Join(parts, " "), nil
	default:
		return "", unauthorized("the token's scp claim is not an array of scopes")
	}
}

// Challenge returns the WWW-Authenticate header value (RFC 6750 §3) for an error returned by
// Verify or by an authorization check:
//
//   - nil or a missing token (ErrNoToken): `Bearer realm="calaimfhir"` with no error code, as
//     RFC 6750 asks when the request carried no credentials;
//   - KindForbidden: error="insufficient_scope" with the error's message;
//   - KindUnauthorized, or an error of another type: error="invalid_token" with the message
//     (a generic one for errors that are not *resources.Error);
//   - other kinds (e.g. KindUnavailable): the bare realm.
//
// The description is reduced to the characters RFC 6750 allows (no quotes or backslashes).
func Challenge(err error) string {
	const realm = `Bearer realm="calaimfhir"`
	if err == nil || errors.Is(err, ErrNoToken) {
		return realm
	}
	code, desc := "invalid_token", "the access token is invalid"
	var re *resources.Error
	if errors.As(err, &re) {
		switch re.Kind {
		case resources.KindUnauthorized:
			desc = re.Message
		case resources.KindForbidden:
			code, desc = "insufficient_scope", re.Message
		default:
			return realm
		}
	}
	return realm + `, error="` + code + `", error_description="` + headerSafe(desc) + `"`
}

// headerSafe keeps the characters RFC 6750 allows in error_description
// (%x20-21 / %x23-5B / %x5D-7E): a quote becomes an apostrophe, anything else is dropped.
func headerSafe(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"':
			b.WriteByte('\'')
		case c == '\\' || c < 0x20 || c > 0x7e:
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
