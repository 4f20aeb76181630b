package server

import (
	"math"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/calaimfhir/calaimfhir/internal/auth"
	"github.com/calaimfhir/calaimfhir/resources"
)

// securityHeaders go on every answer: responses carry PHI, so nothing is cached, sniffed,
// framed or given a referrer.
func securityHeaders(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
		h.Set("Cache-Control", "no-store")
		return next(c)
	}
}

// cors answers cross-origin requests only for the configured origins (none by default).
func (s *Server) cors(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		origin := c.Request().Header.Get("Origin")
		if origin == "" || !slices.Contains(s.cfg.CORSOrigins, origin) {
			return next(c)
		}
		h := c.Response().Header()
		h.Set("Access-Control-Allow-Origin", origin)
		h.Add("Vary", "Origin")
		h.Set("Access-Control-Expose-Headers", "ETag, Location, Last-Modified, X-Request-Id")
		if c.Request().Method == http.MethodOptions {
			h.Set("Access-Control-Allow-Methods", "GET, POST, PUT, PATCH, DELETE")
			h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, If-Match, If-None-Exist, If-None-Match, Prefer, X-Request-Id")
			h.Set("Access-Control-Max-Age", "600")
			return c.NoContent(http.StatusNoContent)
		}
		return next(c)
	}
}

// limiter is a token bucket per client: the token's client id when there is a verified
// caller, the remote address otherwise. State is per process; behind a load balancer each
// instance enforces its share.
type limiter struct {
	rate  float64 // tokens per second
	burst float64
	mu    sync.Mutex
	seen  map[string]*bucket
	swept time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newLimiter(perSecond float64, burst int) *limiter {
	return &limiter{rate: perSecond, burst: float64(burst), seen: map[string]*bucket{}}
}

// take spends one token of key's bucket; when none is left it reports how long until one is.
func (l *limiter) take(key string, now time.Time) (ok bool, wait time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.swept) > time.Minute { // forget idle clients
		for k, b := range l.seen {
			if now.Sub(b.last) > time.Minute {
				delete(l.seen, k)
			}
		}
		l.swept = now
	}
	b, found := l.seen[key]
	if !found {
		b = &bucket{tokens: l.burst, last: now}
		l.seen[key] = b
	}
	b.tokens = math.Min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
}

// rateLimit answers 429 with Retry-After when a client exceeds its rate. It runs after
// authentication, so clients are told apart by their verified client id.
func (s *Server) rateLimit(next echo.HandlerFunc) echo.HandlerFunc {
	if s.limiter == nil {
		return next
	}
	return func(c echo.Context) error {
		key := "ip:" + remoteHost(c.Request())
		if caller, ok := auth.CallerFrom(c.Request().Context()); ok && caller.ClientID != "" {
			key = "client:" + caller.ClientID
		}
		if ok, wait := s.limiter.take(key, time.Now()); !ok {
			secs := int(math.Ceil(wait.Seconds()))
			return &resources.Error{Kind: resources.KindTooManyRequests, RetryAfter: max(secs, 1),
				Message: "too many requests from this client; retry after " + strconv.Itoa(max(secs, 1)) + " s"}
		}
		return next(c)
	}
}

func remoteHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return strings.TrimSpace(r.RemoteAddr)
	}
	return host
}
