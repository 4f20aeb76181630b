// Package fhirtest holds test helpers: a real calaimfhir HTTP server on a real store, a small
// client, and readers for the official examples. Fixtures are data in testdata/; this package
// is code only.
package fhirtest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/calaimfhir/calaimfhir/internal/auth"
	"github.com/calaimfhir/calaimfhir/internal/r4"
	"github.com/calaimfhir/calaimfhir/resources"
	"github.com/calaimfhir/calaimfhir/server"
)

// Server is a calaimfhir server listening on a loopback port.
type Server struct {
	t      testing.TB
	HTTP   *httptest.Server
	Server *server.Server
	Base   string // FHIR base URL, ending in /fhir
	logs   *lockedWriter
	// Key signs tokens the server accepts; AdminToken is sent with every request that does
	// not set its own Authorization header.
	Key        *auth.DevKey
	AdminToken string
}

// Token mints a token for a caller of the given role and organization (scopes default to
// system/*.cruds).
func (s *Server) Token(role, org, scopes string) string {
	s.t.Helper()
	tok, err := s.Key.Mint(auth.MintOptions{Role: role, Org: org, Scopes: scopes})
	if err != nil {
		s.t.Fatal(err)
	}
	return tok
}

// LogText returns what the server logged so far.
func (s *Server) LogText() string {
	s.logs.mu.Lock()
	defer s.logs.mu.Unlock()
	return s.logs.w.(*bytes.Buffer).String()
}

// Options adjust the server under test.
type Options struct {
	MaxBodyBytes int64
	// RateLimit and RateBurst turn on per-client rate limiting (off by default).
	RateLimit float64
	RateBurst int
	// CORSOrigins are allowed browser origins.
	CORSOrigins []string
	// AnyReferences turns off the required-reference checks (resources.DefaultRequiredReferences),
	// for fixtures such as the official examples that refer to resources not in the set.
	AnyReferences bool
	// AuditRetention and AuditPurgeInterval turn on the audit trail's retention purge;
	// AuditQueue bounds its queue (default 10000).
	AuditRetention, AuditPurgeInterval time.Duration
	AuditQueue                         int
	// RequireProfiles lists the types whose writes must conform to their CalAIM profile.
	RequireProfiles []string
	// BulkConcurrency and BulkWait bound the bulk requests (server.Config).
	BulkConcurrency int
	BulkWait        time.Duration
}

// Start serves store over HTTP until the test ends.
func Start(t testing.TB, store resources.Store, opts Options) *Server {
	t.Helper()
	logs := &lockedWriter{w: &bytes.Buffer{}}
	logger := slog.New(slog.NewJSONHandler(logs, nil))
	s := &Server{t: t, logs: logs}
	s.HTTP = httptest.NewUnstartedServer(nil)
	base := "http://" + s.HTTP.Listener.Addr().String() + "/fhir"
	required := resources.DefaultRequiredReferences
	if opts.AnyReferences {
		required = nil
	}
	key, err := auth.LoadOrCreateDevKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := key.Verifier()
	if err != nil {
		t.Fatal(err)
	}
	s.Key = key
	s.AdminToken = s.Token("admin", "Organization/calaimfhir-test", "")
	s.Server = server.New(server.Config{BaseURL: base, MaxBodyBytes: opts.MaxBodyBytes, StoreName: "test", Version: "test",
		RequiredReferences: required, Verifier: verifier, RateLimit: opts.RateLimit, RateBurst: opts.RateBurst, CORSOrigins: opts.CORSOrigins,
		AuditRetention: opts.AuditRetention, AuditPurgeInterval: opts.AuditPurgeInterval, AuditQueue: opts.AuditQueue,
		RequireProfiles: opts.RequireProfiles, BulkConcurrency: opts.BulkConcurrency, BulkWait: opts.BulkWait},
		store, r4.Validate, logger, prometheus.NewRegistry())
	if err := s.Server.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	s.HTTP.Config.Handler = s.Server
	s.HTTP.Start()
	s.Base = base
	t.Cleanup(s.Server.Close) // runs after HTTP.Close: flushes the audit queue before the store closes
	t.Cleanup(s.HTTP.Close)
	return s
}

// Response is a received answer.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body into a map (numbers as json.Number).
func (r *Response) JSON(t testing.TB) map[string]any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(r.Body))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("response body is not a JSON object (%v): %s", err, r.Body)
	}
	return m
}

// Do sends a request. path is relative to the server root ("/fhir/Patient") or absolute.
// headers are name, value pairs; a body without a Content-Type header is sent as FHIR JSON.
func (s *Server) Do(method, path string, body []byte, headers ...string) *Response {
	s.t.Helper()
	url := path
	if len(path) > 0 && path[0] == '/' {
		url = s.HTTP.URL + path
	}
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	req.Header.Set("Authorization", "Bearer "+s.AdminToken)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1]) // an empty Authorization sends none
		if headers[i] == "Authorization" && headers[i+1] == "" {
			req.Header.Del("Authorization")
		}
	}
	resp, err := s.HTTP.Client().Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// ExamplesDir returns ../shared/fhir-examples/<sub> relative to the repository root, or skips
// the test when it is absent (a clone outside the workplace).
func ExamplesDir(t testing.TB, sub string) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	dir := filepath.Join(filepath.Dir(file), "..", "..", "..", "shared", "fhir-examples", sub)
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("official examples not found at %s: this test needs ../shared beside the clone", dir)
	}
	return dir
}

// RepoRoot is the repository root (for testdata/).
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}
