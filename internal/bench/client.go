package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// TokenFunc returns a bearer token for a caller of role (admin, plan, cbo, provider) in org
// ("Organization/<id>").
type TokenFunc func(role, org string) (string, error)

// client sends FHIR requests. One http.Transport serves every request of a run, the ceiling's
// included, so the ratio to the ceiling compares like with like.
type client struct {
	http   *http.Client
	base   string // FHIR base, no trailing slash
	tokens TokenFunc
	mu     sync.Mutex
	cache  map[string]string
}

func newClient(base string, tokens TokenFunc, conns int) *client {
	tr := &http.Transport{
		Proxy:               nil, // loopback benchmarks must not go through a proxy
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        conns * 4,
		MaxIdleConnsPerHost: conns * 2,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	return &client{http: &http.Client{Transport: tr, Timeout: 2 * time.Minute}, base: strings.TrimSuffix(base, "/"),
		tokens: tokens, cache: map[string]string{}}
}

func (c *client) close() { c.http.CloseIdleConnections() }

// token returns (and remembers) the token of role in org.
func (c *client) token(role, org string) (string, error) {
	if role == "" {
		return "", nil // unauthenticated: /metadata and the ceiling
	}
	key := role + " " + org
	c.mu.Lock()
	defer c.mu.Unlock()
	if t, ok := c.cache[key]; ok {
		return t, nil
	}
	t, err := c.tokens(role, org)
	if err != nil {
		return "", fmt.Errorf("token for %s %s: %w", role, org, err)
	}
	c.cache[key] = t
	return t, nil
}

// response is what a request got back.
type response struct {
	status int
	header http.Header
	body   []byte
}

// httpError is a request that did not get the status it wanted; it keeps a short excerpt of
// the OperationOutcome (synthetic data only, so no PHI).
type httpError struct {
	status int
	body   string
}

func (e *httpError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.status, e.body) }

// do sends a request to url (absolute, or a path under the FHIR base) as role/org, and
// returns an error unless the status is 2xx.
func (c *client) do(ctx context.Context, method, url string, body []byte, role, org string, headers ...string) (*response, error) {
	tok, err := c.token(role, org)
	if err != nil {
		return nil, err
	}
	if !strings.HasPrefix(url, "http://") && !strings.HasPrefix(url, "https://") {
		url = c.base + "/" + strings.TrimPrefix(url, "/")
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/fhir+json")
	if body != nil {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	return c.send(req)
}

func (c *client) send(req *http.Request) (*response, error) {
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	r := &response{status: resp.StatusCode, header: resp.Header, body: b}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return r, &httpError{status: resp.StatusCode, body: excerpt(b)}
	}
	return r, nil
}

// excerpt is the diagnostics of an OperationOutcome, or the start of any other body.
func excerpt(b []byte) string {
	var oo struct {
		Issue []struct {
			Code        string `json:"code"`
			Diagnostics string `json:"diagnostics"`
		} `json:"issue"`
	}
	if json.Unmarshal(b, &oo) == nil && len(oo.Issue) > 0 {
		return oo.Issue[0].Code + ": " + oo.Issue[0].Diagnostics
	}
	if len(b) > 200 {
		b = b[:200]
	}
	return string(b)
}

// bundleEntry is the part of a response Bundle entry the harness reads.
type bundleEntry struct {
	Response struct {
		Status   string `json:"status"`
		Location string `json:"location"`
		Etag     string `json:"etag"`
	} `json:"response"`
}

// checkBundle reads a transaction or batch response and fails unless it has want entries,
// each with a 2xx status.
func checkBundle(body []byte, want int) ([]bundleEntry, error) {
	var b struct {
		ResourceType string        `json:"resourceType"`
		Type         string        `json:"type"`
		Entry        []bundleEntry `json:"entry"`
	}
	if err := json.Unmarshal(body, &b); err != nil {
		return nil, fmt.Errorf("response is not a Bundle: %v", err)
	}
	if len(b.Entry) != want {
		return nil, fmt.Errorf("response Bundle has %d entries, want %d", len(b.Entry), want)
	}
	for i, e := range b.Entry {
		if !strings.HasPrefix(e.Response.Status, "2") {
			return b.Entry, fmt.Errorf("entry %d: status %s", i, e.Response.Status)
		}
	}
	return b.Entry, nil
}

// bundle wraps entries in a Bundle of typ (transaction or batch).
func bundle(typ string, entries []any) []byte {
	b, _ := json.Marshal(map[string]any{"resourceType": "Bundle", "type": typ, "entry": entries})
	return b
}

// putEntry is a transaction entry that stores doc under its own id.
func putEntry(base string, doc map[string]any, ifMatch string) map[string]any {
	typ, id := doc["resourceType"].(string), doc["id"].(string)
	req := map[string]any{"method": "PUT", "url": typ + "/" + id}
	if ifMatch != "" {
		req["ifMatch"] = ifMatch
	}
	return map[string]any{"fullUrl": base + "/" + typ + "/" + id, "resource": doc, "request": req}
}

// parseETag reads W/"3".
func parseETag(s string) int64 {
	s = strings.TrimPrefix(s, "W/")
	s = strings.Trim(s, `"`)
	var v int64
	fmt.Sscan(s, &v)
	return v
}
