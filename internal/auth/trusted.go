package auth

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Trust makes v also accept the tokens that others accept. This is how a server that takes
// tokens from an external identity provider (v) also takes the access tokens its own token
// endpoint issues (another Verifier with the server's issuer, audience and signing key).
//
// A token is routed by its "iss" (read before verification, which is harmless: the chosen
// Verifier then checks everything, signature included, against its own issuer, audience and
// keys, so naming another issuer can only move a token to a Verifier that will reject it).
// Tokens naming no trusted issuer are checked by v itself. Issuers must all differ. Call Trust
// before v is used; it is not safe to call concurrently with Verify.
func (v *Verifier) Trust(others ...*Verifier) error {
	seen := map[string]bool{v.cfg.Issuer: true}
	for _, o := range v.also {
		seen[o.cfg.Issuer] = true
	}
	for _, o := range others {
		if o == nil || o == v {
			return errors.New("auth: Trust needs other, non-nil Verifiers")
		}
		if seen[o.cfg.Issuer] {
			return fmt.Errorf("auth: issuer %q is trusted twice", o.cfg.Issuer)
		}
		seen[o.cfg.Issuer] = true
		v.also = append(v.also, o)
	}
	return nil
}

// Issuer is the iss this Verifier requires.
func (v *Verifier) Issuer() string { return v.cfg.Issuer }

// delegate returns the trusted Verifier whose issuer tok names, or nil when v should check
// tok itself (no other issuers, an unreadable payload, or an issuer of none of them).
func (v *Verifier) delegate(tok string) *Verifier {
	if len(v.also) == 0 {
		return nil
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return nil
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil
	}
	var claims struct {
		Iss any `json:"iss"`
	}
	if json.Unmarshal(payload, &claims) != nil {
		return nil
	}
	iss, ok := claims.Iss.(string)
	if !ok {
		return nil
	}
	for _, o := range v.also {
		if o.cfg.Issuer == iss {
			return o
		}
	}
	return nil
}
