package auth

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// SMART Backend Services (https://hl7.org/fhir/smart-app-launch/backend-services.html):
// a registered client proves who it is with a short-lived JWT signed by its own private key
// (private_key_jwt, RFC 7523) and receives a short-lived access token.
const (
	// GrantClientCredentials is the only grant_type the token endpoint accepts.
	GrantClientCredentials = "client_credentials"
	// ClientAssertionType is the only client_assertion_type the token endpoint accepts.
	ClientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
	// AuthMethodPrivateKeyJWT is the token_endpoint_auth_method the endpoint supports.
	AuthMethodPrivateKeyJWT = "private_key_jwt"
	// DefaultAccessTokenTTL is the lifetime of issued access tokens when
	// TokenEndpointConfig.TTL is zero (the five minutes SMART recommends).
	DefaultAccessTokenTTL = 5 * time.Minute
	// MaxAssertionLifetime bounds how far ahead an assertion's exp may be (SMART: "no more
	// than five minutes in the future").
	MaxAssertionLifetime = 5 * time.Minute
	// DefaultAssertionLeeway is the clock skew allowed on assertion times when
	// TokenEndpointConfig.Leeway is zero.
	DefaultAssertionLeeway = 30 * time.Second
	// maxAssertionLen bounds the work done on an assertion before it is rejected.
	maxAssertionLen = 16 << 10
	// maxJTILen bounds the replay cache's memory per entry.
	maxJTILen = 256
	// replayEntries bounds the replay cache. Entries live at most MaxAssertionLifetime plus
	// leeway, so reaching this needs hundreds of accepted assertions a second.
	replayEntries = 100_000
)

// AssertionAlgs are the JWS algorithms accepted on client assertions, as SMART Backend
// Services requires: RS384 and ES384 only (no "none", no HMAC, no other RSA/EC variants).
var AssertionAlgs = []string{"RS384", "ES384"}

// OAuth 2.0 error codes the token endpoint answers with (RFC 6749 §5.2).
const (
	ErrCodeInvalidRequest       = "invalid_request"
	ErrCodeInvalidClient        = "invalid_client"
	ErrCodeInvalidScope         = "invalid_scope"
	ErrCodeUnsupportedGrantType = "unsupported_grant_type"
	ErrCodeUnavailable          = "temporarily_unavailable"
	ErrCodeServerError          = "server_error"
)

// OAuthError is a token endpoint failure, to be sent as RFC 6749 §5.2 JSON
// ({"error": Code, "error_description": Description}) with HTTP Status. Description never
// repeats the assertion.
type OAuthError struct {
	Status      int
	Code        string
	Description string
	RetryAfter  int   // seconds, for 503
	Err         error // the cause, for logs; never sent
}

func (e *OAuthError) Error() string { return e.Code + ": " + e.Description }

func (e *OAuthError) Unwrap() error { return e.Err }

func oauthErr(status int, code, format string, args ...any) *OAuthError {
	return &OAuthError{Status: status, Code: code, Description: fmt.Sprintf(format, args...)}
}

// invalidClient is the answer to every failed client authentication. RFC 6749 allows 400
// or 401; 401 says plainly that the credentials, not the request's form, were refused.
func invalidClient(format string, args ...any) *OAuthError {
	return oauthErr(http.StatusUnauthorized, ErrCodeInvalidClient, format, args...)
}

func invalidRequest(format string, args ...any) *OAuthError {
	return oauthErr(http.StatusBadRequest, ErrCodeInvalidRequest, format, args...)
}

// TokenResponse is a successful token endpoint answer (RFC 6749 §5.1).
type TokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"` // "bearer"
	ExpiresIn   int    `json:"expires_in"` // seconds
	Scope       string `json:"scope"`      // what was granted, which may be less than asked
	ClientID    string `json:"-"`          // the authenticated client, for the server's log
}

// TokenEndpointConfig configures a TokenEndpoint.
type TokenEndpointConfig struct {
	// URL is the endpoint's absolute public URL; an assertion's aud must be exactly this.
	URL string
	// Clients are the registered backend clients (none: every client is unknown).
	Clients *Clients
	// Key signs issued access tokens; Issuer and Audience are their iss and aud. The
	// server's Verifier must accept tokens with this key, issuer and audience.
	Key      *DevKey
	Issuer   string
	Audience string
	// TTL is the access token lifetime; zero means DefaultAccessTokenTTL.
	TTL time.Duration
	// Leeway is the clock skew allowed on assertion exp, nbf and iat; zero means
	// DefaultAssertionLeeway, negative none.
	Leeway time.Duration
}

// TokenEndpoint verifies client assertions and issues access tokens. It is safe for
// concurrent use.
type TokenEndpoint struct {
	cfg    TokenEndpointConfig
	parser *jwt.Parser
	replay replayCache
	now    func() time.Time
}

// NewTokenEndpoint checks cfg and applies its defaults.
func NewTokenEndpoint(cfg TokenEndpointConfig) (*TokenEndpoint, error) {
	u, err := url.Parse(cfg.URL)
	switch {
	case err != nil || !u.IsAbs() || u.Host == "":
		return nil, fmt.Errorf("auth: token endpoint URL %q is not absolute", cfg.URL)
	case cfg.Key == nil:
		return nil, errors.New("auth: the token endpoint needs a signing key")
	case cfg.Issuer == "" || cfg.Audience == "":
		return nil, errors.New("auth: the token endpoint needs the issuer and audience of the tokens it issues")
	}
	if cfg.TTL == 0 {
		cfg.TTL = DefaultAccessTokenTTL
	}
	if cfg.TTL < time.Second {
		return nil, errors.New("auth: access token TTL must be at least one second")
	}
	switch {
	case cfg.Leeway == 0:
		cfg.Leeway = DefaultAssertionLeeway
	case cfg.Leeway < 0:
		cfg.Leeway = 0
	}
	te := &TokenEndpoint{cfg: cfg, now: time.Now}
	te.parser = jwt.NewParser(
		jwt.WithValidMethods(AssertionAlgs),
		jwt.WithAudience(cfg.URL),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(cfg.Leeway),
		jwt.WithStrictDecoding(),
		jwt.WithTimeFunc(func() time.Time { return te.now() }),
	)
	return te, nil
}

// URL is the endpoint's public URL (the aud assertions must carry).
func (te *TokenEndpoint) URL() string { return te.cfg.URL }

// Clients is the number of registered clients.
func (te *TokenEndpoint) Clients() int { return te.cfg.Clients.Len() }

// Exchange handles one token request, given its form parameters (the body of a POST with
// Content-Type application/x-www-form-urlencoded; the caller checks the content type).
//
// Required: grant_type=client_credentials, scope, client_assertion_type (the JWT bearer
// URN) and client_assertion; client_id is optional and, when given, must match the
// assertion. A parameter given twice is refused. The assertion must be a JWS signed with
// RS384 or ES384 by the key its kid names in the JWKS of the client its iss names, with
// sub = iss, aud = URL(), exp at most MaxAssertionLifetime ahead and not past, nbf and iat
// (when present) not in the future, and a jti not seen from that client before (while the
// assertion could still be valid). A jku header must equal the client's registered
// jwks_url; a typ header, when present, must be "JWT"; crit headers are refused.
//
// The access token granted has the client's organization and role, the negotiated scopes
// (see NegotiateScopes: empty means invalid_scope), sub and client_id = the client id, and
// lives for the configured TTL.
//
// Errors are *OAuthError: invalid_request (400) for a malformed request, unsupported_grant_type
// (400), invalid_client (401) for every failed authentication, invalid_scope (400),
// temporarily_unavailable (503) when a client's jwks_url cannot be fetched.
func (te *TokenEndpoint) Exchange(ctx context.Context, form url.Values) (*TokenResponse, error) {
	for _, name := range []string{"grant_type", "scope", "client_assertion_type", "client_assertion", "client_id"} {
		if len(form[name]) > 1 {
			return nil, invalidRequest("the parameter %s is given more than once", name)
		}
	}
	switch gt := form.Get("grant_type"); gt {
	case "":
		return nil, invalidRequest("grant_type is required (client_credentials)")
	case GrantClientCredentials:
	default:
		return nil, oauthErr(http.StatusBadRequest, ErrCodeUnsupportedGrantType, "only the client_credentials grant is supported")
	}
	scope := form.Get("scope")
	if strings.TrimSpace(scope) == "" {
		return nil, invalidRequest("scope is required (for example system/Patient.rs)")
	}
	switch at := form.Get("client_assertion_type"); at {
	case "":
		return nil, invalidClient("client authentication is required: client_assertion_type %s with a client_assertion", ClientAssertionType)
	case ClientAssertionType:
	default:
		return nil, invalidClient("client_assertion_type must be %s", ClientAssertionType)
	}
	assertion := form.Get("client_assertion")
	if assertion == "" {
		return nil, invalidClient("client_assertion is required")
	}
	if len(assertion) > maxAssertionLen {
		return nil, invalidClient("the client assertion is too large")
	}

	client, err := te.verifyAssertion(ctx, assertion, form.Get("client_id"))
	if err != nil {
		return nil, err
	}

	granted, err := NegotiateScopes(scope, client.Scopes)
	if err != nil {
		return nil, oauthErr(http.StatusBadRequest, ErrCodeInvalidScope, "the requested scope is malformed: %v", err)
	}
	if granted == "" {
		return nil, oauthErr(http.StatusBadRequest, ErrCodeInvalidScope, "none of the requested scopes is registered for this client")
	}
	tok, err := te.cfg.Key.Mint(MintOptions{
		Subject: client.ID, ClientID: client.ID, Org: client.Org, Role: client.Role, Scopes: granted,
		TTL: te.cfg.TTL, Issuer: te.cfg.Issuer, Audience: te.cfg.Audience,
	})
	if err != nil {
		return nil, &OAuthError{Status: http.StatusInternalServerError, Code: ErrCodeServerError, Description: "the access token could not be issued", Err: err}
	}
	return &TokenResponse{AccessToken: tok, TokenType: "bearer", ExpiresIn: int(te.cfg.TTL / time.Second), Scope: granted, ClientID: client.ID}, nil
}

// verifyAssertion checks the client assertion (see Exchange) and records its jti. It returns
// the authenticated client.
func (te *TokenEndpoint) verifyAssertion(ctx context.Context, assertion, formClientID string) (*Client, error) {
	var (
		client *Client
		keyErr error
	)
	claims := jwt.MapClaims{}
	token, err := te.parser.ParseWithClaims(assertion, claims, func(t *jwt.Token) (any, error) {
		c, key, err := te.keyFor(ctx, t, claims, formClientID)
		client, keyErr = c, err
		if err != nil {
			return nil, err
		}
		return key, nil
	})
	if err != nil {
		return nil, classifyAssertion(token, claims, err, keyErr)
	}
	if client == nil { // cannot happen: the key function ran and succeeded
		return nil, invalidClient("the client assertion could not be verified")
	}
	now := te.now()
	expAt, err := claims.GetExpirationTime()
	if err != nil || expAt == nil {
		return nil, invalidClient("the client assertion has no expiry (exp)")
	}
	exp := expAt.Time
	if exp.After(now.Add(MaxAssertionLifetime + te.cfg.Leeway)) {
		return nil, invalidClient("the client assertion's exp is more than five minutes in the future")
	}
	jti, ok := claims["jti"].(string)
	if !ok || jti == "" {
		return nil, invalidClient("the client assertion has no jti")
	}
	if len(jti) > maxJTILen {
		return nil, invalidClient("the client assertion's jti is longer than %d characters", maxJTILen)
	}
	// Remember the jti for as long as the assertion could be accepted (exp plus leeway).
	switch te.replay.use(client.ID+"\x00"+jti, exp.Add(te.cfg.Leeway), now) {
	case replayed:
		return nil, invalidClient("the client assertion's jti has been used before; sign a new assertion for every request")
	case replayFull:
		return nil, &OAuthError{Status: http.StatusServiceUnavailable, Code: ErrCodeUnavailable,
			Description: "too many token requests are in flight; try again shortly", RetryAfter: 5}
	}
	return client, nil
}

// keyFor authenticates the header and the identifying claims of an assertion and finds the
// client's key. The algorithm has already been checked against AssertionAlgs.
func (te *TokenEndpoint) keyFor(ctx context.Context, t *jwt.Token, claims jwt.MapClaims, formClientID string) (*Client, crypto.PublicKey, error) {
	if _, ok := t.Header["crit"]; ok {
		return nil, nil, invalidClient("the client assertion has critical header extensions this server does not understand")
	}
	if typ, ok := t.Header["typ"]; ok {
		if s, _ := typ.(string); !strings.EqualFold(s, "JWT") {
			return nil, nil, invalidClient(`the client assertion's typ header must be "JWT"`)
		}
	}
	iss, _ := claims["iss"].(string)
	sub, _ := claims["sub"].(string)
	switch {
	case iss == "":
		return nil, nil, invalidClient("the client assertion has no issuer (iss): it must be the client_id")
	case sub != iss:
		return nil, nil, invalidClient("the client assertion's sub must equal its iss (the client_id)")
	case formClientID != "" && formClientID != iss:
		return nil, nil, invalidClient("client_id does not match the client assertion's iss")
	}
	client, ok := te.cfg.Clients.Lookup(iss)
	if !ok {
		return nil, nil, invalidClient("the client is not registered")
	}
	if jku, ok := t.Header["jku"]; ok {
		if s, _ := jku.(string); client.JWKSURL == "" || s != client.JWKSURL {
			return nil, nil, invalidClient("the client assertion's jku is not the client's registered jwks_url")
		}
	}
	kid, _ := t.Header["kid"].(string)
	if kid == "" {
		return nil, nil, invalidClient("the client assertion has no key id (kid)")
	}
	key, err := client.Keys.Key(ctx, kid)
	if errors.Is(err, ErrUnknownKey) {
		return nil, nil, invalidClient("the client assertion's kid is not in the client's JWKS")
	}
	if err != nil {
		return nil, nil, &OAuthError{Status: http.StatusServiceUnavailable, Code: ErrCodeUnavailable,
			Description: "the client's keys could not be fetched; try again shortly", RetryAfter: 5, Err: err}
	}
	if !keyMatchesAlg(key, t.Method.Alg()) {
		return nil, nil, invalidClient("the client assertion's alg does not match the type of its key")
	}
	return client, key, nil
}

// classifyAssertion turns a failed parse into the OAuth error to send.
func classifyAssertion(token *jwt.Token, claims jwt.MapClaims, err, keyErr error) error {
	if keyErr != nil {
		var oe *OAuthError
		if errors.As(keyErr, &oe) {
			return oe
		}
		return invalidClient("the client assertion could not be verified")
	}
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return invalidClient("the client assertion is not a well-formed JWT")
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return invalidClient("the client assertion's alg must be RS384 or ES384")
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		if token != nil && token.Method != nil && !slices.Contains(AssertionAlgs, token.Method.Alg()) {
			return invalidClient("the client assertion's alg must be RS384 or ES384")
		}
		return invalidClient("the client assertion's signature is invalid")
	case errors.Is(err, jwt.ErrInvalidType):
		return invalidClient("a time or audience claim of the client assertion has the wrong type")
	}
	if _, ok := claims["exp"]; !ok {
		return invalidClient("the client assertion has no expiry (exp)")
	}
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return invalidClient("the client assertion has expired")
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return invalidClient("the client assertion is not valid yet (nbf)")
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return invalidClient("the client assertion was issued in the future (iat)")
	case errors.Is(err, jwt.ErrTokenInvalidAudience), errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return invalidClient("the client assertion's aud must be this token endpoint's URL")
	}
	return invalidClient("the client assertion is invalid")
}

// replayCache remembers the jtis of accepted assertions until they expire.
type replayCache struct {
	mu    sync.Mutex
	seen  map[string]time.Time // client id + NUL + jti → when the entry may be forgotten
	swept time.Time
}

type replayResult int

const (
	replayFresh replayResult = iota
	replayed
	replayFull
)

// use records key until `until`, reporting whether it was already there. When the cache is
// full even after dropping expired entries, nothing is recorded and replayFull is returned:
// forgetting a live entry would let that assertion be replayed.
func (c *replayCache) use(key string, until, now time.Time) replayResult {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.seen == nil {
		c.seen = make(map[string]time.Time)
	}
	if t, ok := c.seen[key]; ok && now.Before(t) {
		return replayed
	}
	if len(c.seen) >= replayEntries || now.Sub(c.swept) > time.Minute {
		for k, t := range c.seen {
			if !now.Before(t) {
				delete(c.seen, k)
			}
		}
		c.swept = now
		if len(c.seen) >= replayEntries {
			return replayFull
		}
	}
	c.seen[key] = until
	return replayFresh
}
