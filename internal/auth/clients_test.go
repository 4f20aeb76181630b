package auth

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func registry(t *testing.T, clients ...map[string]any) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{"clients": clients})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func goodClient() map[string]any {
	return map[string]any{"client_id": "plan-a", "name": "Plan A", "organization": "Organization/plan-a", "role": "plan",
		"scope": "system/Patient.rs system/Coverage.read openid",
		"jwks":  json.RawMessage(jwkSet(rsaJWK("rsa-a", &rsaKey.PublicKey), ecJWK("ec-a", &ec384Key.PublicKey)))}
}

func TestParseClients_ReadsARegistry(t *testing.T) {
	url := with(with(goodClient(), "client_id", "cbo-b"), "jwks", nil)
	url = with(with(url, "jwks_url", "https://cbo-b.example.org/.well-known/jwks.json"), "role", "cbo")
	cs, err := ParseClients(registry(t, goodClient(), url))
	if err != nil {
		t.Fatal(err)
	}
	if cs.Len() != 2 {
		t.Fatalf("Len = %d", cs.Len())
	}
	c, ok := cs.Lookup("plan-a")
	if !ok || c.Name != "Plan A" || c.Org != "Organization/plan-a" || c.Role != RolePlan || c.JWKSURL != "" {
		t.Fatalf("plan-a = %+v", c)
	}
	// Only resource scopes are kept.
	if len(c.Scopes) != 2 || c.Scopes[0].Raw != "system/Patient.rs" || c.Scopes[1].Raw != "system/Coverage.read" {
		t.Errorf("scopes %v", c.Scopes)
	}
	for kid, want := range map[string]any{"rsa-a": &rsaKey.PublicKey, "ec-a": &ec384Key.PublicKey} {
		got, err := c.Keys.Key(context.Background(), kid)
		if err != nil || !want.(interface{ Equal(x crypto.PublicKey) bool }).Equal(got) {
			t.Errorf("key %s = %v, %v", kid, got, err)
		}
	}
	if _, err := c.Keys.Key(context.Background(), "nope"); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("unknown kid: %v", err)
	}
	b, _ := cs.Lookup("cbo-b")
	if b.JWKSURL != "https://cbo-b.example.org/.well-known/jwks.json" || b.Keys == nil {
		t.Errorf("cbo-b = %+v", b)
	}
	if _, ok := cs.Lookup("PLAN-A"); ok {
		t.Error("client ids are matched exactly")
	}
	var none *Clients
	if _, ok := none.Lookup("plan-a"); ok || none.Len() != 0 {
		t.Error("a nil registry has clients")
	}
}

func TestParseClients_RefusesMistakes(t *testing.T) {
	g := goodClient()
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"not JSON", []byte("{"), "not a clients registry"},
		{"unknown member (typo)", registry(t, with(g, "scopes", "system/*.cruds")), "unknown field"},
		{"trailing data", append(registry(t, g), []byte(" {}")...), "after the JSON object"},
		{"missing client_id", registry(t, with(g, "client_id", nil)), "client_id is empty"},
		{"client_id with spaces", registry(t, with(g, "client_id", " plan-a")), "client_id is empty or has surrounding spaces"},
		{"client registered twice", registry(t, g, g), "registered twice"},
		{"organization not a reference", registry(t, with(g, "organization", "plan-a")), "not an Organization reference"},
		{"organization of another type", registry(t, with(g, "organization", "Patient/1")), "not an Organization reference"},
		{"unknown role", registry(t, with(g, "role", "root")), "role"},
		{"no role", registry(t, with(g, "role", nil)), "role"},
		{"no resource scope", registry(t, with(g, "scope", "openid")), "no SMART resource scope"},
		{"malformed scope", registry(t, with(g, "scope", "system/Patient.x")), "system/Patient.x"},
		{"both jwks and jwks_url", registry(t, with(g, "jwks_url", "https://a.example/jwks")), "not both"},
		{"neither jwks nor jwks_url", registry(t, with(g, "jwks", nil)), "jwks or jwks_url is required"},
		{"jwks with no usable key", registry(t, with(g, "jwks", json.RawMessage(`{"keys":[{"kty":"oct","kid":"h","k":"c2VjcmV0"}]}`))), "no usable signing key"},
		{"jwks_url over plain http", registry(t, with(with(g, "jwks", nil), "jwks_url", "http://a.example/jwks")), "https"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs, err := ParseClients(tt.data)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v (clients %v), want one mentioning %q", err, cs, tt.want)
			}
		})
	}
}

func TestLoadClients(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "clients.json")
	if err := os.WriteFile(path, registry(t, goodClient()), 0o600); err != nil {
		t.Fatal(err)
	}
	cs, err := LoadClients(path)
	if err != nil || cs.Len() != 1 {
		t.Fatalf("LoadClients = %v, %v", cs, err)
	}
	if _, err := LoadClients(filepath.Join(dir, "absent.json")); err == nil {
		t.Error("a missing file was accepted")
	}
	os.WriteFile(path, []byte(`{"clients":[{"client_id":"x"}]}`), 0o600)
	if _, err := LoadClients(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("error %v does not name the file", err)
	}
}

// The registry example documented in the README parses.
func TestLoadClients_Example(t *testing.T) {
	cs, err := LoadClients(filepath.Join("..", "..", "testdata", "smart", "clients.example.json"))
	if err != nil {
		t.Fatal(err)
	}
	if cs.Len() < 2 {
		t.Fatalf("%d clients", cs.Len())
	}
}
