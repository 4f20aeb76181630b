package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func devVerifier(t *testing.T, k *DevKey) *Verifier {
	t.Helper()
	v, err := k.Verifier()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestDevKeyIsCreatedPrivateThenLoaded(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "nested")
	k1, err := LoadOrCreateDevKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, DevKeyFile)
	if k1.Path != path {
		t.Errorf("Path = %q, want %q", k1.Path, path)
	}
	for _, d := range []string{dir, filepath.Dir(dir)} {
		st, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if perm := st.Mode().Perm(); perm != 0o700 {
			t.Errorf("directory %s mode = %v, want 0700", d, perm)
		}
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := st.Mode().Perm(); perm != 0o600 {
		t.Errorf("key file mode = %v, want 0600", perm)
	}

	// The file is a PKCS#8 PEM holding an ECDSA P-256 key.
	data, _ := os.ReadFile(path)
	block, rest := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" || len(strings.TrimSpace(string(rest))) != 0 {
		t.Fatalf("key file is not one PEM PRIVATE KEY block:\n%s", data)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if ec, ok := parsed.(*ecdsa.PrivateKey); !ok || ec.Curve != elliptic.P256() {
		t.Fatalf("key is %T, want ECDSA P-256", parsed)
	}

	// Kid: base64url SHA-256 thumbprint.
	if raw, err := base64.RawURLEncoding.DecodeString(k1.Kid); err != nil || len(raw) != 32 {
		t.Errorf("Kid %q is not a base64url SHA-256", k1.Kid)
	}

	// Loading again gives the same key and kid, and leaves no temporary files behind.
	k2, err := LoadOrCreateDevKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	if k2.Kid != k1.Kid || !k1.Public().(*ecdsa.PublicKey).Equal(k2.Public()) {
		t.Error("second load gave a different key")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only the key", len(entries))
	}

	// Another directory gets another key.
	k3, err := LoadOrCreateDevKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if k3.Kid == k1.Kid {
		t.Error("two new keys share a kid")
	}
}

func TestDevKeyConcurrentFirstStartsAgree(t *testing.T) {
	dir := t.TempDir()
	kids := make([]string, 8)
	var wg sync.WaitGroup
	for i := range kids {
		wg.Go(func() {
			k, err := LoadOrCreateDevKey(dir)
			if err != nil {
				t.Error(err)
				return
			}
			kids[i] = k.Kid
		})
	}
	wg.Wait()
	for _, kid := range kids[1:] {
		if kid != kids[0] {
			t.Fatalf("concurrent first starts produced different keys: %v", kids)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only the key", len(entries))
	}
}

func TestDevKeyRefusesUnsafeOrForeignFiles(t *testing.T) {
	t.Run("readable by others", func(t *testing.T) {
		dir := t.TempDir()
		if _, err := LoadOrCreateDevKey(dir); err != nil {
			t.Fatal(err)
		}
		os.Chmod(filepath.Join(dir, DevKeyFile), 0o644)
		if _, err := LoadOrCreateDevKey(dir); err == nil || !strings.Contains(err.Error(), "chmod 600") {
			t.Fatalf("error = %v", err)
		}
	})
	t.Run("not PEM", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, DevKeyFile)
		os.WriteFile(path, []byte("garbage"), 0o600)
		if _, err := LoadOrCreateDevKey(dir); err == nil {
			t.Fatal("garbage accepted")
		}
		if data, _ := os.ReadFile(path); string(data) != "garbage" {
			t.Error("the unreadable key file was overwritten")
		}
	})
	t.Run("P-384 key", func(t *testing.T) {
		dir := t.TempDir()
		der, _ := x509.MarshalPKCS8PrivateKey(ec384Key)
		os.WriteFile(filepath.Join(dir, DevKeyFile), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
		if _, err := LoadOrCreateDevKey(dir); err == nil {
			t.Fatal("P-384 key accepted")
		}
	})
	t.Run("RSA key", func(t *testing.T) {
		dir := t.TempDir()
		der, _ := x509.MarshalPKCS8PrivateKey(rsaKey)
		os.WriteFile(filepath.Join(dir, DevKeyFile), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
		if _, err := LoadOrCreateDevKey(dir); err == nil {
			t.Fatal("RSA key accepted")
		}
	})
	t.Run("empty dir name", func(t *testing.T) {
		if _, err := LoadOrCreateDevKey(""); err == nil {
			t.Fatal("empty directory accepted")
		}
	})
}

func TestDevKeyMintsTokensTheDevVerifierAccepts(t *testing.T) {
	k, err := LoadOrCreateDevKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	tok, err := k.Mint(MintOptions{Org: "Organization/cbo-1", Role: RoleCBO, Scopes: "system/Task.rs openid", TTL: 10 * time.Minute, Subject: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := devVerifier(t, k).Verify(context.Background(), tok)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if c.Subject != "alice" || c.ClientID != DefaultDevClientID || c.Org != "Organization/cbo-1" || c.Role != RoleCBO {
		t.Errorf("caller = %+v", c)
	}
	if !c.Allows("Task", Read) || !c.Allows("Task", Search) || c.Allows("Task", Create) {
		t.Errorf("scopes = %v", c.Scopes)
	}

	// Header and claims as documented.
	claims := jwt.MapClaims{}
	parsed, _, err := jwt.NewParser().ParseUnverified(tok, claims)
	if err != nil {
		t.Fatal(err)
	}
	if parsed.Header["alg"] != "ES256" || parsed.Header["kid"] != k.Kid {
		t.Errorf("header = %v", parsed.Header)
	}
	for _, name := range []string{"iss", "aud", "sub", "exp", "iat", "nbf", "scope", "org", "role", "client_id", "jti"} {
		if _, ok := claims[name]; !ok {
			t.Errorf("claim %s missing", name)
		}
	}
	if claims["iss"] != DevIssuer || claims["aud"] != DevAudience {
		t.Errorf("iss/aud = %v/%v", claims["iss"], claims["aud"])
	}
	exp, _ := claims.GetExpirationTime()
	iat, _ := claims.GetIssuedAt()
	if d := exp.Sub(iat.Time); d != 10*time.Minute {
		t.Errorf("exp - iat = %v, want 10m", d)
	}

	// Two tokens have different jti.
	tok2, _ := k.Mint(MintOptions{Org: "Organization/cbo-1", Role: RoleCBO})
	claims2 := jwt.MapClaims{}
	jwt.NewParser().ParseUnverified(tok2, claims2)
	if claims2["jti"] == claims["jti"] {
		t.Error("jti repeated")
	}

	// Tokens from another development key are rejected.
	other, _ := LoadOrCreateDevKey(t.TempDir())
	if _, err := devVerifier(t, other).Verify(context.Background(), tok); err == nil {
		t.Error("another key's verifier accepted the token")
	}
}

func TestDevKeyMintDefaults(t *testing.T) {
	k, err := LoadOrCreateDevKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	tok, err := k.Mint(MintOptions{Org: "Organization/admin-org", Role: RoleAdmin})
	if err != nil {
		t.Fatal(err)
	}
	c, err := devVerifier(t, k).Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if c.Subject != DefaultDevClientID || !c.Allows("Patient", Delete) || !c.Allows("*", Search) {
		t.Errorf("caller = %+v", c)
	}
	claims := jwt.MapClaims{}
	jwt.NewParser().ParseUnverified(tok, claims)
	exp, _ := claims.GetExpirationTime()
	iat, _ := claims.GetIssuedAt()
	if d := exp.Sub(iat.Time); d != DefaultDevTTL {
		t.Errorf("default TTL = %v", d)
	}
	if claims["scope"] != DefaultDevScopes {
		t.Errorf("default scope = %v", claims["scope"])
	}
}

func TestDevKeyMintRejectsWhatVerifyWouldReject(t *testing.T) {
	k, err := LoadOrCreateDevKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	good := MintOptions{Org: "Organization/p", Role: RoleProvider}
	tests := []struct {
		name string
		edit func(*MintOptions)
	}{
		{"missing org", func(o *MintOptions) { o.Org = "" }},
		{"org not a reference", func(o *MintOptions) { o.Org = "p" }},
		{"missing role", func(o *MintOptions) { o.Role = "" }},
		{"unknown role", func(o *MintOptions) { o.Role = "root" }},
		{"malformed scope", func(o *MintOptions) { o.Scopes = "system/Task.q" }},
		{"negative TTL", func(o *MintOptions) { o.TTL = -time.Hour }},
		{"TTL under a second", func(o *MintOptions) { o.TTL = time.Millisecond }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := good
			tt.edit(&o)
			if tok, err := k.Mint(o); err == nil {
				t.Fatalf("Mint accepted %+v: %s", o, tok)
			}
		})
	}
}

func TestDevKeyJWKSPublishesThePublicKey(t *testing.T) {
	k, err := LoadOrCreateDevKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	data, err := k.JWKS()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), `"d"`) {
		t.Fatalf("JWKS contains a private member: %s", data)
	}
	keys, err := parseJWKS(data)
	if err != nil {
		t.Fatal(err)
	}
	if pub, ok := keys[k.Kid]; !ok || !k.Public().(*ecdsa.PublicKey).Equal(pub) {
		t.Fatalf("JWKS keys = %v", keys)
	}
}
