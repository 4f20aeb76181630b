package server

import (
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/calaimfhir/calaimfhir/internal/auth"
	"github.com/calaimfhir/calaimfhir/resources"
)

// SMART Backend Services: POST /auth/token and GET /.well-known/smart-configuration, served
// both at the root and below the FHIR base (/fhir/.well-known/smart-configuration, where SMART
// clients look: the base URL + "/.well-known/smart-configuration")
// (https://hl7.org/fhir/smart-app-launch/backend-services.html,
// https://hl7.org/fhir/smart-app-launch/conformance.html). The token endpoint speaks OAuth
// 2.0, not FHIR, so its errors are RFC 6749 JSON ({"error", "error_description"}), not
// OperationOutcomes. Both answer 404 when the server has no token endpoint configured
// (Config.TokenEndpoint nil: tokens come only from an external identity provider).

// TokenPath is where the token endpoint is served, beside (not under) the FHIR base.
const TokenPath = "/auth/token"

// maxTokenRequest bounds a token request body: a form with one assertion of at most 16 KiB.
const maxTokenRequest = 64 << 10

// TokenURL is the public URL of the token endpoint for a FHIR base URL: the base with its
// trailing "/fhir" replaced by /auth/token (https://h/fhir → https://h/auth/token, and
// https://h/prefix/fhir → https://h/prefix/auth/token behind a proxy that maps the prefix),
// or the base's origin + /auth/token when it does not end in /fhir. Clients use this URL as
// their assertions' aud.
func TokenURL(baseURL string) string {
	base := strings.TrimSuffix(baseURL, "/")
	if root, ok := strings.CutSuffix(base, "/fhir"); ok {
		return root + TokenPath
	}
	if u, err := url.Parse(base); err == nil && u.Scheme != "" && u.Host != "" {
		return u.Scheme + "://" + u.Host + TokenPath
	}
	return TokenPath
}

// smartConfig is the SMART configuration document (the members that apply to a server
// offering only backend services).
type smartConfig struct {
	TokenEndpoint            string   `json:"token_endpoint"`
	GrantTypesSupported      []string `json:"grant_types_supported"`
	TokenEndpointAuthMethods []string `json:"token_endpoint_auth_methods_supported"`
	TokenEndpointAuthAlgs    []string `json:"token_endpoint_auth_signing_alg_values_supported"`
	ScopesSupported          []string `json:"scopes_supported"`
	Capabilities             []string `json:"capabilities"`
}

// smartScopes are the scopes advertised. Any SMART v1 or v2 system scope may be requested
// ("system/Task.rs", "system/Patient.read"); the grant is the part registered for the client.
var smartScopes = []string{"system/*.cruds", "system/*.rs", "system/*.read", "system/*.write", "system/*.*"}

// smartConfiguration serves /.well-known/smart-configuration, open to all.
func (s *Server) smartConfiguration(c echo.Context) error {
	te := s.cfg.TokenEndpoint
	if te == nil {
		return resources.Errorf(resources.KindNotFound, "this server issues no tokens; it accepts tokens from its configured identity provider")
	}
	return c.JSON(http.StatusOK, smartConfig{
		TokenEndpoint:            te.URL(),
		GrantTypesSupported:      []string{auth.GrantClientCredentials},
		TokenEndpointAuthMethods: []string{auth.AuthMethodPrivateKeyJWT},
		TokenEndpointAuthAlgs:    auth.AssertionAlgs,
		ScopesSupported:          smartScopes,
		// No authorization endpoint, so no launch, PKCE or user-facing capability.
		Capabilities: []string{"client-confidential-asymmetric", "permission-v1", "permission-v2"},
	})
}

// token serves POST /auth/token: a client_credentials grant authenticated by a
// private_key_jwt client assertion (auth.TokenEndpoint.Exchange does the checking).
func (s *Server) token(c echo.Context) error {
	te := s.cfg.TokenEndpoint
	if te == nil {
		return resources.Errorf(resources.KindNotFound, "this server issues no tokens; it accepts tokens from its configured identity provider")
	}
	req := c.Request()
	mt, _, err := mime.ParseMediaType(req.Header.Get(echo.HeaderContentType))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return s.oauthError(c, &auth.OAuthError{Status: http.StatusBadRequest, Code: auth.ErrCodeInvalidRequest,
			Description: "send the token request as application/x-www-form-urlencoded"})
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Response(), req.Body, maxTokenRequest))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return s.oauthError(c, &auth.OAuthError{Status: http.StatusRequestEntityTooLarge, Code: auth.ErrCodeInvalidRequest,
				Description: "the token request is larger than " + strconv.Itoa(maxTokenRequest) + " bytes"})
		}
		return s.oauthError(c, &auth.OAuthError{Status: http.StatusBadRequest, Code: auth.ErrCodeInvalidRequest,
			Description: "the token request body could not be read"})
	}
	// Parameters count only in the body (RFC 6749 §4.4.2); a query string is ignored, so an
	// assertion pasted into a URL (and into proxy logs) is never honoured.
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return s.oauthError(c, &auth.OAuthError{Status: http.StatusBadRequest, Code: auth.ErrCodeInvalidRequest,
			Description: "the token request body is not a valid form"})
	}
	resp, err := te.Exchange(req.Context(), form)
	if err != nil {
		return s.oauthError(c, err)
	}
	c.Response().Header().Set("Pragma", "no-cache") // Cache-Control: no-store is set on every answer
	s.log.Info("access token issued", "request_id", requestID(c), "client_id", resp.ClientID, "scope", resp.Scope, "expires_in", resp.ExpiresIn)
	return c.JSON(http.StatusOK, resp)
}

// oauthError answers with RFC 6749 §5.2 JSON. Refusals are logged with their code and
// description (which name no assertion content); internal failures with their cause.
func (s *Server) oauthError(c echo.Context, err error) error {
	var oe *auth.OAuthError
	if !errors.As(err, &oe) {
		oe = &auth.OAuthError{Status: http.StatusInternalServerError, Code: auth.ErrCodeServerError, Description: "internal error", Err: err}
	}
	h := c.Response().Header()
	h.Set("Pragma", "no-cache")
	if oe.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(oe.RetryAfter))
	}
	if oe.Status >= 500 {
		s.log.Error("token request failed", "request_id", requestID(c), "error", oe.Code, "cause", oe.Err)
	} else {
		s.log.Info("token request refused", "request_id", requestID(c), "error", oe.Code, "description", oe.Description)
	}
	return c.JSON(oe.Status, map[string]string{"error": oe.Code, "error_description": oe.Description})
}

// oauthRateLimit is rateLimit for the token endpoint: the same per-client buckets (keyed by
// address, as token requests carry no bearer token), with the 429 spoken in OAuth JSON.
func (s *Server) oauthRateLimit(next echo.HandlerFunc) echo.HandlerFunc {
	limited := s.rateLimit(next)
	return func(c echo.Context) error {
		err := limited(c)
		var re *resources.Error
		if errors.As(err, &re) && re.Kind == resources.KindTooManyRequests {
			return s.oauthError(c, &auth.OAuthError{Status: http.StatusTooManyRequests, Code: auth.ErrCodeUnavailable,
				Description: re.Message, RetryAfter: re.RetryAfter})
		}
		return err
	}
}
