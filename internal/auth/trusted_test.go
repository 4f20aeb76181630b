package auth

import (
	"context"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// A server that takes tokens from an identity provider also takes those its own token
// endpoint signs, and neither signer can speak for the other.
func TestVerifierTrust_AcceptsEachIssuerWithItsOwnKeys(t *testing.T) {
	const ownIss = "https://fhir.example/auth"
	own, err := LoadOrCreateDevKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ext := newTestVerifier(t, testKeys())
	ownV, err := NewVerifier(VerifierConfig{Issuer: ownIss, Audience: testAud, Keys: own.Keys()})
	if err != nil {
		t.Fatal(err)
	}
	if err := ext.Trust(ownV); err != nil {
		t.Fatal(err)
	}
	mint := func(iss, aud string) string {
		tok, err := own.Mint(MintOptions{Org: "Organization/cbo-1", Role: RoleCBO, Scopes: "system/Task.rs", Issuer: iss, Audience: aud, ClientID: "cbo-sys"})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	tests := []struct {
		name    string
		token   string
		wantOrg string // "" = rejected
	}{
		{"external token", sign(t, jwt.SigningMethodRS256, rsaKey, "rsa-1", claims(nil)), "Organization/plan-a"},
		{"own token", mint(ownIss, testAud), "Organization/cbo-1"},
		{"own key claiming the external issuer", mint(testIss, testAud), ""},
		{"external key claiming the server's issuer", sign(t, jwt.SigningMethodRS256, rsaKey, "rsa-1", claims(map[string]any{"iss": ownIss})), ""},
		{"external key claiming the server's issuer with the server's kid", sign(t, jwt.SigningMethodES256, ec256Key, own.Kid, claims(map[string]any{"iss": ownIss})), ""},
		{"own token for another audience", mint(ownIss, "https://other.example/fhir"), ""},
		{"unknown issuer", sign(t, jwt.SigningMethodRS256, rsaKey, "rsa-1", claims(map[string]any{"iss": "https://evil.example"})), ""},
		{"issuer not a string", sign(t, jwt.SigningMethodRS256, rsaKey, "rsa-1", claims(map[string]any{"iss": 42})), ""},
		{"garbage", "a.b.c", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ext.Verify(context.Background(), tt.token)
			if tt.wantOrg == "" {
				if err == nil {
					t.Fatalf("accepted: %+v", c)
				}
				return
			}
			if err != nil || c.Org != tt.wantOrg {
				t.Fatalf("Verify = %+v, %v", c, err)
			}
		})
	}
}

func TestVerifierTrust_RefusesAmbiguity(t *testing.T) {
	a := newTestVerifier(t, testKeys())
	same := newTestVerifier(t, testKeys())
	if err := a.Trust(same); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("same issuer: %v", err)
	}
	if err := a.Trust(a); err == nil {
		t.Error("a Verifier trusted itself")
	}
	if err := a.Trust(nil); err == nil {
		t.Error("nil accepted")
	}
	b, _ := NewVerifier(VerifierConfig{Issuer: "https://b.example", Audience: testAud, Keys: testKeys()})
	if err := a.Trust(b); err != nil {
		t.Fatal(err)
	}
	b2, _ := NewVerifier(VerifierConfig{Issuer: "https://b.example", Audience: testAud, Keys: testKeys()})
	if err := a.Trust(b2); err == nil {
		t.Error("a second Verifier for a trusted issuer was accepted")
	}
	if a.Issuer() != testIss || b.Issuer() != "https://b.example" {
		t.Error("Issuer()")
	}
}
