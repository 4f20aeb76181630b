package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
)

// Config is one benchmark run.
type Config struct {
	BaseURL string    // FHIR base of the server under test, e.g. http://127.0.0.1:8080/fhir
	Tokens  TokenFunc // a bearer token per caller
	Store   string    // what the server stores into, for the report ("sqlite", "mongodb", ...)

	Seed    uint64
	Prefix  string // id prefix; default derived from the clock, so runs on one server do not collide
	Members int    // population size (default 1,000)
	CBOs    int    // default 10

	Clients      int            // concurrent clients (default 16)
	Duration     time.Duration  // the mixed phase (default 10 s)
	SoloDuration time.Duration  // each operation alone before the mix; 0 runs only the ceiling alone
	Mix          map[string]int // operation weights of the mixed phase (default DefaultMix)
	ClaimBatch   int            // Claims per submission (default 50)
	ClaimMode    string         // "submit", "batch", or "" to use $submit when /metadata lists it
	LoadClients  int            // concurrent load Bundles (default 4)

	Log io.Writer // progress lines; nil discards them
}

// OpResult is one operation's figures in one phase. Latencies are in milliseconds.
type OpResult struct {
	Op              string  `json:"op"`
	Count           int     `json:"count"`
	Errors          int     `json:"errors"`
	Skipped         int     `json:"skipped,omitempty"`
	Resources       int     `json:"resources"` // written (referral, claim, task-update) or returned (search-cin, poll, read)
	PerSecond       float64 `json:"per_second"`
	ResourcesPerSec float64 `json:"resources_per_second,omitempty"`
	P50             float64 `json:"p50_ms"`
	P95             float64 `json:"p95_ms"`
	P99             float64 `json:"p99_ms"`
	Ceiling         float64 `json:"ratio_to_ceiling,omitempty"` // PerSecond ÷ the ceiling's, same clients
	FirstError      string  `json:"first_error,omitempty"`
	// CPUPerRequest (phase totals only): this process's CPU time per request, in ms: the
	// server's and the harness's when the server runs in this process, the harness's alone
	// with --url. Unlike requests per second it does not depend on how much of the CPUs the
	// host lets the process have, so it compares builds on a shared machine.
	CPUPerRequest float64 `json:"cpu_ms_per_request,omitempty"`
}

// Phase is the figures of one timed phase.
type Phase struct {
	Name    string     `json:"name"`
	Seconds float64    `json:"seconds"`
	Ops     []OpResult `json:"ops"`
	Total   OpResult   `json:"total"`
}

// Report is the result of a run.
type Report struct {
	Target     string    `json:"target"`
	Store      string    `json:"store,omitempty"`
	Seed       uint64    `json:"seed"`
	Prefix     string    `json:"prefix"`
	Members    int       `json:"members"`
	CBOs       int       `json:"cbos"`
	Clients    int       `json:"clients"`
	ClaimMode  string    `json:"claim_mode"` // "$submit" or "batch"
	Loaded     int       `json:"loaded_resources"`
	LoadSecs   float64   `json:"load_seconds"`
	LoadPerSec float64   `json:"load_resources_per_second"`
	Phases     []Phase   `json:"phases"`
	Started    time.Time `json:"started"`
	OpenTasks  int       `json:"open_tasks_left"`
}

// Run loads the population into the server at cfg.BaseURL and runs the phases: the ceiling
// alone, each operation alone (when SoloDuration > 0), then the mix.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg = withDefaults(cfg)
	logf := func(format string, args ...any) {
		if cfg.Log != nil {
			fmt.Fprintf(cfg.Log, format+"\n", args...)
		}
	}
	for op := range cfg.Mix {
		if !slices.Contains(Ops, op) {
			return nil, fmt.Errorf("unknown operation %q in the mix (known: %s)", op, strings.Join(Ops, ", "))
		}
	}
	c := newClient(cfg.BaseURL, cfg.Tokens, cfg.Clients)
	defer c.close()
	rep := &Report{Target: c.base, Store: cfg.Store, Seed: cfg.Seed, Prefix: cfg.Prefix, Members: cfg.Members,
		CBOs: cfg.CBOs, Clients: cfg.Clients, Started: time.Now().UTC()}

	var submit bool
	switch cfg.ClaimMode {
	case "submit":
		submit = true
	case "batch":
	case "", "auto":
		var err error
		if submit, err = offersSubmit(ctx, c); err != nil {
			return nil, fmt.Errorf("read the CapabilityStatement: %w", err)
		}
	default:
		return nil, fmt.Errorf("claim mode %q is not submit, batch or auto", cfg.ClaimMode)
	}
	rep.ClaimMode = "batch"
	if submit {
		rep.ClaimMode = "$submit"
	}

	ceilingURL, stopCeiling, err := startCeiling()
	if err != nil {
		return nil, err
	}
	defer stopCeiling()

	p := Generate(cfg.Seed, cfg.Prefix, cfg.Members, cfg.CBOs)
	logf("loading %d resources and their Tasks' workflow steps (%d members, seed %d, prefix %q) into %s", p.Resources(), cfg.Members, cfg.Seed, cfg.Prefix, c.base)
	loadStart := time.Now()
	n, err := load(ctx, c, p, cfg.LoadClients)
	if err != nil {
		return nil, err
	}
	rep.Loaded, rep.LoadSecs = n, time.Since(loadStart).Seconds()
	rep.LoadPerSec = float64(n) / rep.LoadSecs
	logf("loaded %d resources in %.1f s (%.0f/s)", n, rep.LoadSecs, rep.LoadPerSec)

	w := newWorkload(c, p, ceilingURL, cfg.ClaimBatch, submit, loadStart)
	soloDur := cfg.SoloDuration
	if soloDur == 0 {
		soloDur = min(cfg.Duration, 3*time.Second)
	}
	logf("ceiling alone for %s with %d clients", soloDur, cfg.Clients)
	ceil := w.phase(ctx, "ceiling", cfg.Clients, soloDur, map[string]int{OpCeiling: 1}, cfg.Seed)
	ceilRate := ceil.Total.PerSecond
	solo := Phase{Name: "solo"}
	solo.Ops = append(solo.Ops, ceil.Ops...)
	if cfg.SoloDuration > 0 {
		for _, op := range Ops[1:] {
			if cfg.Mix[op] == 0 {
				continue
			}
			logf("%s alone for %s", op, cfg.SoloDuration)
			ph := w.phase(ctx, op, cfg.Clients, cfg.SoloDuration, map[string]int{op: 1}, cfg.Seed+uint64(len(solo.Ops)))
			solo.Ops = append(solo.Ops, ph.Ops...)
			solo.Seconds += ph.Seconds
		}
	}
	solo.Seconds += ceil.Seconds
	// The solo total counts requests and errors only: latencies of different phases do not mix.
	solo.Total = OpResult{Op: "total"}
	for i := range solo.Ops {
		solo.Total.Count += solo.Ops[i].Count
		solo.Total.Errors += solo.Ops[i].Errors
		if ceilRate > 0 {
			solo.Ops[i].Ceiling = solo.Ops[i].PerSecond / ceilRate
		}
	}
	rep.Phases = append(rep.Phases, solo)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}

	logf("mixed workload for %s with %d clients", cfg.Duration, cfg.Clients)
	mixed := w.phase(ctx, "mixed", cfg.Clients, cfg.Duration, cfg.Mix, cfg.Seed+1000)
	if ceilRate > 0 {
		mixed.Total.Ceiling = mixed.Total.PerSecond / ceilRate
	}
	rep.Phases = append(rep.Phases, mixed)
	rep.OpenTasks = w.pool.size()
	return rep, ctx.Err()
}

func withDefaults(cfg Config) Config {
	if cfg.Members <= 0 {
		cfg.Members = 1000
	}
	if cfg.CBOs <= 0 {
		cfg.CBOs = 10
	}
	if cfg.Clients <= 0 {
		cfg.Clients = 16
	}
	if cfg.Duration <= 0 {
		cfg.Duration = 10 * time.Second
	}
	if cfg.ClaimBatch <= 0 {
		cfg.ClaimBatch = 50
	}
	if cfg.LoadClients <= 0 {
		cfg.LoadClients = 4
	}
	if len(cfg.Mix) == 0 {
		cfg.Mix = DefaultMix
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "b" + strings.ToLower(fmt.Sprintf("%x", time.Now().UnixNano()/1e6)[3:]) + "-"
	}
	return cfg
}

// offersSubmit reads /metadata and reports whether Claim lists the $submit operation.
func offersSubmit(ctx context.Context, c *client) (bool, error) {
	r, err := c.do(ctx, "GET", "metadata", nil, "", "")
	if err != nil {
		return false, err
	}
	var cs struct {
		Rest []struct {
			Resource []struct {
				Type      string `json:"type"`
				Operation []struct {
					Name string `json:"name"`
				} `json:"operation"`
			} `json:"resource"`
		} `json:"rest"`
	}
	if err := json.Unmarshal(r.body, &cs); err != nil {
		return false, err
	}
	for _, rest := range cs.Rest {
		for _, res := range rest.Resource {
			if res.Type != "Claim" {
				continue
			}
			for _, op := range res.Operation {
				if strings.TrimPrefix(op.Name, "$") == "submit" {
					return true, nil
				}
			}
		}
	}
	return false, nil
}

// ceilingBody is about the size of a member's Patient as the server returns it.
var ceilingBody = []byte(`{"resourceType":"Patient","id":"ceiling-000001","meta":{"versionId":"1","lastUpdated":"2026-01-05T09:00:00.000000Z"},` +
	`"identifier":[{"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"MA"}]},"system":"https://calaimfhir.org/fhir/sid/medi-cal-cin","value":"12345678A"}],` +
	`"name":[{"family":"Garcia","given":["Maria"]}],"gender":"female","birthDate":"1970-01-01","address":[{"city":"Riverside","state":"CA","postalCode":"92501"}]}`)

// startCeiling serves ceilingBody from a bare Echo instance on a loopback port: routing and
// HTTP, nothing else. It is the most any handler on this machine and client can do.
func startCeiling() (string, func(), error) {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.GET("/fhir/Patient/:id", func(c echo.Context) error {
		return c.Blob(http.StatusOK, "application/fhir+json; charset=utf-8", ceilingBody)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("ceiling listener: %w", err)
	}
	srv := &http.Server{Handler: e, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	return "http://" + ln.Addr().String() + "/fhir/Patient/ceiling-000001", func() { srv.Close() }, nil
}

// opStats collects one operation's outcomes in one worker.
type opStats struct {
	lat       []time.Duration
	errors    int
	skipped   int
	resources int
	firstErr  string
}

// phase runs clients workers for dur, each choosing operations by weight from mix. A
// request under way at the deadline finishes and counts; none starts after it.
func (w *workload) phase(ctx context.Context, name string, clients int, dur time.Duration, mix map[string]int, seed uint64) Phase {
	var names []string
	var cum []int
	total := 0
	for _, op := range Ops {
		if mix[op] > 0 {
			total += mix[op]
			names = append(names, op)
			cum = append(cum, total)
		}
	}
	results := make([]map[string]*opStats, clients)
	cpu0 := processCPU()
	start := time.Now()
	deadline := start.Add(dur)
	done := make(chan struct{})
	for i := range clients {
		go func() {
			defer func() { done <- struct{}{} }()
			rng := rand.New(rand.NewPCG(seed, uint64(i)))
			st := map[string]*opStats{}
			results[i] = st
			// The first client starts with one of each operation, deadline or not, so every
			// operation of the mix has figures even in a short or slow phase.
			for n := 0; ctx.Err() == nil && ((i == 0 && n < len(names)) || time.Now().Before(deadline)); n++ {
				var op string
				if i == 0 && n < len(names) {
					op = names[n]
				} else {
					op = names[sort.SearchInts(cum, rng.IntN(total)+1)]
				}
				s := st[op]
				if s == nil {
					s = &opStats{}
					st[op] = s
				}
				t0 := time.Now()
				written, err := w.run(ctx, op, rng)
				el := time.Since(t0)
				switch {
				case errors.Is(err, errSkip):
					s.skipped++
					time.Sleep(time.Millisecond)
					continue
				case err != nil:
					s.errors++
					if s.firstErr == "" {
						s.firstErr = err.Error()
					}
				default:
					s.resources += written
				}
				s.lat = append(s.lat, el)
			}
		}()
	}
	for range clients {
		<-done
	}
	elapsed := time.Since(start).Seconds()
	cpu := processCPU() - cpu0
	ph := Phase{Name: name, Seconds: elapsed, Total: OpResult{Op: "total"}}
	var all []time.Duration
	for _, op := range names {
		merged := &opStats{}
		for _, st := range results {
			if s := st[op]; s != nil {
				merged.lat = append(merged.lat, s.lat...)
				merged.errors += s.errors
				merged.skipped += s.skipped
				merged.resources += s.resources
				if merged.firstErr == "" {
					merged.firstErr = s.firstErr
				}
			}
		}
		r := summarize(op, merged, elapsed)
		r.Resources = merged.resources
		if op == OpReferral || op == OpClaim {
			r.ResourcesPerSec = float64(merged.resources) / elapsed
		}
		ph.Ops = append(ph.Ops, r)
		all = append(all, merged.lat...)
		ph.Total.Errors += merged.errors
	}
	t := summarize("total", &opStats{lat: all, errors: ph.Total.Errors}, elapsed)
	if cpu > 0 && t.Count > 0 {
		t.CPUPerRequest = cpu.Seconds() * 1000 / float64(t.Count)
	}
	ph.Total = t
	return ph
}

func summarize(op string, s *opStats, elapsed float64) OpResult {
	slices.Sort(s.lat)
	pct := func(p float64) float64 {
		if len(s.lat) == 0 {
			return 0
		}
		return float64(s.lat[int(p*float64(len(s.lat)-1)+0.5)].Microseconds()) / 1000
	}
	return OpResult{Op: op, Count: len(s.lat), Errors: s.errors, Skipped: s.skipped, PerSecond: float64(len(s.lat)) / elapsed,
		P50: pct(0.50), P95: pct(0.95), P99: pct(0.99), FirstError: s.firstErr}
}
