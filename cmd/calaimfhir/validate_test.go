package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func profileFile(parts ...string) string {
	return filepath.Join(append([]string{"..", "..", "testdata"}, parts...)...)
}

func TestValidateCmd(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr error
		want    []string
	}{
		{"valid", []string{profileFile("profiles", "calaim-claim", "valid-chw.json")}, nil, []string{`"severity": "information"`}},
		{"invalid names its profile", []string{profileFile("profiles", "calaim-claim", "invalid-bad-npi.json")}, errInvalid,
			[]string{`"Claim.provider.identifier.value"`, "calaim-npi-1"}},
		{"profile by id", []string{"--profile", "calaim-patient", profileFile("rest", "patient.json")}, errInvalid, []string{`"Patient.identifier"`}},
		{"missing file", []string{profileFile("profiles", "calaim-patient", "valid-minimal.json"), filepath.Join(t.TempDir(), "missing.json")}, nil, nil},
		{"plan terminology replaces the billing table", []string{"--terminology", profileFile("terminology", "plan-overlay"),
			profileFile("profiles", "calaim-claim", "valid-community-supports.json")}, errInvalid, []string{"calaim-clm-3"}},
		{"broken terminology", []string{"--terminology", profileFile("terminology", "broken"), profileFile("profiles", "calaim-claim", "valid-chw.json")}, nil, nil},
		{"unknown profile id", []string{"--profile", "nope", profileFile("profiles", "calaim-claim", "valid-chw.json")}, nil, nil},
		{"no files", nil, nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			err := validateCmd(tc.args, &out, &out)
			switch {
			case tc.want == nil && err == nil:
				t.Fatalf("want an error, got none: %s", out.String())
			case tc.want != nil && !errors.Is(err, tc.wantErr) && !(tc.wantErr == nil && err == nil):
				t.Fatalf("error %v, want %v: %s", err, tc.wantErr, out.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %s:\n%s", w, out.String())
				}
			}
		})
	}
}

func TestServe_RequireProfiles(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	base, token, _, done := startServe(t, ctx, "--require-profiles", "calaim", "--allow-dangling-references")
	req, _ := http.NewRequest("POST", base+"/Patient", strings.NewReader(`{"resourceType":"Patient","gender":"female"}`))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/fhir+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnprocessableEntity {
		t.Fatalf("plain Patient with --require-profiles calaim: %d, want 422", resp.StatusCode)
	}
	b, _ := os.ReadFile(profileFile("profiles", "calaim-patient", "valid-minimal.json"))
	req, _ = http.NewRequest("POST", base+"/Patient", bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/fhir+json")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("CalAIM Patient: %d, want 201", resp.StatusCode)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop")
	}
}

func TestServe_RequireProfilesUnknownType(t *testing.T) {
	err := serve(context.Background(), []string{"--addr", "127.0.0.1:0", "--data", t.TempDir(), "--require-profiles", "Patient,Library"}, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "Library") {
		t.Fatalf("error %v, want one naming Library", err)
	}
}
