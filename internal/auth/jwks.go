package auth

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sync"
	"time"
)

// ---- JWKS file ----

// fileCheckInterval bounds how often a JWKS file is stat'ed for changes.
const fileCheckInterval = time.Second

type jwksFile struct {
	path       string
	checkEvery time.Duration
	now        func() time.Time

	mu      sync.RWMutex
	keys    map[string]crypto.PublicKey
	modTime time.Time
	size    int64
	checked time.Time
	lastErr error // last reload failure, nil after a successful reload
}

// JWKSFile serves the keys of an RFC 7517 JWK Set file (see parseJWKS for what is read). The
// file is loaded now, so a missing or invalid file is an error at startup; afterwards it is
// re-read when its modification time or size changes (checked at most once a second), so
// keys are rotated by rewriting the file (preferably write-then-rename). A rewrite that
// fails to parse is ignored and the previous keys stay in use; while it persists, an
// unknown kid is reported as a key-source failure (503), not as an unknown key.
func JWKSFile(path string) (KeySource, error) {
	f := &jwksFile{path: path, checkEvery: fileCheckInterval, now: time.Now}
	if err := f.reload(); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *jwksFile) Key(_ context.Context, kid string) (crypto.PublicKey, error) {
	f.mu.RLock()
	due := f.now().Sub(f.checked) >= f.checkEvery
	f.mu.RUnlock()
	if due {
		f.mu.Lock()
		if f.now().Sub(f.checked) >= f.checkEvery {
			f.lastErr = f.reloadIfChangedLocked()
			f.checked = f.now()
		}
		f.mu.Unlock()
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	if k, ok := f.keys[kid]; ok {
		return k, nil
	}
	if f.lastErr != nil {
		return nil, f.lastErr
	}
	return nil, ErrUnknownKey
}

func (f *jwksFile) reload() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.checked = f.now()
	return f.reloadIfChangedLocked()
}

func (f *jwksFile) reloadIfChangedLocked() error {
	st, err := os.Stat(f.path)
	if err != nil {
		return fmt.Errorf("JWKS file: %w", err)
	}
	if f.keys != nil && st.ModTime().Equal(f.modTime) && st.Size() == f.size {
		return nil
	}
	data, err := os.ReadFile(f.path)
	if err != nil {
		return fmt.Errorf("JWKS file: %w", err)
	}
	keys, err := parseJWKS(data)
	if err != nil {
		return fmt.Errorf("JWKS file %s: %w", f.path, err)
	}
	f.keys, f.modTime, f.size = keys, st.ModTime(), st.Size()
	return nil
}

// ---- JWKS URL ----

const (
	// DefaultJWKSMinRefresh is JWKSURL's minRefresh when it is given as zero or less.
	DefaultJWKSMinRefresh = time.Minute
	// jwksMaxAge: keys fetched longer ago than this are re-fetched on the next use (so that
	// keys removed by the provider stop being accepted); on failure the old keys stay in use.
	jwksMaxAge = time.Hour
	// jwksFirstRetry bounds the wait between attempts while no fetch has succeeded yet, so
	// that an identity provider unreachable at startup does not lock callers out for a
	// whole minRefresh.
	jwksFirstRetry = 5 * time.Second
	jwksMaxBody    = 1 << 20
	jwksTimeout    = 10 * time.Second
)

type jwksURL struct {
	url        string
	client     *http.Client
	minRefresh time.Duration
	now        func() time.Time

	fetchMu sync.Mutex // one fetch at a time; waiters then see its result

	mu        sync.RWMutex
	keys      map[string]crypto.PublicKey
	fetched   time.Time // last successful fetch
	attempted time.Time // last fetch attempt
	lastErr   error     // result of the last attempt
}

// JWKSURL serves the keys of a JWK Set published at rawURL (an identity provider's jwks_uri).
// The URL must be https, except on a loopback host. Nothing is fetched until the first Key
// call. Keys are cached; an unknown kid triggers a re-fetch, at most once per minRefresh
// (DefaultJWKSMinRefresh when zero or less), which is how key rotation is picked up without
// letting tokens with made-up kids hammer the provider. Cached keys older than an hour are
// re-fetched on use; if that fails they stay in use. A nil client means one with a 10 s
// timeout. Fetches are not tied to the cancellation of the request that triggered them.
func JWKSURL(rawURL string, client *http.Client, minRefresh time.Duration) (KeySource, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("JWKS URL %q is not an absolute URL", rawURL)
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && isLoopback(u.Hostname()):
	default:
		return nil, fmt.Errorf("JWKS URL %q must use https (http only on a loopback host)", rawURL)
	}
	if client == nil {
		client = &http.Client{Timeout: jwksTimeout}
	}
	if minRefresh <= 0 {
		minRefresh = DefaultJWKSMinRefresh
	}
	return &jwksURL{url: u.String(), client: client, minRefresh: minRefresh, now: time.Now}, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (s *jwksURL) Key(ctx context.Context, kid string) (crypto.PublicKey, error) {
	s.mu.RLock()
	key, ok := s.keys[kid]
	fresh := s.keys != nil && s.now().Sub(s.fetched) < jwksMaxAge
	s.mu.RUnlock()
	if ok && fresh {
		return key, nil
	}
	s.refresh(ctx)
	s.mu.RLock()
	defer s.mu.RUnlock()
	if key, ok := s.keys[kid]; ok {
		return key, nil // possibly stale, when the refresh failed
	}
	if s.lastErr != nil {
		return nil, s.lastErr
	}
	return nil, ErrUnknownKey
}

// refresh fetches the set unless an attempt was made within the rate limit.
func (s *jwksURL) refresh(ctx context.Context) {
	s.fetchMu.Lock()
	defer s.fetchMu.Unlock()
	s.mu.RLock()
	wait := s.minRefresh
	if s.keys == nil {
		wait = min(wait, jwksFirstRetry)
	}
	limited := !s.attempted.IsZero() && s.now().Sub(s.attempted) < wait
	s.mu.RUnlock()
	if limited {
		return
	}
	s.mu.Lock()
	s.attempted = s.now()
	s.mu.Unlock()

	keys, err := s.fetch(ctx)

	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastErr = err
	if err == nil {
		s.keys, s.fetched = keys, s.now()
	}
}

func (s *jwksURL) fetch(ctx context.Context) (map[string]crypto.PublicKey, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), jwksTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return nil, fmt.Errorf("JWKS %s: %w", s.url, err)
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("JWKS %s: %w", s.url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("JWKS %s: HTTP status %d", s.url, resp.StatusCode)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, jwksMaxBody+1))
	if err != nil {
		return nil, fmt.Errorf("JWKS %s: %w", s.url, err)
	}
	if len(data) > jwksMaxBody {
		return nil, errors.New("JWKS " + s.url + ": response larger than 1 MiB")
	}
	keys, err := parseJWKS(data)
	if err != nil {
		return nil, fmt.Errorf("JWKS %s: %w", s.url, err)
	}
	return keys, nil
}
