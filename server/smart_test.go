package server_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"maps"
	mathbig "math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/calaimfhir/calaimfhir/internal/auth"
	"github.com/calaimfhir/calaimfhir/internal/fhirtest"
	"github.com/calaimfhir/calaimfhir/internal/r4"
	"github.com/calaimfhir/calaimfhir/resources"
	"github.com/calaimfhir/calaimfhir/server"
)

// smartEnv is a real server (Echo, embedded store) with a token endpoint and two backend
// clients whose keys are generated for the test: a plan system signing RS384 with an inline
// JWKS, and a CBO system signing ES384 whose JWKS is published at a jwks_url.
type smartEnv struct {
	t        *testing.T
	http     *httptest.Server
	tokenURL string
	adminTok string
	rsaKey   *rsa.PrivateKey
	ecKey    *ecdsa.PrivateKey
	jwksURL  string
}

const (
	smartPlan   = "plan-care-mgmt"
	smartCBO    = "cbo-case-mgmt"
	smartRSAKid = "plan-2026-11"
	smartECKid  = "cbo-2026-11"
)

func smartB64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func smartRSAJWK(kid string, pub *rsa.PublicKey) map[string]any {
	return map[string]any{"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS384",
		"n": smartB64(pub.N.Bytes()), "e": smartB64(mathbig.NewInt(int64(pub.E)).Bytes())}
}

func smartECJWK(t *testing.T, kid string, pub *ecdsa.PublicKey) map[string]any {
	b, err := pub.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	n := (len(b) - 1) / 2
	return map[string]any{"kty": "EC", "kid": kid, "crv": "P-384", "use": "sig", "alg": "ES384",
		"x": smartB64(b[1 : 1+n]), "y": smartB64(b[1+n:])}
}

type smartOpts struct {
	rateLimit float64
	rateBurst int
}

func startSMART(t *testing.T, opts smartOpts) *smartEnv {
	t.Helper()
	env := &smartEnv{t: t}
	var err error
	if env.rsaKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		t.Fatal(err)
	}
	if env.ecKey, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	// The CBO publishes its JWKS, as a real client would, on its own (loopback) web server.
	jwks, _ := json.Marshal(map[string]any{"keys": []any{smartECJWK(t, smartECKid, &env.ecKey.PublicKey)}})
	published := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(jwks)
	}))
	t.Cleanup(published.Close)
	env.jwksURL = published.URL + "/jwks.json"

	registry, _ := json.Marshal(map[string]any{"clients": []any{
		map[string]any{"client_id": smartPlan, "name": "Plan care management", "organization": "Organization/plan-1", "role": "plan",
			"scope": "system/Patient.rs system/Coverage.rs", "jwks": map[string]any{"keys": []any{smartRSAJWK(smartRSAKid, &env.rsaKey.PublicKey)}}},
		map[string]any{"client_id": smartCBO, "organization": "Organization/cbo-1", "role": "cbo",
			"scope": "system/Task.cruds system/Patient.read", "jwks_url": env.jwksURL},
	}})
	clients, err := auth.ParseClients(registry)
	if err != nil {
		t.Fatal(err)
	}

	store, _ := fhirtest.SQLite.OpenFresh(t)
	key, err := auth.LoadOrCreateDevKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := key.Verifier()
	if err != nil {
		t.Fatal(err)
	}
	env.http = httptest.NewUnstartedServer(nil)
	base := "http://" + env.http.Listener.Addr().String() + "/fhir"
	env.tokenURL = server.TokenURL(base)
	te, err := auth.NewTokenEndpoint(auth.TokenEndpointConfig{URL: env.tokenURL, Clients: clients, Key: key,
		Issuer: auth.DevIssuer, Audience: auth.DevAudience})
	if err != nil {
		t.Fatal(err)
	}
	srv := server.New(server.Config{BaseURL: base, StoreName: "test", Version: "test", RequiredReferences: resources.DefaultRequiredReferences,
		Verifier: verifier, TokenEndpoint: te, RateLimit: opts.rateLimit, RateBurst: opts.rateBurst},
		store, r4.Validate, slog.New(slog.NewJSONHandler(io.Discard, nil)), prometheus.NewRegistry())
	env.http.Config.Handler = srv
	env.http.Start()
	t.Cleanup(env.http.Close)
	if env.adminTok, err = key.Mint(auth.MintOptions{Org: "Organization/calaimfhir-test", Role: auth.RoleAdmin}); err != nil {
		t.Fatal(err)
	}
	return env
}

// assertion builds a client assertion; edit changes the claims or header before signing.
type smartAssertion struct {
	method jwt.SigningMethod
	key    any
	header map[string]any // set (nil value: delete)
	claims map[string]any // set (nil value: delete)
}

func (env *smartEnv) assertion(client string, s smartAssertion) string {
	env.t.Helper()
	var jti [12]byte
	rand.Read(jti[:])
	now := time.Now()
	claims := jwt.MapClaims{"iss": client, "sub": client, "aud": env.tokenURL, "exp": now.Add(4 * time.Minute).Unix(),
		"iat": now.Unix(), "jti": hex.EncodeToString(jti[:])}
	method, key, kid := s.method, s.key, ""
	switch client {
	case smartPlan:
		kid = smartRSAKid
		if method == nil {
			method, key = jwt.SigningMethodRS384, env.rsaKey
		}
	default:
		kid = smartECKid
		if method == nil {
			method, key = jwt.SigningMethodES384, env.ecKey
		}
	}
	for k, v := range s.claims {
		if v == nil {
			delete(claims, k)
		} else {
			claims[k] = v
		}
	}
	tok := jwt.NewWithClaims(method, claims)
	tok.Header["kid"] = kid
	for k, v := range s.header {
		if v == nil {
			delete(tok.Header, k)
		} else {
			tok.Header[k] = v
		}
	}
	signed, err := tok.SignedString(key)
	if err != nil {
		env.t.Fatal(err)
	}
	return signed
}

// form is a complete, valid token request for client with the assertion given.
func smartForm(assertion, scope string) url.Values {
	return url.Values{"grant_type": {"client_credentials"}, "scope": {scope},
		"client_assertion_type": {auth.ClientAssertionType}, "client_assertion": {assertion}}
}

type smartReply struct {
	status int
	header http.Header
	body   []byte
}

func (env *smartEnv) post(contentType, body string) smartReply {
	env.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, env.http.URL+"/auth/token", strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	return env.send(req)
}

func (env *smartEnv) send(req *http.Request) smartReply {
	env.t.Helper()
	resp, err := env.http.Client().Do(req)
	if err != nil {
		env.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return smartReply{resp.StatusCode, resp.Header, b}
}

func (env *smartEnv) token(f url.Values) smartReply {
	env.t.Helper()
	return env.post("application/x-www-form-urlencoded", f.Encode())
}

func (env *smartEnv) fhir(method, path, bearer string, body []byte) smartReply {
	env.t.Helper()
	req, _ := http.NewRequest(method, env.http.URL+path, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+bearer)
	if body != nil {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	return env.send(req)
}

func smartDecode(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("not a JSON object (%v): %s", err, b)
	}
	return m
}

func TestSMARTBackendServices_RSAAndECClientsGetTokensThatReadFHIR(t *testing.T) {
	env := startSMART(t, smartOpts{})

	// A member covered by the plan (so the plan client may see them under tenancy too).
	r := env.fhir("POST", "/fhir/Patient", env.adminTok, []byte(`{"resourceType":"Patient","name":[{"family":"Rivera"}]}`))
	if r.status != http.StatusCreated {
		t.Fatalf("create Patient: %d %s", r.status, r.body)
	}
	patientID := smartDecode(t, r.body)["id"].(string)
	r = env.fhir("POST", "/fhir/Coverage", env.adminTok, []byte(`{"resourceType":"Coverage","status":"active",
		"beneficiary":{"reference":"Patient/`+patientID+`"},"payor":[{"reference":"Organization/plan-1"}]}`))
	if r.status != http.StatusCreated {
		t.Fatalf("create Coverage: %d %s", r.status, r.body)
	}

	// And one who is not: tenancy must hide them from the plan's backend client.
	r = env.fhir("POST", "/fhir/Patient", env.adminTok, []byte(`{"resourceType":"Patient","name":[{"family":"Okafor"}]}`))
	if r.status != http.StatusCreated {
		t.Fatalf("create Patient: %d %s", r.status, r.body)
	}
	otherID := smartDecode(t, r.body)["id"].(string)

	tests := []struct {
		name      string
		client    string
		scope     string
		wantScope string
		org, role string
	}{
		// "system/*.rs" is narrowed to what the plan is registered for.
		{"RSA RS384, narrowed", smartPlan, "system/*.rs", "system/Patient.rs system/Coverage.rs", "Organization/plan-1", "plan"},
		{"RSA RS384, exact", smartPlan, "system/Patient.rs", "system/Patient.rs", "Organization/plan-1", "plan"},
		// A v1 request inside a v1 registration stays v1; Task.rs is inside Task.cruds.
		{"EC ES384 via jwks_url", smartCBO, "system/Patient.read system/Task.rs", "system/Patient.read system/Task.rs", "Organization/cbo-1", "cbo"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := env.token(smartForm(env.assertion(tt.client, smartAssertion{}), tt.scope))
			if r.status != http.StatusOK {
				t.Fatalf("token: %d %s", r.status, r.body)
			}
			if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("Content-Type %q", ct)
			}
			if r.header.Get("Cache-Control") != "no-store" || r.header.Get("Pragma") != "no-cache" {
				t.Errorf("cache headers %v", r.header)
			}
			var got auth.TokenResponse
			if err := json.Unmarshal(r.body, &got); err != nil {
				t.Fatal(err)
			}
			if got.TokenType != "bearer" || got.ExpiresIn != 300 || got.Scope != tt.wantScope || got.AccessToken == "" {
				t.Fatalf("response %s, want scope %q", r.body, tt.wantScope)
			}
			// The issued token carries the client's tenancy.
			claims := jwt.MapClaims{}
			if _, _, err := jwt.NewParser().ParseUnverified(got.AccessToken, claims); err != nil {
				t.Fatal(err)
			}
			for k, want := range map[string]any{"iss": auth.DevIssuer, "aud": auth.DevAudience, "sub": tt.client, "client_id": tt.client,
				"org": tt.org, "role": tt.role, "scope": tt.wantScope} {
				if claims[k] != want {
					t.Errorf("claim %s = %v, want %v", k, claims[k], want)
				}
			}
			exp, _ := claims.GetExpirationTime()
			if d := time.Until(exp.Time); d > 5*time.Minute || d < 4*time.Minute {
				t.Errorf("token lives %v more, want about 5m", d)
			}

			// The token works on the FHIR API, within its scopes only.
			r = env.fhir("GET", "/fhir/Patient", got.AccessToken, nil)
			if r.status != http.StatusOK || smartDecode(t, r.body)["resourceType"] != "Bundle" {
				t.Fatalf("search Patient: %d %s", r.status, r.body)
			}
			// The token's org and role put the client in its tenancy: the plan sees its member
			// only; the CBO, with no referral yet, sees no one.
			ids := map[string]bool{}
			entries, _ := smartDecode(t, r.body)["entry"].([]any)
			for _, e := range entries {
				if res, _ := e.(map[string]any)["resource"].(map[string]any); res["resourceType"] == "Patient" {
					ids[res["id"].(string)] = true
				}
			}
			wantIDs := map[string]bool{}
			if tt.client == smartPlan {
				wantIDs[patientID] = true
			}
			if !maps.Equal(ids, wantIDs) {
				t.Errorf("Patient search found %v, want %v", ids, wantIDs)
			}
			wantRead := map[bool]int{true: http.StatusOK, false: http.StatusNotFound}[tt.client == smartPlan]
			if r = env.fhir("GET", "/fhir/Patient/"+patientID, got.AccessToken, nil); r.status != wantRead {
				t.Errorf("read the plan's member: %d, want %d", r.status, wantRead)
			}
			if r = env.fhir("GET", "/fhir/Patient/"+otherID, got.AccessToken, nil); r.status != http.StatusNotFound {
				t.Errorf("read a Patient outside the tenancy: %d, want 404", r.status)
			}
			if r = env.fhir("POST", "/fhir/Patient", got.AccessToken, []byte(`{"resourceType":"Patient"}`)); r.status != http.StatusForbidden {
				t.Errorf("create Patient with a read-only grant: %d, want 403", r.status)
			}
			if r = env.fhir("GET", "/fhir/Claim", got.AccessToken, nil); r.status != http.StatusForbidden {
				t.Errorf("search Claim without a Claim scope: %d, want 403", r.status)
			}
		})
	}
}

func TestSMARTToken_Rejections(t *testing.T) {
	env := startSMART(t, smartOpts{})
	otherRSA, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	otherEC, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	now := time.Now()
	// The classic confusion attack: HMAC keyed with the client's public key.
	pubDER, _ := x509.MarshalPKIXPublicKey(&env.rsaKey.PublicKey)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	noneSigned := func() string {
		tok := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"iss": smartPlan, "sub": smartPlan, "aud": env.tokenURL,
			"exp": now.Add(time.Minute).Unix(), "jti": "none-1"})
		tok.Header["kid"] = smartRSAKid
		s, err := tok.SignedString(jwt.UnsafeAllowNoneSignatureType)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	good := func() url.Values { return smartForm(env.assertion(smartPlan, smartAssertion{}), "system/Patient.rs") }
	withAssertion := func(s smartAssertion) url.Values {
		return smartForm(env.assertion(smartPlan, s), "system/Patient.rs")
	}
	set := func(f url.Values, k, v string) url.Values {
		if v == "" {
			f.Del(k)
		} else {
			f.Set(k, v)
		}
		return f
	}

	tests := []struct {
		name        string
		contentType string
		body        func() string
		status      int
		code        string
		why         string // in error_description
	}{
		{"unknown client", "", func() string {
			return smartForm(env.assertion("nobody", smartAssertion{method: jwt.SigningMethodES384, key: env.ecKey}), "system/Patient.rs").Encode()
		}, 401, "invalid_client", "not registered"},
		{"bad signature (another RSA key)", "", func() string {
			return withAssertion(smartAssertion{method: jwt.SigningMethodRS384, key: otherRSA}).Encode()
		}, 401, "invalid_client", "signature is invalid"},
		{"bad signature (another EC key)", "", func() string {
			return smartForm(env.assertion(smartCBO, smartAssertion{method: jwt.SigningMethodES384, key: otherEC}), "system/Task.rs").Encode()
		}, 401, "invalid_client", "signature is invalid"},
		{"alg RS256", "", func() string {
			return withAssertion(smartAssertion{method: jwt.SigningMethodRS256, key: env.rsaKey}).Encode()
		}, 401, "invalid_client", "alg must be RS384 or ES384"},
		{"alg RS512", "", func() string {
			return withAssertion(smartAssertion{method: jwt.SigningMethodRS512, key: env.rsaKey}).Encode()
		}, 401, "invalid_client", "alg must be RS384 or ES384"},
		{"alg HS256 keyed with the public key", "", func() string {
			return withAssertion(smartAssertion{method: jwt.SigningMethodHS256, key: pubPEM}).Encode()
		}, 401, "invalid_client", "alg must be RS384 or ES384"},
		{"alg none", "", func() string { return smartForm(noneSigned(), "system/Patient.rs").Encode() }, 401, "invalid_client", "alg must be RS384 or ES384"},
		{"alg ES384 with the client's RSA kid", "", func() string {
			return withAssertion(smartAssertion{method: jwt.SigningMethodES384, key: env.ecKey}).Encode()
		}, 401, "invalid_client", "does not match the type of its key"},
		{"expired assertion", "", func() string {
			return withAssertion(smartAssertion{claims: map[string]any{"exp": now.Add(-2 * time.Minute).Unix(), "iat": now.Add(-6 * time.Minute).Unix()}}).Encode()
		}, 401, "invalid_client", "has expired"},
		{"exp more than five minutes ahead", "", func() string {
			return withAssertion(smartAssertion{claims: map[string]any{"exp": now.Add(10 * time.Minute).Unix()}}).Encode()
		}, 401, "invalid_client", "more than five minutes"},
		{"no exp", "", func() string { return withAssertion(smartAssertion{claims: map[string]any{"exp": nil}}).Encode() }, 401, "invalid_client", "no expiry"},
		{"nbf in the future", "", func() string {
			return withAssertion(smartAssertion{claims: map[string]any{"nbf": now.Add(3 * time.Minute).Unix()}}).Encode()
		}, 401, "invalid_client", "nbf"},
		{"iat in the future", "", func() string {
			return withAssertion(smartAssertion{claims: map[string]any{"iat": now.Add(3 * time.Minute).Unix()}}).Encode()
		}, 401, "invalid_client", "iat"},
		{"aud is the FHIR base, not the token endpoint", "", func() string {
			return withAssertion(smartAssertion{claims: map[string]any{"aud": env.http.URL + "/fhir"}}).Encode()
		}, 401, "invalid_client", "aud must be"},
		{"no aud", "", func() string { return withAssertion(smartAssertion{claims: map[string]any{"aud": nil}}).Encode() }, 401, "invalid_client", "aud must be"},
		{"sub differs from iss", "", func() string {
			return withAssertion(smartAssertion{claims: map[string]any{"sub": "someone-else"}}).Encode()
		}, 401, "invalid_client", "sub must equal"},
		{"no jti", "", func() string { return withAssertion(smartAssertion{claims: map[string]any{"jti": nil}}).Encode() }, 401, "invalid_client", "no jti"},
		{"no kid", "", func() string { return withAssertion(smartAssertion{header: map[string]any{"kid": nil}}).Encode() }, 401, "invalid_client", "no key id"},
		{"kid of another client", "", func() string {
			return withAssertion(smartAssertion{method: jwt.SigningMethodES384, key: env.ecKey, header: map[string]any{"kid": smartECKid}}).Encode()
		}, 401, "invalid_client", "kid is not in"},
		{"jku not registered", "", func() string {
			return withAssertion(smartAssertion{header: map[string]any{"jku": "https://attacker.example/jwks.json"}}).Encode()
		}, 401, "invalid_client", "jku"},
		{"jku differs from the registered jwks_url", "", func() string {
			return smartForm(env.assertion(smartCBO, smartAssertion{header: map[string]any{"jku": "https://attacker.example/jwks.json"}}), "system/Task.rs").Encode()
		}, 401, "invalid_client", "jku"},
		{"typ is not JWT", "", func() string { return withAssertion(smartAssertion{header: map[string]any{"typ": "at+jwt"}}).Encode() }, 401, "invalid_client", "typ"},
		{"crit header", "", func() string {
			return withAssertion(smartAssertion{header: map[string]any{"crit": []string{"exp"}}}).Encode()
		}, 401, "invalid_client", "critical"},
		{"client_id differs from iss", "", func() string { return set(good(), "client_id", smartCBO).Encode() }, 401, "invalid_client", "client_id does not match"},
		{"assertion is not a JWT", "", func() string { return set(good(), "client_assertion", "not.a.jwt").Encode() }, 401, "invalid_client", "not a well-formed JWT"},
		{"unregistered scope", "", func() string { return set(good(), "scope", "system/Claim.cruds").Encode() }, 400, "invalid_scope", "none of the requested scopes"},
		{"registered type, unregistered permission", "", func() string { return set(good(), "scope", "system/Patient.cud").Encode() }, 400, "invalid_scope", "none of the requested scopes"},
		{"only non-resource scopes", "", func() string { return set(good(), "scope", "openid fhirUser").Encode() }, 400, "invalid_scope", "none of the requested scopes"},
		{"malformed scope", "", func() string { return set(good(), "scope", "system/Patient.q").Encode() }, 400, "invalid_scope", "malformed"},
		{"missing grant_type", "", func() string { return set(good(), "grant_type", "").Encode() }, 400, "invalid_request", "grant_type is required"},
		{"missing scope", "", func() string { return set(good(), "scope", "").Encode() }, 400, "invalid_request", "scope is required"},
		{"missing client_assertion", "", func() string { return set(good(), "client_assertion", "").Encode() }, 401, "invalid_client", "client_assertion is required"},
		{"missing client_assertion_type", "", func() string { return set(good(), "client_assertion_type", "").Encode() }, 401, "invalid_client", "client authentication is required"},
		{"other client_assertion_type", "", func() string {
			return set(good(), "client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:saml2-bearer").Encode()
		}, 401, "invalid_client", "client_assertion_type must be"},
		{"wrong grant_type", "", func() string { return set(good(), "grant_type", "authorization_code").Encode() }, 400, "unsupported_grant_type", "only the client_credentials grant"},
		{"password grant", "", func() string { return set(good(), "grant_type", "password").Encode() }, 400, "unsupported_grant_type", "only the client_credentials grant"},
		{"parameter given twice", "", func() string {
			f := good()
			f.Add("scope", "system/Coverage.rs")
			return f.Encode()
		}, 400, "invalid_request", "more than once"},
		{"JSON body", "application/json", func() string {
			b, _ := json.Marshal(map[string]string{"grant_type": "client_credentials", "scope": "system/Patient.rs",
				"client_assertion_type": auth.ClientAssertionType, "client_assertion": env.assertion(smartPlan, smartAssertion{})})
			return string(b)
		}, 400, "invalid_request", "x-www-form-urlencoded"},
		{"no content type", "none", func() string { return good().Encode() }, 400, "invalid_request", "x-www-form-urlencoded"},
		{"multipart content type", "multipart/form-data; boundary=x", func() string { return good().Encode() }, 400, "invalid_request", "x-www-form-urlencoded"},
		{"body is not a form", "", func() string { return "grant_type=%zz" }, 400, "invalid_request", "not a valid form"},
		{"empty body", "", func() string { return "" }, 400, "invalid_request", "grant_type is required"},
		{"too large", "", func() string { return "scope=" + strings.Repeat("a", 70<<10) }, 413, "invalid_request", "larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ct := tt.contentType
			switch ct {
			case "":
				ct = "application/x-www-form-urlencoded"
			case "none":
				ct = ""
			}
			body := tt.body()
			r := env.post(ct, body)
			if r.status != tt.status {
				t.Fatalf("status %d, want %d: %s", r.status, tt.status, r.body)
			}
			got := smartDecode(t, r.body)
			if got["error"] != tt.code {
				t.Errorf("error %v, want %s: %s", got["error"], tt.code, r.body)
			}
			if d, _ := got["error_description"].(string); !strings.Contains(d, tt.why) {
				t.Errorf("error_description %q, want it to say %q", d, tt.why)
			}
			if _, isOutcome := got["resourceType"]; isOutcome || len(got) != 2 {
				t.Errorf("not OAuth error JSON: %s", r.body)
			}
			if !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") || r.header.Get("Cache-Control") != "no-store" {
				t.Errorf("headers %v", r.header)
			}
			if f, err := url.ParseQuery(body); err == nil {
				if a := f.Get("client_assertion"); len(a) > 20 && strings.Contains(string(r.body), a[:20]) {
					t.Error("the error repeats the assertion")
				}
			}
		})
	}
}

func TestSMARTToken_ReplayedAssertionIsRefused(t *testing.T) {
	env := startSMART(t, smartOpts{})
	for _, client := range []string{smartPlan, smartCBO} {
		scope := map[string]string{smartPlan: "system/Patient.rs", smartCBO: "system/Task.rs"}[client]
		f := smartForm(env.assertion(client, smartAssertion{}), scope)
		if r := env.token(f); r.status != http.StatusOK {
			t.Fatalf("%s first use: %d %s", client, r.status, r.body)
		}
		r := env.token(f)
		if r.status != http.StatusUnauthorized || smartDecode(t, r.body)["error"] != "invalid_client" {
			t.Fatalf("%s replay: %d %s", client, r.status, r.body)
		}
		// Even with a different scope asked, the same jti is spent.
		f.Set("scope", strings.Replace(scope, ".rs", ".r", 1))
		if r := env.token(f); r.status != http.StatusUnauthorized {
			t.Fatalf("%s replay with another scope: %d %s", client, r.status, r.body)
		}
	}
	// The same jti from two different clients is two assertions.
	jti := map[string]any{"jti": "shared-jti-1"}
	if r := env.token(smartForm(env.assertion(smartPlan, smartAssertion{claims: jti}), "system/Patient.rs")); r.status != 200 {
		t.Fatalf("plan: %d %s", r.status, r.body)
	}
	if r := env.token(smartForm(env.assertion(smartCBO, smartAssertion{claims: jti}), "system/Task.rs")); r.status != 200 {
		t.Fatalf("cbo with the plan's jti: %d %s", r.status, r.body)
	}
	// A failed assertion (bad signature) does not spend its jti.
	other, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	jti = map[string]any{"jti": "not-spent"}
	if r := env.token(smartForm(env.assertion(smartCBO, smartAssertion{method: jwt.SigningMethodES384, key: other, claims: jti}), "system/Task.rs")); r.status != 401 {
		t.Fatalf("forged: %d %s", r.status, r.body)
	}
	if r := env.token(smartForm(env.assertion(smartCBO, smartAssertion{claims: jti}), "system/Task.rs")); r.status != 200 {
		t.Fatalf("genuine after a forgery with its jti: %d %s", r.status, r.body)
	}
}

func TestSMARTConfiguration_DescribesTheTokenEndpoint(t *testing.T) {
	env := startSMART(t, smartOpts{})
	req, _ := http.NewRequest(http.MethodGet, env.http.URL+"/.well-known/smart-configuration", nil) // no token
	r := env.send(req)
	if r.status != http.StatusOK || !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
		t.Fatalf("%d %v %s", r.status, r.header, r.body)
	}
	// SMART clients look below the FHIR base; the same document is there.
	req, _ = http.NewRequest(http.MethodGet, env.http.URL+"/fhir/.well-known/smart-configuration", nil)
	if below := env.send(req); below.status != http.StatusOK || !bytes.Equal(below.body, r.body) {
		t.Fatalf("below the base: %d %s", below.status, below.body)
	}
	got := smartDecode(t, r.body)
	if got["token_endpoint"] != env.tokenURL || !strings.HasSuffix(env.tokenURL, "/auth/token") {
		t.Errorf("token_endpoint %v, want %s", got["token_endpoint"], env.tokenURL)
	}
	list := func(k string) []string {
		var out []string
		for _, v := range got[k].([]any) {
			out = append(out, v.(string))
		}
		return out
	}
	for k, want := range map[string][]string{
		"grant_types_supported":                            {"client_credentials"},
		"token_endpoint_auth_methods_supported":            {"private_key_jwt"},
		"token_endpoint_auth_signing_alg_values_supported": {"RS384", "ES384"},
	} {
		if got := list(k); !slices.Equal(got, want) {
			t.Errorf("%s = %v, want %v", k, got, want)
		}
	}
	caps := list("capabilities")
	for _, c := range []string{"client-confidential-asymmetric", "permission-v1", "permission-v2"} {
		if !slices.Contains(caps, c) {
			t.Errorf("capabilities %v lack %s", caps, c)
		}
	}
	for _, c := range caps {
		if strings.HasPrefix(c, "launch-") || c == "client-public" || c == "sso-openid-connect" {
			t.Errorf("capability %s advertised without an authorization endpoint", c)
		}
	}
	scopes := list("scopes_supported")
	if !slices.Contains(scopes, "system/*.cruds") || !slices.Contains(scopes, "system/*.read") {
		t.Errorf("scopes_supported %v", scopes)
	}
	for _, s := range scopes {
		if _, err := auth.ParseScopes(s); err != nil || !strings.HasPrefix(s, "system/") {
			t.Errorf("advertised scope %q: %v", s, err)
		}
	}
	// The advertised endpoint really is where tokens come from.
	f := smartForm(env.assertion(smartPlan, smartAssertion{}), scopes[0])
	req, _ = http.NewRequest(http.MethodPost, got["token_endpoint"].(string), strings.NewReader(f.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if r := env.send(req); r.status != http.StatusOK {
		t.Fatalf("token from the advertised endpoint: %d %s", r.status, r.body)
	}

	// Other methods on the token endpoint are not allowed.
	req, _ = http.NewRequest(http.MethodGet, env.http.URL+"/auth/token?"+f.Encode(), nil)
	if r := env.send(req); r.status != http.StatusMethodNotAllowed {
		t.Errorf("GET /auth/token: %d", r.status)
	}
}

func TestSMART_OffWithoutATokenEndpoint(t *testing.T) {
	store, _ := fhirtest.SQLite.OpenFresh(t)
	s := fhirtest.Start(t, store, fhirtest.Options{})
	for _, path := range []string{"/.well-known/smart-configuration", "/fhir/.well-known/smart-configuration"} {
		if r := s.Do("GET", path, nil, "Authorization", ""); r.Status != http.StatusNotFound {
			t.Errorf("%s: %d %s", path, r.Status, r.Body)
		}
	}
	r := s.Do("POST", "/auth/token", []byte("grant_type=client_credentials"), "Content-Type", "application/x-www-form-urlencoded", "Authorization", "")
	if r.Status != http.StatusNotFound {
		t.Errorf("token: %d %s", r.Status, r.Body)
	}
}

func TestSMARTToken_RateLimitedInOAuthJSON(t *testing.T) {
	env := startSMART(t, smartOpts{rateLimit: 0.01, rateBurst: 2})
	var last smartReply
	for i := 0; i < 3; i++ {
		last = env.token(smartForm(env.assertion(smartPlan, smartAssertion{}), "system/Patient.rs"))
	}
	if last.status != http.StatusTooManyRequests {
		t.Fatalf("third request: %d %s", last.status, last.body)
	}
	if secs, err := strconv.Atoi(last.header.Get("Retry-After")); err != nil || secs < 1 {
		t.Errorf("Retry-After %q", last.header.Get("Retry-After"))
	}
	if got := smartDecode(t, last.body); got["error"] != "temporarily_unavailable" || got["error_description"] == "" {
		t.Errorf("429 body %s", last.body)
	}
	req, _ := http.NewRequest(http.MethodGet, env.http.URL+"/.well-known/smart-configuration", nil)
	if r := env.send(req); r.status != http.StatusTooManyRequests {
		t.Errorf("smart-configuration is not rate-limited: %d", r.status)
	}
}

func TestTokenURL(t *testing.T) {
	for base, want := range map[string]string{
		"http://127.0.0.1:8080/fhir":         "http://127.0.0.1:8080/auth/token",
		"https://fhir.example.org/fhir/":     "https://fhir.example.org/auth/token",
		"https://x.example.org/calaim/fhir":  "https://x.example.org/calaim/auth/token",
		"https://x.example.org/api/r4":       "https://x.example.org/auth/token",
		"https://x.example.org":              "https://x.example.org/auth/token",
		"https://x.example.org/fhir?_x=1#id": "https://x.example.org/auth/token",
	} {
		if got := server.TokenURL(base); got != want {
			t.Errorf("TokenURL(%q) = %q, want %q", base, got, want)
		}
	}
}
