package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// startServe runs serve on an ephemeral port with a fresh data directory and returns its FHIR
// base URL, the admin token it printed, and the directory.
func startServe(t *testing.T, ctx context.Context, args ...string) (base, token, dir string, done chan error) {
	t.Helper()
	dir = t.TempDir()
	out, outW := io.Pipe()
	done = make(chan error, 1)
	go func() {
		done <- serve(ctx, append([]string{"--addr", "127.0.0.1:0", "--data", dir}, args...), outW, io.Discard)
		outW.Close()
	}()
	lines := bufio.NewScanner(out)
	for lines.Scan() {
		if _, after, ok := strings.Cut(lines.Text(), "serving FHIR R4 at "); ok {
			base, _, _ = strings.Cut(after, " ")
		}
		if _, after, ok := strings.Cut(lines.Text(), "admin token (24 h): "); ok {
			token = after
		}
		if strings.HasPrefix(lines.Text(), "try:") {
			go io.Copy(io.Discard, out)
			return base, token, dir, done
		}
	}
	t.Fatalf("serve did not start: %v", <-done)
	return
}

func get(t *testing.T, url, token string) int {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestServe_StartsOnEmbeddedStoreAndAnswersMetadata(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	base, token, dir, done := startServe(t, ctx)
	if got := get(t, base+"/metadata", ""); got != http.StatusOK {
		t.Fatalf("metadata: %d", got)
	}
	// PHI endpoints need the token serve printed; the token command mints others from the
	// same key.
	if got := get(t, base+"/Patient", ""); got != http.StatusUnauthorized {
		t.Fatalf("Patient search without a token: %d", got)
	}
	if got := get(t, base+"/Patient", token); got != http.StatusOK {
		t.Fatalf("Patient search with the printed token: %d", got)
	}
	var minted strings.Builder
	if err := runToken([]string{"--data", dir, "--org", "Organization/cbo-a", "--role", "cbo", "--scope", "system/Task.rs"}, &minted); err != nil {
		t.Fatal(err)
	}
	cbo := strings.TrimSpace(minted.String())
	if got := get(t, base+"/Task", cbo); got != http.StatusOK {
		t.Fatalf("Task search with a minted cbo token: %d", got)
	}
	if got := get(t, base+"/Patient", cbo); got != http.StatusForbidden {
		t.Fatalf("Patient search with a Task-only token: %d", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve returned %v", err)
	}
}

// TestServe_Shutdown_LetsInFlightRequestsFinish starts a create whose body is still being
// sent when shutdown begins: the request must complete, and new connections are refused.
func TestServe_Shutdown_LetsInFlightRequestsFinish(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	base, token, _, done := startServe(t, ctx)

	body, bodyW := io.Pipe()
	req, _ := http.NewRequest("POST", base+"/Organization", body)
	req.Header.Set("Content-Type", "application/fhir+json")
	req.Header.Set("Authorization", "Bearer "+token)
	type result struct {
		status int
		err    error
	}
	res := make(chan result, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			res <- result{err: err}
			return
		}
		resp.Body.Close()
		res <- result{status: resp.StatusCode}
	}()
	io.WriteString(bodyW, `{"resourceType":"Organization",`)
	time.Sleep(100 * time.Millisecond) // the request is now in flight
	cancel()                           // as SIGTERM does
	time.Sleep(200 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("serve returned (%v) while a request was in flight", err)
	default:
	}
	io.WriteString(bodyW, `"name":"Hope CBO"}`)
	bodyW.Close()
	r := <-res
	if r.err != nil || r.status != http.StatusCreated {
		t.Fatalf("in-flight create: status %d, err %v; want 201", r.status, r.err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve returned %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not return after the last request")
	}
	if _, err := http.Get(base + "/metadata"); err == nil {
		t.Fatal("the server still accepts connections after shutdown")
	}
}

func TestParseServeFlags_EnvAndFlags(t *testing.T) {
	t.Setenv("CALAIMFHIR_ADDR", "0.0.0.0:9999")
	t.Setenv("CALAIMFHIR_DATA", "/tmp/x")
	cfg, err := parseServeFlags([]string{"--data", "/tmp/y"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.addr != "0.0.0.0:9999" || cfg.data != "/tmp/y" || cfg.mongoURI != "" {
		t.Fatalf("cfg %+v: env should set addr, the flag should win for data", cfg)
	}
	if _, err := parseServeFlags([]string{"extra"}, io.Discard); err == nil {
		t.Fatal("stray arguments accepted")
	}
}

func TestParseServeFlags_BadEnvIsAnError(t *testing.T) {
	t.Setenv("CALAIMFHIR_MAX_BODY_BYTES", "lots")
	if _, err := parseServeFlags(nil, io.Discard); err == nil || !strings.Contains(err.Error(), "CALAIMFHIR_MAX_BODY_BYTES") {
		t.Fatalf("err %v, want one naming CALAIMFHIR_MAX_BODY_BYTES", err)
	}
}

func runToken(args []string, out io.Writer) error { return token(args, out, io.Discard) }

func TestToken_NeedsTheKeyAndTheClaims(t *testing.T) {
	dir := t.TempDir()
	var out strings.Builder
	if err := runToken([]string{"--data", dir, "--org", "Organization/x", "--role", "cbo"}, &out); err == nil {
		t.Fatal("minted a token without a key: serve has not run in this directory")
	}
	if err := runToken([]string{"--data", dir, "--role", "cbo"}, &out); err == nil {
		t.Fatal("minted a token without --org")
	}
}

func TestRequiredReferences_Flag(t *testing.T) {
	cfg := &serveConfig{requiredRefs: "Task=focus; Claim=patient,insurance.coverage"}
	got, err := requiredReferences(cfg)
	if err != nil || len(got) != 2 || len(got["Claim"]) != 2 || got["Task"][0] != "focus" {
		t.Fatalf("got %v, %v", got, err)
	}
	for _, bad := range []string{"Spaceship=x", "Task", "Task="} {
		if _, err := requiredReferences(&serveConfig{requiredRefs: bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if got, _ := requiredReferences(&serveConfig{anyRefs: true, requiredRefs: "Task=focus"}); got != nil {
		t.Fatal("--allow-dangling-references must turn the checks off")
	}
}
