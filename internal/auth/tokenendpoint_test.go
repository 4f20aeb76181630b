package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const teURL = "https://fhir.example/auth/token"

// newTestEndpoint has one client, "svc", signing RS384 with rsaKey (kid rsa-a) or ES384 with
// ec384Key (kid ec-a), and a clock the test moves.
func newTestEndpoint(t *testing.T, extra ...map[string]any) (*TokenEndpoint, *DevKey, *time.Time) {
	t.Helper()
	c := with(goodClient(), "client_id", "svc")
	cs, err := ParseClients(registry(t, append([]map[string]any{c}, extra...)...))
	if err != nil {
		t.Fatal(err)
	}
	key, err := LoadOrCreateDevKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	te, err := NewTokenEndpoint(TokenEndpointConfig{URL: teURL, Clients: cs, Key: key, Issuer: "https://fhir.example/auth", Audience: testAud})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	te.now = func() time.Time { return now }
	return te, key, &now
}

func assertionAt(t *testing.T, now time.Time, edits map[string]any) string {
	t.Helper()
	c := jwt.MapClaims{"iss": "svc", "sub": "svc", "aud": teURL, "exp": now.Add(4 * time.Minute).Unix(), "iat": now.Unix(),
		"jti": fmt.Sprintf("jti-%d", time.Now().UnixNano())}
	for k, v := range edits {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return sign(t, jwt.SigningMethodRS384, rsaKey, "rsa-a", c)
}

func tokenForm(assertion, scope string) url.Values {
	return url.Values{"grant_type": {GrantClientCredentials}, "scope": {scope}, "client_assertion_type": {ClientAssertionType}, "client_assertion": {assertion}}
}

func oauthCode(err error) string {
	var oe *OAuthError
	if errors.As(err, &oe) {
		return fmt.Sprintf("%d %s", oe.Status, oe.Code)
	}
	return fmt.Sprint(err)
}

func TestTokenEndpoint_IssuesTokensTheServerAccepts(t *testing.T) {
	te, key, _ := newTestEndpoint(t)
	te.now = time.Now // the Verifier below checks against the real clock
	resp, err := te.Exchange(context.Background(), tokenForm(assertionAt(t, time.Now(), nil), "system/*.rs"))
	if err != nil {
		t.Fatal(err)
	}
	if resp.TokenType != "bearer" || resp.ExpiresIn != 300 || resp.Scope != "system/Patient.rs system/Coverage.rs" || resp.ClientID != "svc" {
		t.Fatalf("response %+v", resp)
	}
	v, err := NewVerifier(VerifierConfig{Issuer: "https://fhir.example/auth", Audience: testAud, Keys: key.Keys()})
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.Verify(context.Background(), resp.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if c.Subject != "svc" || c.ClientID != "svc" || c.Org != "Organization/plan-a" || c.Role != RolePlan ||
		!c.Allows("Coverage", Search) || c.Allows("Coverage", Create) || c.Allows("Task", Read) {
		t.Errorf("caller %+v", c)
	}
	// ES384 with the client's P-384 key works too.
	es := sign(t, jwt.SigningMethodES384, ec384Key, "ec-a", jwt.MapClaims{"iss": "svc", "sub": "svc", "aud": teURL,
		"exp": time.Now().Add(time.Minute).Unix(), "jti": "es-1"})
	if _, err := te.Exchange(context.Background(), tokenForm(es, "system/Patient.r")); err != nil {
		t.Fatal(err)
	}
	// A matching client_id parameter is fine; aud may be an array holding the URL.
	f := tokenForm(assertionAt(t, time.Now(), map[string]any{"aud": []string{"https://other.example", teURL}}), "system/Patient.r")
	f.Set("client_id", "svc")
	if _, err := te.Exchange(context.Background(), f); err != nil {
		t.Fatal(err)
	}
}

func TestTokenEndpoint_ClockLeewayAndLifetime(t *testing.T) {
	te, _, now := newTestEndpoint(t)
	tests := []struct {
		name  string
		edits map[string]any
		want  string
	}{
		{"exp 5m ahead", map[string]any{"exp": now.Add(5 * time.Minute).Unix()}, ""},
		{"exp 5m20s ahead (within leeway)", map[string]any{"exp": now.Add(5*time.Minute + 20*time.Second).Unix()}, ""},
		{"exp 5m40s ahead", map[string]any{"exp": now.Add(5*time.Minute + 40*time.Second).Unix()}, "401 invalid_client"},
		{"expired 20s ago (within leeway)", map[string]any{"exp": now.Add(-20 * time.Second).Unix(), "iat": now.Add(-time.Minute).Unix()}, ""},
		{"expired 40s ago", map[string]any{"exp": now.Add(-40 * time.Second).Unix(), "iat": now.Add(-time.Minute).Unix()}, "401 invalid_client"},
		{"iat 20s ahead (within leeway)", map[string]any{"iat": now.Add(20 * time.Second).Unix()}, ""},
		{"iat 40s ahead", map[string]any{"iat": now.Add(40 * time.Second).Unix()}, "401 invalid_client"},
		{"exp as a string", map[string]any{"exp": "soon"}, "401 invalid_client"},
		{"jti not a string", map[string]any{"jti": 7}, "401 invalid_client"},
		{"jti too long", map[string]any{"jti": strings.Repeat("j", 257)}, "401 invalid_client"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := te.Exchange(context.Background(), tokenForm(assertionAt(t, *now, tt.edits), "system/Patient.r"))
			got := ""
			if err != nil {
				got = oauthCode(err)
			}
			if got != tt.want {
				t.Fatalf("got %q (%v), want %q", got, err, tt.want)
			}
		})
	}
}

func TestTokenEndpoint_JTIIsRememberedForTheAssertionsLifetime(t *testing.T) {
	te, _, now := newTestEndpoint(t)
	start := *now
	first := assertionAt(t, start, map[string]any{"jti": "once", "exp": start.Add(time.Minute).Unix()})
	if _, err := te.Exchange(context.Background(), tokenForm(first, "system/Patient.r")); err != nil {
		t.Fatal(err)
	}
	// Within its lifetime (and leeway) a new assertion with the same jti is a replay.
	*now = start.Add(80 * time.Second)
	again := assertionAt(t, *now, map[string]any{"jti": "once"})
	if _, err := te.Exchange(context.Background(), tokenForm(again, "system/Patient.r")); oauthCode(err) != "401 invalid_client" {
		t.Fatalf("replay: %v", err)
	}
	// Once the first could no longer be accepted anyway, the jti may come back.
	*now = start.Add(2 * time.Minute)
	later := assertionAt(t, *now, map[string]any{"jti": "once"})
	if _, err := te.Exchange(context.Background(), tokenForm(later, "system/Patient.r")); err != nil {
		t.Fatalf("jti after the first assertion's lifetime: %v", err)
	}
}

func TestTokenEndpoint_ConcurrentReplaysGetOneToken(t *testing.T) {
	te, _, now := newTestEndpoint(t)
	f := tokenForm(assertionAt(t, *now, nil), "system/Patient.r")
	var ok, refused atomic.Int32
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			if _, err := te.Exchange(context.Background(), f); err == nil {
				ok.Add(1)
			} else if oauthCode(err) == "401 invalid_client" {
				refused.Add(1)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 1 || refused.Load() != 15 {
		t.Fatalf("%d tokens issued, %d refused; want 1 and 15", ok.Load(), refused.Load())
	}
}

func TestReplayCache_BoundedWithoutForgettingLiveEntries(t *testing.T) {
	var c replayCache
	now := time.Now()
	for i := range replayEntries {
		if r := c.use(fmt.Sprint(i), now.Add(time.Minute), now); r != replayFresh {
			t.Fatalf("entry %d: %v", i, r)
		}
	}
	if r := c.use("one-more", now.Add(time.Minute), now); r != replayFull {
		t.Fatalf("full cache: %v", r)
	}
	if r := c.use("0", now.Add(time.Minute), now); r != replayed {
		t.Fatalf("a live entry was forgotten: %v", r)
	}
	later := now.Add(2 * time.Minute)
	if r := c.use("one-more", later.Add(time.Minute), later); r != replayFresh {
		t.Fatalf("after expiry: %v", r)
	}
	if len(c.seen) != 1 {
		t.Errorf("%d entries left, want 1", len(c.seen))
	}
}

func TestTokenEndpoint_UnreachableJWKSIs503(t *testing.T) {
	down := with(with(with(goodClient(), "client_id", "down"), "jwks", nil), "jwks_url", "http://127.0.0.1:1/jwks.json")
	te, _, now := newTestEndpoint(t, down)
	a := sign(t, jwt.SigningMethodRS384, rsaKey, "rsa-a", jwt.MapClaims{"iss": "down", "sub": "down", "aud": teURL,
		"exp": now.Add(time.Minute).Unix(), "jti": "d1"})
	_, err := te.Exchange(context.Background(), tokenForm(a, "system/Patient.r"))
	var oe *OAuthError
	if !errors.As(err, &oe) || oe.Status != http.StatusServiceUnavailable || oe.Code != ErrCodeUnavailable || oe.RetryAfter < 1 || oe.Err == nil {
		t.Fatalf("err = %#v", err)
	}
	if strings.Contains(oe.Description, "127.0.0.1") {
		t.Error("the description names the client's infrastructure")
	}
	b, _ := json.Marshal(map[string]string{"d": oe.Description})
	if strings.Contains(string(b), a[:20]) {
		t.Error("the description repeats the assertion")
	}
}

func TestNewTokenEndpoint_ChecksConfig(t *testing.T) {
	key, _ := LoadOrCreateDevKey(t.TempDir())
	good := TokenEndpointConfig{URL: teURL, Key: key, Issuer: "i", Audience: "a"}
	tests := []struct {
		name string
		edit func(*TokenEndpointConfig)
	}{
		{"relative URL", func(c *TokenEndpointConfig) { c.URL = "/auth/token" }},
		{"no URL", func(c *TokenEndpointConfig) { c.URL = "" }},
		{"no key", func(c *TokenEndpointConfig) { c.Key = nil }},
		{"no issuer", func(c *TokenEndpointConfig) { c.Issuer = "" }},
		{"no audience", func(c *TokenEndpointConfig) { c.Audience = "" }},
		{"TTL under a second", func(c *TokenEndpointConfig) { c.TTL = time.Millisecond }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			tt.edit(&c)
			if _, err := NewTokenEndpoint(c); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	te, err := NewTokenEndpoint(good)
	if err != nil || te.URL() != teURL || te.Clients() != 0 {
		t.Fatalf("%v %v", te, err)
	}
	// With no registry every client is unknown.
	a := sign(t, jwt.SigningMethodRS384, rsaKey, "rsa-a", jwt.MapClaims{"iss": "svc", "sub": "svc", "aud": teURL, "exp": time.Now().Add(time.Minute).Unix(), "jti": "x"})
	if _, err := te.Exchange(context.Background(), tokenForm(a, "system/Patient.r")); oauthCode(err) != "401 invalid_client" {
		t.Fatalf("no registry: %v", err)
	}
}
