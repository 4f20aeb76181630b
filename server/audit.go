package server

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/calaimfhir/calaimfhir/internal/auth"
	"github.com/calaimfhir/calaimfhir/resources"
)

// The audit trail: every request to the server but the health and metrics probes becomes one
// resources.AuditRecord, written after the answer is known, so it carries the final status
// (401, 403 and 404 included). Records go to the store's audit log (resources.AuditLog)
// through a bounded queue and a background writer that stores them in batches; GET
// /fhir/AuditEvent serves them to administrators as R4 AuditEvent resources.
//
// Why asynchronous: on the embedded store one write transaction costs about as much as a
// point read (see BenchmarkAudit in audit_test.go and docs), and every transaction holds the
// single write lock, so a synchronous audit write per request would halve read throughput
// and queue reads behind writes. Batches of up to auditBatch records cost one transaction.
// The price: records still queued when the process dies are lost (a graceful shutdown flushes
// them), and when the store stays unavailable longer than the queue lasts, new records are
// dropped and counted in calaimfhir_audit_dropped_total, which operators should alert on.

const (
	auditBatch      = 256                    // records per store call
	auditLinger     = 100 * time.Millisecond // longest a record waits for its batch to fill
	auditQueueWait  = 250 * time.Millisecond // how long a request waits for room in a full queue
	auditAttempts   = 6                      // store calls per batch before it is dropped
	auditMaxQuery   = 8 << 10                // longest query string kept, in bytes
	auditMaxEntries = 2000                   // most entities kept per record
	auditDefaultQ   = 10000
)

// auditNote collects what a request wrote: the timed store adds every version it stores for
// the request (noteWritten), including Bundle entries, cascading deletes and conditional writes
// whose target the URL does not name.
type auditNote struct {
	mu       sync.Mutex
	written  []string
	truncate bool
	subtype  string // set by handlers that know better than the route (batch)
}

type auditNoteKey struct{}

func noteFrom(ctx context.Context) *auditNote {
	n, _ := ctx.Value(auditNoteKey{}).(*auditNote)
	return n
}

// noteWritten records that r was stored on behalf of the request in ctx (if it is audited).
func noteWritten(ctx context.Context, r *resources.Resource) {
	n := noteFrom(ctx)
	if n == nil || r == nil {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.written) >= auditMaxEntries {
		n.truncate = true
		return
	}
	n.written = append(n.written, r.Type+"/"+r.ID+"/_history/"+strconv.FormatInt(r.VersionID, 10))
}

// noteSubtype overrides the interaction the route suggests (a Bundle is a batch or a
// transaction: only its body says which).
func noteSubtype(c echo.Context, subtype string) {
	if n := noteFrom(c.Request().Context()); n != nil {
		n.mu.Lock()
		n.subtype = subtype
		n.mu.Unlock()
	}
}

// auditor queues records and writes them in batches.
type auditor struct {
	log     resources.AuditLog
	logger  *slog.Logger
	queue   chan *resources.AuditRecord
	flushes chan chan struct{}
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
	purging sync.WaitGroup

	dropped  prometheus.Counter
	written  prometheus.Counter
	failures prometheus.Counter
	purged   prometheus.Counter
}

func newAuditor(al resources.AuditLog, size int, logger *slog.Logger, reg *prometheus.Registry) *auditor {
	if size <= 0 {
		size = auditDefaultQ
	}
	a := &auditor{
		log: al, logger: logger,
		queue:   make(chan *resources.AuditRecord, size),
		flushes: make(chan chan struct{}),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "calaimfhir_audit_dropped_total",
			Help: "Audit records lost: the queue was full, or the store refused a batch after every retry."}),
		written: prometheus.NewCounter(prometheus.CounterOpts{Name: "calaimfhir_audit_written_total",
			Help: "Audit records stored."}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{Name: "calaimfhir_audit_write_failures_total",
			Help: "Failed attempts to store a batch of audit records (each is retried)."}),
		purged: prometheus.NewCounter(prometheus.CounterOpts{Name: "calaimfhir_audit_purged_total",
			Help: "Audit records deleted by the retention purge."}),
	}
	queued := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "calaimfhir_audit_queue_length",
		Help: "Audit records waiting to be stored."}, func() float64 { return float64(len(a.queue)) })
	reg.MustRegister(a.dropped, a.written, a.failures, a.purged, queued)
	go a.run()
	return a
}

// add queues a record; when the queue stays full for auditQueueWait the record is dropped and
// counted.
func (a *auditor) add(r *resources.AuditRecord) {
	select {
	case a.queue <- r:
		return
	default:
	}
	t := time.NewTimer(auditQueueWait)
	defer t.Stop()
	select {
	case a.queue <- r:
	case <-t.C:
		a.dropped.Inc()
		a.logger.Warn("audit queue full: record dropped")
	case <-a.stop:
		a.dropped.Inc()
	}
}

// flush returns once every record queued before the call is stored (or given up on).
func (a *auditor) flush(ctx context.Context) {
	done := make(chan struct{})
	select {
	case a.flushes <- done:
	case <-a.done:
		return
	case <-ctx.Done():
		return
	}
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// close writes what is queued and stops the writer.
func (a *auditor) close() {
	a.once.Do(func() { close(a.stop) })
	<-a.done
	a.purging.Wait()
}

func (a *auditor) run() {
	defer close(a.done)
	var batch []*resources.AuditRecord
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	write := func() {
		linger.Stop()
		for len(batch) > 0 {
			n := min(len(batch), auditBatch)
			a.store(batch[:n])
			batch = batch[n:]
		}
		batch = nil
	}
	drain := func() {
		for {
			select {
			case r := <-a.queue:
				batch = append(batch, r)
			default:
				return
			}
		}
	}
	for {
		select {
		case r := <-a.queue:
			if len(batch) == 0 {
				linger.Reset(auditLinger)
			}
			batch = append(batch, r)
			if len(batch) >= auditBatch {
				write()
			}
		case <-linger.C:
			write()
		case done := <-a.flushes:
			drain()
			write()
			close(done)
		case <-a.stop:
			drain()
			write()
			return
		}
	}
}

// store writes one batch, retrying with backoff (six attempts over at least 15 s, up to about a
// minute when each attempt waits out its timeout): a shorter store outage loses nothing as long
// as the queue holds the requests meanwhile.
func (a *auditor) store(batch []*resources.AuditRecord) {
	backoff := 500 * time.Millisecond
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := a.log.AppendAudit(ctx, batch)
		cancel()
		if err == nil {
			a.written.Add(float64(len(batch)))
			return
		}
		a.failures.Inc()
		if attempt == auditAttempts {
			a.dropped.Add(float64(len(batch)))
			a.logger.Error("audit records dropped: the store refused them", "records", len(batch), "status", resources.KindOf(err).Status())
			return
		}
		select {
		case <-time.After(backoff):
		case <-a.stop:
			// shutting down: one more attempt, then give up
			if attempt < auditAttempts-1 {
				attempt = auditAttempts - 1
			}
		}
		backoff = min(backoff*2, 8*time.Second)
	}
}

// purgeLoop deletes records older than the retention every interval until stop.
func (a *auditor) purgeLoop(retention, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		n, err := a.log.PurgeAudit(ctx, time.Now().Add(-retention))
		cancel()
		a.purged.Add(float64(n))
		if err != nil {
			a.logger.Error("audit retention purge failed", "status", resources.KindOf(err).Status())
		} else if n > 0 {
			a.logger.Info("audit retention purge", "records", n)
		}
		select {
		case <-t.C:
		case <-a.stop:
			return
		}
	}
}

// Close flushes the audit queue and stops the background work (the retention purge, the sweep
// of member keys). Call it after the HTTP server has shut down and before the store is closed.
func (s *Server) Close() {
	s.stopSweep()
	s.svc.Close()
	if s.audit != nil {
		s.audit.close()
	}
}

// auditRequests is the middleware that records every request. It sits inside observe (which
// assigns the request id) and outside everything else, so that it sees the status the error
// handler answers with, panics included.
func (s *Server) auditRequests(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		path := c.Request().URL.Path
		if s.audit == nil || strings.HasPrefix(path, "/health/") || path == "/metrics" {
			return next(c)
		}
		start := time.Now()
		note := &auditNote{}
		req := c.Request()
		c.SetRequest(req.WithContext(context.WithValue(req.Context(), auditNoteKey{}, note)))
		form := s.peekSearchForm(c)
		if err := next(c); err != nil {
			c.Error(err)
		}
		s.audit.add(s.auditRecord(c, start, note, form))
		return nil
	}
}

// peekSearchForm returns the form body of POST /fhir/Type/_search (its parameters are the
// search, as much as a query string is) and puts the body back for the handler. Only
// form-encoded bodies are read, never a resource.
func (s *Server) peekSearchForm(c echo.Context) string {
	req := c.Request()
	if req.Method != http.MethodPost || !strings.HasSuffix(req.URL.Path, "/_search") ||
		!strings.HasPrefix(strings.ToLower(req.Header.Get(echo.HeaderContentType)), "application/x-www-form-urlencoded") {
		return ""
	}
	// Read at most one byte more than the handler accepts: a longer body still fails there.
	b, err := io.ReadAll(io.LimitReader(req.Body, s.cfg.MaxBodyBytes+1))
	req.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(b), req.Body), req.Body}
	if err != nil {
		return ""
	}
	return string(b)
}

// auditAction maps an interaction (or, for requests no FHIR route matched, the method) to an
// audit action.
func auditAction(subtype, method string) string {
	switch subtype {
	case "create":
		return resources.AuditCreate
	case "read", "vread", "history-instance", "history-type", "capabilities":
		return resources.AuditRead
	case "update", "patch":
		return resources.AuditUpdate
	case "delete":
		return resources.AuditDelete
	case "search-type", "search-system", "transaction", "batch", "operation":
		return resources.AuditExecute
	}
	switch method {
	case http.MethodGet, http.MethodHead:
		return resources.AuditRead
	case http.MethodPost:
		return resources.AuditCreate
	case http.MethodPut, http.MethodPatch:
		return resources.AuditUpdate
	case http.MethodDelete:
		return resources.AuditDelete
	}
	return resources.AuditExecute
}

func (s *Server) auditRecord(c echo.Context, start time.Time, note *auditNote, form string) *resources.AuditRecord {
	req := c.Request()
	status := c.Response().Status
	now := time.Now().UTC().Truncate(time.Microsecond)
	rec := &resources.AuditRecord{
		ID:        auditID(now),
		Recorded:  now,
		Start:     start.UTC().Truncate(time.Microsecond),
		Status:    status,
		Outcome:   resources.AuditOutcome(status),
		Method:    req.Method,
		Address:   remoteHost(req),
		RequestID: requestID(c),
	}
	if caller, ok := auth.CallerFrom(req.Context()); ok {
		rec.Subject, rec.ClientID, rec.Org, rec.Role = caller.Subject, caller.ClientID, caller.Org, caller.Role
	}
	typ, id := c.Param("type"), c.Param("id")
	var subtype string
	if route := c.Path(); strings.HasPrefix(route, "/fhir/AuditEvent") {
		// The audit routes name their type in the path: classify them as the generic route.
		typ = "AuditEvent"
		c.SetPath(strings.Replace(route, "/AuditEvent", "/:type", 1))
		subtype = interactionOf(c)
		c.SetPath(route)
	} else {
		subtype = interactionOf(c)
	}
	if op := operationName(req.URL.Path); op != "" {
		subtype, rec.Operation = "operation", op
		if strings.HasPrefix(id, "$") {
			id = ""
		}
		if typ == "" { // a type-level operation route such as /fhir/Claim/$submit
			segs := strings.Split(strings.TrimSuffix(req.URL.Path, "/"+op), "/")
			if t := segs[len(segs)-1]; resources.Supported(t) {
				typ = t
			}
		}
	}
	note.mu.Lock()
	if note.subtype != "" {
		subtype = note.subtype
	}
	written := note.written
	note.mu.Unlock()
	switch subtype {
	case "other", "health", "metrics":
		subtype = ""
		rec.Path = req.URL.Path
	}
	rec.Subtype = subtype
	rec.Action = auditAction(subtype, req.Method)
	if req.URL.Path == TokenPath {
		rec.Action = resources.AuditExecute // a log-on (SMART Backend Services token request)
	}
	if len(typ) <= 64 {
		rec.Type = typ
	}
	switch {
	case len(written) > 0:
		rec.Entities = written
	case typ != "" && id != "" && len(typ)+len(id) <= 130:
		e := typ + "/" + id
		if vid := c.Param("vid"); vid != "" && len(vid) <= 20 {
			e += "/_history/" + vid
		}
		rec.Entities = []string{e}
	}
	query := req.URL.RawQuery
	if form != "" {
		if query != "" {
			query += "&"
		}
		query += form
	}
	if subtype == "create" && query == "" {
		query = req.Header.Get("If-None-Exist")
	}
	if len(query) > auditMaxQuery {
		query = query[:auditMaxQuery]
	}
	rec.Query = query
	return rec
}

// auditID is a FHIR id that sorts by time: 16 hex digits of the Unix microseconds, then 64
// random bits. Records are then appended at the end of the stores' id indexes instead of at
// random places, which keeps the per-request insert cheap.
func auditID(t time.Time) string {
	return fmt.Sprintf("%016x", t.UnixMicro()) + resources.NewID()[:16]
}

// operationName is "$name" when the last segment of a path names a FHIR operation.
func operationName(path string) string {
	i := strings.LastIndexByte(path, '/')
	if seg := path[i+1:]; strings.HasPrefix(seg, "$") && len(seg) <= 64 {
		return seg
	}
	return ""
}

// requireAuditReader lets only administrators whose scopes allow reading AuditEvent through:
// the trail names every patient anyone looked up.
func (s *Server) requireAuditReader(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		caller, ok := auth.CallerFrom(c.Request().Context())
		if !ok {
			return resources.Errorf(resources.KindUnauthorized, "no authenticated caller")
		}
		if caller.Role != auth.RoleAdmin {
			return resources.Errorf(resources.KindForbidden, "only administrators may read the audit trail")
		}
		in := auth.Read
		if c.Param("id") == "" {
			in = auth.Search
		}
		if !caller.Allows("AuditEvent", in) {
			return resources.Errorf(resources.KindForbidden, "the access token's scopes do not allow %s on AuditEvent", in)
		}
		if s.audit == nil {
			return resources.Errorf(resources.KindNotFound, "this server's store keeps no audit trail")
		}
		return next(c)
	}
}

// auditReadOnly answers every write to AuditEvent: the trail is written by the server only.
func (s *Server) auditReadOnly(c echo.Context) error {
	c.Response().Header().Set(echo.HeaderAllow, "GET, POST")
	return resources.Errorf(resources.KindMethodNotAllowed, "AuditEvent resources are written by the server only; they can be read and searched by administrators")
}

func (s *Server) auditEventRead(c echo.Context) error {
	id := c.Param("id")
	if !resources.ValidID(id) {
		return resources.Errorf(resources.KindNotFound, "AuditEvent/%s is not known", id)
	}
	rec, err := s.audit.log.ReadAudit(c.Request().Context(), id)
	if err != nil {
		return err
	}
	return c.Blob(http.StatusOK, fhirJSON, auditEventJSON(rec))
}

func (s *Server) auditEventSearch(c echo.Context) error {
	params := c.QueryParams()
	if c.Request().Method == http.MethodPost {
		if ct := c.Request().Header.Get(echo.HeaderContentType); c.Request().ContentLength != 0 &&
			!strings.HasPrefix(strings.ToLower(ct), "application/x-www-form-urlencoded") {
			return resources.Errorf(resources.KindUnsupportedMediaType, "send search parameters as application/x-www-form-urlencoded")
		}
		body, err := s.readBody(c)
		if err != nil {
			return err
		}
		form, err := url.ParseQuery(string(body))
		if err != nil {
			return resources.Wrap(resources.KindBadRequest, err, "the form body is not valid")
		}
		for k, vs := range form {
			params[k] = append(params[k], vs...)
		}
	}
	q, err := ParseAuditQuery(params, s.cfg.BaseURL)
	if err != nil {
		return err
	}
	// Records of this process's earlier requests are stored first, so an administrator sees
	// everything answered before the search (other instances flush within auditLinger).
	ctx, cancel := context.WithTimeout(c.Request().Context(), 5*time.Second)
	s.audit.flush(ctx)
	cancel()
	page, err := s.audit.log.SearchAudit(c.Request().Context(), q)
	if err != nil {
		return err
	}
	self := s.cfg.BaseURL + "/AuditEvent"
	links := [][2]string{{"self", withQuery(self, auditApplied(params))}}
	if page.Next != nil {
		next := auditApplied(params)
		next.Set("_cursor", encodeAuditCursor(page.Next))
		links = append(links, [2]string{"next", withQuery(self, next)})
	}
	total := int64(-1)
	if q.After == nil && page.Next == nil {
		total = int64(len(page.Records))
	}
	b := newBundle("searchset", total, links)
	for _, r := range page.Records {
		b.entry("fullUrl", self+"/"+r.ID, "resource", json.RawMessage(auditEventJSON(r)), "search", json.RawMessage(`{"mode":"match"}`))
	}
	return c.Blob(http.StatusOK, fhirJSON, b.bytes())
}

// auditParams are the search parameters of AuditEvent this server supports.
var auditParams = map[string]bool{"date": true, "agent": true, "entity": true, "entity-type": true,
	"action": true, "outcome": true, "subtype": true, "_count": true, "_cursor": true, "_format": true}

func auditApplied(params url.Values) url.Values {
	out := url.Values{}
	for k, v := range params {
		if k != "_cursor" && k != "_format" {
			out[k] = v
		}
	}
	return out
}

const (
	auditDefaultCount = 50
	auditMaxCount     = 1000
)

// ParseAuditQuery reads the AuditEvent search parameters: date (with prefixes eq, lt, le, gt,
// ge, sa, eb; repeated to bound both sides), agent (a token subject, client id or
// Organization/id), entity (Type/id, any version), entity-type, action (C R U D E), outcome (0
// 4 8 12), subtype (an interaction code), _count and _cursor. Commas separate alternatives,
// repeated parameters must all hold. Unknown parameters are a 400: a silently dropped filter
// would widen an audit query.
func ParseAuditQuery(params url.Values, base string) (*resources.AuditQuery, error) {
	q := &resources.AuditQuery{Count: auditDefaultCount}
	bad := func(format string, args ...any) error {
		return resources.Errorf(resources.KindBadRequest, format, args...)
	}
	for name, values := range params {
		if !auditParams[name] {
			return nil, bad("AuditEvent has no search parameter %q here (supported: date, agent, entity, entity-type, action, outcome, subtype, _count)", name)
		}
		for _, v := range values {
			alts := strings.Split(v, ",")
			switch name {
			case "date":
				if len(alts) > 1 {
					return nil, bad("date takes one value per parameter; repeat it to give a range")
				}
				dr, err := resources.ParseDateParam(v)
				if err != nil || dr.Not {
					return nil, bad("date: %q is not a date with a prefix eq, lt, le, gt, ge, sa or eb", v)
				}
				if !dr.From.IsZero() && (q.From.IsZero() || dr.From.After(q.From)) {
					q.From = dr.From
				}
				if !dr.To.IsZero() && (q.To.IsZero() || dr.To.Before(q.To)) {
					q.To = dr.To
				}
			case "agent", "entity", "entity-type":
				var clause []string
				for _, a := range alts {
					a = strings.TrimSpace(a)
					if a == "" {
						return nil, bad("%s: empty value", name)
					}
					switch name {
					case "agent":
						clause = append(clause, resources.AuditAgentKey+strings.TrimPrefix(a, strings.TrimSuffix(base, "/")+"/"))
					case "entity":
						clause = append(clause, resources.AuditEntityKey+strings.TrimPrefix(a, strings.TrimSuffix(base, "/")+"/"))
					default:
						clause = append(clause, resources.AuditEntityTypeKey+a)
					}
				}
				q.Keys = append(q.Keys, clause)
			case "action":
				var set []string
				for _, a := range alts {
					switch a {
					case "C", "R", "U", "D", "E":
						set = append(set, a)
					default:
						return nil, bad("action: %q is not C, R, U, D or E", a)
					}
				}
				q.Actions = intersect(q.Actions, set, "-")
			case "outcome":
				var set []int
				for _, a := range alts {
					code := a[strings.LastIndexByte(a, '|')+1:]
					n, err := strconv.Atoi(code)
					if err != nil || (n != 0 && n != 4 && n != 8 && n != 12) {
						return nil, bad("outcome: %q is not 0, 4, 8 or 12", a)
					}
					set = append(set, n)
				}
				q.Outcomes = intersect(q.Outcomes, set, -1)
			case "subtype":
				var set []string
				for _, a := range alts {
					if code := a[strings.LastIndexByte(a, '|')+1:]; code != "" {
						set = append(set, code)
					}
				}
				if len(set) == 0 {
					return nil, bad("subtype: empty value")
				}
				q.Subtypes = intersect(q.Subtypes, set, "-")
			case "_count":
				n, err := strconv.Atoi(v)
				if err != nil || n < 1 {
					return nil, bad("_count must be a positive number")
				}
				q.Count = min(n, auditMaxCount)
			case "_cursor":
				cur, err := decodeAuditCursor(v)
				if err != nil {
					return nil, err
				}
				q.After = cur
			}
		}
	}
	if !q.From.IsZero() && !q.To.IsZero() && !q.From.Before(q.To) {
		q.To = q.From // an empty range: nothing matches
	}
	return q, nil
}

// intersect narrows the alternatives of a single-valued field by a repeated parameter (both
// must hold). An empty intersection is a set holding only none, which no record has.
func intersect[T comparable](have, more []T, none T) []T {
	if have == nil {
		return more
	}
	var out []T
	for _, v := range have {
		if slices.Contains(more, v) {
			out = append(out, v)
		}
	}
	if len(out) == 0 {
		return []T{none}
	}
	return out
}

func encodeAuditCursor(c *resources.AuditCursor) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(c.Recorded.UnixMicro(), 10) + "|" + c.ID))
}

func decodeAuditCursor(s string) (*resources.AuditCursor, error) {
	bad := resources.Errorf(resources.KindBadRequest, "_cursor is not a cursor this server issued")
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, bad
	}
	us, id, ok := strings.Cut(string(raw), "|")
	n, err := strconv.ParseInt(us, 10, 64)
	if !ok || err != nil || !resources.ValidID(id) {
		return nil, bad
	}
	return &resources.AuditCursor{Recorded: time.UnixMicro(n).UTC(), ID: id}, nil
}

// Code systems of the AuditEvent rendering.
const (
	auditEventTypeSystem  = "http://terminology.hl7.org/CodeSystem/audit-event-type"
	restfulInteractionSys = "http://hl7.org/fhir/restful-interaction"
	resourceTypesSystem   = "http://hl7.org/fhir/resource-types"
	securitySourceSystem  = "http://terminology.hl7.org/CodeSystem/security-source-type"
	balpEntityTypeSystem  = "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType"
)

type coding struct {
	System  string `json:"system,omitempty"`
	Code    string `json:"code,omitempty"`
	Display string `json:"display,omitempty"`
}

type concept struct {
	Coding []coding `json:"coding,omitempty"`
	Text   string   `json:"text,omitempty"`
}

type identifier struct {
	System string `json:"system,omitempty"`
	Value  string `json:"value"`
}

type reference struct {
	Reference  string      `json:"reference,omitempty"`
	Identifier *identifier `json:"identifier,omitempty"`
	Display    string      `json:"display,omitempty"`
}

type auditAgent struct {
	Type      *concept   `json:"type,omitempty"`
	Role      []concept  `json:"role,omitempty"`
	Who       *reference `json:"who,omitempty"`
	AltID     string     `json:"altId,omitempty"`
	Requestor bool       `json:"requestor"`
	Network   *struct {
		Address string `json:"address"`
		Type    string `json:"type"`
	} `json:"network,omitempty"`
}

type auditEntity struct {
	What        *reference `json:"what,omitempty"`
	Type        *coding    `json:"type,omitempty"`
	Description string     `json:"description,omitempty"`
	Query       string     `json:"query,omitempty"` // base64Binary
}

type auditEvent struct {
	ResourceType string `json:"resourceType"`
	ID           string `json:"id"`
	Meta         struct {
		LastUpdated string `json:"lastUpdated"`
	} `json:"meta"`
	Type    coding   `json:"type"`
	Subtype []coding `json:"subtype,omitempty"`
	Action  string   `json:"action"`
	Period  struct {
		Start string `json:"start"`
		End   string `json:"end"`
	} `json:"period"`
	Recorded    string        `json:"recorded"`
	Outcome     string        `json:"outcome"`
	OutcomeDesc string        `json:"outcomeDesc"`
	Agent       []auditAgent  `json:"agent"`
	Source      auditSource   `json:"source"`
	Entity      []auditEntity `json:"entity,omitempty"`
}

type auditSource struct {
	Observer reference `json:"observer"`
	Type     []coding  `json:"type"`
}

// auditEventJSON renders a record as an R4 AuditEvent: type rest (a RESTful operation) with
// the interaction as subtype; the caller as the requesting agent (token subject as
// who.identifier, client id as altId, role as role, network address) and the organization it
// acts for as a second agent; the resources, the query (base64, as R4 requires) and the
// request id (the IHE BALP XrequestId entity) as entities.
func auditEventJSON(r *resources.AuditRecord) []byte {
	ev := auditEvent{ResourceType: "AuditEvent", ID: r.ID, Action: r.Action}
	ev.Meta.LastUpdated = resources.FormatInstant(r.Recorded)
	ev.Recorded = resources.FormatInstant(r.Recorded)
	ev.Period.Start = resources.FormatInstant(r.Start)
	ev.Period.End = resources.FormatInstant(r.Recorded)
	ev.Type = coding{System: auditEventTypeSystem, Code: "rest", Display: "RESTful Operation"}
	if r.Subtype != "" {
		ev.Subtype = []coding{{System: restfulInteractionSys, Code: r.Subtype}}
	}
	ev.Outcome = strconv.Itoa(r.Outcome)
	ev.OutcomeDesc = "HTTP " + strconv.Itoa(r.Status) + " " + http.StatusText(r.Status)
	user := auditAgent{Requestor: true}
	if r.Subject != "" {
		user.Who = &reference{Identifier: &identifier{Value: r.Subject}}
	}
	user.AltID = r.ClientID
	if r.Role != "" {
		user.Role = []concept{{Text: r.Role}}
	}
	if r.Address != "" {
		user.Network = &struct {
			Address string `json:"address"`
			Type    string `json:"type"`
		}{r.Address, "2"} // 2 = IP address
	}
	ev.Agent = []auditAgent{user}
	if r.Org != "" {
		ev.Agent = append(ev.Agent, auditAgent{Type: &concept{Text: "organization the caller acts for"},
			Who: &reference{Reference: r.Org}})
	}
	ev.Source = auditSource{Observer: reference{Display: "calaimfhir"},
		Type: []coding{{System: securitySourceSystem, Code: "4", Display: "Application Server"}}}
	for _, e := range r.Entities {
		typ, _, _ := strings.Cut(e, "/")
		ev.Entity = append(ev.Entity, auditEntity{What: &reference{Reference: e}, Type: &coding{System: resourceTypesSystem, Code: typ}})
	}
	if r.Query != "" || r.Operation != "" || r.Path != "" || (r.Type != "" && len(r.Entities) == 0) {
		e := auditEntity{}
		switch {
		case resources.Supported(r.Type) || r.Type == "AuditEvent":
			e.Type = &coding{System: resourceTypesSystem, Code: r.Type}
		case r.Type != "":
			e.Description = "type " + r.Type + " (not served here)"
		}
		if r.Query != "" {
			e.Query = base64.StdEncoding.EncodeToString([]byte(r.Query))
		}
		switch {
		case r.Operation != "":
			e.Description = r.Method + " " + r.Operation
		case r.Path != "":
			e.Description = r.Method + " " + r.Path
		}
		if e.Type != nil || e.Query != "" || e.Description != "" {
			ev.Entity = append(ev.Entity, e)
		}
	}
	if r.RequestID != "" {
		ev.Entity = append(ev.Entity, auditEntity{What: &reference{Identifier: &identifier{Value: r.RequestID}},
			Type: &coding{System: balpEntityTypeSystem, Code: "XrequestId"}})
	}
	b, _ := json.Marshal(ev)
	return b
}

// startAudit sets up the audit trail when the store keeps one: the writer and, with a
// retention, the purge.
func (s *Server) startAudit(store resources.Store, reg *prometheus.Registry) {
	al, ok := store.(resources.AuditLog)
	if !ok {
		s.log.Warn("the store keeps no audit trail: requests are not audited")
		return
	}
	s.audit = newAuditor(al, s.cfg.AuditQueue, s.log, reg)
	if s.cfg.AuditRetention > 0 {
		interval := s.cfg.AuditPurgeInterval
		if interval <= 0 {
			interval = time.Hour
		}
		s.audit.purging.Add(1)
		go func() {
			defer s.audit.purging.Done()
			s.audit.purgeLoop(s.cfg.AuditRetention, interval)
		}()
	}
}
