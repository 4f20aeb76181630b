package server

import (
	"context"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/calaimfhir/calaimfhir/internal/auth"
	"github.com/calaimfhir/calaimfhir/resources"
)

// authenticate requires a valid bearer token on every FHIR endpoint but the
// CapabilityStatement, and puts the caller into the request context. Without a configured
// verifier nothing is served: the server is closed by default, not open.
func (s *Server) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Request().Header.Get(echo.HeaderAuthorization)
		scheme, token, _ := strings.Cut(h, " ")
		if !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
			c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="calaimfhir"`)
			return resources.Errorf(resources.KindUnauthorized, "send an access token: Authorization: Bearer <token>")
		}
		if s.cfg.Verifier == nil {
			c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="calaimfhir", error="invalid_token"`)
			return resources.Errorf(resources.KindUnauthorized, "this server has no token verifier configured")
		}
		caller, err := s.cfg.Verifier.Verify(c.Request().Context(), strings.TrimSpace(token))
		if err != nil {
			c.Response().Header().Set(echo.HeaderWWWAuthenticate, auth.Challenge(err))
			return err
		}
		ctx := resources.WithScopeCache(auth.WithCaller(c.Request().Context(), caller))
		c.SetRequest(c.Request().WithContext(ctx))
		return next(c)
	}
}

// scopeFor names the SMART permission an HTTP interaction needs.
func scopeFor(method, route string) auth.Interaction {
	switch method {
	case http.MethodPost:
		if strings.HasSuffix(route, "/_search") {
			return auth.Search
		}
		return auth.Create
	case http.MethodPut, http.MethodPatch:
		return auth.Update
	case http.MethodDelete:
		return auth.Delete
	}
	switch route {
	case "/fhir/:type", "/fhir/:type/_history":
		return auth.Search
	}
	return auth.Read
}

// authorize checks the caller's scopes for the interaction on the route's resource type
// (403 otherwise). Bundles and system searches are checked per type by the service.
func (s *Server) authorize(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		typ := c.Param("type")
		if typ == "" || !resources.Supported(typ) {
			return next(c) // 404s and whole-server interactions are decided further in
		}
		if err := s.allowed(c.Request().Context(), typ, scopeFor(c.Request().Method, c.Path())); err != nil {
			return err
		}
		return next(c)
	}
}

// allowed is the scope check shared by the middleware and the service (bundle entries,
// system-wide searches, includes).
func (s *Server) allowed(ctx context.Context, typ string, in auth.Interaction) error {
	caller, ok := auth.CallerFrom(ctx)
	if !ok {
		return resources.Errorf(resources.KindUnauthorized, "no authenticated caller")
	}
	if !auth.Allows(caller.Scopes, typ, in) {
		return resources.Errorf(resources.KindForbidden, "the access token's scopes do not allow %s on %s", in, typ)
	}
	return nil
}

// serviceAuthorizer adapts allowed to the service's hook, whose interactions are strings.
func (s *Server) serviceAuthorizer(ctx context.Context, typ, interaction string) error {
	return s.allowed(ctx, typ, auth.Interaction(interaction))
}

// callerInfo tells the service who is writing, from the verified token.
func callerInfo(ctx context.Context) (resources.CallerInfo, bool) {
	c, ok := auth.CallerFrom(ctx)
	if !ok {
		return resources.CallerInfo{}, false
	}
	return resources.CallerInfo{Org: c.Org, Admin: c.Role == auth.RoleAdmin, Role: c.Role}, true
}
