package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/calaimfhir/calaimfhir/internal/auth"
	"github.com/calaimfhir/calaimfhir/internal/bench"
	"github.com/calaimfhir/calaimfhir/internal/r4"
	"github.com/calaimfhir/calaimfhir/internal/sqlitestore"
	"github.com/calaimfhir/calaimfhir/server"
)

const benchUsage = `calaimfhir bench: load a synthetic CalAIM population and run a mixed workload

  calaimfhir bench [flags]                          start a server on a temporary embedded store
  calaimfhir bench --mongodb-uri URI [flags]        start a server on the MongoDB store at URI
  calaimfhir bench --url BASE --data DIR [flags]    target a running server; mint tokens with the
                                                    development key in DIR (serve --data DIR)
  calaimfhir bench --url BASE --token T [flags]     target a running server with one token for
                                                    every caller (an admin token, say)

A running server limits each client to --rate-limit requests/s (200 by default); start it with
--rate-limit 0 to measure it. Flags:
`

// benchConfig is every setting of bench.
type benchConfig struct {
	url, token, data, mongoURI, pprof, mix string
	json                                   bool
	run                                    bench.Config
}

func parseBenchFlags(args []string, stderr io.Writer) (*benchConfig, error) {
	cfg := &benchConfig{}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, benchUsage); fs.PrintDefaults() }
	fs.StringVar(&cfg.url, "url", "", "FHIR base of a running server (default: start one in this process)")
	fs.StringVar(&cfg.token, "token", "", "with --url: bearer token sent by every caller")
	fs.StringVar(&cfg.data, "data", "", "with --url: the server's --data directory, whose development key mints a token per caller")
	fs.StringVar(&cfg.mongoURI, "mongodb-uri", "", "without --url: run the in-process server on the MongoDB store at this URI")
	fs.StringVar(&cfg.pprof, "pprof", "", "serve /debug/pprof of this process (client, and the in-process server) at this loopback address")
	fs.BoolVar(&cfg.json, "json", false, "print the report as JSON")
	fs.Uint64Var(&cfg.run.Seed, "seed", 1, "population seed")
	fs.StringVar(&cfg.run.Prefix, "prefix", "", "id prefix of the population (default: from the clock, so runs do not collide)")
	fs.IntVar(&cfg.run.Members, "members", 1000, "members in the population (about 9 resources each)")
	fs.IntVar(&cfg.run.CBOs, "cbos", 10, "CBOs the referrals go to")
	fs.IntVar(&cfg.run.Clients, "clients", 16, "concurrent clients")
	fs.DurationVar(&cfg.run.Duration, "duration", 10*time.Second, "length of the mixed phase")
	fs.DurationVar(&cfg.run.SoloDuration, "solo", 2*time.Second, "length of each operation's solo phase before the mix (0: the ceiling only)")
	fs.StringVar(&cfg.mix, "mix", "", "operation weights of the mix, e.g. read=35,poll=20, or crud ("+mixString(bench.CRUDMix)+"; default "+mixString(bench.DefaultMix)+")")
	fs.IntVar(&cfg.run.ClaimBatch, "claim-batch", 50, "claims per submission")
	fs.StringVar(&cfg.run.ClaimMode, "claims", "auto", "submit claims with POST Claim/$submit (submit), as batch Bundles of creates (batch), or with $submit when the CapabilityStatement lists it (auto)")
	fs.IntVar(&cfg.run.LoadClients, "load-clients", 4, "concurrent transaction Bundles while loading")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	switch {
	case cfg.url != "" && cfg.mongoURI != "":
		return nil, fmt.Errorf("--mongodb-uri starts a server in this process; with --url, start serve --mongodb-uri instead")
	case cfg.url != "" && (cfg.token == "") == (cfg.data == ""):
		return nil, fmt.Errorf("with --url, give --token or --data (exactly one)")
	case cfg.url == "" && (cfg.token != "" || cfg.data != ""):
		return nil, fmt.Errorf("--token and --data go with --url")
	}
	switch cfg.run.ClaimMode {
	case "auto", "submit", "batch":
	default:
		return nil, fmt.Errorf("--claims: %q is not auto, submit or batch", cfg.run.ClaimMode)
	}
	if cfg.mix != "" {
		mix, err := parseMix(cfg.mix)
		if err != nil {
			return nil, err
		}
		cfg.run.Mix = mix
	}
	return cfg, nil
}

// parseMix reads "op=weight,op=weight".
func parseMix(s string) (map[string]int, error) {
	if s == "crud" {
		return bench.CRUDMix, nil
	}
	mix := map[string]int{}
	for _, part := range strings.Split(s, ",") {
		op, w, ok := strings.Cut(strings.TrimSpace(part), "=")
		n, err := strconv.Atoi(w)
		if !ok || err != nil || n < 0 || op == bench.OpCeiling || !contains(bench.Ops, op) {
			return nil, fmt.Errorf("--mix: %q is not op=weight with op one of %s", part, strings.Join(bench.Ops[1:], ", "))
		}
		mix[op] = n
	}
	return mix, nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func mixString(mix map[string]int) string {
	var parts []string
	for _, op := range bench.Ops {
		if mix[op] > 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", op, mix[op]))
		}
	}
	return strings.Join(parts, ",")
}

// runBench runs `calaimfhir bench`: the report goes to stdout, progress to stderr.
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseBenchFlags(args, stderr)
	if err != nil {
		return err
	}
	if cfg.pprof != "" {
		addr, stop, err := startPprof(cfg.pprof)
		if err != nil {
			return err
		}
		defer stop()
		fmt.Fprintf(stderr, "pprof at http://%s/debug/pprof/\n", addr)
	}
	run := cfg.run
	run.Log = stderr
	switch {
	case cfg.url != "" && cfg.token != "":
		run.BaseURL = cfg.url
		run.Tokens = func(role, org string) (string, error) { return cfg.token, nil }
	case cfg.url != "":
		if _, err := os.Stat(filepath.Join(cfg.data, auth.DevKeyFile)); err != nil {
			return fmt.Errorf("no development key in %s: give the --data directory of the server", cfg.data)
		}
		key, err := auth.LoadOrCreateDevKey(cfg.data)
		if err != nil {
			return err
		}
		run.BaseURL, run.Tokens = cfg.url, mintWith(key)
	default:
		base, store, key, stop, err := startBenchServer(ctx, cfg.mongoURI)
		if err != nil {
			return err
		}
		defer stop()
		run.BaseURL, run.Store, run.Tokens = base, store, mintWith(key)
	}
	rep, err := bench.Run(ctx, run)
	if err != nil {
		return err
	}
	if cfg.json {
		return rep.WriteJSON(stdout)
	}
	return rep.WriteTable(stdout)
}

// mintWith mints development tokens, one client id per caller so that a server's per-client
// rate limit does not lump every caller together.
func mintWith(key *auth.DevKey) bench.TokenFunc {
	return func(role, org string) (string, error) {
		return key.Mint(auth.MintOptions{Role: role, Org: org, TTL: 6 * time.Hour,
			ClientID: "bench-" + role + "-" + strings.TrimPrefix(org, "Organization/")})
	}
}

// startBenchServer starts the server as serve does (same store options, verifier, validation,
// request logging) on a loopback port, with a temporary data directory and rate limiting off.
// Request logs are formatted but discarded.
func startBenchServer(ctx context.Context, mongoURI string) (base, storeName string, key *auth.DevKey, stop func(), err error) {
	dir, err := os.MkdirTemp("", "calaimfhir-bench-")
	if err != nil {
		return "", "", nil, nil, err
	}
	cleanup := []func(){func() { os.RemoveAll(dir) }}
	stop = func() {
		for i := len(cleanup) - 1; i >= 0; i-- {
			cleanup[i]()
		}
	}
	defer func() {
		if err != nil {
			stop()
		}
	}()
	scfg := &serveConfig{data: dir, mongoURI: mongoURI, maxBodyBytes: 10 << 20, maxEntries: 1000, readCacheMB: sqlitestore.DefaultReadCacheBytes >> 20}
	store, storeName, _, err := openStore(ctx, scfg, nil) // a fresh store: nothing to migrate
	if err != nil {
		return "", "", nil, nil, err
	}
	cleanup = append(cleanup, func() { store.Close() })
	verifier, key, err := buildVerifier(scfg)
	if err != nil {
		return "", "", nil, nil, err
	}
	required, err := requiredReferences(scfg)
	if err != nil {
		return "", "", nil, nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", "", nil, nil, err
	}
	base = "http://" + ln.Addr().String() + "/fhir"
	logger := slog.New(slog.NewJSONHandler(io.Discard, nil))
	srv := server.New(server.Config{BaseURL: base, MaxBodyBytes: scfg.maxBodyBytes, StoreName: storeName, Version: version,
		RequiredReferences: required, MaxBundleEntries: scfg.maxEntries, Verifier: verifier, BulkConcurrency: defaultBulkSlots()},
		store, r4.Validate, logger, prometheus.NewRegistry())
	if err := srv.Migrate(context.Background()); err != nil {
		return "", "", nil, nil, err
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(ln)
	cleanup = append(cleanup, func() { hs.Close() })
	return base, storeName, key, stop, nil
}
