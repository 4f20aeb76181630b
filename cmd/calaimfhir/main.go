// Command calaimfhir is the CalAIM FHIR R4 exchange server. Subcommands:
//
//	calaimfhir serve [--addr 127.0.0.1:8080] [--data ./data] [--mongodb-uri URI] [--base-url URL]
//
// Every flag can also be set by a CALAIMFHIR_* environment variable (see the README).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/calaimfhir/calaimfhir/internal/auth"
	"github.com/calaimfhir/calaimfhir/internal/mongostore"
	"github.com/calaimfhir/calaimfhir/internal/r4"
	"github.com/calaimfhir/calaimfhir/internal/sqlitestore"
	"github.com/calaimfhir/calaimfhir/resources"
	"github.com/calaimfhir/calaimfhir/server"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `calaimfhir: FHIR R4 exchange server for Medi-Cal CalAIM

Usage:
  calaimfhir serve [flags]     run the server (embedded SQLite store unless --mongodb-uri is set)
  calaimfhir token --data DIR --org Organization/ID --role admin|plan|cbo|provider [--scope S] [--ttl 1h]
                               mint a development token with the key serve keeps in DIR
  calaimfhir validate [--profile URL|ID] [--terminology DIR] FILE...
                               check FHIR JSON files against R4 and the CalAIM profiles
  calaimfhir import --format referral|screening|chw-encounter|dhcs-mif [--url U --token T | --data DIR] FILE
                               convert CSV/JSON forms to CalAIM FHIR and store them (import -h)
  calaimfhir bench [flags]     load a synthetic population and run a mixed workload (bench -h)
  calaimfhir version           print the version

Run 'calaimfhir serve -h' for the flags.
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve", "bench", "import":
		tuneGC()
	}
	switch os.Args[1] {
	case "serve", "bench":
		tuneProcs()
	}
	switch os.Args[1] {
	case "serve":
		// SIGTERM (and Ctrl-C) start a graceful shutdown.
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		err = serve(ctx, os.Args[2:], os.Stdout, os.Stderr)
		stop()
	case "token":
		err = token(os.Args[2:], os.Stdout, os.Stderr)
	case "import":
		err = importCmd(context.Background(), os.Args[2:], os.Stdin, os.Stdout, os.Stderr)
	case "validate":
		err = validateCmd(os.Args[2:], os.Stdout, os.Stderr)
		if errors.Is(err, errInvalid) {
			os.Exit(1)
		}
	case "bench":
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		err = runBench(ctx, os.Args[2:], os.Stdout, os.Stderr)
		stop()
	case "version":
		fmt.Println(version)
	case "-h", "--help", "help":
		fmt.Print(usage)
	default:
		fmt.Fprintf(os.Stderr, "unknown command %q\n\n%s", os.Args[1], usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "calaimfhir:", err)
		os.Exit(1)
	}
}

// serveConfig is every setting of serve; each has a flag and a CALAIMFHIR_* variable.
type serveConfig struct {
	addr         string
	data         string
	mongoURI     string
	baseURL      string
	maxBodyBytes int64
	logLevel     string
	shutdownWait time.Duration
	anyRefs      bool
	requiredRefs string
	rateLimit    float64
	rateBurst    int
	corsOrigins  string
	maxEntries   int
	multiDelete  bool
	issuer       string
	audience     string
	jwksURL      string
	jwksFile     string
	auditKeep    time.Duration
	requireProfs string
	accessTTL    time.Duration
	readCacheMB  int
	termDir      string
	pprof        string
	clients      string
	signingKey   string
	catalog      string
	bulkSlots    int
}

func parseServeFlags(args []string, stderr io.Writer) (*serveConfig, error) {
	cfg := &serveConfig{}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.addr, "addr", "127.0.0.1:8080", "listen address (CALAIMFHIR_ADDR)")
	fs.StringVar(&cfg.data, "data", "./data", "data directory of the embedded store (CALAIMFHIR_DATA)")
	fs.StringVar(&cfg.mongoURI, "mongodb-uri", "", "use MongoDB at this URI instead of the embedded store (CALAIMFHIR_MONGODB_URI)")
	fs.StringVar(&cfg.baseURL, "base-url", "", "public FHIR base URL; default http://ADDR/fhir (CALAIMFHIR_BASE_URL)")
	fs.Int64Var(&cfg.maxBodyBytes, "max-body-bytes", 10<<20, "largest accepted request body in bytes (CALAIMFHIR_MAX_BODY_BYTES)")
	fs.StringVar(&cfg.logLevel, "log-level", "info", "debug, info, warn or error (CALAIMFHIR_LOG_LEVEL)")
	fs.DurationVar(&cfg.shutdownWait, "shutdown-timeout", 30*time.Second, "how long in-flight requests may take after SIGTERM (CALAIMFHIR_SHUTDOWN_TIMEOUT)")
	fs.IntVar(&cfg.maxEntries, "max-bundle-entries", 1000, "largest accepted Bundle, in entries (CALAIMFHIR_MAX_BUNDLE_ENTRIES)")
	fs.BoolVar(&cfg.multiDelete, "multiple-conditional-delete", false, "let DELETE Type?search delete every match instead of answering 412 (CALAIMFHIR_MULTIPLE_CONDITIONAL_DELETE)")
	fs.StringVar(&cfg.jwksURL, "jwks-url", "", "verify tokens with the keys published at this JWKS URL (https) (CALAIMFHIR_JWKS_URL)")
	fs.StringVar(&cfg.jwksFile, "jwks-file", "", "verify tokens with the keys in this JWKS file (CALAIMFHIR_JWKS_FILE)")
	fs.StringVar(&cfg.issuer, "issuer", "", "required token issuer (iss) with --jwks-url/--jwks-file (CALAIMFHIR_ISSUER)")
	fs.StringVar(&cfg.clients, "clients", "", "SMART Backend Services client registry (JSON) for POST /auth/token (CALAIMFHIR_CLIENTS)")
	fs.StringVar(&cfg.signingKey, "signing-key", "", "ECDSA P-256 PKCS#8 PEM key signing the tokens /auth/token issues; default: the development key under --data, unless --jwks-url/--jwks-file is set (CALAIMFHIR_SIGNING_KEY)")
	fs.StringVar(&cfg.audience, "audience", "", "required token audience (aud) with --jwks-url/--jwks-file (CALAIMFHIR_AUDIENCE)")
	fs.Float64Var(&cfg.rateLimit, "rate-limit", 200, "sustained requests per second per client (token client id, else address); 0 turns limiting off (CALAIMFHIR_RATE_LIMIT)")
	fs.IntVar(&cfg.bulkSlots, "bulk-concurrency", 0, "bulk requests (Bundles, Claim/$submit, $import, $export-837p) preparing their writes at once; 0: half the CPUs, at least one; -1: no limit (CALAIMFHIR_BULK_CONCURRENCY)")
	fs.IntVar(&cfg.rateBurst, "rate-burst", 400, "requests a client may send at once above the rate (CALAIMFHIR_RATE_BURST)")
	fs.StringVar(&cfg.corsOrigins, "cors-origins", "", "comma-separated browser origins allowed to call the API; none by default (CALAIMFHIR_CORS_ORIGINS)")
	fs.DurationVar(&cfg.auditKeep, "audit-retention", 52560*time.Hour, "how long audit records are kept (default 6 years); 0 keeps them forever (CALAIMFHIR_AUDIT_RETENTION)")
	fs.StringVar(&cfg.requiredRefs, "required-references", "", `references that must resolve on write, per type: "Task=focus,for;Claim=patient,insurance.coverage" (default: the CalAIM set in the README) (CALAIMFHIR_REQUIRED_REFERENCES)`)
	fs.StringVar(&cfg.pprof, "pprof", "", "serve Go profiles (/debug/pprof) on this separate loopback address, e.g. 127.0.0.1:6060; off by default (CALAIMFHIR_PPROF)")
	fs.StringVar(&cfg.catalog, "claims-catalog", "", "JSON file replacing the embedded CalAIM service catalog used by Claim/$submit (CALAIMFHIR_CLAIMS_CATALOG)")
	fs.BoolVar(&cfg.anyRefs, "allow-dangling-references", false, "accept Task.focus/for, ServiceRequest.subject, Consent.patient, Claim.patient/insurance references to resources not stored here (CALAIMFHIR_ALLOW_DANGLING_REFERENCES)")
	fs.DurationVar(&cfg.accessTTL, "access-cache-ttl", 2*time.Second, "age at which an organization's cached access sets are rebuilt: a change another process wrote to the same database (a second server, calaimfhir import --data) takes effect here within twice this; changes through this server take effect at once")
	fs.IntVar(&cfg.readCacheMB, "read-cache-mb", sqlitestore.DefaultReadCacheBytes>>20, "MiB of current versions the embedded store keeps in memory for reads by id; 0 turns the cache off; a change another process wrote to the same database reaches these reads within 250 ms (CALAIMFHIR_READ_CACHE_MB)")
	fs.StringVar(&cfg.requireProfs, "require-profiles", "", `types whose writes must conform to their CalAIM profile, comma-separated, or "calaim" for Patient,ServiceRequest,Task,Consent,Claim; off by default (CALAIMFHIR_REQUIRE_PROFILES)`)
	fs.StringVar(&cfg.termDir, "terminology", "", "folder of CodeSystem/ValueSet JSON files that replace (same id) or add to the built-in CalAIM terminology (CALAIMFHIR_TERMINOLOGY)")
	// Every flag can come from CALAIMFHIR_<FLAG>; flags given on the command line win.
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		name := "CALAIMFHIR_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(name); ok && envErr == nil {
			if err := fs.Set(f.Name, v); err != nil {
				envErr = fmt.Errorf("%s: %w", name, err)
			}
		}
	})
	if envErr != nil {
		return nil, envErr
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	return cfg, nil
}

// serve runs the server until ctx is cancelled, then shuts down gracefully.
func serve(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseServeFlags(args, stderr)
	if err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	logger := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))

	store, storeName, where, err := openStore(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer store.Close()

	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return err
	}
	if cfg.baseURL == "" {
		cfg.baseURL = "http://" + ln.Addr().String() + "/fhir"
	}
	verifier, devKey, tokenEndpoint, err := buildAuth(cfg)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	required, err := requiredReferences(cfg)
	if err != nil {
		return err
	}
	engine, err := profileEngine(cfg.termDir)
	if err != nil {
		return err
	}
	requireProfiles, err := requiredProfileTypes(engine, cfg.requireProfs)
	if err != nil {
		return err
	}
	srv := server.New(server.Config{
		BaseURL:                   cfg.baseURL,
		MaxBodyBytes:              cfg.maxBodyBytes,
		StoreName:                 storeName,
		Version:                   version,
		RequiredReferences:        required,
		MaxBundleEntries:          cfg.maxEntries,
		MultipleConditionalDelete: cfg.multiDelete,
		Verifier:                  verifier,
		RateLimit:                 cfg.rateLimit,
		RateBurst:                 cfg.rateBurst,
		CORSOrigins:               splitList(cfg.corsOrigins),
		AuditRetention:            cfg.auditKeep,
		Profiles:                  engine,
		RequireProfiles:           requireProfiles,
		TokenEndpoint:             tokenEndpoint,
		AccessCacheTTL:            cfg.accessTTL,
		BulkConcurrency:           bulkSlots(cfg.bulkSlots),
	}, store, r4.Validate, logger, reg)
	defer srv.Close() // after the HTTP server stopped, before the store closes: flushes the audit queue
	if err := srv.Migrate(ctx); err != nil {
		return fmt.Errorf("bring the stored data up to date: %w", err)
	}
	if err := srv.SetClaimsCatalog(cfg.catalog); err != nil {
		return err
	}

	httpServer := &http.Server{
		Handler:           srv,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      120 * time.Second,
		IdleTimeout:       120 * time.Second,
	}
	logger.Info("listening", "addr", ln.Addr().String(), "store", storeName, "version", version)
	fmt.Fprintf(stdout, "calaimfhir %s serving FHIR R4 at %s (%s store: %s)\n", version, cfg.baseURL, storeName, where)
	if devKey != nil {
		token, err := devKey.Mint(auth.MintOptions{Role: auth.RoleAdmin, Org: "Organization/calaimfhir-admin", TTL: 24 * time.Hour})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "development signing key: %s (mint more tokens with: calaimfhir token --data %s ...)\n", devKey.Path, cfg.data)
		fmt.Fprintf(stdout, "admin token (24 h): %s\n", token)
		fmt.Fprintf(stdout, "try:  curl -s -H 'Authorization: Bearer %s' %s/Patient\n", token, cfg.baseURL)
	} else {
		fmt.Fprintf(stdout, "try:  curl -s %s/metadata\n", cfg.baseURL)
	}
	if tokenEndpoint != nil {
		fmt.Fprintf(stdout, "SMART Backend Services token endpoint: %s (registered clients: %d)\n", tokenEndpoint.URL(), tokenEndpoint.Clients())
	}

	if cfg.pprof != "" {
		addr, stopPprof, err := startPprof(cfg.pprof)
		if err != nil {
			return err
		}
		defer stopPprof()
		fmt.Fprintf(stdout, "profiles at http://%s/debug/pprof/\n", addr)
	}

	errc := make(chan error, 1)
	go func() { errc <- httpServer.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	// Stop accepting, let in-flight requests finish, then close the store (deferred).
	logger.Info("shutting down", "timeout", cfg.shutdownWait.String())
	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.shutdownWait)
	defer cancel()
	if err := httpServer.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	logger.Info("stopped")
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// requiredReferences reads --required-references ("Type=path,path;Type=path") over the
// default set; --allow-dangling-references turns every check off.
func requiredReferences(cfg *serveConfig) (map[string][]string, error) {
	if cfg.anyRefs {
		return nil, nil
	}
	if strings.TrimSpace(cfg.requiredRefs) == "" {
		return resources.DefaultRequiredReferences, nil
	}
	out := map[string][]string{}
	for _, part := range strings.Split(cfg.requiredRefs, ";") {
		typ, paths, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || !resources.Supported(typ) || strings.TrimSpace(paths) == "" {
			return nil, fmt.Errorf("--required-references: %q is not Type=path,path with a stored type", part)
		}
		for _, p := range strings.Split(paths, ",") {
			out[typ] = append(out[typ], strings.TrimSpace(p))
		}
	}
	return out, nil
}

// buildVerifier sets up token verification: production keys from a JWKS URL or file with a
// configured issuer and audience, or else the development key kept under --data (created on
// first start), which is also returned so that serve can print a ready token.
func buildVerifier(cfg *serveConfig) (*auth.Verifier, *auth.DevKey, error) {
	if cfg.jwksURL != "" || cfg.jwksFile != "" {
		if cfg.jwksURL != "" && cfg.jwksFile != "" {
			return nil, nil, fmt.Errorf("give --jwks-url or --jwks-file, not both")
		}
		if cfg.issuer == "" || cfg.audience == "" {
			return nil, nil, fmt.Errorf("--issuer and --audience are required with --jwks-url or --jwks-file")
		}
		var keys auth.KeySource
		var err error
		if cfg.jwksURL != "" {
			keys, err = auth.JWKSURL(cfg.jwksURL, nil, 0)
		} else {
			keys, err = auth.JWKSFile(cfg.jwksFile)
		}
		if err != nil {
			return nil, nil, err
		}
		v, err := auth.NewVerifier(auth.VerifierConfig{Issuer: cfg.issuer, Audience: cfg.audience, Keys: keys})
		return v, nil, err
	}
	key, err := auth.LoadOrCreateDevKey(cfg.data)
	if err != nil {
		return nil, nil, fmt.Errorf("development signing key: %w", err)
	}
	v, err := key.Verifier()
	return v, key, err
}

// buildAuth sets up token verification (buildVerifier) and the SMART Backend Services token
// endpoint. The endpoint signs with --signing-key, or in development with the development
// key (issuer DevIssuer, audience DevAudience, so the development verifier already accepts
// its tokens). With --signing-key the server's own tokens carry iss = the token endpoint's
// root (…/auth) and aud = the FHIR base URL, and are accepted beside the external issuer's
// (--jwks-url/--jwks-file), or alone when there is none; the development key is then not
// used at all. With an external issuer and no --signing-key, the server issues no tokens.
func buildAuth(cfg *serveConfig) (*auth.Verifier, *auth.DevKey, *auth.TokenEndpoint, error) {
	var clients *auth.Clients
	if cfg.clients != "" {
		var err error
		if clients, err = auth.LoadClients(cfg.clients); err != nil {
			return nil, nil, nil, err
		}
	}
	external := cfg.jwksURL != "" || cfg.jwksFile != ""
	tokenURL := server.TokenURL(cfg.baseURL)
	if cfg.signingKey == "" {
		verifier, devKey, err := buildVerifier(cfg)
		if err != nil || devKey == nil {
			if err == nil && clients != nil {
				err = fmt.Errorf("--clients needs --signing-key when tokens come from --jwks-url or --jwks-file")
			}
			return verifier, devKey, nil, err
		}
		te, err := auth.NewTokenEndpoint(auth.TokenEndpointConfig{URL: tokenURL, Clients: clients, Key: devKey,
			Issuer: auth.DevIssuer, Audience: auth.DevAudience})
		return verifier, devKey, te, err
	}
	key, err := auth.LoadSigningKey(cfg.signingKey)
	if err != nil {
		return nil, nil, nil, err
	}
	issuer := strings.TrimSuffix(tokenURL, "/token")
	own, err := auth.NewVerifier(auth.VerifierConfig{Issuer: issuer, Audience: cfg.baseURL, Keys: key.Keys()})
	if err != nil {
		return nil, nil, nil, err
	}
	verifier := own
	if external {
		if verifier, _, err = buildVerifier(cfg); err != nil {
			return nil, nil, nil, err
		}
		if err := verifier.Trust(own); err != nil {
			return nil, nil, nil, fmt.Errorf("--issuer must differ from the server's own issuer %s: %w", issuer, err)
		}
	}
	te, err := auth.NewTokenEndpoint(auth.TokenEndpointConfig{URL: tokenURL, Clients: clients, Key: key,
		Issuer: issuer, Audience: cfg.baseURL})
	return verifier, nil, te, err
}

// token mints a development token from the key serve keeps under --data.
func token(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "./data", "data directory holding the development signing key (the one serve --data uses)")
	org := fs.String("org", "", "the caller's organization, Organization/ID (required)")
	role := fs.String("role", "", "admin, plan, cbo or provider (required)")
	scope := fs.String("scope", auth.DefaultDevScopes, "SMART scopes, space-separated")
	ttl := fs.Duration("ttl", auth.DefaultDevTTL, "lifetime")
	sub := fs.String("sub", "", "subject (default: the client id)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *org == "" || *role == "" {
		return fmt.Errorf("--org and --role are required")
	}
	if _, err := os.Stat(filepath.Join(*data, auth.DevKeyFile)); err != nil {
		return fmt.Errorf("no development key in %s: start the server once with serve --data %s", *data, *data)
	}
	key, err := auth.LoadOrCreateDevKey(*data)
	if err != nil {
		return err
	}
	tok, err := key.Mint(auth.MintOptions{Org: *org, Role: *role, Scopes: *scope, TTL: *ttl, Subject: *sub})
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}

func openStore(ctx context.Context, cfg *serveConfig, log *slog.Logger) (resources.Store, string, string, error) {
	if cfg.mongoURI != "" {
		s, err := mongostore.Open(ctx, cfg.mongoURI, mongostore.Options{})
		if err != nil {
			return nil, "", "", fmt.Errorf("open MongoDB store: %w", err)
		}
		return s, "mongodb", "MongoDB", nil
	}
	opts := sqlitestore.Options{ReadCacheBytes: int64(cfg.readCacheMB) << 20, Log: log}
	if cfg.readCacheMB <= 0 {
		opts.ReadCacheBytes = -1
	}
	s, err := sqlitestore.Open(ctx, cfg.data, opts)
	if err != nil {
		return nil, "", "", fmt.Errorf("open embedded store in %s: %w", cfg.data, err)
	}
	return s, "sqlite", cfg.data, nil
}

// tuneGC lets the heap grow to five times the live data between collections (GOGC=400)
// unless GOGC is set. A server's live heap is small (tens of MB) and its garbage is
// per-request: with Go's default (100) collection took 10–20% of the CPU under load, and 400
// gave 6–12% more creates and reads per second in `calaimfhir bench` (docs/benchmarks.md).
// But five times a large live heap (the bench harness's population at 100,000 members lives in
// the same process) can exceed the machine: unless GOMEMLIMIT is set, a soft limit of three
// quarters of the memory the process may use (the cgroup's limit or the machine's RAM) makes
// the collector work harder near it instead.
func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		if n := memoryAvailable(); n > 0 {
			debug.SetMemoryLimit(n / 4 * 3)
		}
	}
}

// cpus is the CPUs the process may use (GOMAXPROCS as the runtime chose it, which follows
// the cgroup's CPU limit), recorded by tuneProcs; 0 before.
var cpus int

// tuneProcs runs twice as many Go processors as CPUs unless GOMAXPROCS is set. A bulk request
// (a Bundle, a claim submission) runs for tens to hundreds of milliseconds, and the Go
// scheduler lets a running goroutine keep its processor for up to 10 ms: with one processor
// per CPU, a read or a CBO's poll queued behind them. With two per CPU the kernel shares the
// CPUs among the threads in shorter slices and a short request starts at once: against a
// separate `serve`, the default mix's read p99 went from 20–23 ms to 9–12 ms and the poll p99
// from 27–30 ms to 13–17 ms (three alternating pairs; docs/benchmarks.md), at the same
// throughput. The bulk slots stay at half the CPUs (defaultBulkSlots).
func tuneProcs() {
	cpus = runtime.GOMAXPROCS(0)
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(2 * cpus)
	}
}

// defaultBulkSlots is --bulk-concurrency's default: half the CPUs, at least one.
func defaultBulkSlots() int {
	n := cpus
	if n == 0 {
		n = runtime.GOMAXPROCS(0)
	}
	return max(1, n/2)
}

// memoryAvailable is the memory this process may use in bytes: the cgroup v2 limit when there
// is one, else MemTotal from /proc/meminfo; 0 when neither can be read (not Linux).
func memoryAvailable() int64 {
	var total int64
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
				if kb, err := strconv.ParseInt(f[1], 10, 64); err == nil {
					total = kb << 10
				}
			}
		}
	}
	if b, err := os.ReadFile("/sys/fs/cgroup/memory.max"); err == nil {
		if n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil && n > 0 && (total == 0 || n < total) {
			total = n
		}
	}
	return total
}

// bulkSlots is the --bulk-concurrency value the server gets: 0 means defaultBulkSlots.
func bulkSlots(flag int) int {
	if flag == 0 {
		return defaultBulkSlots()
	}
	return flag
}
