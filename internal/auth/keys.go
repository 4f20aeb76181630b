package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/big"
	"slices"
	"strings"
)

// ErrUnknownKey is returned (possibly wrapped) by a KeySource that has no key with the asked
// kid. Verify answers it with 401; any other KeySource error means the keys could not be
// obtained and Verify answers 503.
var ErrUnknownKey = errors.New("auth: unknown signing key id")

// KeySource finds the public key that verifies tokens carrying a given "kid" header.
// Implementations must be safe for concurrent use.
type KeySource interface {
	Key(ctx context.Context, kid string) (crypto.PublicKey, error)
}

// Key sizes accepted from any source: RSA moduli of 2048 to 8192 bits; EC on P-256 or P-384.
const (
	minRSABits = 2048
	maxRSABits = 8192
)

type staticKeys map[string]crypto.PublicKey

// StaticKeys is a fixed set of keys by kid (*rsa.PublicKey or *ecdsa.PublicKey). The map is
// copied. Keys of other types are never accepted by Verify.
func StaticKeys(keys map[string]crypto.PublicKey) KeySource {
	return staticKeys(maps.Clone(keys))
}

func (s staticKeys) Key(_ context.Context, kid string) (crypto.PublicKey, error) {
	if k, ok := s[kid]; ok {
		return k, nil
	}
	return nil, ErrUnknownKey
}

// jwk is one RFC 7517 JSON Web Key; only public members are read ("d" and other private
// members are ignored).
type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	N   string `json:"n"`
	E   string `json:"e"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

// parseJWKS reads an RFC 7517 JWK Set ({"keys":[...]}) into keys by kid.
//
// Skipped (not errors, so that a provider's set may carry keys for other purposes): keys with
// "use" other than "sig", an "alg" this package does not accept, a kty other than RSA or EC
// (symmetric "oct" keys in particular), an EC curve other than P-256/P-384, or no kid.
// Errors: malformed JSON, a malformed RSA or EC key, an RSA key outside 2048–8192 bits, an EC
// point not on its curve, two usable keys with one kid, or no usable key at all.
func parseJWKS(data []byte) (map[string]crypto.PublicKey, error) {
	var set struct {
		Keys []jwk `json:"keys"`
	}
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("JWK set is not valid JSON: %w", err)
	}
	out := make(map[string]crypto.PublicKey, len(set.Keys))
	for i, k := range set.Keys {
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		if k.Alg != "" && !slices.Contains(acceptedAlgs, k.Alg) {
			continue
		}
		if k.Kid == "" {
			continue
		}
		var (
			pub crypto.PublicKey
			err error
		)
		switch k.Kty {
		case "RSA":
			pub, err = rsaFromJWK(k)
		case "EC":
			if k.Crv != "P-256" && k.Crv != "P-384" {
				continue
			}
			pub, err = ecFromJWK(k)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("JWK set key %d (kid %q): %w", i, k.Kid, err)
		}
		if _, dup := out[k.Kid]; dup {
			return nil, fmt.Errorf("JWK set has two signing keys with kid %q", k.Kid)
		}
		out[k.Kid] = pub
	}
	if len(out) == 0 {
		return nil, errors.New("JWK set has no usable signing key (RSA or EC P-256/P-384 with a kid)")
	}
	return out, nil
}

func b64url(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
}

func rsaFromJWK(k jwk) (*rsa.PublicKey, error) {
	nb, err := b64url(k.N)
	if err != nil || len(nb) == 0 {
		return nil, errors.New(`RSA key has a missing or malformed "n"`)
	}
	eb, err := b64url(k.E)
	if err != nil || len(eb) == 0 || len(eb) > 4 {
		return nil, errors.New(`RSA key has a missing or malformed "e"`)
	}
	n := new(big.Int).SetBytes(nb)
	if bits := n.BitLen(); bits < minRSABits || bits > maxRSABits {
		return nil, fmt.Errorf("RSA key has %d bits; %d to %d are accepted", bits, minRSABits, maxRSABits)
	}
	e := 0
	for _, b := range eb {
		e = e<<8 | int(b)
	}
	if e < 3 || e%2 == 0 {
		return nil, errors.New(`RSA key has an invalid exponent "e"`)
	}
	return &rsa.PublicKey{N: n, E: e}, nil
}

func ecFromJWK(k jwk) (*ecdsa.PublicKey, error) {
	curve, size := elliptic.P256(), 32
	if k.Crv == "P-384" {
		curve, size = elliptic.P384(), 48
	}
	x, errX := b64url(k.X)
	y, errY := b64url(k.Y)
	if errX != nil || errY != nil || len(x) != size || len(y) != size {
		return nil, fmt.Errorf(`EC key has a missing or malformed "x" or "y" (%d bytes each for %s)`, size, k.Crv)
	}
	point := append(append([]byte{4}, x...), y...)
	pub, err := ecdsa.ParseUncompressedPublicKey(curve, point)
	if err != nil {
		return nil, errors.New("EC key is not a point on its curve")
	}
	return pub, nil
}

// keyMatchesAlg reports whether key is of the type (and curve) that alg signs with.
func keyMatchesAlg(key crypto.PublicKey, alg string) bool {
	switch alg {
	case "RS256", "RS384":
		k, ok := key.(*rsa.PublicKey)
		return ok && k.N != nil && k.N.BitLen() >= minRSABits && k.N.BitLen() <= maxRSABits
	case "ES256":
		k, ok := key.(*ecdsa.PublicKey)
		return ok && k.Curve == elliptic.P256()
	case "ES384":
		k, ok := key.(*ecdsa.PublicKey)
		return ok && k.Curve == elliptic.P384()
	}
	return false
}
