package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/calaimfhir/calaimfhir/resources"
	"github.com/golang-jwt/jwt/v5"
)

const (
	testIss = "https://idp.example/realms/calaim"
	testAud = "https://fhir.example/fhir"
)

// Keys shared by the tests, generated once.
var (
	rsaKey   *rsa.PrivateKey
	ec256Key *ecdsa.PrivateKey
	ec384Key *ecdsa.PrivateKey
	otherEC  *ecdsa.PrivateKey // signs with a kid that names ec256Key
	edPub    ed25519.PublicKey
	edPriv   ed25519.PrivateKey
)

func TestMain(m *testing.M) {
	var err error
	if rsaKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		panic(err)
	}
	ec256Key = mustEC(elliptic.P256())
	ec384Key = mustEC(elliptic.P384())
	otherEC = mustEC(elliptic.P256())
	if edPub, edPriv, err = ed25519.GenerateKey(rand.Reader); err != nil {
		panic(err)
	}
	os.Exit(m.Run())
}

func mustEC(c elliptic.Curve) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
}

func testKeys() KeySource {
	return StaticKeys(map[string]crypto.PublicKey{
		"rsa-1":   &rsaKey.PublicKey,
		"ec256-1": &ec256Key.PublicKey,
		"ec384-1": &ec384Key.PublicKey,
		"ed-1":    edPub,
	})
}

func newTestVerifier(t *testing.T, keys KeySource) *Verifier {
	t.Helper()
	v, err := NewVerifier(VerifierConfig{Issuer: testIss, Audience: testAud, Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// claims returns valid claims, changed by the edits (a nil value deletes the claim).
func claims(edits map[string]any) jwt.MapClaims {
	now := time.Now()
	c := jwt.MapClaims{
		"iss":       testIss,
		"aud":       testAud,
		"sub":       "svc-plan-a",
		"client_id": "plan-a-client",
		"scope":     "openid system/Task.rs system/ServiceRequest.cruds",
		"org":       "Organization/plan-a",
		"role":      "plan",
		"iat":       now.Unix(),
		"nbf":       now.Unix(),
		"exp":       now.Add(5 * time.Minute).Unix(),
		"jti":       "j1",
	}
	for k, v := range edits {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

func sign(t *testing.T, m jwt.SigningMethod, key any, kid string, c jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// craft builds a compact JWS by hand from a header, claims and raw signature.
func craft(t *testing.T, header map[string]any, c jwt.MapClaims, sig []byte) string {
	t.Helper()
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	return enc(header) + "." + enc(c) + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func rsaPublicPEM(t *testing.T) []byte {
	der, err := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func rel(d time.Duration) int64 { return time.Now().Add(d).Unix() }

func TestVerifyAcceptsGoodTokens(t *testing.T) {
	v := newTestVerifier(t, testKeys())
	tests := []struct {
		name  string
		token func(t *testing.T) string
		check func(t *testing.T, c *Caller)
	}{
		{"RS256 with an RSA key", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodRS256, rsaKey, "rsa-1", claims(nil))
		}, nil},
		{"RS384 with an RSA key", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodRS384, rsaKey, "rsa-1", claims(nil))
		}, nil},
		{"ES256 with a P-256 key", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodES256, ec256Key, "ec256-1", claims(nil))
		}, nil},
		{"ES384 with a P-384 key", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodES384, ec384Key, "ec384-1", claims(nil))
		}, nil},
		{"with a Bearer prefix", func(t *testing.T) string {
			return "Bearer " + sign(t, jwt.SigningMethodES256, ec256Key, "ec256-1", claims(nil))
		}, nil},
		{"aud array containing ours", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodES256, ec256Key, "ec256-1", claims(map[string]any{"aud": []string{"other", testAud}}))
		}, nil},
		{"scp array instead of scope", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodES256, ec256Key, "ec256-1", claims(map[string]any{"scope": nil, "scp": []string{"system/Patient.r", "openid"}}))
		}, func(t *testing.T, c *Caller) {
			if len(c.Scopes) != 1 || c.Scopes[0].Raw != "system/Patient.r" {
				t.Errorf("scopes = %v", c.Scopes)
			}
		}},
		{"azp when client_id is absent", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodES256, ec256Key, "ec256-1", claims(map[string]any{"client_id": nil, "azp": "azp-client"}))
		}, func(t *testing.T, c *Caller) {
			if c.ClientID != "azp-client" {
				t.Errorf("ClientID = %q", c.ClientID)
			}
		}},
		{"client id as subject when sub is absent", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodES256, ec256Key, "ec256-1", claims(map[string]any{"sub": nil}))
		}, func(t *testing.T, c *Caller) {
			if c.Subject != "plan-a-client" {
				t.Errorf("Subject = %q", c.Subject)
			}
		}},
		{"expired within leeway", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodES256, ec256Key, "ec256-1", claims(map[string]any{"exp": rel(-30 * time.Second)}))
		}, nil},
		{"nbf in the future within leeway", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodES256, ec256Key, "ec256-1", claims(map[string]any{"nbf": rel(30 * time.Second)}))
		}, nil},
		{"iat in the future within leeway", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodES256, ec256Key, "ec256-1", claims(map[string]any{"iat": rel(30 * time.Second)}))
		}, nil},
		{"no iat and no nbf", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodES256, ec256Key, "ec256-1", claims(map[string]any{"iat": nil, "nbf": nil}))
		}, nil},
		{"no resource scopes", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodES256, ec256Key, "ec256-1", claims(map[string]any{"scope": nil}))
		}, func(t *testing.T, c *Caller) {
			if c.Scopes != nil || c.Allows("Task", Read) {
				t.Errorf("scopes = %v", c.Scopes)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := v.Verify(context.Background(), tt.token(t))
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if tt.check != nil {
				tt.check(t, c)
				return
			}
			if c.Subject != "svc-plan-a" || c.ClientID != "plan-a-client" || c.Org != "Organization/plan-a" || c.Role != RolePlan {
				t.Errorf("caller = %+v", c)
			}
			if !c.Allows("Task", Read) || !c.Allows("Task", Search) || c.Allows("Task", Create) || !c.Allows("ServiceRequest", Delete) {
				t.Errorf("scopes = %v", c.Scopes)
			}
		})
	}
}

func TestVerifyRejectsBadTokens(t *testing.T) {
	v := newTestVerifier(t, testKeys())
	tests := []struct {
		name    string
		token   func(t *testing.T) string
		wantMsg string
	}{
		{"alg none crafted by hand", func(t *testing.T) string {
			return craft(t, map[string]any{"alg": "none", "typ": "JWT", "kid": "ec256-1"}, claims(nil), nil)
		}, "signing algorithm is not accepted"},
		{"alg None in other case", func(t *testing.T) string {
			return craft(t, map[string]any{"alg": "None", "kid": "ec256-1"}, claims(nil), nil)
		}, "signing algorithm is not accepted"},
		{"alg none signed with the library's none key", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "rsa-1", claims(nil))
		}, "signing algorithm is not accepted"},
		{"no alg header", func(t *testing.T) string {
			return craft(t, map[string]any{"kid": "ec256-1"}, claims(nil), []byte("x"))
		}, "signing algorithm is not accepted"},
		{"HS256 keyed with the RSA public key PEM (alg confusion)", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodHS256, rsaPublicPEM(t), "rsa-1", claims(nil))
		}, "signing algorithm is not accepted"},
		{"HS256 keyed with the RSA public key DER", func(t *testing.T) string {
			der, _ := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
			return sign(t, jwt.SigningMethodHS256, der, "rsa-1", claims(nil))
		}, "signing algorithm is not accepted"},
		{"HS384 keyed with the EC public key", func(t *testing.T) string {
			b, _ := ec256Key.PublicKey.Bytes()
			return sign(t, jwt.SigningMethodHS384, b, "ec256-1", claims(nil))
		}, "signing algorithm is not accepted"},
		{"PS256 is not in the accepted set", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodPS256, rsaKey, "rsa-1", claims(nil))
		}, "signing algorithm is not accepted"},
		{"RS512 is not in the accepted set", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodRS512, rsaKey, "rsa-1", claims(nil))
		}, "signing algorithm is not accepted"},
		{"EdDSA is not in the accepted set", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodEdDSA, edPriv, "ed-1", claims(nil))
		}, "signing algorithm is not accepted"},
		{"ES256 token naming an RSA key's kid", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodES256, ec256Key, "rsa-1", claims(nil))
		}, "does not match its key"},
		{"RS256 token naming an EC key's kid", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodRS256, rsaKey, "ec256-1", claims(nil))
		}, "does not match its key"},
		{"ES384 token naming a P-256 key's kid", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodES384, ec384Key, "ec256-1", claims(nil))
		}, "does not match its key"},
		{"ES256 token naming an Ed25519 key's kid", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodES256, ec256Key, "ed-1", claims(nil))
		}, "does not match its key"},
		{"unknown kid", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodES256, ec256Key, "nobody", claims(nil))
		}, "signing key is not known"},
		{"no kid", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodES256, ec256Key, "", claims(nil))
		}, "no key id"},
		{"signed by another key under our kid", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodES256, otherEC, "ec256-1", claims(nil))
		}, "signature is invalid"},
		{"tampered payload", func(t *testing.T) string {
			good := strings.Split(sign(t, jwt.SigningMethodRS256, rsaKey, "rsa-1", claims(nil)), ".")
			evil := craft(t, map[string]any{}, claims(map[string]any{"role": "admin"}), nil)
			return good[0] + "." + strings.Split(evil, ".")[1] + "." + good[2]
		}, "signature is invalid"},
		{"tampered signature", func(t *testing.T) string {
			parts := strings.Split(sign(t, jwt.SigningMethodES256, ec256Key, "ec256-1", claims(nil)), ".")
			sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
			sig[10] ^= 0x01
			return parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(sig)
		}, "signature is invalid"},
		{"signature stripped", func(t *testing.T) string {
			parts := strings.Split(sign(t, jwt.SigningMethodES256, ec256Key, "ec256-1", claims(nil)), ".")
			return parts[0] + "." + parts[1] + "."
		}, "signature is invalid"},
		{"critical header extension", func(t *testing.T) string {
			tok := jwt.NewWithClaims(jwt.SigningMethodES256, claims(nil))
			tok.Header["kid"] = "ec256-1"
			tok.Header["crit"] = []string{"exp"}
			s, _ := tok.SignedString(ec256Key)
			return s
		}, "critical header"},
		{"expired", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodES256, ec256Key, "ec256-1", claims(map[string]any{"exp": rel(-2 * time.Minute)}))
		}, "has expired"},
		{"nbf in the future", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodES256, ec256Key, "ec256-1", claims(map[string]any{"nbf": rel(5 * time.Minute)}))
		}, "not valid yet"},
		{"iat in the future", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodES256, ec256Key, "ec256-1", claims(map[string]any{"iat": rel(5 * time.Minute)}))
		}, "issued in the future"},
		{"missing exp", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodES256, ec256Key, "ec256-1", claims(map[string]any{"exp": nil}))
		}, "no expiry"},
		{"exp of the wrong type", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodES256, ec256Key, "ec256-1", claims(map[string]any{"exp": "tomorrow"}))
		}, "wrong type"},
		{"wrong iss", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodES256, ec256Key, "ec256-1", claims(map[string]any{"iss": "https://evil.example"}))
		}, "issuer is not accepted"},
		{"missing iss", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodES256, ec256Key, "ec256-1", claims(map[string]any{"iss": nil}))
		}, "no issuer"},
		{"wrong aud", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodES256, ec256Key, "ec256-1", claims(map[string]any{"aud": "https://other.example/fhir"}))
		}, "audience does not include this server"},
		{"aud array without ours", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodES256, ec256Key, "ec256-1", claims(map[string]any{"aud": []string{"a", "b"}}))
		}, "audience does not include this server"},
		{"missing aud", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodES256, ec256Key, "ec256-1", claims(map[string]any{"aud": nil}))
		}, "no audience"},
		{"empty aud", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodES256, ec256Key, "ec256-1", claims(map[string]any{"aud": ""}))
		}, "no audience"},
		{"missing org", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodES256, ec256Key, "ec256-1", claims(map[string]any{"org": nil}))
		}, "no organization (org) claim"},
		{"org that is not an Organization reference", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodES256, ec256Key, "ec256-1", claims(map[string]any{"org": "Patient/1"}))
		}, "not an Organization reference"},
		{"org of the wrong type", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodES256, ec256Key, "ec256-1", claims(map[string]any{"org": []string{"Organization/a"}}))
		}, "org claim is not a string"},
		{"missing role", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodES256, ec256Key, "ec256-1", claims(map[string]any{"role": nil}))
		}, "no role (role) claim"},
		{"unknown role", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodES256, ec256Key, "ec256-1", claims(map[string]any{"role": "superuser"}))
		}, "not one of admin, plan, cbo, provider"},
		{"malformed resource scope", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodES256, ec256Key, "ec256-1", claims(map[string]any{"scope": "system/Task.xyz"}))
		}, "scope is malformed"},
		{"scope of the wrong type", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodES256, ec256Key, "ec256-1", claims(map[string]any{"scope": []string{"system/Task.rs"}}))
		}, "scope claim is not a string"},
		{"scp array of non-strings", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodES256, ec256Key, "ec256-1", claims(map[string]any{"scope": nil, "scp": []any{1, 2}}))
		}, "scp claim is not an array of scopes"},
		{"no subject and no client id", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodES256, ec256Key, "ec256-1", claims(map[string]any{"sub": nil, "client_id": nil}))
		}, "no subject"},
		{"not a JWT", func(t *testing.T) string { return "abc" }, "malformed"},
		{"four segments", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodES256, ec256Key, "ec256-1", claims(nil)) + ".x"
		}, "malformed"},
		{"padded base64", func(t *testing.T) string {
			parts := strings.Split(sign(t, jwt.SigningMethodES256, ec256Key, "ec256-1", claims(nil)), ".")
			return parts[0] + "=." + parts[1] + "." + parts[2]
		}, "malformed"},
		{"too large", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodES256, ec256Key, "ec256-1", claims(map[string]any{"pad": strings.Repeat("x", maxTokenLen)}))
		}, "too large"},
		{"empty bearer", func(t *testing.T) string { return "Bearer " }, "no bearer token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := tt.token(t)
			c, err := v.Verify(context.Background(), tok)
			if err == nil {
				t.Fatalf("Verify accepted the token: %+v", c)
			}
			var re *resources.Error
			if !errors.As(err, &re) || re.Kind != resources.KindUnauthorized {
				t.Fatalf("error = %#v, want *resources.Error of KindUnauthorized", err)
			}
			if !strings.Contains(re.Message, tt.wantMsg) {
				t.Errorf("message = %q, want it to contain %q", re.Message, tt.wantMsg)
			}
			// Neither the message, the error string nor the challenge repeats the token.
			challenge := Challenge(err)
			for _, part := range strings.Split(strings.TrimPrefix(tok, "Bearer "), ".") {
				if len(part) < 8 {
					continue
				}
				for _, s := range []string{re.Message, err.Error(), challenge} {
					if strings.Contains(s, part) {
						t.Errorf("%q echoes part of the token", s)
					}
				}
			}
			if !strings.HasPrefix(challenge, `Bearer realm="calaimfhir"`) {
				t.Errorf("challenge = %q", challenge)
			}
		})
	}
}

func TestVerifyLeewayIsConfigurable(t *testing.T) {
	strict, err := NewVerifier(VerifierConfig{Issuer: testIss, Audience: testAud, Keys: testKeys(), Leeway: -1})
	if err != nil {
		t.Fatal(err)
	}
	tok := sign(t, jwt.SigningMethodES256, ec256Key, "ec256-1", claims(map[string]any{"exp": rel(-2 * time.Second)}))
	if _, err := strict.Verify(context.Background(), tok); err == nil {
		t.Error("no-leeway verifier accepted a token expired 2 s ago")
	}
	if _, err := newTestVerifier(t, testKeys()).Verify(context.Background(), tok); err != nil {
		t.Errorf("default verifier rejected a token expired 2 s ago: %v", err)
	}
	wide, _ := NewVerifier(VerifierConfig{Issuer: testIss, Audience: testAud, Keys: testKeys(), Leeway: 10 * time.Minute})
	tok = sign(t, jwt.SigningMethodES256, ec256Key, "ec256-1", claims(map[string]any{"exp": rel(-5 * time.Minute)}))
	if _, err := wide.Verify(context.Background(), tok); err != nil {
		t.Errorf("10-minute leeway rejected a token expired 5 minutes ago: %v", err)
	}
}

func TestVerifyReadsConfiguredOrgAndRoleClaims(t *testing.T) {
	v, err := NewVerifier(VerifierConfig{Issuer: testIss, Audience: testAud, Keys: testKeys(),
		OrgClaim: "https://calaimfhir.org/org", RoleClaim: "https://calaimfhir.org/role"})
	if err != nil {
		t.Fatal(err)
	}
	tok := sign(t, jwt.SigningMethodES256, ec256Key, "ec256-1", claims(map[string]any{
		"org": nil, "role": nil,
		"https://calaimfhir.org/org": "Organization/cbo-7", "https://calaimfhir.org/role": "cbo",
	}))
	c, err := v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if c.Org != "Organization/cbo-7" || c.Role != RoleCBO {
		t.Errorf("caller = %+v", c)
	}
	// The default claim names are not read by this verifier.
	tok = sign(t, jwt.SigningMethodES256, ec256Key, "ec256-1", claims(nil))
	if _, err := v.Verify(context.Background(), tok); err == nil {
		t.Error("accepted a token without the configured org claim")
	}
}

type keySourceFunc func(ctx context.Context, kid string) (crypto.PublicKey, error)

func (f keySourceFunc) Key(ctx context.Context, kid string) (crypto.PublicKey, error) {
	return f(ctx, kid)
}

func TestVerifyReportsUnavailableKeysAs503(t *testing.T) {
	down := keySourceFunc(func(context.Context, string) (crypto.PublicKey, error) {
		return nil, errors.New("dial tcp: connection refused")
	})
	v := newTestVerifier(t, down)
	_, err := v.Verify(context.Background(), sign(t, jwt.SigningMethodES256, ec256Key, "ec256-1", claims(nil)))
	var re *resources.Error
	if !errors.As(err, &re) || re.Kind != resources.KindUnavailable || re.RetryAfter <= 0 {
		t.Fatalf("error = %#v, want KindUnavailable with RetryAfter", err)
	}
	if strings.Contains(re.Message, "refused") {
		t.Errorf("message %q exposes the cause", re.Message)
	}
	if got := Challenge(err); got != `Bearer realm="calaimfhir"` {
		t.Errorf("Challenge = %q", got)
	}
}

func TestVerifyPassesContextToKeySource(t *testing.T) {
	type ctxKey struct{}
	var saw any
	ks := keySourceFunc(func(ctx context.Context, kid string) (crypto.PublicKey, error) {
		saw = ctx.Value(ctxKey{})
		return &ec256Key.PublicKey, nil
	})
	ctx := context.WithValue(context.Background(), ctxKey{}, "here")
	if _, err := newTestVerifier(t, ks).Verify(ctx, sign(t, jwt.SigningMethodES256, ec256Key, "k", claims(nil))); err != nil {
		t.Fatal(err)
	}
	if saw != "here" {
		t.Errorf("key source saw context value %v", saw)
	}
}

func TestVerifyIsSafeForConcurrentUse(t *testing.T) {
	v := newTestVerifier(t, testKeys())
	good := sign(t, jwt.SigningMethodES256, ec256Key, "ec256-1", claims(nil))
	bad := sign(t, jwt.SigningMethodES256, otherEC, "ec256-1", claims(nil))
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			for range 20 {
				if _, err := v.Verify(context.Background(), good); err != nil {
					t.Errorf("goroutine %d: %v", i, err)
				}
				if _, err := v.Verify(context.Background(), bad); err == nil {
					t.Errorf("goroutine %d accepted a bad token", i)
				}
			}
		})
	}
	wg.Wait()
}

func TestNewVerifierChecksConfig(t *testing.T) {
	keys := testKeys()
	tests := []struct {
		name string
		cfg  VerifierConfig
	}{
		{"no issuer", VerifierConfig{Audience: testAud, Keys: keys}},
		{"no audience", VerifierConfig{Issuer: testIss, Keys: keys}},
		{"no keys", VerifierConfig{Issuer: testIss, Audience: testAud}},
		{"same org and role claim", VerifierConfig{Issuer: testIss, Audience: testAud, Keys: keys, OrgClaim: "x", RoleClaim: "x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewVerifier(tt.cfg); err == nil {
				t.Error("NewVerifier accepted the config")
			}
		})
	}
	v, err := NewVerifier(VerifierConfig{Issuer: testIss, Audience: testAud, Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	if v.cfg.Leeway != DefaultLeeway || v.cfg.OrgClaim != "org" || v.cfg.RoleClaim != "role" {
		t.Errorf("defaults = %+v", v.cfg)
	}
}

func TestChallengeFollowsRFC6750(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"no error", nil, `Bearer realm="calaimfhir"`},
		{"no token", &resources.Error{Kind: resources.KindUnauthorized, Message: "no bearer token was supplied", Err: ErrNoToken},
			`Bearer realm="calaimfhir"`},
		{"invalid token", resources.Errorf(resources.KindUnauthorized, "the token has expired"),
			`Bearer realm="calaimfhir", error="invalid_token", error_description="the token has expired"`},
		{"quotes and control characters are made safe", resources.Errorf(resources.KindUnauthorized, "bad \"x\" \\ \n\u00e9 end"),
			`Bearer realm="calaimfhir", error="invalid_token", error_description="bad 'x'   end"`},
		{"insufficient scope", resources.Errorf(resources.KindForbidden, "scope system/Task.rs does not allow create"),
			`Bearer realm="calaimfhir", error="insufficient_scope", error_description="scope system/Task.rs does not allow create"`},
		{"other error types", errors.New("secret detail"),
			`Bearer realm="calaimfhir", error="invalid_token", error_description="the access token is invalid"`},
		{"other kinds", resources.Errorf(resources.KindInternal, "boom"), `Bearer realm="calaimfhir"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Challenge(tt.err); got != tt.want {
				t.Errorf("Challenge = %q\n want %q", got, tt.want)
			}
		})
	}
}
