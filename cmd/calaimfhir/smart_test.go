package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/calaimfhir/calaimfhir/internal/auth"
	"github.com/calaimfhir/calaimfhir/server"
)

// backendClient is a SMART backend client with an ES384 key, registered in a clients file.
type backendClient struct {
	id  string
	key *ecdsa.PrivateKey
}

func writeClients(t *testing.T, c backendClient) string {
	t.Helper()
	b, _ := c.key.PublicKey.Bytes()
	enc := base64.RawURLEncoding.EncodeToString
	data, _ := json.Marshal(map[string]any{"clients": []any{map[string]any{
		"client_id": c.id, "organization": "Organization/plan-9", "role": "plan", "scope": "system/Patient.rs",
		"jwks": map[string]any{"keys": []any{map[string]any{"kty": "EC", "crv": "P-384", "kid": "k1", "x": enc(b[1:49]), "y": enc(b[49:])}}},
	}}})
	path := filepath.Join(t.TempDir(), "clients.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// getToken runs the client credentials flow against the serve at base.
func (c backendClient) getToken(t *testing.T, base string) (int, map[string]any) {
	t.Helper()
	tokenURL := server.TokenURL(base)
	tok := jwt.NewWithClaims(jwt.SigningMethodES384, jwt.MapClaims{"iss": c.id, "sub": c.id, "aud": tokenURL,
		"exp": time.Now().Add(2 * time.Minute).Unix(), "jti": time.Now().Format(time.RFC3339Nano)})
	tok.Header["kid"] = "k1"
	assertion, err := tok.SignedString(c.key)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.PostForm(tokenURL, url.Values{"grant_type": {"client_credentials"}, "scope": {"system/Patient.rs"},
		"client_assertion_type": {auth.ClientAssertionType}, "client_assertion": {assertion}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}

func newBackendClient(t *testing.T) backendClient {
	k, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return backendClient{id: "plan-9-system", key: k}
}

func TestServe_DevelopmentTokenEndpoint(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := newBackendClient(t)
	base, _, _, done := startServe(t, ctx, "--clients", writeClients(t, c))
	status, body := c.getToken(t, base)
	if status != http.StatusOK {
		t.Fatalf("token: %d %v", status, body)
	}
	if got := get(t, base+"/Patient", body["access_token"].(string)); got != http.StatusOK {
		t.Fatalf("Patient search with the issued token: %d", got)
	}
	if got := get(t, strings.TrimSuffix(base, "/fhir")+"/.well-known/smart-configuration", ""); got != http.StatusOK {
		t.Fatalf("smart-configuration: %d", got)
	}
	cancel()
	<-done
}

// Production: tokens from an external identity provider (a JWKS file) and from the server's
// own token endpoint (signed with --signing-key) are both accepted; no development key is
// made or trusted.
func TestServe_ProductionSigningKeyBesideExternalIssuer(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()
	idpKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding.EncodeToString
	jwks, _ := json.Marshal(map[string]any{"keys": []any{map[string]any{"kty": "RSA", "kid": "idp-1",
		"n": enc(idpKey.N.Bytes()), "e": enc(big.NewInt(int64(idpKey.E)).Bytes())}}})
	jwksPath := filepath.Join(dir, "idp.jwks")
	os.WriteFile(jwksPath, jwks, 0o600)
	signing, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(signing)
	keyPath := filepath.Join(dir, "signing.pem")
	os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)

	c := newBackendClient(t)
	base, token, data, done := startServe(t, ctx, "--jwks-file", jwksPath, "--issuer", "https://idp.example", "--audience", "calaim-api",
		"--signing-key", keyPath, "--clients", writeClients(t, c))
	if token != "" {
		t.Error("a development admin token was printed in production mode")
	}
	if _, err := os.Stat(filepath.Join(data, auth.DevKeyFile)); err == nil {
		t.Error("a development key was created in production mode")
	}

	status, body := c.getToken(t, base)
	if status != http.StatusOK {
		t.Fatalf("token: %d %v", status, body)
	}
	own := body["access_token"].(string)
	claims := jwt.MapClaims{}
	jwt.NewParser().ParseUnverified(own, claims)
	if claims["iss"] != strings.TrimSuffix(base, "/fhir")+"/auth" || claims["aud"] != base {
		t.Errorf("issued token iss %v aud %v", claims["iss"], claims["aud"])
	}
	if got := get(t, base+"/Patient", own); got != http.StatusOK {
		t.Fatalf("Patient search with the server's own token: %d", got)
	}
	idpTok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{"iss": "https://idp.example", "aud": "calaim-api", "sub": "u1",
		"org": "Organization/plan-9", "role": "plan", "scope": "system/Patient.rs", "exp": time.Now().Add(time.Minute).Unix()})
	idpTok.Header["kid"] = "idp-1"
	ext, _ := idpTok.SignedString(idpKey)
	if got := get(t, base+"/Patient", ext); got != http.StatusOK {
		t.Fatalf("Patient search with the identity provider's token: %d", got)
	}
	// The server's key cannot speak for the identity provider.
	serverKey, err := auth.LoadSigningKey(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	forged, err := serverKey.Mint(auth.MintOptions{Org: "Organization/plan-9", Role: "admin", Issuer: "https://idp.example", Audience: "calaim-api"})
	if err != nil {
		t.Fatal(err)
	}
	if got := get(t, base+"/Patient", forged); got != http.StatusUnauthorized {
		t.Fatalf("server-signed token claiming the identity provider: %d", got)
	}
	cancel()
	<-done
}

func TestServe_TokenEndpointConfigErrors(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "idp.jwks"), []byte(`{"keys":[{"kty":"EC","crv":"P-256","kid":"a","x":"`+
		strings.Repeat("A", 43)+`","y":"`+strings.Repeat("A", 43)+`"}]}`), 0o600)
	c := newBackendClient(t)
	clients := writeClients(t, c)
	loose := filepath.Join(dir, "loose.pem")
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	os.WriteFile(loose, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o644)
	badClients := filepath.Join(dir, "bad.json")
	os.WriteFile(badClients, []byte(`{"clients":[{"client_id":"x","role":"root"}]}`), 0o600)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"clients without a signing key under an external issuer", []string{"--jwks-url", "https://idp.example/jwks", "--issuer", "i", "--audience", "a", "--clients", clients}, "--signing-key"},
		{"signing key readable by others", []string{"--signing-key", loose}, "chmod 600"},
		{"missing signing key", []string{"--signing-key", filepath.Join(dir, "absent.pem")}, "does not exist"},
		{"bad clients file", []string{"--clients", badClients}, "clients file"},
		{"missing clients file", []string{"--clients", filepath.Join(dir, "absent.json")}, "clients file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := parseServeFlags(append([]string{"--data", t.TempDir(), "--base-url", "http://127.0.0.1:1/fhir"}, tt.args...), os.Stderr)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, _, err := buildAuth(cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("buildAuth error %v, want one mentioning %q", err, tt.want)
			}
		})
	}
}

// With --signing-key and no identity provider the server is its own and only issuer: its
// tokens are accepted, development tokens are not.
func TestBuildAuth_SigningKeyAlone(t *testing.T) {
	dir := t.TempDir()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	keyPath := filepath.Join(dir, "signing.pem")
	os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	cfg, err := parseServeFlags([]string{"--data", dir, "--base-url", "https://fhir.example.org/fhir", "--signing-key", keyPath}, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	v, devKey, te, err := buildAuth(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if devKey != nil || te == nil || te.URL() != "https://fhir.example.org/auth/token" || v.Issuer() != "https://fhir.example.org/auth" {
		t.Fatalf("dev %v, endpoint %v, issuer %s", devKey, te, v.Issuer())
	}
	own, _ := auth.LoadSigningKey(keyPath)
	tok, _ := own.Mint(auth.MintOptions{Org: "Organization/p", Role: "plan", Issuer: v.Issuer(), Audience: "https://fhir.example.org/fhir"})
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatalf("own token: %v", err)
	}
	dev, _ := auth.LoadOrCreateDevKey(t.TempDir())
	devTok, _ := dev.Mint(auth.MintOptions{Org: "Organization/p", Role: "admin"})
	if _, err := v.Verify(context.Background(), devTok); err == nil {
		t.Fatal("a development token was accepted in production")
	}
}
