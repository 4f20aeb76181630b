package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/calaimfhir/calaimfhir/resources"
	"github.com/golang-jwt/jwt/v5"
)

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func rsaJWK(kid string, pub *rsa.PublicKey) map[string]any {
	return map[string]any{"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
		"n": b64(pub.N.Bytes()), "e": b64(big.NewInt(int64(pub.E)).Bytes())}
}

func ecJWK(kid string, pub *ecdsa.PublicKey) map[string]any {
	b, err := pub.Bytes()
	if err != nil {
		panic(err)
	}
	size := (len(b) - 1) / 2
	crv := map[int]string{32: "P-256", 48: "P-384"}[size]
	return map[string]any{"kty": "EC", "kid": kid, "crv": crv, "x": b64(b[1 : 1+size]), "y": b64(b[1+size:])}
}

func jwkSet(keys ...map[string]any) []byte {
	b, err := json.Marshal(map[string]any{"keys": keys})
	if err != nil {
		panic(err)
	}
	return b
}

func with(m map[string]any, k string, v any) map[string]any {
	out := make(map[string]any, len(m)+1)
	for kk, vv := range m {
		out[kk] = vv
	}
	if v == nil {
		delete(out, k)
	} else {
		out[k] = v
	}
	return out
}

func TestStaticKeysUnknownKid(t *testing.T) {
	ks := StaticKeys(map[string]crypto.PublicKey{"a": &ec256Key.PublicKey})
	if k, err := ks.Key(context.Background(), "a"); err != nil || k == nil {
		t.Fatalf("Key(a) = %v, %v", k, err)
	}
	if _, err := ks.Key(context.Background(), "b"); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("Key(b) error = %v, want ErrUnknownKey", err)
	}
}

func TestParseJWKS(t *testing.T) {
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	rsaA := rsaJWK("rsa-a", &rsaKey.PublicKey)
	ecA := ecJWK("ec-a", &ec256Key.PublicKey)
	ec384 := ecJWK("ec-384", &ec384Key.PublicKey)
	p521 := ecJWK("ec-521", &mustEC(elliptic.P521()).PublicKey)
	p521["crv"] = "P-521"
	offCurve := with(ecA, "y", b64(make([]byte, 32)))
	oct := map[string]any{"kty": "oct", "kid": "hmac", "k": b64([]byte("secret"))}

	tests := []struct {
		name     string
		data     []byte
		wantKids []string
		wantErr  string
	}{
		{"RSA and EC keys", jwkSet(rsaA, ecA, ec384), []string{"rsa-a", "ec-a", "ec-384"}, ""},
		{"padded base64 is tolerated", jwkSet(with(ecA, "x", ecA["x"].(string)+"=")), []string{"ec-a"}, ""},
		{"private members are ignored", jwkSet(with(ecA, "d", "AAAA")), []string{"ec-a"}, ""},
		{"symmetric oct keys are skipped", jwkSet(oct, ecA), []string{"ec-a"}, ""},
		{"encryption keys are skipped", jwkSet(with(rsaA, "use", "enc"), ecA), []string{"ec-a"}, ""},
		{"keys for algorithms not accepted are skipped", jwkSet(with(rsaA, "alg", "PS256"), with(rsaA, "alg", "HS256"), ecA), []string{"ec-a"}, ""},
		{"keys without kid are skipped", jwkSet(with(rsaA, "kid", nil), ecA), []string{"ec-a"}, ""},
		{"P-521 is skipped", jwkSet(p521, ecA), []string{"ec-a"}, ""},
		{"only skipped keys", jwkSet(oct), nil, "no usable signing key"},
		{"empty set", []byte(`{"keys":[]}`), nil, "no usable signing key"},
		{"not JSON", []byte(`keys`), nil, "not valid JSON"},
		{"RSA under 2048 bits", jwkSet(rsaJWK("small", &small.PublicKey)), nil, "1024 bits"},
		{"RSA without n", jwkSet(with(rsaA, "n", nil)), nil, `"n"`},
		{"RSA with bad e", jwkSet(with(rsaA, "e", b64([]byte{2}))), nil, `"e"`},
		{"RSA with oversized e", jwkSet(with(rsaA, "e", b64([]byte{1, 0, 0, 0, 1}))), nil, `"e"`},
		{"EC point not on the curve", jwkSet(offCurve), nil, "not a point on its curve"},
		{"EC coordinate too short", jwkSet(with(ecA, "x", b64(make([]byte, 31)))), nil, `"x" or "y"`},
		{"EC coordinate not base64url", jwkSet(with(ecA, "x", "!!!")), nil, `"x" or "y"`},
		{"duplicate kid", jwkSet(ecA, with(rsaA, "kid", "ec-a")), nil, "two signing keys"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys, err := parseJWKS(tt.data)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(keys) != len(tt.wantKids) {
				t.Errorf("got %d keys, want %v", len(keys), tt.wantKids)
			}
			for _, kid := range tt.wantKids {
				if keys[kid] == nil {
					t.Errorf("kid %q missing", kid)
				}
			}
		})
	}
	// Parsed keys equal the originals.
	keys, _ := parseJWKS(jwkSet(rsaA, ecA))
	if !rsaKey.PublicKey.Equal(keys["rsa-a"]) || !ec256Key.PublicKey.Equal(keys["ec-a"]) {
		t.Error("parsed keys differ from the originals")
	}
}

// writeFileTouched writes data and moves the modification time forward so that the change
// is seen even on file systems with coarse timestamps.
func writeFileTouched(t *testing.T, path string, data []byte, step *int) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	*step++
	mt := time.Now().Add(time.Duration(*step) * time.Hour)
	if err := os.Chtimes(path, mt, mt); err != nil {
		t.Fatal(err)
	}
}

func TestJWKSFileRotatesKeysWhenTheFileChanges(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "jwks.json")
	keyA, keyB, keyC := mustEC(elliptic.P256()), mustEC(elliptic.P256()), mustEC(elliptic.P256())
	step := 0
	writeFileTouched(t, path, jwkSet(ecJWK("a", &keyA.PublicKey)), &step)

	src, err := JWKSFile(path)
	if err != nil {
		t.Fatal(err)
	}
	src.(*jwksFile).checkEvery = 0 // check on every call
	v := newTestVerifier(t, src)
	verify := func(key *ecdsa.PrivateKey, kid string) error {
		_, err := v.Verify(ctx, sign(t, jwt.SigningMethodES256, key, kid, claims(nil)))
		return err
	}

	if err := verify(keyA, "a"); err != nil {
		t.Fatalf("key a: %v", err)
	}
	// Rotation: the file now holds b only.
	writeFileTouched(t, path, jwkSet(ecJWK("b", &keyB.PublicKey)), &step)
	if err := verify(keyB, "b"); err != nil {
		t.Fatalf("key b after rotation: %v", err)
	}
	if err := verify(keyA, "a"); !resources.IsKind(err, resources.KindUnauthorized) {
		t.Fatalf("key a after rotation: %v, want 401", err)
	}
	// A broken rewrite keeps the previous keys; unknown kids are then a key-source failure.
	writeFileTouched(t, path, []byte(`{"keys": [`), &step)
	if err := verify(keyB, "b"); err != nil {
		t.Fatalf("key b after a broken rewrite: %v", err)
	}
	if err := verify(keyC, "c"); !resources.IsKind(err, resources.KindUnavailable) {
		t.Fatalf("unknown key while the file is broken: %v, want 503", err)
	}
	// Fixed again, with c.
	writeFileTouched(t, path, jwkSet(ecJWK("b", &keyB.PublicKey), ecJWK("c", &keyC.PublicKey)), &step)
	if err := verify(keyC, "c"); err != nil {
		t.Fatalf("key c: %v", err)
	}
}

func TestJWKSFileChecksAtMostOncePerInterval(t *testing.T) {
	path := filepath.Join(t.TempDir(), "jwks.json")
	keyB := mustEC(elliptic.P256())
	step := 0
	writeFileTouched(t, path, jwkSet(ecJWK("a", &ec256Key.PublicKey)), &step)
	src, err := JWKSFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f := src.(*jwksFile)
	now := time.Now()
	f.now = func() time.Time { return now }
	f.checked = now
	writeFileTouched(t, path, jwkSet(ecJWK("b", &keyB.PublicKey)), &step)
	if _, err := src.Key(context.Background(), "b"); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("within the interval: %v, want ErrUnknownKey", err)
	}
	now = now.Add(fileCheckInterval)
	if _, err := src.Key(context.Background(), "b"); err != nil {
		t.Fatalf("after the interval: %v", err)
	}
}

func TestJWKSFileMustExistAndParseAtStart(t *testing.T) {
	dir := t.TempDir()
	if _, err := JWKSFile(filepath.Join(dir, "missing.json")); err == nil {
		t.Error("missing file accepted")
	}
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"keys":[{"kty":"oct","kid":"x","k":"c2VjcmV0"}]}`), 0o600)
	if _, err := JWKSFile(bad); err == nil {
		t.Error("file without usable keys accepted")
	}
}

// jwksServer serves a JWK Set that the test can replace, counting requests.
type jwksServer struct {
	*httptest.Server
	body   atomic.Pointer[[]byte]
	status atomic.Int32
	hits   atomic.Int32
}

func newJWKSServer(t *testing.T, body []byte) *jwksServer {
	s := &jwksServer{}
	s.set(body)
	s.status.Store(http.StatusOK)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		if code := int(s.status.Load()); code != http.StatusOK {
			http.Error(w, "down", code)
			return
		}
		w.Header().Set("Content-Type", "application/jwk-set+json")
		w.Write(*s.body.Load())
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) set(body []byte) { s.body.Store(&body) }

// fakeClock is a settable clock for the URL source.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newURLSource(t *testing.T, url string, minRefresh time.Duration) (*jwksURL, *fakeClock) {
	t.Helper()
	src, err := JWKSURL(url, nil, minRefresh)
	if err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{t: time.Now()}
	s := src.(*jwksURL)
	s.now = clock.now
	return s, clock
}

func TestJWKSURLRotatesByKidWithRateLimitedRefresh(t *testing.T) {
	ctx := context.Background()
	keyA, keyB := mustEC(elliptic.P256()), mustEC(elliptic.P256())
	srv := newJWKSServer(t, jwkSet(ecJWK("a", &keyA.PublicKey)))
	src, clock := newURLSource(t, srv.URL+"/jwks", time.Minute)
	v := newTestVerifier(t, src)
	verify := func(key *ecdsa.PrivateKey, kid string) error {
		_, err := v.Verify(ctx, sign(t, jwt.SigningMethodES256, key, kid, claims(nil)))
		return err
	}

	if srv.hits.Load() != 0 {
		t.Fatal("JWKSURL fetched before first use")
	}
	if err := verify(keyA, "a"); err != nil {
		t.Fatalf("key a: %v", err)
	}
	if err := verify(keyA, "a"); err != nil {
		t.Fatalf("key a again: %v", err)
	}
	if got := srv.hits.Load(); got != 1 {
		t.Fatalf("%d fetches for a cached key, want 1", got)
	}

	// Unknown kids do not refetch within minRefresh of the last fetch.
	for range 5 {
		if err := verify(keyA, "made-up"); !resources.IsKind(err, resources.KindUnauthorized) {
			t.Fatalf("made-up kid: %v, want 401", err)
		}
	}
	if got := srv.hits.Load(); got != 1 {
		t.Fatalf("%d fetches after made-up kids within minRefresh, want 1", got)
	}

	// The provider rotates to b; once minRefresh has passed, b's kid triggers one refetch.
	srv.set(jwkSet(ecJWK("b", &keyB.PublicKey)))
	clock.advance(time.Minute)
	if err := verify(keyB, "b"); err != nil {
		t.Fatalf("key b after rotation: %v", err)
	}
	if got := srv.hits.Load(); got != 2 {
		t.Fatalf("%d fetches after rotation, want 2", got)
	}
	// a was dropped by the provider, so it is unknown now (and no refetch: rate limit).
	if err := verify(keyA, "a"); !resources.IsKind(err, resources.KindUnauthorized) {
		t.Fatalf("key a after rotation: %v, want 401", err)
	}
	if got := srv.hits.Load(); got != 2 {
		t.Fatalf("%d fetches, want 2", got)
	}
}

func TestJWKSURLFetchesOnceForConcurrentUnknownKids(t *testing.T) {
	keyC := mustEC(elliptic.P256())
	srv := newJWKSServer(t, jwkSet(ecJWK("a", &ec256Key.PublicKey)))
	src, clock := newURLSource(t, srv.URL, time.Minute)
	if _, err := src.Key(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
	srv.set(jwkSet(ecJWK("a", &ec256Key.PublicKey), ecJWK("c", &keyC.PublicKey)))
	clock.advance(2 * time.Minute)
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			if _, err := src.Key(context.Background(), "c"); err != nil {
				t.Errorf("Key(c): %v", err)
			}
		})
	}
	wg.Wait()
	if got := srv.hits.Load(); got != 2 {
		t.Errorf("%d fetches, want 2 (one initial, one shared refresh)", got)
	}
}

func TestJWKSURLOutages(t *testing.T) {
	ctx := context.Background()
	srv := newJWKSServer(t, jwkSet(ecJWK("a", &ec256Key.PublicKey)))

	t.Run("down from the start is 503, retried after a short wait", func(t *testing.T) {
		srv.hits.Store(0)
		srv.status.Store(http.StatusInternalServerError)
		defer srv.status.Store(http.StatusOK)
		src, clock := newURLSource(t, srv.URL, time.Hour)
		v := newTestVerifier(t, src)
		tok := sign(t, jwt.SigningMethodES256, ec256Key, "a", claims(nil))
		_, err := v.Verify(ctx, tok)
		var re *resources.Error
		if !errors.As(err, &re) || re.Kind != resources.KindUnavailable || re.RetryAfter <= 0 {
			t.Fatalf("error = %#v, want 503 with Retry-After", err)
		}
		if _, err := v.Verify(ctx, tok); !resources.IsKind(err, resources.KindUnavailable) {
			t.Fatalf("second try: %v, want 503", err)
		}
		if got := srv.hits.Load(); got != 1 {
			t.Fatalf("%d fetches, want 1 (rate-limited)", got)
		}
		srv.status.Store(http.StatusOK)
		clock.advance(jwksFirstRetry)
		if _, err := v.Verify(ctx, tok); err != nil {
			t.Fatalf("after recovery: %v", err)
		}
	})

	t.Run("stale keys are refetched and kept when the refetch fails", func(t *testing.T) {
		srv.hits.Store(0)
		src, clock := newURLSource(t, srv.URL, time.Minute)
		if _, err := src.Key(ctx, "a"); err != nil {
			t.Fatal(err)
		}
		srv.status.Store(http.StatusServiceUnavailable)
		defer srv.status.Store(http.StatusOK)
		clock.advance(jwksMaxAge + time.Second)
		if _, err := src.Key(ctx, "a"); err != nil {
			t.Fatalf("stale key during an outage: %v", err)
		}
		if got := srv.hits.Load(); got != 2 {
			t.Fatalf("%d fetches, want 2 (refetch of stale keys)", got)
		}
		if _, err := src.Key(ctx, "zzz"); err == nil || errors.Is(err, ErrUnknownKey) {
			t.Fatalf("unknown kid during an outage: %v, want a fetch error", err)
		}
	})

	t.Run("oversized response", func(t *testing.T) {
		huge := newJWKSServer(t, append(jwkSet(ecJWK("a", &ec256Key.PublicKey)), make([]byte, jwksMaxBody)...))
		src, _ := newURLSource(t, huge.URL, time.Minute)
		if _, err := src.Key(ctx, "a"); err == nil || !strings.Contains(err.Error(), "larger than") {
			t.Fatalf("error = %v", err)
		}
	})
}

func TestJWKSURLRequiresHTTPSExceptOnLoopback(t *testing.T) {
	for url, ok := range map[string]bool{
		"https://idp.example/jwks":        true,
		"http://127.0.0.1:8081/jwks":      true,
		"http://localhost/jwks":           true,
		"http://[::1]:9000/jwks":          true,
		"http://idp.example/jwks":         false,
		"ftp://idp.example/jwks":          false,
		"/relative/jwks":                  false,
		"https://":                        false,
		"http://127.0.0.1.evil.example/x": false,
	} {
		_, err := JWKSURL(url, nil, 0)
		if (err == nil) != ok {
			t.Errorf("JWKSURL(%q) error = %v, want ok=%v", url, err, ok)
		}
	}
}
