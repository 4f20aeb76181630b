package sqlitestore

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/calaimfhir/calaimfhir/resources"
)

// Group commit.
//
// Every write (Put, Apply, CreateIfNoneExist, the audit trail, Ping's lock probe) is a job
// handed to one writer goroutine, which owns the single write connection. The writer takes
// the first job waiting and then every other job already queued, up to maxGroupJobs jobs or
// maxGroupBytes of resource bodies, and runs them all, one after the other, in one SQLite
// transaction. A job that fails (a version conflict, an If-None-Exist match, a broken
// constraint) must not take its neighbours down with it: its writes are undone with a
// SAVEPOINT of its own (ROLLBACK TO, RELEASE) and the others' stay. After the shared COMMIT
// every caller gets its own result; if COMMIT fails, every job that had succeeded gets that
// error, and nothing of the group is stored.
//
// So each caller still sees what one transaction per call gave it: its writes are all or
// nothing, checked against everything committed or written before it (jobs of a group run
// one after the other on one connection, so a job sees the writes of the jobs before it), and
// visible to every reader, and durable in the WAL, when its call returns. What the group
// saves is the commit: one WAL append of the pages the whole group dirtied, instead of one
// per write, and B-tree pages shared by the group's rows (the lastUpdated and history
// indexes append at the same end, hot keys share leaves) written once.
//
// Savepoints are not free: each makes SQLite copy every page the job then modifies (the
// sub-journal). So a group first runs without them, and only a group in which a job failed is
// rolled back and run again with them; a group without failures, the common case, pays
// nothing for the isolation it did not need.
//
// A lone writer does not wait: the writer never waits for a group to fill, it takes what is
// queued at the moment it is free. Groups form while a group runs, which is exactly when the
// other writers would have waited for the lock anyway: what was queued while the writer
// committed starts the next group, and what was queued while its jobs ran joins it before its
// COMMIT (once they have all succeeded), so that the commit, the larger part of a group's
// time, is shared by more writes. That raised the writes per transaction from 6–8 to 10–14
// and cut the time per Task update by a fifth under 16 concurrent writers
// (BenchmarkUpdateParallel, docs/benchmarks.md); the price is that an early job's answer
// waits for the jobs that joined (at most maxGroupJobs, maxGroupBytes).
const (
	maxGroupJobs  = 64
	maxGroupBytes = 4 << 20
	queueLen      = 1024
)

// Job states: a queued job is either taken by the writer (and then runs, and its caller
// waits for the result) or abandoned by its caller (context done) before the writer took it.
const (
	jobQueued int32 = iota
	jobTaken
	jobAbandoned
)

type job struct {
	fn    func(w *writer) error
	size  int
	state atomic.Int32
	done  chan error // buffered: the writer never blocks on a caller that left
}

// writer is the state only the writer goroutine touches: the write connection and the
// statements prepared on it, reused by every transaction.
type writer struct {
	conn *sql.Conn
	// ctx is the statements' context. It is never a caller's: cancelling a statement
	// interrupts the connection, and SQLite may then roll back the whole transaction, with
	// the other callers' writes in it. A caller's context bounds its wait in the queue only.
	ctx   context.Context
	stmts map[string]*sql.Stmt
	multi map[multiKey]*sql.Stmt // the multi-row statements among stmts, by shape
	// searches are the conditional writes' searches prepared on the connection (the texts
	// depend on the condition's shape, so they are bounded like the reads').
	searches *stmtCache
	// args is reused by the multi-row inserts.
	args []any
	// reruns counts the groups run a second time, with savepoints (Store.WriteStats).
	reruns *atomic.Int64
	// cache is the store's read cache (nil: none); written holds the versions the group's
	// jobs have written so far, handed to the cache once the group commits; dataVersion is
	// the last PRAGMA data_version seen (Store.checkExternal).
	cache       *readCache
	written     []*resources.Resource
	dataVersion int64
	// clocks are the store's type clocks (typeclock.go); touched, the types whose resources
	// the group's jobs have written so far (a job that failed may leave its types: moving a
	// clock without cause costs a cache miss, never a stale answer).
	clocks  *typeClocks
	touched []string
	// The audit records past the watermark (audit.go). auditUnposted is what those committed
	// count toward a round (auditWeight; after Open, their number: a hint); auditPending holds
	// them while auditKnown (false once Open found some, until the next round). auditTent holds
	// those this group's jobs appended, and auditRound the length auditTent had when one of
	// them ran a posting round (-1: none ran); like written, they are kept or dropped with the
	// group (auditCommitted, auditDropped), and so is auditPurged: a purge of the group took
	// records past the watermark, which the writer's lists may still hold.
	auditUnposted int
	auditPending  []*resources.AuditRecord
	auditKnown    bool
	auditTent     []*resources.AuditRecord
	auditRound    int
	auditPurged   bool
}

// stmt returns the statement for query, prepared on the write connection the first time.
func (w *writer) stmt(query string) (*sql.Stmt, error) {
	if st, ok := w.stmts[query]; ok {
		return st, nil
	}
	st, err := w.conn.PrepareContext(w.ctx, query)
	if err != nil {
		return nil, err
	}
	w.stmts[query] = st
	return st, nil
}

func (w *writer) exec(query string, args ...any) (sql.Result, error) {
	st, err := w.stmt(query)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(w.ctx, args...)
}

// insertRows inserts rows of width columns each, given flat in args, with multi-row INSERTs
// of at most maxRowsPerInsert rows: one statement per chunk instead of one per row.
// prefix is "INSERT [OR ...] INTO table (cols) VALUES ".
func (w *writer) insertRows(prefix string, width int, args []any) error {
	return w.insertChunks(prefix, width, args, "", func(st *sql.Stmt, args []any) error {
		_, err := st.ExecContext(w.ctx, args...)
		return err
	})
}

// insertRowsReturning is insertRows with "RETURNING col": got receives col of each row stored
// (an INSERT OR IGNORE returns none for the rows it skips).
func (w *writer) insertRowsReturning(prefix string, width int, args []any, col string, got func(string)) error {
	return w.insertChunks(prefix, width, args, " RETURNING "+col, func(st *sql.Stmt, args []any) error {
		rows, err := st.QueryContext(w.ctx, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var v string
			if err := rows.Scan(&v); err != nil {
				return err
			}
			got(v)
		}
		return rows.Err()
	})
}

// maxRowsPerInsert bounds the rows of one multi-row statement.
const maxRowsPerInsert = 32

func (w *writer) insertChunks(prefix string, width int, args []any, suffix string, run func(*sql.Stmt, []any) error) error {
	for len(args) > 0 {
		n := min(len(args)/width, maxRowsPerInsert)
		st, err := w.multiStmt(multiKey{prefix + "\x00" + suffix, width, n}, func() string {
			row := "(" + placeholders(width) + ")"
			return prefix + strings.TrimSuffix(strings.Repeat(row+",", n), ",") + suffix
		})
		if err != nil {
			return err
		}
		if err := run(st, args[:n*width]); err != nil {
			return err
		}
		args = args[n*width:]
	}
	return nil
}

// multiStmt returns the statement of shape k, prepared from text() the first time.
func (w *writer) multiStmt(k multiKey, text func() string) (*sql.Stmt, error) {
	if st, ok := w.multi[k]; ok {
		return st, nil
	}
	st, err := w.stmt(text())
	if err != nil {
		return nil, err
	}
	w.multi[k] = st
	return st, nil
}

// multiKey names a multi-row statement: its prefix, row width and number of rows.
type multiKey struct {
	prefix      string
	width, rows int
}

func (w *writer) close() {
	for _, st := range w.stmts {
		st.Close()
	}
	w.searches.close()
	w.conn.Close()
}

// errClosed answers writes submitted to a closed store.
var errClosed = &resources.Error{Kind: resources.KindUnavailable, Message: "the store is closed", RetryAfter: 1}

// submit queues fn for the writer and waits for its result. size (bytes of resource bodies)
// bounds the group. The error is already mapped (mapErr).
func (s *Store) submit(ctx context.Context, size int, fn func(w *writer) error) error {
	if err := ctx.Err(); err != nil {
		return mapErr(err)
	}
	j := &job{fn: fn, size: size, done: make(chan error, 1)}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return errClosed
	}
	select {
	case s.queue <- j:
	case <-ctx.Done():
		s.mu.RUnlock()
		return mapErr(ctx.Err())
	}
	s.mu.RUnlock()
	select {
	case err := <-j.done:
		return err
	case <-ctx.Done():
		if j.state.CompareAndSwap(jobQueued, jobAbandoned) {
			return mapErr(ctx.Err()) // the writer will skip it: nothing was written
		}
		// The writer has it: its result (stored or not) is the only honest answer, and it
		// comes as soon as the group commits.
		return <-j.done
	}
}

// run is the writer goroutine.
func (s *Store) run(w *writer) {
	defer close(s.stopped)
	defer w.close()
	group := make([]*job, 0, maxGroupJobs)
	for {
		var first *job
		select {
		case first = <-s.queue:
		case <-s.closing:
			// Close has set closed under the lock: nothing more can be queued, so this drain
			// answers every job left.
			for {
				select {
				case j := <-s.queue:
					if j.state.CompareAndSwap(jobQueued, jobTaken) {
						j.done <- errClosed
					}
				default:
					return
				}
			}
		}
		group = group[:0]
		size := 0
		// more takes the next job queued, if any, while the group has room.
		more := func(n int) *job {
			for n < maxGroupJobs && size < maxGroupBytes {
				select {
				case j := <-s.queue:
					if j.state.CompareAndSwap(jobQueued, jobTaken) {
						size += j.size
						return j
					}
				default:
					return nil
				}
			}
			return nil
		}
		if first.state.CompareAndSwap(jobQueued, jobTaken) {
			group = append(group, first)
			size += first.size
		}
		for len(group) > 0 {
			j := more(len(group))
			if j == nil {
				break
			}
			group = append(group, j)
		}
		if len(group) > 0 {
			s.groups.Add(1)
			s.jobs.Add(int64(w.runGroup(group, more)))
		}
	}
}

// runGroup runs the jobs in one transaction and answers each. Jobs queued while the group
// runs join it before its COMMIT (more), as long as none of its jobs failed: the commit is
// the larger part of a group's time (the WAL frames of every page it dirtied, and the page
// cache's truncation), and a job that joins shares it instead of waiting for the next. It
// returns the number of jobs the group ended with.
func (w *writer) runGroup(group []*job, more func(n int) *job) int {
	results := make([]error, len(group))
	w.written, w.touched = w.written[:0], w.touched[:0]
	defer func() { clear(w.written); w.written = w.written[:0] }()
	answer := func() {
		for i, j := range group {
			j.done <- mapErr(results[i])
		}
	}
	// abort rolls the whole transaction back after err: every job not already failed on its
	// own fails with err.
	abort := func(err error) {
		w.conn.ExecContext(w.ctx, "ROLLBACK")
		w.auditDropped()
		for i := range results {
			if results[i] == nil {
				results[i] = err
			}
		}
		answer()
	}
	begin := func() bool {
		if _, err := w.conn.ExecContext(w.ctx, "BEGIN IMMEDIATE"); err != nil {
			for i := range results {
				results[i] = err
			}
			answer()
			return false
		}
		return true
	}
	if !begin() {
		return len(group)
	}
	// First without savepoints: each costs a copy of every page its job then modifies (the
	// sub-journal), and most groups have no failure. A job alone in its transaction never
	// needs one: its failure is the transaction's.
	for i := 0; i < len(group); i++ {
		err := runJob(w, group[i])
		if err == nil && i == len(group)-1 {
			// Every job so far succeeded: take what was queued meanwhile, all of it at once
			// as the first drain does, so that a job is never left in the queue behind one
			// that joined before it.
			for j := more(len(group)); j != nil; j = more(len(group)) {
				group, results = append(group, j), append(results, nil)
			}
		}
		if err != nil {
			w.conn.ExecContext(w.ctx, "ROLLBACK")
			w.auditDropped()
			if len(group) == 1 {
				results[0] = err
				answer()
				return 1
			}
			// A job failed after the jobs before it wrote: run the whole group again, in the
			// same order, each job in its own savepoint this time. Jobs are functions of the
			// database and their arguments (a job resets whatever result it hands back before
			// it runs), so the second run is a run in its own right: each job is checked
			// against what is stored when it runs, and the failed job fails again (or, if it
			// failed for a reason that has gone, succeeds).
			w.reruns.Add(1)
			clear(w.written)
			w.written = w.written[:0]
			if !begin() {
				return len(group)
			}
			if !w.runSavepoints(group, results, abort) {
				return len(group)
			}
			break
		}
	}
	if _, err := w.conn.ExecContext(w.ctx, "COMMIT"); err != nil {
		abort(err)
		return len(group)
	}
	if w.cache != nil {
		w.cache.committed(w.written) // before the answers: a caller reads its own write
	}
	w.clocks.moved(w.touched) // after the COMMIT and before the answers (typeclock.go)
	w.auditCommitted()
	answer()
	return len(group)
}

// runSavepoints runs each job of the group in a savepoint of the open transaction. It
// returns false when it had to abort the transaction (and so has answered every job).
func (w *writer) runSavepoints(group []*job, results []error, abort func(error)) bool {
	for i, j := range group {
		if _, err := w.conn.ExecContext(w.ctx, "SAVEPOINT job"); err != nil {
			abort(err)
			return false
		}
		mark, auditMark, auditRound := len(w.written), len(w.auditTent), w.auditRound
		if err := runJob(w, j); err != nil {
			results[i] = err
			clear(w.written[mark:])
			w.written = w.written[:mark]
			clear(w.auditTent[auditMark:])
			w.auditTent, w.auditRound = w.auditTent[:auditMark], auditRound
			// ROLLBACK TO undoes the job's writes but keeps the savepoint open; RELEASE
			// closes it. If SQLite has rolled the whole transaction back itself (a full
			// disk, an I/O error), the savepoint is gone and ROLLBACK TO fails: the jobs
			// before this one were undone too.
			if _, rerr := w.conn.ExecContext(w.ctx, "ROLLBACK TO job"); rerr != nil {
				abort(rerr)
				return false
			}
		}
		if _, err := w.conn.ExecContext(w.ctx, "RELEASE job"); err != nil {
			abort(err)
			return false
		}
	}
	return true
}

// runJob runs one job, turning a panic (a bug) into that job's error rather than the end of
// the writer and of every later write.
func runJob(w *writer, j *job) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = resources.Wrap(resources.KindInternal, fmt.Errorf("panic: %v", p), "write failed")
		}
	}()
	return j.fn(w)
}
