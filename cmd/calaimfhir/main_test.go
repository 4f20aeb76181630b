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

// startServe runs serve on an ephemeral port and returns its FHIR base URL.
func startServe(t *testing.T, ctx context.Context, args ...string) (base string, done chan error) {
	t.Helper()
	out, outW := io.Pipe()
	done = make(chan error, 1)
	go func() {
		done <- serve(ctx, append([]string{"--addr", "127.0.0.1:0", "--data", t.TempDir()}, args...), outW, io.Discard)
		outW.Close()
	}()
	lines := bufio.NewScanner(out)
	for lines.Scan() {
		if _, after, ok := strings.Cut(lines.Text(), "serving FHIR R4 at "); ok {
			base, _, _ = strings.Cut(after, " ")
			go io.Copy(io.Discard, out)
			return base, done
		}
	}
	t.Fatalf("serve did not start: %v", <-done)
	return "", nil
}

func TestServe_StartsOnEmbeddedStoreAndAnswersMetadata(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	base, done := startServe(t, ctx)
	resp, err := http.Get(base + "/metadata")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("metadata: %d", resp.StatusCode)
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
	base, done := startServe(t, ctx)

	body, bodyW := io.Pipe()
	req, _ := http.NewRequest("POST", base+"/Organization", body)
	req.Header.Set("Content-Type", "application/fhir+json")
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
