package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/calaimfhir/calaimfhir/internal/bench"
)

func TestParseBenchFlags_Combinations(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"in-process default", nil, ""},
		{"in-process on MongoDB", []string{"--mongodb-uri", "mongodb://127.0.0.1:27017/"}, ""},
		{"url with token", []string{"--url", "http://127.0.0.1:8080/fhir", "--token", "T"}, ""},
		{"url with data", []string{"--url", "http://127.0.0.1:8080/fhir", "--data", "./data"}, ""},
		{"url alone", []string{"--url", "http://127.0.0.1:8080/fhir"}, "exactly one"},
		{"url with both", []string{"--url", "http://x/fhir", "--token", "T", "--data", "d"}, "exactly one"},
		{"token without url", []string{"--token", "T"}, "go with --url"},
		{"url and mongodb", []string{"--url", "http://x/fhir", "--token", "T", "--mongodb-uri", "mongodb://x/"}, "serve --mongodb-uri"},
		{"mix", []string{"--mix", "read=3,poll=1"}, ""},
		{"mix with unknown op", []string{"--mix", "read=3,delete=1"}, "--mix"},
		{"mix with the ceiling", []string{"--mix", "ceiling=1"}, "--mix"},
		{"mix with a bad weight", []string{"--mix", "read=-1"}, "--mix"},
		{"stray argument", []string{"now"}, "unexpected"},
		{"claims via submit", []string{"--claims", "submit"}, ""},
		{"claims mode unknown", []string{"--claims", "fax"}, "--claims"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseBenchFlags(tt.args, io.Discard)
			if tt.wantErr == "" && err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

// TestBench_AgainstRunningServe runs bench against serve (started as a user would, with the
// rate limit off), minting tokens with the key in serve's --data, and reads the JSON report.
func TestBench_AgainstRunningServe(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	base, _, dir, _ := startServe(t, ctx, "--rate-limit", "0")
	var out, errOut bytes.Buffer
	err := runBench(ctx, []string{"--url", base, "--data", dir, "--members", "30", "--cbos", "2", "--clients", "2",
		"--duration", "400ms", "--solo", "0", "--claim-batch", "3", "--json"}, &out, &errOut)
	if err != nil {
		t.Fatalf("bench: %v\n%s", err, errOut.String())
	}
	var rep bench.Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("report is not JSON (%v): %s", err, out.String())
	}
	if rep.Target != base || len(rep.Phases) != 2 {
		t.Fatalf("report target %q, %d phases", rep.Target, len(rep.Phases))
	}
	for _, ph := range rep.Phases {
		if ph.Total.Count == 0 || ph.Total.Errors != 0 {
			t.Errorf("%s: %+v", ph.Name, ph.Total)
		}
	}
}

func TestStartPprof_LoopbackOnly(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "192.0.2.1:6060", "example.org:6060"} {
		if _, _, err := startPprof(addr); err == nil || !strings.Contains(err.Error(), "loopback") {
			t.Errorf("%s: error %v, want a refusal", addr, err)
		}
	}
	addr, stop, err := startPprof("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	resp, err := http.Get("http://" + addr + "/debug/pprof/heap?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte("heap profile")) {
		t.Fatalf("heap profile: %d %.200s", resp.StatusCode, body)
	}
}

func TestServe_PprofFlag(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := parseServeFlags([]string{"--pprof", "127.0.0.1:0"}, io.Discard); err != nil {
		t.Fatal(err)
	}
	err := serve(ctx, []string{"--addr", "127.0.0.1:0", "--data", t.TempDir(), "--pprof", "0.0.0.0:6060"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("serve with a public pprof address: %v", err)
	}
}
