package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Development token defaults: `serve` verifies development tokens with Issuer DevIssuer and
// Audience DevAudience, and `calaimfhir token` mints them with the same values.
const (
	DevIssuer   = "calaimfhir-dev"
	DevAudience = "calaimfhir"
	// DevKeyFile is the name of the development signing key under the data directory.
	DevKeyFile = "dev-signing-key.pem"
	// DefaultDevScopes is MintOptions.Scopes when empty.
	DefaultDevScopes = "system/*.cruds"
	// DefaultDevTTL is MintOptions.TTL when zero.
	DefaultDevTTL = time.Hour
	// DefaultDevClientID is MintOptions.ClientID when empty.
	DefaultDevClientID = "calaimfhir-cli"
)

// DevKey is the development signing key: an ECDSA P-256 key kept in a PEM file under the data
// directory, used by `serve` to verify and by `calaimfhir token` to mint tokens. Anyone who can
// read the file can mint admin tokens for servers that trust it, so it is for development
// only; production verifies tokens from a real issuer (JWKSURL / JWKSFile).
type DevKey struct {
	// Kid is the RFC 7638 JWK thumbprint (SHA-256, base64url) of the public key: stable for
	// the life of the file, and different for every key.
	Kid  string
	Path string // the PEM file
	priv *ecdsa.PrivateKey
}

// LoadOrCreateDevKey loads dir/dev-signing-key.pem, or creates it when absent: the directory
// with mode 0700 (when it does not exist), the key as a PKCS#8 "PRIVATE KEY" PEM with mode
// 0600. Creation is atomic (the file appears complete or not at all), so two processes
// starting together end up with the same key. A key file readable or writable by group or
// others is refused (except on Windows, where modes mean little), as is anything but a
// P-256 ECDSA key.
func LoadOrCreateDevKey(dir string) (*DevKey, error) {
	if dir == "" {
		return nil, errors.New("auth: development key directory is empty")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("auth: create key directory: %w", err)
	}
	path := filepath.Join(dir, DevKeyFile)
	k, err := loadDevKey(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}

	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("auth: generate development key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("auth: encode development key: %w", err)
	}
	data := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	switch err := createExclusive(dir, path, data); {
	case errors.Is(err, fs.ErrExist):
		return loadDevKey(path) // another process created it first
	case err != nil:
		return nil, fmt.Errorf("auth: write development key: %w", err)
	}
	return newDevKey(path, priv)
}

// createExclusive writes data to path only if path does not exist, never exposing a partly
// written file: it writes a temporary file and hard-links it into place (link fails if path
// exists). Where hard links are unsupported it falls back to O_EXCL creation.
func createExclusive(dir, path string, data []byte) error {
	tmp, err := os.CreateTemp(dir, ".dev-signing-key-*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := writeAndClose(tmp, data); err != nil {
		return err
	}
	err = os.Link(tmp.Name(), path)
	if err == nil || errors.Is(err, fs.ErrExist) {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if err := writeAndClose(f, data); err != nil {
		os.Remove(path)
		return err
	}
	return nil
}

func writeAndClose(f *os.File, data []byte) error {
	err := f.Chmod(0o600)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func loadDevKey(path string) (*DevKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err // fs.ErrNotExist is how the caller learns to create it
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	if runtime.GOOS != "windows" && st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("auth: development key %s has mode %v; it must be private to its owner (chmod 600)", path, st.Mode().Perm())
	}
	data, err := io.ReadAll(io.LimitReader(f, 64<<10))
	if err != nil {
		return nil, fmt.Errorf("auth: read development key: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("auth: development key %s is not a PEM \"PRIVATE KEY\" (PKCS#8)", path)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("auth: development key %s: %w", path, err)
	}
	priv, ok := parsed.(*ecdsa.PrivateKey)
	if !ok || priv.Curve != elliptic.P256() {
		return nil, fmt.Errorf("auth: development key %s is not an ECDSA P-256 key", path)
	}
	return newDevKey(path, priv)
}

func newDevKey(path string, priv *ecdsa.PrivateKey) (*DevKey, error) {
	x, y, err := ecXY(&priv.PublicKey)
	if err != nil {
		return nil, err
	}
	// RFC 7638: SHA-256 over the required members in lexicographic order, no whitespace.
	thumb := sha256.Sum256([]byte(`{"crv":"P-256","kty":"EC","x":"` + x + `","y":"` + y + `"}`))
	return &DevKey{Kid: base64.RawURLEncoding.EncodeToString(thumb[:]), Path: path, priv: priv}, nil
}

// ecXY returns the base64url coordinates of a P-256 public key.
func ecXY(pub *ecdsa.PublicKey) (x, y string, err error) {
	b, err := pub.Bytes() // 0x04 || X (32) || Y (32)
	if err != nil || len(b) != 65 {
		return "", "", fmt.Errorf("auth: encode development public key: %v", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[1:33]), base64.RawURLEncoding.EncodeToString(b[33:]), nil
}

// Public is the public half of the key (*ecdsa.PublicKey).
func (k *DevKey) Public() crypto.PublicKey { return &k.priv.PublicKey }

// Keys is a KeySource holding only this key under Kid, for NewVerifier.
func (k *DevKey) Keys() KeySource {
	return StaticKeys(map[string]crypto.PublicKey{k.Kid: k.Public()})
}

// Verifier accepts the tokens k mints with the default issuer and audience (DevIssuer,
// DevAudience): what `serve` uses without --jwks-url or --jwks-file.
func (k *DevKey) Verifier() (*Verifier, error) {
	return NewVerifier(VerifierConfig{Issuer: DevIssuer, Audience: DevAudience, Keys: k.Keys()})
}

// JWKS is the public key as an RFC 7517 JWK Set, e.g. to publish at a jwks_uri.
func (k *DevKey) JWKS() ([]byte, error) {
	x, y, err := ecXY(&k.priv.PublicKey)
	if err != nil {
		return nil, err
	}
	set := map[string]any{"keys": []map[string]string{{
		"kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": k.Kid, "use": "sig", "alg": "ES256",
	}}}
	return json.Marshal(set)
}

// MintOptions are the claims of a development token. Zero values take the defaults noted.
type MintOptions struct {
	Subject  string        // "sub"; default ClientID
	Org      string        // "org"; required, "Organization/<id>"
	Role     string        // "role"; required, admin|plan|cbo|provider
	Scopes   string        // "scope", space-separated; default DefaultDevScopes
	TTL      time.Duration // exp - iat; default DefaultDevTTL; under a second is an error
	Issuer   string        // "iss"; default DevIssuer
	Audience string        // "aud"; default DevAudience
	ClientID string        // "client_id"; default DefaultDevClientID
}

// Mint signs a development token: an ES256 JWT with header kid = k.Kid and claims iss, aud,
// sub, client_id, scope, org, role, iat, nbf (now), exp (now + TTL) and a random jti. The
// org and role claims use the default names ("org", "role"), so a Verifier with default
// OrgClaim/RoleClaim, DevIssuer, DevAudience and k.Keys() accepts the token. Options that such
// a Verifier would reject (bad org, unknown role, malformed scope) are errors here.
func (k *DevKey) Mint(o MintOptions) (string, error) {
	if o.Scopes == "" {
		o.Scopes = DefaultDevScopes
	}
	if o.TTL == 0 {
		o.TTL = DefaultDevTTL
	}
	if o.Issuer == "" {
		o.Issuer = DevIssuer
	}
	if o.Audience == "" {
		o.Audience = DevAudience
	}
	if o.ClientID == "" {
		o.ClientID = DefaultDevClientID
	}
	if o.Subject == "" {
		o.Subject = o.ClientID
	}
	if _, ok := orgID(o.Org); !ok {
		return "", fmt.Errorf("auth: org %q is not an Organization reference (Organization/<id>)", o.Org)
	}
	if !ValidRole(o.Role) {
		return "", fmt.Errorf("auth: role %q is not one of admin, plan, cbo, provider", o.Role)
	}
	if _, err := ParseScopes(o.Scopes); err != nil {
		return "", fmt.Errorf("auth: %w", err)
	}
	if o.TTL < time.Second {
		return "", errors.New("auth: token TTL must be at least one second")
	}
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return "", fmt.Errorf("auth: %w", err)
	}
	now := time.Now()
	claims := jwt.MapClaims{
		"iss":       o.Issuer,
		"aud":       o.Audience,
		"sub":       o.Subject,
		"client_id": o.ClientID,
		"scope":     o.Scopes,
		"org":       o.Org,
		"role":      o.Role,
		"iat":       now.Unix(),
		"nbf":       now.Unix(),
		"exp":       now.Add(o.TTL).Unix(),
		"jti":       hex.EncodeToString(jti[:]),
	}
	t := jwt.NewWithClaims(jwt.SigningMethodES256, claims)
	t.Header["kid"] = k.Kid
	s, err := t.SignedString(k.priv)
	if err != nil {
		return "", fmt.Errorf("auth: sign token: %w", err)
	}
	return s, nil
}
