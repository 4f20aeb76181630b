package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// Client is one registered SMART Backend Services client: a system (a plan's care-management
// platform, a CBO's case-management tool) that authenticates at the token endpoint with a
// private_key_jwt assertion signed by a key in its JWKS.
type Client struct {
	ID   string // client_id: the assertion's iss and sub
	Name string // for people reading the file and the logs; optional
	// Org and Role go into every token issued to the client, so tenancy applies to it as to
	// any other caller.
	Org  string // "Organization/<id>"
	Role string // RoleAdmin, RolePlan, RoleCBO or RoleProvider
	// Scopes are the most the client may be granted; a request gets the intersection.
	Scopes []Scope
	// JWKSURL is the registered jwks_url ("" when the keys are inline); an assertion's jku
	// header, when present, must equal it.
	JWKSURL string
	Keys    KeySource // the client's public keys by kid
}

// Clients is the registry of backend clients, by client_id. It is read-only once loaded and
// safe for concurrent use.
type Clients struct {
	byID map[string]*Client
}

// Lookup returns the client registered under id.
func (cs *Clients) Lookup(id string) (*Client, bool) {
	if cs == nil {
		return nil, false
	}
	c, ok := cs.byID[id]
	return c, ok
}

// Len is the number of registered clients.
func (cs *Clients) Len() int {
	if cs == nil {
		return 0
	}
	return len(cs.byID)
}

// clientFile is the JSON form of the registry (see LoadClients).
type clientFile struct {
	Clients []struct {
		ClientID     string          `json:"client_id"`
		Name         string          `json:"name"`
		Organization string          `json:"organization"`
		Role         string          `json:"role"`
		Scope        string          `json:"scope"`
		JWKS         json.RawMessage `json:"jwks"`
		JWKSURL      string          `json:"jwks_url"`
	} `json:"clients"`
}

// maxClientsFile bounds the registry file; it holds public keys and a few strings per client.
const maxClientsFile = 8 << 20

// LoadClients reads the client registry from a JSON file:
//
//	{"clients": [{
//	  "client_id": "plan-care-mgmt",
//	  "name": "Plan care management platform",
//	  "organization": "Organization/plan-1",
//	  "role": "plan",
//	  "scope": "system/Patient.rs system/Task.cruds",
//	  "jwks": {"keys": [ ...public JWKs with kid... ]}
//	}]}
//
// Each client has exactly one of "jwks" (an inline RFC 7517 JWK Set) or "jwks_url" (https,
// or http on a loopback host; fetched when first needed, cached and re-fetched on an unknown
// kid like JWKSURL). The file is read once, at startup: a change takes effect on restart.
func LoadClients(path string) (*Clients, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("clients file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxClientsFile+1))
	if err != nil {
		return nil, fmt.Errorf("clients file: %w", err)
	}
	if len(data) > maxClientsFile {
		return nil, fmt.Errorf("clients file %s is larger than %d bytes", path, maxClientsFile)
	}
	cs, err := ParseClients(data)
	if err != nil {
		return nil, fmt.Errorf("clients file %s: %w", path, err)
	}
	return cs, nil
}

// ParseClients reads the registry format described at LoadClients. Every problem is an
// error naming the client, so that a typo never silently registers a client with fewer
// checks: unknown members, a missing or repeated client_id, an organization that is not
// "Organization/<id>", an unknown role, a scope string with no resource scope or a malformed
// one, both or neither of jwks and jwks_url, or a JWK Set with no usable signing key.
func ParseClients(data []byte) (*Clients, error) {
	var file clientFile
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&file); err != nil {
		return nil, fmt.Errorf("not a clients registry: %w", err)
	}
	if dec.More() {
		return nil, errors.New("not a clients registry: data after the JSON object")
	}
	cs := &Clients{byID: make(map[string]*Client, len(file.Clients))}
	for i, fc := range file.Clients {
		name := fmt.Sprintf("client %d", i)
		if fc.ClientID != "" {
			name = fmt.Sprintf("client %q", fc.ClientID)
		}
		c := &Client{ID: fc.ClientID, Name: fc.Name, Org: fc.Organization, Role: fc.Role, JWKSURL: fc.JWKSURL}
		switch {
		case strings.TrimSpace(c.ID) == "" || c.ID != strings.TrimSpace(c.ID):
			return nil, fmt.Errorf("%s: client_id is empty or has surrounding spaces", name)
		case cs.byID[c.ID] != nil:
			return nil, fmt.Errorf("%s is registered twice", name)
		}
		if _, ok := orgID(c.Org); !ok {
			return nil, fmt.Errorf("%s: organization %q is not an Organization reference (Organization/<id>)", name, c.Org)
		}
		if !ValidRole(c.Role) {
			return nil, fmt.Errorf("%s: role %q is not one of admin, plan, cbo, provider", name, c.Role)
		}
		scopes, err := ParseScopes(fc.Scope)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if len(scopes) == 0 {
			return nil, fmt.Errorf("%s: scope names no SMART resource scope (e.g. system/Task.rs)", name)
		}
		c.Scopes = scopes
		hasJWKS := len(fc.JWKS) > 0 && string(fc.JWKS) != "null"
		switch {
		case hasJWKS && c.JWKSURL != "":
			return nil, fmt.Errorf("%s: give jwks or jwks_url, not both", name)
		case hasJWKS:
			keys, err := parseJWKS(fc.JWKS)
			if err != nil {
				return nil, fmt.Errorf("%s: jwks: %w", name, err)
			}
			c.Keys = staticKeys(keys)
		case c.JWKSURL != "":
			if c.Keys, err = JWKSURL(c.JWKSURL, nil, 0); err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
		default:
			return nil, fmt.Errorf("%s: jwks or jwks_url is required", name)
		}
		cs.byID[c.ID] = c
	}
	return cs, nil
}
