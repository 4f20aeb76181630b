package bench

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/calaimfhir/calaimfhir/profiles"
)

// membersPerBundle keeps load Bundles near 200 entries, well under the server's 1,000.
const membersPerBundle = 20

// load stores the population through the API: the organizations, then each member's
// resources in transaction Bundles of PUTs sent by the plan, then the owners' workflow steps
// (accept, reject, start, complete, ...) sent by each CBO with its own token, so every Task
// status is present and each was set by the organization allowed to set it. It returns the
// number of resources written (creates and updates).
func load(ctx context.Context, c *client, p *Population, workers int) (int, error) {
	var entries []any
	for _, o := range p.Organizations() {
		entries = append(entries, putEntry(c.base, o, ""))
	}
	if err := sendTransaction(ctx, c, "plan", p.Plan, entries, nil); err != nil {
		return 0, fmt.Errorf("load organizations: %w", err)
	}
	written := len(entries)

	// Each Bundle is built when it is sent, and a member's documents are let go once sent
	// (the Task's stays, for the workload): at 100,000 members the whole population's
	// documents and entries held at once took gigabytes.
	chunks := (len(p.Members) + membersPerBundle - 1) / membersPerBundle
	if err := parallel(ctx, workers, chunks, func(i int) error {
		ms := p.Members[i*membersPerBundle : min((i+1)*membersPerBundle, len(p.Members))]
		var es []any
		for _, m := range ms {
			for _, d := range m.docs {
				es = append(es, putEntry(c.base, d, ""))
			}
		}
		if err := sendTransaction(ctx, c, "plan", p.Plan, es, nil); err != nil {
			return err
		}
		for _, m := range ms {
			m.loaded, m.docs = len(m.docs), nil
		}
		return nil
	}); err != nil {
		return 0, fmt.Errorf("load members: %w", err)
	}
	for _, m := range p.Members {
		m.Task.Version = 1
		written += m.loaded
	}

	// The owners' steps, one round per step; each CBO sends its own Tasks.
	for round := 0; ; round++ {
		type job struct {
			cbo   string
			tasks []*TaskState
		}
		var jobs []job
		for _, cbo := range p.CBOs {
			var ts []*TaskState
			for _, m := range p.Members {
				if m.CBO == cbo && len(m.steps) > round {
					setTaskStatus(m.Task, m.steps[round], m.Index)
					ts = append(ts, m.Task)
				}
			}
			for i := 0; i < len(ts); i += 100 {
				jobs = append(jobs, job{cbo, ts[i:min(i+100, len(ts))]})
			}
		}
		if len(jobs) == 0 {
			break
		}
		err := parallel(ctx, workers, len(jobs), func(i int) error {
			var es []any
			for _, t := range jobs[i].tasks {
				es = append(es, putEntry(c.base, t.Doc, fmt.Sprintf(`W/"%d"`, t.Version)))
			}
			return sendTransaction(ctx, c, "cbo", jobs[i].cbo, es, jobs[i].tasks)
		})
		if err != nil {
			return 0, fmt.Errorf("load Task statuses (round %d): %w", round+1, err)
		}
		for _, j := range jobs {
			written += len(j.tasks)
		}
	}
	return written, nil
}

// sendTransaction posts entries as a transaction and checks every entry succeeded; tasks,
// when given, are the entries' Tasks, whose versions are updated from the response.
func sendTransaction(ctx context.Context, c *client, role, org string, entries []any, tasks []*TaskState) error {
	r, err := c.do(ctx, "POST", "", bundle("transaction", entries), role, org)
	if err != nil {
		return err
	}
	got, err := checkBundle(r.body, len(entries))
	if err != nil {
		return err
	}
	for i, t := range tasks {
		t.Version = parseETag(got[i].Response.Etag)
	}
	return nil
}

// setTaskStatus moves a Task to status, adding what the status needs (a reason, an output).
func setTaskStatus(t *TaskState, status string, n int) {
	d := t.Doc
	d["status"] = status
	switch status {
	case "rejected", "cancelled", "failed":
		d["statusReason"] = map[string]any{"text": map[string]string{
			"rejected": "member is outside our service area", "cancelled": "member moved out of county",
			"failed": "member could not be reached after three attempts"}[status]}
	case "completed":
		d["output"] = []any{map[string]any{
			"type":           concept(profiles.SDOHCCCategorySystem, "resulting-activity"),
			"valueReference": ref(fmt.Sprintf("Procedure/%s-done-%d", strings.ReplaceAll(t.ID, "/", ""), n)),
		}}
	}
}

// parallel runs fn(0..n-1) on up to workers goroutines and returns the first error.
func parallel(ctx context.Context, workers, n int, fn func(i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		next     int
	)
	for range max(workers, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				stop := firstErr != nil || ctx.Err() != nil
				mu.Unlock()
				if stop || i >= n {
					return
				}
				if err := fn(i); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					cancel()
				}
			}
		}()
	}
	wg.Wait()
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	return firstErr
}
