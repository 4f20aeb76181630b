package bench_test

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/calaimfhir/calaimfhir/internal/auth"
	"github.com/calaimfhir/calaimfhir/internal/bench"
	"github.com/calaimfhir/calaimfhir/internal/fhirtest"
)

// TestRun_InProcess_EveryOpWithoutErrors runs the harness briefly against a real server on
// the embedded store (real HTTP over loopback) and checks every operation ran, none failed,
// and both outputs carry the figures.
func TestRun_InProcess_EveryOpWithoutErrors(t *testing.T) {
	store, _ := fhirtest.SQLite.OpenFresh(t)
	s := fhirtest.Start(t, store, fhirtest.Options{})
	tokens := func(role, org string) (string, error) {
		return s.Key.Mint(auth.MintOptions{Role: role, Org: org})
	}
	var progress bytes.Buffer
	mix := maps.Clone(bench.DefaultMix)
	mix[bench.OpCreate] = 10 // every operation, the CRUD mix's create too
	rep, err := bench.Run(context.Background(), bench.Config{
		BaseURL: s.Base, Tokens: tokens, Store: "sqlite", Seed: 7, Members: 60, CBOs: 3,
		Clients: 4, Duration: time.Second, SoloDuration: 150 * time.Millisecond, ClaimBatch: 5, Log: &progress, Mix: mix,
	})
	if err != nil {
		t.Fatalf("run: %v\n%s", err, progress.String())
	}
	if rep.Loaded < 60*8 {
		t.Errorf("loaded %d resources, want at least %d", rep.Loaded, 60*8)
	}
	if len(rep.Phases) != 2 || rep.Phases[0].Name != "solo" || rep.Phases[1].Name != "mixed" {
		t.Fatalf("phases: %+v", rep.Phases)
	}
	for _, ph := range rep.Phases {
		seen := map[string]bool{}
		for _, o := range ph.Ops {
			seen[o.Op] = true
			if o.Errors > 0 || o.Count == 0 {
				t.Errorf("%s %s: count %d, errors %d, first error %q", ph.Name, o.Op, o.Count, o.Errors, o.FirstError)
			}
			if o.P50 <= 0 || o.P99 < o.P50 {
				t.Errorf("%s %s: p50 %.3f p99 %.3f", ph.Name, o.Op, o.P50, o.P99)
			}
		}
		// The mix runs the in-process server: it cannot have served its requests for free.
		if ph.Name == "mixed" && runtime.GOOS == "linux" && ph.Total.CPUPerRequest <= 0 {
			t.Errorf("mixed: CPU per request %v, want a measured time", ph.Total.CPUPerRequest)
		}
		want := bench.Ops
		if ph.Name == "mixed" {
			want = bench.Ops[1:] // the ceiling runs alone only
		}
		for _, op := range want {
			if !seen[op] {
				t.Errorf("%s: no %s figures", ph.Name, op)
			}
		}
	}
	solo := rep.Phases[0].Ops
	// Callers see data: the plan finds its members, each CBO the Tasks it owns.
	for _, o := range solo {
		if (o.Op == bench.OpPoll || o.Op == bench.OpSearch || o.Op == bench.OpRead) && o.Resources == 0 {
			t.Errorf("solo %s returned no resources", o.Op)
		}
	}
	if solo[0].Op != bench.OpCeiling || solo[0].Ceiling != 1 {
		t.Errorf("first solo row %+v, want the ceiling at ratio 1", solo[0])
	}
	var table bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, want := range append([]string{"p99 ms", "x ceiling", "claims via "}, bench.Ops...) {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
	var js bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back bench.Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || len(back.Phases) != 2 {
		t.Fatalf("JSON does not read back (%v): %s", err, js.String())
	}
	t.Logf("\n%s", table.String())
}
