package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/calaimfhir/calaimfhir/profiles"
)

// Operation names, as the report and --mix use them.
const (
	OpCeiling    = "ceiling"     // GET on the bare Echo handler (fixed bytes)
	OpRead       = "read"        // GET Type/id of a member's resource (plan)
	OpSearch     = "search-cin"  // GET Patient?identifier=<CIN system>|<CIN> (plan)
	OpPoll       = "poll"        // GET Task?owner=<cbo>&_lastUpdated=gt<watermark> (that CBO)
	OpTaskUpdate = "task-update" // PUT Task/id with If-Match, next workflow status (owner CBO)
	OpReferral   = "referral"    // POST transaction: Patient, Condition, Consent, ServiceRequest, Task (EHR)
	OpClaim      = "claim"       // $submit of 50 Claims, or a batch of 50 creates (CBO)
	OpCreate     = "create"      // POST Observation: a member's new SDOH screening (plan)
)

// Ops lists every operation in report order.
var Ops = []string{OpCeiling, OpRead, OpSearch, OpPoll, OpTaskUpdate, OpCreate, OpReferral, OpClaim}

// DefaultMix weighs the mixed workload: mostly reads, searches and CBO polling, a steady
// stream of referral pushes and Task updates, and occasional claim submissions.
var DefaultMix = map[string]int{OpRead: 35, OpSearch: 15, OpPoll: 20, OpTaskUpdate: 15, OpReferral: 12, OpClaim: 3}

// CRUDMix (--mix crud) is the kind of mix published CRUD rates are measured with: every
// request reads or writes one resource (reads by id, identifier searches, polls, Task updates,
// creates), so its rate compares with theirs. DefaultMix writes ≈ 2.3 resources per request.
var CRUDMix = map[string]int{OpRead: 40, OpSearch: 10, OpPoll: 15, OpTaskUpdate: 15, OpCreate: 20}

// minOpenTasks is the supply of open Tasks below which updates stop completing them.
const minOpenTasks = 100

// errSkip means the operation had nothing to do (no open Task to move); it is not timed.
var errSkip = errors.New("nothing to do")

// workload holds the state the operations share.
type workload struct {
	c          *client
	p          *Population
	ceilingURL string
	claimBatch int
	submit     bool // the server lists Claim $submit

	pool       taskPool
	billable   map[string][]*Member // per CBO: members with a completed referral it may bill for
	billers    []string             // CBOs with billable members
	watermarks []atomic.Int64       // per CBO: unix nanos of the last poll's start
	referrals  atomic.Int64
}

// taskPool holds the open Tasks; an operation takes one, moves it, and puts it back while it
// is still open, so no two clients update the same Task at once.
type taskPool struct {
	mu    sync.Mutex
	tasks []*TaskState
}

func (tp *taskPool) take(rng *rand.Rand) *TaskState {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	if len(tp.tasks) == 0 {
		return nil
	}
	i := rng.IntN(len(tp.tasks))
	t := tp.tasks[i]
	tp.tasks[i] = tp.tasks[len(tp.tasks)-1]
	tp.tasks = tp.tasks[:len(tp.tasks)-1]
	return t
}

func (tp *taskPool) put(t *TaskState) {
	tp.mu.Lock()
	tp.tasks = append(tp.tasks, t)
	tp.mu.Unlock()
}

func (tp *taskPool) size() int {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return len(tp.tasks)
}

func newWorkload(c *client, p *Population, ceilingURL string, claimBatch int, submit bool, since time.Time) *workload {
	w := &workload{c: c, p: p, ceilingURL: ceilingURL, claimBatch: claimBatch, submit: submit,
		watermarks: make([]atomic.Int64, len(p.CBOs))}
	for i := range w.watermarks {
		w.watermarks[i].Store(since.UnixNano())
	}
	w.billable = map[string][]*Member{}
	for _, m := range p.Members {
		status := m.Task.Doc["status"].(string)
		if open(status) {
			w.pool.put(m.Task)
		}
		// Completed Tasks never change again, so their claims stay billable all run.
		if status == "completed" && m.Service.program != "chw" {
			w.billable[m.CBO] = append(w.billable[m.CBO], m)
		}
	}
	for _, cbo := range p.CBOs {
		if len(w.billable[cbo]) > 0 {
			w.billers = append(w.billers, cbo)
		}
	}
	return w
}

// open reports whether the owner still has a step to take on a Task in status.
func open(status string) bool {
	switch status {
	case "requested", "accepted", "in-progress", "on-hold":
		return true
	}
	return false
}

// run performs op once and returns the resources it wrote or read (for the per-resource
// rates of referral and claim), or an error.
func (w *workload) run(ctx context.Context, op string, rng *rand.Rand) (int, error) {
	switch op {
	case OpCeiling:
		_, err := w.c.do(ctx, "GET", w.ceilingURL, nil, "", "")
		return 1, err
	case OpRead:
		m := w.p.Members[rng.IntN(len(w.p.Members))]
		path := [...]string{"Patient/" + m.PatientID, "Coverage/" + m.CoverageID, "ServiceRequest/" + m.SRID,
			"Condition/" + m.ConditionID}[rng.IntN(4)]
		_, err := w.c.do(ctx, "GET", path, nil, "plan", w.p.Plan)
		return 1, err
	case OpSearch:
		m := w.p.Members[rng.IntN(len(w.p.Members))]
		r, err := w.c.do(ctx, "GET", "Patient?identifier="+url.QueryEscape(profiles.CINSystem+"|"+m.CIN), nil, "plan", w.p.Plan)
		if err != nil {
			return 0, err
		}
		return countEntries(r.body, 1)
	case OpPoll:
		return w.poll(ctx, rng)
	case OpTaskUpdate:
		return w.taskUpdate(ctx, rng)
	case OpReferral:
		return w.referral(ctx, rng)
	case OpClaim:
		return w.claims(ctx, rng)
	case OpCreate:
		return w.create(ctx, rng)
	}
	return 0, fmt.Errorf("unknown operation %q", op)
}

// countEntries reads a searchset and returns its matches (not included resources or an
// OperationOutcome about withheld results), failing when there are fewer than want.
func countEntries(body []byte, want int) (int, error) {
	var b struct {
		Type  string `json:"type"`
		Entry []struct {
			Search struct {
				Mode string `json:"mode"`
			} `json:"search"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(body, &b); err != nil || b.Type != "searchset" {
		return 0, fmt.Errorf("response is not a searchset Bundle")
	}
	n := 0
	for _, e := range b.Entry {
		if e.Search.Mode == "" || e.Search.Mode == "match" {
			n++
		}
	}
	if n < want {
		return 0, fmt.Errorf("search found %d matches, want at least %d", n, want)
	}
	return n, nil
}

// create is the plan recording a new SDOH screening for one of its members.
func (w *workload) create(ctx context.Context, rng *rand.Rand) (int, error) {
	m := w.p.Members[rng.IntN(len(w.p.Members))]
	obs := map[string]any{"resourceType": "Observation", "status": "final",
		"category": []any{concept(observationCategorySys, "survey"), concept(profiles.SDOHCCCategorySystem, m.Service.category)},
		"code":     concept(profiles.LOINCSystem, "88124-3"), "subject": ref("Patient/" + m.PatientID),
		"effectiveDateTime":    time.Now().UTC().Format(time.RFC3339),
		"valueCodeableConcept": concept(profiles.LOINCSystem, "LA19952-3"), // "At risk"
	}
	body, _ := json.Marshal(obs)
	r, err := w.c.do(ctx, "POST", "Observation", body, "plan", w.p.Plan)
	if err != nil {
		return 0, err
	}
	if r.header.Get("Location") == "" {
		return 0, fmt.Errorf("create answered without a Location")
	}
	return 1, nil
}

// poll is a CBO asking for its Tasks changed since its previous poll, oldest first.
func (w *workload) poll(ctx context.Context, rng *rand.Rand) (int, error) {
	k := rng.IntN(len(w.p.CBOs))
	now := time.Now()
	// Each poll moves the watermark to its own start, less a second of overlap for clock
	// skew between the server's lastUpdated and this clock.
	since := time.Unix(0, w.watermarks[k].Swap(now.Add(-time.Second).UnixNano())).UTC()
	q := "Task?owner=" + url.QueryEscape(w.p.CBOs[k]) + "&_lastUpdated=" + url.QueryEscape("gt"+since.Format(time.RFC3339Nano)) + "&_sort=_lastUpdated"
	r, err := w.c.do(ctx, "GET", q, nil, "cbo", w.p.CBOs[k])
	if err != nil {
		return 0, err
	}
	return countEntries(r.body, 0)
}

// taskUpdate is the owner moving a Task one step: requested → accepted → in-progress, then
// on-hold and back, and now and then completed (with its output), always with If-Match.
func (w *workload) taskUpdate(ctx context.Context, rng *rand.Rand) (int, error) {
	t := w.pool.take(rng)
	if t == nil {
		return 0, errSkip
	}
	var next string
	switch t.Doc["status"] {
	case "requested":
		next = "accepted"
	case "accepted", "on-hold":
		next = "in-progress"
	default: // in-progress
		next = "on-hold"
		// Now and then the work is done; but a run keeps a supply of open Tasks, so that
		// updates are not limited by the population (in-progress and on-hold alternate).
		if rng.IntN(4) == 0 && w.pool.size() > minOpenTasks {
			next = "completed"
		}
	}
	setTaskStatus(t, next, int(t.Version))
	body, _ := json.Marshal(t.Doc)
	r, err := w.c.do(ctx, "PUT", "Task/"+t.ID, body, "cbo", t.Owner, "If-Match", fmt.Sprintf(`W/"%d"`, t.Version))
	if err != nil {
		return 0, err // the Task's state is unknown now: it leaves the pool
	}
	t.Version = parseETag(r.header.Get("ETag"))
	if t.Version == 0 {
		return 0, fmt.Errorf("update answered without an ETag")
	}
	if open(next) {
		w.pool.put(t)
	}
	return 1, nil
}

// referralPatients counts resources of a referral push.
const referralResources = 5

// referral is an EHR pushing a new referral for a new member: Patient (conditional create on
// the CIN), Condition, Consent, ServiceRequest and Task (conditional create on the referral
// id), linked by urn:uuid placeholders. The created Task joins the pool for its CBO.
func (w *workload) referral(ctx context.Context, rng *rand.Rand) (int, error) {
	n := w.referrals.Add(1)
	clinic := w.p.Clinics[rng.IntN(len(w.p.Clinics))]
	cbo := w.p.CBOs[rng.IntN(len(w.p.CBOs))]
	svc := services[rng.IntN(len(services))]
	cinValue := cin(w.p.Prefix+"ref", int(n))
	now := time.Now().UTC()
	task := taskDoc("", fmt.Sprintf("%sE-%d", w.p.Prefix, n), "urn:uuid:s", "urn:uuid:p", clinic, cbo, now)
	entries := []any{
		map[string]any{"fullUrl": "urn:uuid:p", "request": map[string]any{"method": "POST", "url": "Patient",
			"ifNoneExist": "identifier=" + profiles.CINSystem + "|" + cinValue},
			"resource": map[string]any{"resourceType": "Patient",
				"identifier": []any{map[string]any{"type": concept(identifierTypeSystem, "MA"), "system": profiles.CINSystem, "value": cinValue}},
				"name":       []any{map[string]any{"family": families[rng.IntN(len(families))], "given": []any{givens[rng.IntN(len(givens))]}}},
				"birthDate":  fmt.Sprintf("%04d-%02d-%02d", 1940+rng.IntN(80), 1+rng.IntN(12), 1+rng.IntN(28))}},
		map[string]any{"fullUrl": "urn:uuid:c", "request": map[string]any{"method": "POST", "url": "Condition"},
			"resource": map[string]any{"resourceType": "Condition", "subject": ref("urn:uuid:p"),
				"clinicalStatus": concept(conditionClinicalSystem, "active"),
				"category":       []any{concept(conditionCategorySystem, "health-concern"), concept(profiles.SDOHCCCategorySystem, svc.category)},
				"code":           concept(profiles.ICD10CMSystem, svc.zcode)}},
		map[string]any{"fullUrl": "urn:uuid:k", "request": map[string]any{"method": "POST", "url": "Consent"},
			"resource": map[string]any{"resourceType": "Consent", "status": "active",
				"scope":    concept(consentScopeSystem, "patient-privacy"),
				"category": []any{concept(actCodeSystem, "IDSCL")}, "patient": ref("urn:uuid:p"),
				"dateTime": now.Format(time.RFC3339), "organization": []any{ref(clinic)}}},
		map[string]any{"fullUrl": "urn:uuid:s", "request": map[string]any{"method": "POST", "url": "ServiceRequest"},
			"resource": map[string]any{"resourceType": "ServiceRequest", "status": "active", "intent": "order",
				"extension": []any{map[string]any{"url": profiles.ExtProgram, "valueCoding": coding(profiles.ProgramSystem, svc.program)}},
				"category":  []any{concept(profiles.SDOHCCCategorySystem, svc.category)},
				"code":      map[string]any{"coding": []any{coding(svc.system, svc.code)}, "text": svc.display},
				"subject":   ref("urn:uuid:p"), "requester": ref(clinic), "performer": []any{ref(cbo)},
				"reasonReference": []any{ref("urn:uuid:c")}, "supportingInfo": []any{ref("urn:uuid:k")},
				"authoredOn": now.Format(time.RFC3339)}},
		map[string]any{"fullUrl": "urn:uuid:t", "request": map[string]any{"method": "POST", "url": "Task",
			"ifNoneExist": "identifier=" + profiles.ExternalReferralIDSystem + "|" + task["identifier"].([]any)[0].(map[string]any)["value"].(string)},
			"resource": task},
	}
	r, err := w.c.do(ctx, "POST", "", bundle("transaction", entries), "provider", clinic)
	if err != nil {
		return 0, err
	}
	got, err := checkBundle(r.body, len(entries))
	if err != nil {
		return 0, err
	}
	// Keep the new Task for the owner to work, with its placeholders resolved as stored.
	ids := make([]string, len(got))
	for i, e := range got {
		loc := strings.TrimPrefix(e.Response.Location, w.c.base+"/")
		if j := strings.Index(loc, "/_history/"); j >= 0 {
			loc = loc[:j]
		}
		ids[i] = loc
	}
	if strings.HasPrefix(got[4].Response.Status, "201") && strings.HasPrefix(ids[4], "Task/") {
		task["id"] = strings.TrimPrefix(ids[4], "Task/")
		task["for"], task["focus"] = ref(ids[0]), ref(ids[3])
		w.pool.put(&TaskState{ID: task["id"].(string), Version: parseETag(got[4].Response.Etag), Owner: cbo, Doc: task})
	}
	return referralResources, nil
}

// claims is a CBO billing the plan for claimBatch services: one $submit of a collection
// Bundle of Claims when the server offers it, else a batch Bundle of Claim creates. Each claim
// bills a member whose referral the CBO completed (so a claim check finds the referral) for the
// referral's service, on a day after the referral no earlier claim of this run used for that
// member (so none is a duplicate). CHW services are not billed: they need a supervising
// provider the population does not hold.
func (w *workload) claims(ctx context.Context, rng *rand.Rand) (int, error) {
	if len(w.billers) == 0 {
		return 0, errSkip
	}
	cbo := w.billers[rng.IntN(len(w.billers))]
	members := w.billable[cbo]
	var entries []any
	for range w.claimBatch {
		m := members[rng.IntN(len(members))]
		day := m.Referred.Add(time.Duration(1+m.claims.Add(1)) * 24 * time.Hour)
		c := w.p.claim("", m, day)
		e := map[string]any{"fullUrl": fmt.Sprintf("urn:uuid:%016x%016x", rng.Uint64(), rng.Uint64()), "resource": c}
		if !w.submit {
			e["request"] = map[string]any{"method": "POST", "url": "Claim"}
		}
		entries = append(entries, e)
	}
	path, typ := "", "batch"
	if w.submit {
		path, typ = "Claim/$submit", "collection"
	}
	r, err := w.c.do(ctx, "POST", path, bundle(typ, entries), "cbo", cbo)
	if err != nil {
		return 0, err
	}
	// Both answers have one entry per claim, each 2xx when the claim was accepted and stored.
	if _, err := checkBundle(r.body, len(entries)); err != nil {
		return 0, err
	}
	return len(entries), nil
}
