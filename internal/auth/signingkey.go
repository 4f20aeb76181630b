package auth

import (
	"errors"
	"fmt"
	"io/fs"
)

// LoadSigningKey reads the key a production server signs its own access tokens with (those
// its token endpoint issues): an ECDSA P-256 private key in a PKCS#8 PEM file ("PRIVATE
// KEY"), private to its owner (mode 0600), exactly like the development key but kept where
// the operator chooses and never created here. For example:
//
//	openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out signing-key.pem
//	chmod 600 signing-key.pem
//
// Tokens are signed ES256 with the key's RFC 7638 thumbprint as kid (see DevKey).
func LoadSigningKey(path string) (*DevKey, error) {
	k, err := loadDevKey(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("signing key %s does not exist", path)
	}
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	return k, nil
}
