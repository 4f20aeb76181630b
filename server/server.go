// Package server is the HTTP face of calaimfhir: Echo routes for the FHIR R4 RESTful API
// (https://hl7.org/fhir/R4/http.html), health and metrics endpoints, and the middleware around
// them. Handlers are thin: they decode, call resources.Service, and encode. Every error goes
// through errorHandler and leaves as an OperationOutcome.
package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/calaimfhir/calaimfhir/internal/auth"
	"github.com/calaimfhir/calaimfhir/profiles"
	"github.com/calaimfhir/calaimfhir/resources"
)

// Config holds the HTTP settings.
type Config struct {
	// BaseURL is the public FHIR base, e.g. http://127.0.0.1:8080/fhir. Links and Location
	// headers use it.
	BaseURL string
	// MaxBodyBytes bounds request bodies (413 above it). Default 10 MiB.
	MaxBodyBytes int64
	// StoreName labels store metrics ("sqlite" or "mongodb").
	StoreName string
	// Version is reported in the CapabilityStatement.
	Version string
	// RequiredReferences are the references that must resolve on write (nil: none).
	RequiredReferences map[string][]string
	// MaxBundleEntries bounds Bundles (default resources.DefaultMaxBundleEntries).
	MaxBundleEntries int
	// MultipleConditionalDelete lets DELETE Type?query delete every match.
	MultipleConditionalDelete bool
	// Verifier checks bearer tokens. Every FHIR endpoint but /fhir/metadata requires one;
	// with no verifier, they all answer 401.
	Verifier *auth.Verifier
	// RateLimit is the sustained requests per second allowed per client, RateBurst the
	// bucket size; 0 turns limiting off.
	RateLimit float64
	RateBurst int
	// CORSOrigins may call from browsers; none by default.
	CORSOrigins []string
	// AuditRetention is how long audit records are kept (0: forever); AuditPurgeInterval how
	// often older ones are deleted (default 1h); AuditQueue how many records may wait to be
	// stored (default 10000). See audit.go.
	AuditRetention     time.Duration
	AuditPurgeInterval time.Duration
	AuditQueue         int
	// TokenEndpoint issues SMART Backend Services tokens at /auth/token and is described at
	// /.well-known/smart-configuration; nil turns both off (404).
	TokenEndpoint *auth.TokenEndpoint
	// Profiles validates CalAIM profiles (profiles.Default() when nil); RequireProfiles lists
	// the types whose writes must conform to their CalAIM profile (see server/conformance.go).
	Profiles        *profiles.Engine
	RequireProfiles []string
	// AccessCacheTTL bounds how long an organization's cached access sets live (see
	// resources.Service.AccessCacheTTL): how soon a change written by another process on the
	// same database (a second server, `calaimfhir import --data`) reaches this one.
	AccessCacheTTL time.Duration
	// BulkConcurrency bounds the bulk requests (Bundles, Claim/$submit, $import,
	// $export-837p) that run at once, so that they cannot crowd short requests off the CPUs
	// (bulk.go): 0 means half the CPUs (at least one), negative no limit. BulkWait is how
	// long one waits for its turn before a 503 (default 30 s).
	BulkConcurrency int
	BulkWait        time.Duration
}

// Server wires the service into an Echo instance.
type Server struct {
	cfg      Config
	svc      *resources.Service
	store    resources.Store
	log      *slog.Logger
	metrics  *metrics
	limiter  *limiter
	audit    *auditor // nil when the store keeps no audit trail
	conf     *conformance
	bulkGate *bulkGate // nil: bulk requests are not bounded
	Echo     *echo.Echo
	capCache
	// sweep is the background repair of member keys started by Migrate (stopped by Close).
	sweep struct {
		stop context.CancelFunc
		done chan struct{}
	}
}

const fhirJSON = "application/fhir+json; charset=utf-8"

// New builds the HTTP server. The store is wrapped so that every call is timed into reg.
func New(cfg Config, store resources.Store, validate resources.Validator, logger *slog.Logger, reg *prometheus.Registry) *Server {
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 10 << 20
	}
	cfg.BaseURL = strings.TrimSuffix(cfg.BaseURL, "/")
	m := newMetrics(reg, cfg.StoreName)
	timed := &timedStore{Store: store, m: m}
	conf := newConformance(cfg, validate)
	validate = conf.enforce
	s := &Server{
		cfg: cfg,
		svc: &resources.Service{Store: timed, Validate: validate, Base: cfg.BaseURL, RequiredReferences: cfg.RequiredReferences,
			MaxBundleEntries: cfg.MaxBundleEntries, MultipleConditionalDelete: cfg.MultipleConditionalDelete, ApplyPatch: Patcher,
			AccessCacheTTL: cfg.AccessCacheTTL, Log: logger},
		store:    timed,
		log:      logger,
		metrics:  m,
		conf:     conf,
		bulkGate: newBulkGate(cfg.BulkConcurrency, cfg.BulkWait),
	}
	s.started = time.Now().UTC()
	if cfg.RateLimit > 0 {
		s.limiter = newLimiter(cfg.RateLimit, max(cfg.RateBurst, 1))
	}
	s.svc.Authorize = s.serviceAuthorizer
	s.svc.Caller = callerInfo
	s.startAudit(store, reg)
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "calaimfhir_access_set_builds_total",
		Help: "Organization access sets and scopes computed from the store (the rest are served from the access-set cache).",
	}, func() float64 { return float64(s.svc.AccessSetBuilds()) }))
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = errorHandler(logger)
	e.Use(s.observe, s.auditRequests, s.recoverPanics, securityHeaders, s.cors)

	e.GET("/health/live", func(c echo.Context) error { return c.JSON(http.StatusOK, map[string]string{"status": "up"}) })
	e.GET("/health/ready", s.ready)
	e.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(reg, promhttp.HandlerOpts{})))
	e.GET("/.well-known/smart-configuration", s.smartConfiguration, s.rateLimit)
	e.GET("/fhir/.well-known/smart-configuration", s.smartConfiguration, s.rateLimit)
	e.POST(TokenPath, s.token, s.oauthRateLimit)

	// Middleware is attached per route, not to the group: group middleware would turn a
	// wrong method on a known path into 404 instead of 405. Only the CapabilityStatement is
	// open; everything else needs a token (authenticate) whose scopes allow the interaction
	// on the type (authorize).
	f := e.Group("/fhir")
	n := s.negotiate
	f.GET("/metadata", s.capabilities, n)
	guarded := []echo.MiddlewareFunc{n, s.authenticate, s.rateLimit, s.authorize}
	bulk := append(slices.Clip(guarded), s.bulk)
	f.POST("/Claim/$submit", s.submitClaims, n, s.authenticate, s.rateLimit, s.bulk)
	f.GET("/Claim/$export-invoice", s.exportInvoice, s.authenticate, s.rateLimit)
	f.POST("/Claim/$export-837p", s.export837, s.authenticate, s.rateLimit, s.bulk)
	f.GET("", s.systemSearch, guarded...)
	f.GET("/", s.systemSearch, guarded...)
	f.POST("", s.bundle, bulk...)
	f.POST("/$import", s.importFile, bulk...)
	f.GET("/$export-rtf", s.exportRTF, s.authenticate, s.rateLimit) // CSV: no FHIR JSON negotiation
	f.GET("/$export-otf", s.exportOTF, s.authenticate, s.rateLimit)
	f.POST("/", s.bundle, bulk...)
	f.PUT("/:type", s.conditionalUpdate, guarded...)
	f.PATCH("/:type", s.patch, guarded...)
	f.PATCH("/:type/:id", s.patch, guarded...)
	f.DELETE("/:type", s.conditionalDelete, guarded...)
	f.GET("/:type", s.search, guarded...)
	f.POST("/:type/_search", s.searchPost, guarded...)
	f.POST("/:type", s.create, guarded...)
	f.GET("/:type/_history", s.typeHistory, guarded...)
	f.GET("/:type/:id", s.read, guarded...)
	f.PUT("/:type/:id", s.update, guarded...)
	f.DELETE("/:type/:id", s.delete, guarded...)
	f.GET("/:type/:id/_history", s.instanceHistory, guarded...)
	f.GET("/:type/:id/_history/:vid", s.vread, guarded...)
	auditGuard := []echo.MiddlewareFunc{n, s.authenticate, s.rateLimit}
	f.GET("/AuditEvent", s.auditEventSearch, append(auditGuard, s.requireAuditReader)...)
	f.POST("/AuditEvent/_search", s.auditEventSearch, append(auditGuard, s.requireAuditReader)...)
	f.GET("/AuditEvent/:id", s.auditEventRead, append(auditGuard, s.requireAuditReader)...)
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		f.Add(m, "/AuditEvent", s.auditReadOnly, auditGuard...)
		if m != http.MethodPost {
			f.Add(m, "/AuditEvent/:id", s.auditReadOnly, auditGuard...)
		}
	}
	s.conformanceRoutes(f, guarded)
	s.Echo = e
	return s
}

// ServeHTTP lets the server be used as an http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.Echo.ServeHTTP(w, r) }

func (s *Server) ready(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), 3*time.Second)
	defer cancel()
	if err := s.store.Ping(ctx); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]string{"status": "ready"})
}

type ctxKey int

const requestIDKey ctxKey = iota

// requestID returns the id given to the request by observe.
func requestID(c echo.Context) string {
	id, _ := c.Request().Context().Value(requestIDKey).(string)
	return id
}

func newRequestID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// observe assigns a request id, and logs and counts every request. Log lines carry the route
// pattern (/fhir/:type/:id), never the URL: ids and query strings can be PHI.
func (s *Server) observe(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		req := c.Request()
		id := req.Header.Get("X-Request-Id")
		if id == "" || len(id) > 64 || strings.ContainsFunc(id, func(r rune) bool { return r < 0x21 || r > 0x7e }) {
			id = newRequestID()
		}
		c.SetRequest(req.WithContext(context.WithValue(req.Context(), requestIDKey, id)))
		c.Response().Header().Set("X-Request-Id", id)
		err := next(c)
		if err != nil {
			c.Error(err)
		}
		status := c.Response().Status
		interaction := interactionOf(c)
		typ := c.Param("type")
		if !resources.Supported(typ) {
			typ = ""
		}
		elapsed := time.Since(start)
		s.metrics.observeRequest(interaction, typ, status, elapsed)
		// The access log line is built as a record rather than through Logger.Info, which
		// would box each value and walk the stack for a source position nobody asks for (six
		// allocations per request in BenchmarkReadPath).
		if ctx := req.Context(); s.log.Enabled(ctx, slog.LevelInfo) {
			r := slog.NewRecord(time.Now(), slog.LevelInfo, "request", 0)
			r.AddAttrs(slog.String("request_id", id), slog.String("method", req.Method), slog.String("route", c.Path()),
				slog.String("interaction", interaction), slog.String("type", typ), slog.Int("status", status),
				slog.Float64("duration_ms", float64(elapsed.Microseconds())/1000), slog.Int64("bytes_out", c.Response().Size))
			_ = s.log.Handler().Handle(ctx, r)
		}
		return nil
	}
}

// interactionOf names the FHIR interaction from the matched route.
func interactionOf(c echo.Context) string {
	method := c.Request().Method
	switch c.Path() {
	case "/fhir/metadata":
		return "capabilities"
	case "/fhir", "/fhir/":
		if method == http.MethodPost {
			return "transaction"
		}
		return "search-system"
	case "/fhir/:type":
		switch method {
		case http.MethodPost:
			return "create"
		case http.MethodPut:
			return "update"
		case http.MethodPatch:
			return "patch"
		case http.MethodDelete:
			return "delete"
		}
		return "search-type"
	case "/fhir/:type/_search":
		return "search-type"
	case "/fhir/:type/_history":
		return "history-type"
	case "/fhir/:type/:id":
		switch method {
		case http.MethodPut:
			return "update"
		case http.MethodPatch:
			return "patch"
		case http.MethodDelete:
			return "delete"
		}
		return "read"
	case "/fhir/:type/:id/_history":
		return "history-instance"
	case "/fhir/:type/:id/_history/:vid":
		return "vread"
	case "/health/live", "/health/ready":
		return "health"
	case "/metrics":
		return "metrics"
	}
	return "other"
}

// recoverPanics turns a panic into a 500 OperationOutcome; the stack goes to the log only.
func (s *Server) recoverPanics(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) (err error) {
		defer func() {
			if r := recover(); r != nil {
				if r == http.ErrAbortHandler {
					panic(r)
				}
				s.log.Error("panic", "request_id", requestID(c), "panic", r)
				err = &resources.Error{Kind: resources.KindInternal, Message: "internal error"}
			}
		}()
		return next(c)
	}
}

// Migrate brings the data the store holds up to what this version of the server expects,
// once per database: today the plans' member keys (resources.Service.MigrateMemberKeys). The
// server calls it before it listens. It then starts, in the background, the repair of the
// member keys a stopped process may have left unsettled (resources.Service.SweepMembers).
func (s *Server) Migrate(ctx context.Context) error {
	if err := s.svc.MigrateMemberKeys(ctx); err != nil {
		return err
	}
	if s.sweep.done != nil {
		return nil
	}
	sweepCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	s.sweep.stop, s.sweep.done = stop, make(chan struct{})
	go func() {
		defer close(s.sweep.done)
		n, err := s.svc.SweepMembers(sweepCtx, resources.SweepWindow)
		switch {
		case err != nil && sweepCtx.Err() == nil:
			s.log.Error("plan member keys: the sweep of recent writes failed", "error", err)
		case n > 0:
			s.log.Warn("plan member keys: repaired resources written before the last stop", "resources", n)
		}
	}()
	return nil
}

// stopSweep stops the sweep Migrate started and waits for it (the store closes next).
func (s *Server) stopSweep() {
	if s.sweep.done != nil {
		s.sweep.stop()
		<-s.sweep.done
	}
}
