// Package sqlitestore is the embedded default store: SQLite through modernc.org/sqlite (pure
// Go), in WAL mode, with a classic FHIR-on-SQL layout: a row per current version, a row per
// historical version, and a search-key table filled from resources.Keys at write time.
//
// Writes go through one connection, owned by a writer goroutine that runs them in BEGIN
// IMMEDIATE transactions, several callers' writes per transaction when they arrive together
// (group commit, writer.go): a version check and its write, or a conditional search and its
// insert, cannot interleave with another writer. Readers use a separate pool and never block
// writers (WAL).
package sqlitestore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/calaimfhir/calaimfhir/resources"
)

// Options tune the store; zero values pick the defaults.
type Options struct {
	// BusyTimeout is how long an operation waits for a lock held by another process before
	// failing as unavailable (default 5s).
	BusyTimeout time.Duration
	// ReadConns is the size of the reader pool (default 2×GOMAXPROCS, at least 4).
	ReadConns int
	// ReadCacheBytes bounds the cache of current versions that serves Read (readcache.go;
	// default DefaultReadCacheBytes); negative turns it off.
	ReadCacheBytes int64

	// Log, when set, hears of migrations of an older database that take more than a second.
	Log *slog.Logger

	// noCheckpointer turns the background checkpoints off (tests that count WAL pages).
	noCheckpointer bool
}

// FileName is the database file inside the data directory.
const FileName = "calaimfhir.db"

// Store is the SQLite implementation of resources.Store.
type Store struct {
	w, r *sql.DB
	rq   *stmtCache // r with the statements of searches and history queries prepared once
	// Statements prepared once: parsing SQL on every call cost more than running it. The
	// write statements are prepared on the writer's connection (writer.stmt).
	readCur, readVer *sql.Stmt
	// cache serves Read (readcache.go); nil when turned off.
	cache *readCache
	// clocks count the commits of each type (typeclock.go).
	clocks *typeClocks

	// The writer goroutine's queue (writer.go). closed, under mu, stops new jobs; closing
	// tells the writer to answer what is left and stop; stopped is closed when it has.
	queue            chan *job
	mu               sync.RWMutex
	closed           bool
	closing, stopped chan struct{}
	// Counters for WriteStats.
	groups, jobs, reruns atomic.Int64
	// The checkpointer (checkpoints): its own connection, and its stop and done signals.
	ckpt                 *sql.DB
	ckptStop, ckptClosed chan struct{}
}

// WriteStats counts the writer's work since Open.
type WriteStats struct {
	Groups int64 // write transactions (groups of jobs)
	Jobs   int64 // callers' writes they held: Jobs/Groups is the mean group size
	Reruns int64 // groups run a second time, with a savepoint per job, after one failed
}

// WriteStats reports the writer's counters.
func (s *Store) WriteStats() WriteStats {
	return WriteStats{Groups: s.groups.Load(), Jobs: s.jobs.Load(), Reruns: s.reruns.Load()}
}

var _ resources.Store = (*Store)(nil)

const schema = `
CREATE TABLE IF NOT EXISTS resources (
	type    TEXT    NOT NULL,
	id      TEXT    NOT NULL,
	version INTEGER NOT NULL,
	lu      INTEGER NOT NULL, -- meta.lastUpdated, unix microseconds
	deleted INTEGER NOT NULL,
	json    BLOB,
	eq_keys TEXT, -- the version's search_keys, a JSON array, to delete them by primary key
	sorts   TEXT, -- the version's _sort values, {"param": [lowest, highest]} (NULL: none)
	PRIMARY KEY (type, id)
);
CREATE INDEX IF NOT EXISTS resources_type_lu ON resources (type, deleted, lu, id);

CREATE TABLE IF NOT EXISTS history (
	type    TEXT    NOT NULL,
	id      TEXT    NOT NULL,
	version INTEGER NOT NULL,
	lu      INTEGER NOT NULL,
	deleted INTEGER NOT NULL,
	json    BLOB,
	PRIMARY KEY (type, id, version)
);
CREATE INDEX IF NOT EXISTS history_type_lu ON history (type, lu, id, version);

-- One row per equality key of a current, non-deleted version, but for the keys
-- resources.Unindexed names (param:missing, param=system|, param=|code), which are tested on
-- resources.eq_keys instead: they were a third of the rows, and of the pages every write
-- dirtied. lu is copied from the resource
-- so that "key = ? AND lu > ? ORDER BY lu, id" (the CBO polling query) is one index range.
-- The table has no other index: "does resource r have key k" is a primary-key lookup with
-- r.lu, and a version's keys are deleted by primary key from resources.eq_keys, which spares
-- every key insert a second B-tree insert (the writes' largest cost).
CREATE TABLE IF NOT EXISTS search_keys (
	type TEXT    NOT NULL,
	key  TEXT    NOT NULL,
	lu   INTEGER NOT NULL,
	id   TEXT    NOT NULL,
	PRIMARY KEY (type, key, lu, id)
) WITHOUT ROWID;

-- String, date and number values: one row per value, so that a prefix range, or several
-- bounds on one date, are tested on the same value.
CREATE TABLE IF NOT EXISTS search_strings (
	type  TEXT NOT NULL,
	param TEXT NOT NULL,
	value TEXT NOT NULL, -- normalized: lower case, no accents
	id    TEXT NOT NULL,
	PRIMARY KEY (type, param, value, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS search_strings_resource ON search_strings (type, id, param);

CREATE TABLE IF NOT EXISTS search_dates (
	type  TEXT    NOT NULL,
	param TEXT    NOT NULL,
	lo    INTEGER NOT NULL, -- unix microseconds, inclusive
	hi    INTEGER NOT NULL, -- unix microseconds, exclusive
	id    TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS search_dates_lo ON search_dates (type, param, lo);
CREATE INDEX IF NOT EXISTS search_dates_hi ON search_dates (type, param, hi);
CREATE INDEX IF NOT EXISTS search_dates_resource ON search_dates (type, id, param);

CREATE TABLE IF NOT EXISTS search_numbers (
	type  TEXT NOT NULL,
	param TEXT NOT NULL,
	v     REAL NOT NULL,
	id    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS search_numbers_v ON search_numbers (type, param, v);
CREATE INDEX IF NOT EXISTS search_numbers_resource ON search_numbers (type, id, param);

-- One-time data migrations the service has completed (resources.Store.Migrated).
CREATE TABLE IF NOT EXISTS migrations (
	name TEXT    NOT NULL PRIMARY KEY,
	at   INTEGER NOT NULL
);

`

// Open opens (creating if needed) the database in dir.
func Open(ctx context.Context, dir string, opts Options) (*Store, error) {
	if opts.BusyTimeout <= 0 {
		opts.BusyTimeout = 5 * time.Second
	}
	if opts.ReadConns <= 0 {
		opts.ReadConns = max(4, 2*runtime.GOMAXPROCS(0))
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	path := filepath.Join(dir, FileName)
	dsn := func(extra string) string {
		return fmt.Sprintf("file:%s?_pragma=busy_timeout(%d)&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(0)&_pragma=cache_size(-65536)&_pragma=wal_autocheckpoint(%d)&_pragma=temp_store(MEMORY)%s",
			path, opts.BusyTimeout.Milliseconds(), walAutoCheckpoint, extra)
	}
	w, err := sql.Open("sqlite", dsn("&_txlock=immediate"))
	if err != nil {
		return nil, err
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxIdleTime(0)
	r, err := sql.Open("sqlite", dsn("&_pragma=query_only(1)"))
	if err != nil {
		w.Close()
		return nil, err
	}
	r.SetMaxOpenConns(opts.ReadConns)
	r.SetMaxIdleConns(opts.ReadConns)
	s := &Store{w: w, r: r, rq: newStmtCache(r, readStmtCacheSize), clocks: newTypeClocks()}
	switch {
	case opts.ReadCacheBytes == 0:
		s.cache = newReadCache(DefaultReadCacheBytes)
	case opts.ReadCacheBytes > 0:
		s.cache = newReadCache(opts.ReadCacheBytes)
	}
	for _, pragma := range []string{"PRAGMA journal_mode = WAL"} {
		if _, err := w.ExecContext(ctx, pragma); err != nil {
			s.Close()
			return nil, fmt.Errorf("%s: %w", pragma, mapErr(err))
		}
	}
	if _, err := w.ExecContext(ctx, schema+auditSchema); err != nil {
		s.Close()
		return nil, fmt.Errorf("create schema: %w", mapErr(err))
	}
	for _, m := range []struct {
		name string
		run  func(context.Context, *sql.DB) error
	}{
		{"audit postings", migrateAuditPostings},
		{"audit range postings", migrateAuditRanges},
		{"audit watermark", migrateAuditPosted},
		{"key lists", migrateEqKeys},
		{"unindexed key rows", migrateUnindexedKeys},
		{"_sort values", migrateSorts},
	} {
		if err := migrateLogged(ctx, w, opts.Log, m.name, m.run); err != nil {
			s.Close()
			return nil, fmt.Errorf("migrate %s: %w", m.name, mapErr(err))
		}
	}
	for _, p := range []struct {
		dst  **sql.Stmt
		stmt string
	}{
		{&s.readCur, `SELECT version, lu, deleted, json FROM resources WHERE type = ? AND id = ?`},
		{&s.readVer, `SELECT version, lu, deleted, json FROM history WHERE type = ? AND id = ? AND version = ?`},
	} {
		if *p.dst, err = r.PrepareContext(ctx, p.stmt); err != nil {
			s.Close()
			return nil, fmt.Errorf("prepare: %w", mapErr(err))
		}
	}
	conn, err := w.Conn(ctx)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("open the write connection: %w", mapErr(err))
	}
	wr := &writer{conn: conn, ctx: context.Background(), stmts: map[string]*sql.Stmt{}, multi: map[multiKey]*sql.Stmt{}, reruns: &s.reruns, cache: s.cache, clocks: s.clocks, auditRound: -1,
		searches: newStmtCache(conn, writeSearchStmts)}
	if err := conn.QueryRowContext(ctx, `SELECT count(*) FROM audit_events WHERE t >= (SELECT t FROM audit_posted)`).Scan(&wr.auditUnposted); err != nil {
		wr.close()
		s.Close()
		return nil, fmt.Errorf("count audit records without postings: %w", mapErr(err))
	}
	wr.auditKnown = wr.auditUnposted == 0
	if wr.dataVersion, err = wr.dataVersionNow(); err != nil {
		wr.close()
		s.Close()
		return nil, fmt.Errorf("data version: %w", mapErr(err))
	}
	for _, q := range writeStatements {
		if _, err := wr.stmt(q); err != nil {
			wr.close()
			s.Close()
			return nil, fmt.Errorf("prepare: %w", mapErr(err))
		}
	}
	s.queue = make(chan *job, queueLen)
	s.closing, s.stopped = make(chan struct{}), make(chan struct{})
	go s.run(wr)
	if opts.noCheckpointer {
		return s, nil
	}
	if s.ckpt, err = sql.Open("sqlite", dsn("")); err != nil {
		s.Close()
		return nil, err
	}
	s.ckpt.SetMaxOpenConns(1)
	s.ckptStop, s.ckptClosed = make(chan struct{}), make(chan struct{})
	go s.checkpoints()
	return s, nil
}

// readStmtCacheSize bounds the prepared read statements kept (stmtCache), writeSearchStmts
// those of the writer's searches.
const (
	readStmtCacheSize = 256
	writeSearchStmts  = 64
)

// Checkpoints (copying the WAL's pages back into the database file, and its fsync) run on a
// connection of their own, every checkpointEvery: when the writer ran them (SQLite's
// automatic checkpoint, in the commit that crossed the threshold) they were a fifth of the
// writer goroutine's time, and the writer is the one thing every write waits for. A PASSIVE
// checkpoint waits for no one; the writer's own automatic checkpoint remains, at a higher
// threshold, as a bound on the WAL should these fall behind.
const (
	checkpointEvery   = 250 * time.Millisecond
	walAutoCheckpoint = 50000 // pages (≈ 200 MB at 4 KiB)
)

func (s *Store) checkpoints() {
	defer close(s.ckptClosed)
	t := time.NewTicker(checkpointEvery)
	defer t.Stop()
	for {
		select {
		case <-s.ckptStop:
			return
		case <-t.C:
			// Errors (busy, closing) are left to the next tick and to the writer's bound.
			s.ckpt.Exec("PRAGMA wal_checkpoint(PASSIVE)")
			s.checkExternal(context.Background())
		}
	}
}

// migrateLogged runs one migration step. A step that has work to do on a large database (a
// scan of a table written by an older build) can hold start-up for a minute, so one still
// running after a second is logged, and again when it ends.
func migrateLogged(ctx context.Context, w *sql.DB, log *slog.Logger, name string, run func(context.Context, *sql.DB) error) error {
	if log == nil {
		return run(ctx, w)
	}
	start := time.Now()
	said := make(chan struct{})
	slow := time.AfterFunc(time.Second, func() {
		defer close(said)
		log.Info("embedded store: bringing a database written by an older version up to date, once", "step", name)
	})
	err := run(ctx, w)
	if !slow.Stop() {
		<-said // the first line before the second
		if err == nil {
			log.Info("embedded store: brought up to date", "step", name, "seconds", time.Since(start).Seconds())
		}
	}
	return err
}

// migrateEqKeys brings a database created before resources.eq_keys existed to the current
// layout, in one transaction: it adds the column, fills it from search_keys through the
// (type, id) index that such a database has, and drops that index. It costs one index range
// per stored resource, once.
func migrateEqKeys(ctx context.Context, w *sql.DB) error {
	var n int
	if err := w.QueryRowContext(ctx, `SELECT count(*) FROM pragma_table_info('resources') WHERE name = 'eq_keys'`).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	tx, err := w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, stmt := range []string{
		`ALTER TABLE resources ADD COLUMN eq_keys TEXT`,
		`CREATE INDEX IF NOT EXISTS search_keys_resource ON search_keys (type, id)`,
		`UPDATE resources SET eq_keys = (SELECT json_group_array(k.key) FROM search_keys k WHERE k.type = resources.type AND k.id = resources.id) WHERE deleted = 0`,
		`DROP INDEX search_keys_resource`,
	} {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// migrateSorts brings a database from before resources.sorts to the current layout, in one
// transaction: the _sort values move from the sort_keys table (one row per resource and
// parameter, eleven for a Task, each a B-tree insert on every create) into the resource's
// row, and the table is dropped.
func migrateSorts(ctx context.Context, w *sql.DB) error {
	var n int
	if err := w.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'sort_keys'`).Scan(&n); err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	tx, err := w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var cols int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM pragma_table_info('resources') WHERE name = 'sorts'`).Scan(&cols); err != nil {
		return err
	}
	stmts := []string{
		`UPDATE resources SET sorts = (SELECT json_group_object(s.param, json_array(s.asc_value, s.desc_value)) FROM sort_keys s WHERE s.type = resources.type AND s.id = resources.id)
			WHERE deleted = 0 AND EXISTS (SELECT 1 FROM sort_keys s WHERE s.type = resources.type AND s.id = resources.id)`,
		`DROP TABLE sort_keys`,
	}
	if cols == 0 {
		stmts = append([]string{`ALTER TABLE resources ADD COLUMN sorts TEXT`}, stmts...)
	}
	for _, stmt := range stmts {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// migrateUnindexedKeys deletes the search_keys rows of resources.Unindexed keys, which
// databases written before those moved to resources.eq_keys alone hold (searches no longer
// read them, and updates no longer delete them). PRAGMA user_version 4 marks a database
// without them (3: without those of before system|code keys joined them); the deletion
// scans search_keys once.
const unindexedVersion = 4

func migrateUnindexedKeys(ctx context.Context, w *sql.DB) error {
	var v int
	if err := w.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&v); err != nil || v >= unindexedVersion {
		return err
	}
	tx, err := w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `DELETE FROM search_keys WHERE `+unindexedSQL("key")); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, fmt.Sprintf(`PRAGMA user_version = %d`, unindexedVersion)); err != nil {
		return err
	}
	return tx.Commit()
}

// Close stops the writer (writes already queued are answered as unavailable, a group in
// progress commits first) and closes both pools.
func (s *Store) Close() error {
	s.mu.Lock()
	already := s.closed
	s.closed = true
	s.mu.Unlock()
	if !already && s.closing != nil {
		close(s.closing)
		<-s.stopped
	}
	if !already && s.ckptStop != nil {
		close(s.ckptStop)
		<-s.ckptClosed
		s.ckpt.Close()
	}
	s.rq.close()
	for _, st := range []*sql.Stmt{s.readCur, s.readVer} {
		if st != nil {
			st.Close()
		}
	}
	return errors.Join(s.r.Close(), s.w.Close())
}

// The write statements, prepared once on the writer's connection. The multi-row inserts of
// search keys are prepared as they are first needed (writer.insertRows).
const (
	sqlSelVersion = `SELECT version, lu, eq_keys FROM resources WHERE type = ? AND id = ?`
	sqlUpsertRes  = `INSERT INTO resources (type, id, version, lu, deleted, json, eq_keys, sorts) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (type, id) DO UPDATE SET version = excluded.version, lu = excluded.lu, deleted = excluded.deleted, json = excluded.json, eq_keys = excluded.eq_keys, sorts = excluded.sorts`
	sqlInsHist = `INSERT INTO history (type, id, version, lu, deleted, json) VALUES (?, ?, ?, ?, ?, ?)`

	insKeys    = `INSERT OR IGNORE INTO search_keys (type, key, lu, id) VALUES `
	insStrings = `INSERT OR IGNORE INTO search_strings (type, param, value, id) VALUES `
	insDates   = `INSERT INTO search_dates (type, param, lo, hi, id) VALUES `
	insNumbers = `INSERT INTO search_numbers (type, param, v, id) VALUES `
)

// unindexedSQL is resources.Unindexed in SQL, on the column col (json_each's value, or
// search_keys.key), for the migration that drops the rows of unindexed keys: a present key
// (ends in US, GS); else, but for an :exact parameter (indexed) and identifier:of-type
// (unindexed when its system is empty), a key whose part after the parameter, or a
// composite's second part (after "$", US), is a token (holds a US) other than a code-only
// one (RS, US, then a code that is not RS). TestUnindexedSQL holds the definitions together.
func unindexedSQL(col string) string {
	rest := `substr(COL, instr(COL, char(31)) + 1)`
	cut := `instr(` + rest + `, '$' || char(31))`
	first := `(CASE WHEN ` + cut + ` > 0 THEN substr(` + rest + `, 1, ` + cut + ` - 1) ELSE ` + rest + ` END)`
	second := `substr(` + rest + `, ` + cut + ` + 2)`
	codeOnly := func(x string) string {
		return `(instr(` + x + `, char(31)) = 0 OR (substr(` + x + `, 1, 2) = char(30, 31) AND substr(` + x + `, -2) <> char(31, 30)))`
	}
	param := `substr(COL, 1, instr(COL, char(31)) - 1)`
	sql := `(substr(COL, -2) = char(31, 29) OR (NOT (instr(COL, char(31)) > 6 AND substr(COL, instr(COL, char(31)) - 6, 6) = ':exact') AND ` +
		`CASE WHEN ` + param + ` = 'identifier:of-type' THEN substr(` + rest + `, 1, 1) = char(31) ` +
		`ELSE NOT ` + codeOnly(first) + ` OR (` + cut + ` > 0 AND NOT ` + codeOnly(second) + `) END))`
	return strings.ReplaceAll(sql, "COL", col)
}

// sqlDelKeysIn deletes some of a version's keys, given as "(?, ?, ...)" after it.
const sqlDelKeysIn = `DELETE FROM search_keys WHERE type = ? AND lu = ? AND id = ? AND key IN `

var writeStatements = []string{sqlSelVersion, sqlUpsertRes, sqlInsHist, sqlSelStrings, sqlSelDates, sqlSelNumbers}

// Ping checks the database can be read and written: it takes the write lock and lets it go,
// so another process holding the lock (or a read-only or vanished file) shows as unavailable.
func (s *Store) Ping(ctx context.Context) error {
	return s.submit(ctx, 0, func(w *writer) error {
		var n int
		return w.conn.QueryRowContext(w.ctx, `SELECT count(*) FROM sqlite_schema`).Scan(&n)
	})
}

// ExternalChangeStamp implements resources.ChangeStamper. PRAGMA data_version, asked on the
// writer's connection, changes when another connection commits, and only then; this process
// commits through that connection alone (readers are query-only, checkpoints commit
// nothing), so the stamp moves only when another process (a second server, `calaimfhir
// import --data`) wrote.
func (s *Store) ExternalChangeStamp(ctx context.Context) (uint64, error) {
	var v int64
	err := s.submit(ctx, 0, func(w *writer) (err error) {
		v, err = w.dataVersionNow()
		return err
	})
	return uint64(v), err
}

// dataVersionNow asks PRAGMA data_version on the write connection: it changes when another
// connection (another process) has committed since the last time it was asked.
func (w *writer) dataVersionNow() (int64, error) {
	var v int64
	err := w.conn.QueryRowContext(w.ctx, `PRAGMA data_version`).Scan(&v)
	return v, err
}

func micros(t time.Time) int64 { return t.UnixMicro() }

func fromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }

// mapErr turns driver errors into domain errors: lock contention with another process, a
// full disk or an unreadable file make the store unavailable (503), the rest is internal.
func mapErr(err error) error {
	if err == nil {
		return nil
	}
	var re *resources.Error
	if errors.As(err, &re) {
		return err
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_FULL,
			sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PROTOCOL:
			return &resources.Error{Kind: resources.KindUnavailable, Message: "database unavailable", Err: err, RetryAfter: 1}
		}
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return &resources.Error{Kind: resources.KindUnavailable, Message: "database did not answer in time", Err: err, RetryAfter: 1}
	}
	return resources.Wrap(resources.KindInternal, err, "database error")
}

func (s *Store) Read(ctx context.Context, typ, id string) (*resources.Resource, error) {
	if s.cache == nil {
		return scanOne(s.readCur.QueryRowContext(ctx, typ, id), typ, id)
	}
	if e, ok := s.cache.get(typ, id); ok {
		return e.resource(typ, id)
	}
	epoch := s.cache.epoch.Load()
	r, err := scanOne(s.readCur.QueryRowContext(ctx, typ, id), typ, id)
	if r != nil && (err == nil || resources.IsKind(err, resources.KindGone)) {
		s.cache.offer(r, epoch)
	}
	return r, err
}

// checkExternal empties the read cache (readcache.go) and moves every type's clock
// (typeclock.go) if another process has committed since the last check; the checkpointer
// calls it every checkpointEvery.
func (s *Store) checkExternal(ctx context.Context) error {
	return s.submit(ctx, 0, func(w *writer) error {
		v, err := w.dataVersionNow()
		if err != nil {
			return err
		}
		if v != w.dataVersion {
			w.dataVersion = v
			if w.cache != nil {
				w.cache.reset()
			}
			w.clocks.movedAll()
		}
		return nil
	})
}

func (s *Store) VRead(ctx context.Context, typ, id string, version int64) (*resources.Resource, error) {
	row := s.readVer.QueryRowContext(ctx, typ, id, version)
	return scanOne(row, typ, id)
}

func scanOne(row *sql.Row, typ, id string) (*resources.Resource, error) {
	r := &resources.Resource{Type: typ, ID: id}
	var lu int64
	err := row.Scan(&r.VersionID, &lu, &r.Deleted, &r.JSON)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, resources.Errorf(resources.KindNotFound, "%s/%s is not known", typ, id)
	}
	if err != nil {
		return nil, mapErr(err)
	}
	r.LastUpdated = fromMicros(lu)
	if r.Deleted {
		r.JSON = nil
		return r, resources.Errorf(resources.KindGone, "%s/%s was deleted", typ, id)
	}
	return r, nil
}

func (s *Store) Put(ctx context.Context, r *resources.Resource) error {
	p, err := prepRow(r)
	if err != nil {
		return mapErr(err)
	}
	return s.submit(ctx, len(r.JSON), func(w *writer) error { return w.put(r, p) })
}

// rowPrep is what a version's rows hold beyond its own fields, computed by the caller before
// its job is queued: the writer is the one goroutine every write waits for (under `bench --mix
// referral=100` it was busy 98% of the time), so what does not need the database is done
// outside it.
type rowPrep struct {
	eqKeys, sorts any // resources.eq_keys and resources.sorts: NULL (nil) for a delete
	indexed       []string
}

// prepRow computes r's rowPrep: its keys as JSON, its sort values, and the keys that get a
// search_keys row (all but the unindexed).
func prepRow(r *resources.Resource) (*rowPrep, error) {
	p := &rowPrep{}
	if r.Deleted {
		return p, nil
	}
	k, err := json.Marshal(r.Keys.Eq)
	if err != nil {
		return nil, err
	}
	p.eqKeys = string(k) // TEXT: json_each reads a BLOB as JSONB
	if p.sorts, err = sortsJSON(r.Keys.Sort); err != nil {
		return nil, err
	}
	p.indexed = indexedKeys(r.Keys.Eq)
	return p, nil
}

// indexedKeys are the keys among keys that get a search_keys row.
func indexedKeys(keys []string) []string {
	out := make([]string, 0, len(keys))
	for _, key := range keys {
		if !resources.Unindexed(key) {
			out = append(out, key)
		}
	}
	return out
}

// put writes one version (putRow) and, once it is written, notes it for the read cache,
// which takes the group's versions when it commits (writer.go).
func (w *writer) put(r *resources.Resource, p *rowPrep) error {
	if err := w.putRow(r, p); err != nil {
		return err
	}
	w.touched = append(w.touched, r.Type)
	if w.cache != nil {
		w.written = append(w.written, r)
	}
	return nil
}

// putRow writes one version, checking it follows the current one.
func (w *writer) putRow(r *resources.Resource, p *rowPrep) error {
	sel, err := w.stmt(sqlSelVersion)
	if err != nil {
		return err
	}
	var current, oldLU int64
	var oldKeys sql.NullString
	err = sel.QueryRowContext(w.ctx, r.Type, r.ID).Scan(&current, &oldLU, &oldKeys)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	if current != r.VersionID-1 {
		return resources.Errorf(resources.KindConflict, "%s/%s is at version %d, not %d", r.Type, r.ID, current, r.VersionID-1)
	}
	lu := micros(r.LastUpdated)
	var body []byte
	if !r.Deleted {
		body = r.JSON
	}
	if _, err := w.exec(sqlUpsertRes, r.Type, r.ID, r.VersionID, lu, r.Deleted, body, p.eqKeys, p.sorts); err != nil {
		return err
	}
	if _, err := w.exec(sqlInsHist, r.Type, r.ID, r.VersionID, lu, r.Deleted, body); err != nil {
		return err
	}
	if current > 0 && oldKeys.Valid {
		var old []string
		if err := json.Unmarshal([]byte(oldKeys.String), &old); err != nil {
			return err
		}
		if err := w.deleteKeys(r.Type, r.ID, oldLU, old); err != nil {
			return err
		}
	}
	k := &resources.Keys{} // a delete keeps no values
	if !r.Deleted {
		k = &r.Keys
		if err := w.insertIndexed(r.Type, r.ID, lu, p.indexed); err != nil {
			return err
		}
	}
	return w.putValues(r.Type, r.ID, k, current > 0)
}

// insertKeys stores the search_keys rows of keys for the version of typ/id at lu, with as few
// statements as their rows allow (multi-row inserts); unindexed keys are in eq_keys only.
func (w *writer) insertKeys(typ, id string, lu int64, keys []string) error {
	return w.insertIndexed(typ, id, lu, indexedKeys(keys))
}

// insertIndexed is insertKeys for keys that are all indexed.
func (w *writer) insertIndexed(typ, id string, lu int64, keys []string) error {
	args := w.args[:0]
	for _, key := range keys {
		args = append(args, typ, key, lu, id)
	}
	err := w.insertRows(insKeys, 4, args)
	clear(args)
	w.args = args[:0]
	return err
}

// sortsJSON is the resources.sorts value of a version's sort keys: NULL without any.
func sortsJSON(keys []resources.SortKey) (any, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	m := make(map[string][2]string, len(keys))
	for _, k := range keys {
		m[k.Param] = [2]string{k.Asc, k.Desc}
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	return string(b), nil
}

// sortExpr is the SQL for a _sort parameter's value of the resource r (its lowest value
// ascending, its highest descending), or missing when it has none. The parameter is one of
// the server's (resources.LookupParam), quoted all the same.
func sortExpr(param string, desc bool, missing string) string {
	i := 0
	if desc {
		i = 1
	}
	path := `$."` + strings.ReplaceAll(param, `"`, `\"`) + `"[` + strconv.Itoa(i) + `]`
	return "COALESCE(json_extract(r.sorts, " + sqlString(path) + "), " + sqlString(missing) + ")"
}

// sqlString quotes s as an SQL string literal.
func sqlString(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// deleteKeys deletes the search_keys rows of keys for the version of typ/id at lu, by primary
// key, up to maxRowsPerInsert keys per statement. The keys are filtered here rather than in
// SQL: a delete that read eq_keys with json_each and tested each key with unindexedSQL cost
// twice what inserting the new version's rows did (profile of --mix crud, 2026-12-07).
func (w *writer) deleteKeys(typ, id string, lu int64, keys []string) error {
	indexed := keys[:0:0]
	for _, key := range keys {
		if !resources.Unindexed(key) {
			indexed = append(indexed, key)
		}
	}
	args := w.args[:0]
	defer func() { clear(args); w.args = args[:0] }()
	for len(indexed) > 0 {
		n := min(len(indexed), maxRowsPerInsert)
		st, err := w.multiStmt(multiKey{sqlDelKeysIn, 1, n}, func() string { return sqlDelKeysIn + "(" + placeholders(n) + ")" })
		if err != nil {
			return err
		}
		args = append(args[:0], typ, lu, id)
		for _, key := range indexed[:n] {
			args = append(args, key)
		}
		if _, err := st.ExecContext(w.ctx, args...); err != nil {
			return err
		}
		indexed = indexed[n:]
	}
	return nil
}

func (s *Store) CreateIfNoneExist(ctx context.Context, r *resources.Resource, cond *resources.Query) (*resources.Resource, error) {
	var existing *resources.Resource
	p, err := prepRow(r)
	if err != nil {
		return nil, mapErr(err)
	}
	err = s.submit(ctx, len(r.JSON), func(w *writer) error {
		existing = nil
		q := *cond
		q.Type, q.Count, q.After, q.Total = r.Type, 2, nil, false
		page, err := search(w.ctx, w.searches, &q)
		if err != nil {
			return err
		}
		switch len(page.Resources) {
		case 0:
			return w.put(r, p)
		case 1:
			existing = page.Resources[0]
			return nil
		default:
			return resources.Errorf(resources.KindPreconditionFailed, "the If-None-Exist condition matches more than one %s", r.Type)
		}
	})
	if err != nil {
		return nil, err
	}
	return existing, nil
}

// querier is what both *sql.DB and *sql.Tx offer.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func (s *Store) Search(ctx context.Context, q *resources.Query) (*resources.Page, error) {
	page, err := search(ctx, s.rq, q)
	return page, mapErr(err)
}

// search compiles q to SQL. Every value is a bound parameter.
func search(ctx context.Context, db querier, q *resources.Query) (*resources.Page, error) {
	c := compileSearch(q)
	page := &resources.Page{Total: -1}
	if q.Total {
		var n int64
		if err := db.QueryRowContext(ctx, c.count, c.countArgs...).Scan(&n); err != nil {
			return nil, err
		}
		page.Total = n
	}
	limit := max(q.Count, 1)
	rows, err := db.QueryContext(ctx, c.page, c.pageArgs...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var sortValues [][]string
	for rows.Next() {
		r := &resources.Resource{Type: q.Type}
		var us int64
		vals := make([]string, len(q.SortBy))
		dest := []any{&r.ID, &r.VersionID, &us, &r.JSON}
		for i := range vals {
			dest = append(dest, &vals[i])
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, err
		}
		r.LastUpdated = fromMicros(us)
		page.Resources = append(page.Resources, r)
		sortValues = append(sortValues, vals)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(page.Resources) > limit {
		page.Resources = page.Resources[:limit]
		last := page.Resources[limit-1]
		page.Next = &resources.Cursor{LastUpdated: last.LastUpdated, ID: last.ID}
		if len(q.SortBy) > 0 {
			page.Next.Values = sortValues[limit-1]
		}
	}
	return page, nil
}

// compiled is a search as SQL: the count of all matches and one page (Count+1 rows, so the
// caller knows whether a next page exists).
type compiled struct {
	count, page         string
	countArgs, pageArgs []any
}

func compileSearch(q *resources.Query) compiled {
	var (
		from  = "resources r"
		where = []string{"r.type = ?", "r.deleted = 0"}
		args  = []any{q.Type}
		lu    = "r.lu"
		id    = "r.id"
	)
	clauses := q.Clauses
	driven := false
	// Drive from the key table when a clause names one key: its (type, key, lu, id) index
	// returns matches already in page order, so a page costs a short range scan.
	// Failing that, a clause naming one unindexed key that has an indexed relaxation
	// (identifier=system|value: identifier=value) drives by that, and is kept to be tested on
	// each candidate's keys.
	drive := func(key string) {
		driven = true
		from = "search_keys k0 CROSS JOIN resources r ON r.type = k0.type AND r.id = k0.id"
		where = []string{"k0.type = ?", "k0.key = ?", "r.deleted = 0"}
		args = []any{q.Type, key}
		lu, id = "k0.lu", "k0.id"
	}
	for i, c := range clauses {
		if len(c.AnyKey) == 1 && !resources.Unindexed(c.AnyKey[0]) {
			drive(c.AnyKey[0])
			clauses = append(append([]resources.Clause{}, clauses[:i]...), clauses[i+1:]...)
			break
		}
	}
	if !driven {
		for _, c := range clauses {
			if len(c.AnyKey) != 1 {
				continue
			}
			if key, ok := resources.Relaxed(c.AnyKey[0]); ok {
				drive(key)
				break
			}
		}
	}
	for _, c := range clauses {
		switch {
		case len(c.AnyKey) > 0 || len(c.IDs) > 0 || len(c.NoKey) > 0 || len(c.NotIDs) > 0:
			cond, a := keyClauseSQL(c, driven)
			where = append(where, cond)
			args = append(args, a...)
		case len(c.Or) > 0:
			var ors []string
			for _, alt := range c.Or {
				ands := []string{"1"}
				for _, sub := range alt {
					cond, a := keyClauseSQL(sub, driven)
					ands = append(ands, cond)
					args = append(args, a...)
				}
				ors = append(ors, "("+strings.Join(ands, " AND ")+")")
			}
			where = append(where, "("+strings.Join(ors, " OR ")+")")
		case len(c.Strings) > 0:
			var ors []string
			for _, m := range c.Strings {
				if m.Contains {
					ors = append(ors, "EXISTS (SELECT 1 FROM search_strings s WHERE s.type = r.type AND s.id = r.id AND s.param = ? AND instr(s.value, ?) > 0)")
					args = append(args, m.Param, m.Value)
				} else {
					// A prefix is a range of the index: [prefix, prefix + the highest code point).
					ors = append(ors, "EXISTS (SELECT 1 FROM search_strings s WHERE s.type = r.type AND s.id = r.id AND s.param = ? AND s.value >= ? AND s.value < ?)")
					args = append(args, m.Param, m.Value, m.Value+"\U0010FFFF")
				}
			}
			where = append(where, "("+strings.Join(ors, " OR ")+")")
		case len(c.Dates) > 0:
			cond, a := valueMatchSQL("search_dates", "d", c.Dates, func(b resources.Bound) (string, any) {
				col := "d.lo"
				if b.OnHi {
					col = "d.hi"
				}
				return col, b.Micros
			})
			where = append(where, cond)
			args = append(args, a...)
		case len(c.Numbers) > 0:
			cond, a := valueMatchSQL("search_numbers", "n", c.Numbers, func(b resources.Bound) (string, any) { return "n.v", b.Num })
			where = append(where, cond)
			args = append(args, a...)
		case len(c.LastUpdated) > 0:
			var ors []string
			for _, dr := range c.LastUpdated {
				cond, a := rangeSQL(lu, dr)
				ors = append(ors, cond)
				args = append(args, a...)
			}
			where = append(where, "("+strings.Join(ors, " OR ")+")")
		default:
			// A clause with no alternatives matches nothing.
			where = append(where, "0")
		}
	}
	var out compiled
	out.count = "SELECT count(*) FROM " + from + " WHERE " + strings.Join(where, " AND ")
	out.countArgs = slices.Clone(args)
	// Order: the _sort parameters (from resources.sorts, missing values last), then lastUpdated
	// and id. The keyset condition is the lexicographic "after" over that whole tuple.
	type key struct{ expr, dir, cmp string }
	lastDir, lastCmp := "ASC", ">"
	if q.Sort == resources.SortLastUpdatedDesc {
		lastDir, lastCmp = "DESC", "<"
	}
	var keys []key
	for _, f := range q.SortBy {
		if f.Desc {
			keys = append(keys, key{sortExpr(f.Param, true, resources.SortMissingDesc), "DESC", "<"})
		} else {
			keys = append(keys, key{sortExpr(f.Param, false, resources.SortMissingAsc), "ASC", ">"})
		}
	}
	keys = append(keys, key{lu, lastDir, lastCmp}, key{id, lastDir, lastCmp})
	if c := q.After; c != nil {
		vals := make([]any, 0, len(keys))
		for _, v := range c.Values {
			vals = append(vals, v)
		}
		vals = append(vals, micros(c.LastUpdated), c.ID)
		var ors []string
		for i := range keys {
			var ands []string
			for j := 0; j < i; j++ {
				ands = append(ands, keys[j].expr+" = ?")
				args = append(args, vals[j])
			}
			ands = append(ands, keys[i].expr+" "+keys[i].cmp+" ?")
			args = append(args, vals[i])
			ors = append(ors, "("+strings.Join(ands, " AND ")+")")
		}
		where = append(where, "("+strings.Join(ors, " OR ")+")")
	}
	var order, sortCols []string
	for _, k := range keys {
		order = append(order, k.expr+" "+k.dir)
	}
	for _, k := range keys[:len(q.SortBy)] {
		sortCols = append(sortCols, ", "+k.expr)
	}
	out.page = fmt.Sprintf("SELECT r.id, r.version, r.lu, r.json%s FROM %s WHERE %s ORDER BY %s LIMIT %d",
		strings.Join(sortCols, ""), from, strings.Join(where, " AND "), strings.Join(order, ", "), max(q.Count, 1)+1)
	out.pageArgs = args
	return out
}

// keyClauseSQL compiles an AnyKey, IDs, NotIDs or NoKey clause (the kinds an Or may hold); any other
// clause compiles to false. driven says the search is driven by one key (a few candidate
// rows): a long list is then tested row by row in a string (memberOf) instead of being loaded
// into a temporary index first, which for a plan's thousands of members cost more than the
// rest of an identifier search.
func keyClauseSQL(c resources.Clause, driven bool) (string, []any) {
	var args []any
	switch {
	case len(c.AnyKey) > longList && driven && lineSafe(c.AnyKey):
		// The version's keys are in r.eq_keys: one of them in the list.
		return "EXISTS (SELECT 1 FROM json_each(r.eq_keys) j WHERE instr(?, char(10) || j.value || char(10)) > 0)", []any{lineList(c.AnyKey)}
	case len(c.IDs) > longList && driven && lineSafe(c.IDs):
		return "instr(?, char(10) || r.id || char(10)) > 0", []any{lineList(c.IDs)}
	case len(c.AnyKey) > 0:
		return anyKeySQL(c.AnyKey)
	case len(c.IDs) > 0:
		if len(c.IDs) > longList {
			return "r.id IN (SELECT value FROM json_each(?))", []any{jsonList(c.IDs)}
		}
		for _, v := range c.IDs {
			args = append(args, v)
		}
		return "r.id IN (" + placeholders(len(c.IDs)) + ")", args
	case len(c.NoKey) > 0:
		cond, args := anyKeySQL(c.NoKey)
		return "NOT " + cond, args
	case len(c.NotIDs) > longList:
		return "r.id NOT IN (SELECT value FROM json_each(?))", []any{jsonList(c.NotIDs)}
	case len(c.NotIDs) > 0:
		for _, v := range c.NotIDs {
			args = append(args, v)
		}
		return "r.id NOT IN (" + placeholders(len(c.NotIDs)) + ")", args
	}
	return "0", nil
}

// anyKeySQL tests that the row has one of keys: in search_keys, and for unindexed keys
// (resources.Unindexed), which have no rows there, in r.eq_keys.
func anyKeySQL(keys []string) (string, []any) {
	var indexed, unindexed []string
	for _, k := range keys {
		if resources.Unindexed(k) {
			unindexed = append(unindexed, k)
		} else {
			indexed = append(indexed, k)
		}
	}
	var ors []string
	var args []any
	switch {
	case len(indexed) > longList:
		ors = append(ors, "EXISTS (SELECT 1 FROM search_keys k WHERE k.type = r.type AND k.key IN (SELECT value FROM json_each(?)) AND k.lu = r.lu AND k.id = r.id)")
		args = append(args, jsonList(indexed))
	case len(indexed) > 0:
		ors = append(ors, "EXISTS (SELECT 1 FROM search_keys k WHERE k.type = r.type AND k.key IN ("+placeholders(len(indexed))+") AND k.lu = r.lu AND k.id = r.id)")
		for _, k := range indexed {
			args = append(args, k)
		}
	}
	if len(unindexed) > 0 {
		// When every unindexed key relaxes to an indexed one (identifier=system|a,system|b:
		// identifier=a or b), a probe of those rows rules out most candidates before their
		// eq_keys are parsed.
		var relaxed []string
		for _, k := range unindexed {
			r, ok := resources.Relaxed(k)
			if !ok {
				relaxed = nil
				break
			}
			if !slices.Contains(relaxed, r) {
				relaxed = append(relaxed, r)
			}
		}
		cond := "EXISTS (SELECT 1 FROM json_each(r.eq_keys) j WHERE j.value IN (" + placeholders(len(unindexed)) + "))"
		if len(relaxed) > 0 && len(relaxed) <= longList {
			cond = "(EXISTS (SELECT 1 FROM search_keys k WHERE k.type = r.type AND k.key IN (" + placeholders(len(relaxed)) + ") AND k.lu = r.lu AND k.id = r.id) AND " + cond + ")"
			for _, k := range relaxed {
				args = append(args, k)
			}
		}
		ors = append(ors, cond)
		for _, k := range unindexed {
			args = append(args, k)
		}
	}
	if len(ors) == 1 {
		return ors[0], args
	}
	return "(" + strings.Join(ors, " OR ") + ")", args
}

// longList is the length from which a list of keys or ids goes to SQLite as one JSON array
// parameter: a tenancy scope can hold thousands (a plan's members), and binding each one and
// preparing a statement of that many placeholders for every query cost more than the query.
const longList = 32

// lineList is vals as one string, each value on its own line, for instr tests of membership
// (lineSafe: no value holds a line break, so a match is a whole value).
func lineList(vals []string) string {
	return "\n" + strings.Join(vals, "\n") + "\n"
}

func lineSafe(vals []string) bool {
	for _, v := range vals {
		if strings.Contains(v, "\n") {
			return false
		}
	}
	return true
}

func jsonList(vals []string) string {
	b, _ := json.Marshal(vals)
	return string(b)
}

// valueMatchSQL tests each alternative's bounds on one row of a value table, so that all the
// bounds of an alternative hold for the same value.
func valueMatchSQL(table, alias string, ms []resources.ValueMatch, operand func(resources.Bound) (string, any)) (string, []any) {
	var ors []string
	var args []any
	for _, m := range ms {
		args = append(args, m.Param)
		var alts []string
		for _, conj := range m.Any {
			ands := []string{"1"}
			for _, b := range conj {
				col, v := operand(b)
				ands = append(ands, col+" "+string(b.Op)+" ?")
				args = append(args, v)
			}
			alts = append(alts, "("+strings.Join(ands, " AND ")+")")
		}
		if len(alts) == 0 {
			alts = []string{"0"}
		}
		ors = append(ors, fmt.Sprintf("EXISTS (SELECT 1 FROM %s %s WHERE %s.type = r.type AND %s.id = r.id AND %s.param = ? AND (%s))",
			table, alias, alias, alias, alias, strings.Join(alts, " OR ")))
	}
	return "(" + strings.Join(ors, " OR ") + ")", args
}

func rangeSQL(col string, dr resources.DateRange) (string, []any) {
	var conds []string
	var args []any
	if !dr.From.IsZero() {
		conds = append(conds, col+" >= ?")
		args = append(args, micros(dr.From))
	}
	if !dr.To.IsZero() {
		conds = append(conds, col+" < ?")
		args = append(args, micros(dr.To))
	}
	if len(conds) == 0 {
		conds = []string{"1"}
	}
	cond := "(" + strings.Join(conds, " AND ") + ")"
	if dr.Not {
		cond = "NOT " + cond
	}
	return cond, args
}

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?,", n), ",")
}

func (s *Store) History(ctx context.Context, q *resources.HistoryQuery) (*resources.Page, error) {
	where := []string{"type = ?"}
	args := []any{q.Type}
	if q.ID != "" {
		where = append(where, "id = ?")
		args = append(args, q.ID)
	}
	if !q.Since.IsZero() {
		where = append(where, "lu >= ?")
		args = append(args, micros(q.Since))
	}
	page := &resources.Page{}
	if err := s.rq.QueryRowContext(ctx, "SELECT count(*) FROM history WHERE "+strings.Join(where, " AND "), args...).Scan(&page.Total); err != nil {
		return nil, mapErr(err)
	}
	if c := q.After; c != nil {
		// A row value: the index range starts at the cursor (the same order written with
		// ORs was a filter, and each page scanned again from the newest version).
		where = append(where, "(lu, id, version) < (?, ?, ?)")
		args = append(args, micros(c.LastUpdated), c.ID, c.Version)
	}
	limit := max(q.Count, 1)
	rows, err := s.rq.QueryContext(ctx, fmt.Sprintf(
		"SELECT id, version, lu, deleted, json FROM history WHERE %s ORDER BY lu DESC, id DESC, version DESC LIMIT %d",
		strings.Join(where, " AND "), limit+1), args...)
	if err != nil {
		return nil, mapErr(err)
	}
	defer rows.Close()
	for rows.Next() {
		r := &resources.Resource{Type: q.Type}
		var us int64
		if err := rows.Scan(&r.ID, &r.VersionID, &us, &r.Deleted, &r.JSON); err != nil {
			return nil, mapErr(err)
		}
		r.LastUpdated = fromMicros(us)
		if r.Deleted {
			r.JSON = nil
		}
		page.Resources = append(page.Resources, r)
	}
	if err := rows.Err(); err != nil {
		return nil, mapErr(err)
	}
	if len(page.Resources) > limit {
		page.Resources = page.Resources[:limit]
		last := page.Resources[limit-1]
		page.Next = &resources.Cursor{LastUpdated: last.LastUpdated, ID: last.ID, Version: last.VersionID}
	}
	return page, nil
}

// Apply implements resources.Store: the writes are one job of the writer, in their own
// savepoint of the group's transaction, so the version checks, the conditions and the writes
// cannot interleave with another writer, and a failure undoes every write of the call.
func (s *Store) Apply(ctx context.Context, writes []*resources.Write) error {
	size := 0
	preps := make([]*rowPrep, len(writes))
	for i, w := range writes {
		size += len(w.Resource.JSON)
		p, err := prepRow(w.Resource)
		if err != nil {
			return &resources.ApplyError{Index: i, Err: mapErr(err)}
		}
		preps[i] = p
	}
	return s.submit(ctx, size, func(wr *writer) error {
		for i, w := range writes {
			if w.IfNoneMatch != nil {
				q := *w.IfNoneMatch
				q.Type, q.Count, q.After, q.Total = w.Resource.Type, 1, nil, false
				page, err := search(wr.ctx, wr.searches, &q)
				if err != nil {
					return &resources.ApplyError{Index: i, Err: mapErr(err)}
				}
				if len(page.Resources) > 0 {
					return &resources.ApplyError{Index: i, Err: resources.Errorf(resources.KindConflict,
						"a %s matching the condition was stored meanwhile", w.Resource.Type)}
				}
			}
			if err := wr.put(w.Resource, preps[i]); err != nil {
				return &resources.ApplyError{Index: i, Err: mapErr(err)}
			}
		}
		return nil
	})
}

// PutAll writes several versions in one transaction (bulk loading).
func (s *Store) PutAll(ctx context.Context, rs []*resources.Resource) error {
	writes := make([]*resources.Write, len(rs))
	for i, r := range rs {
		writes[i] = &resources.Write{Resource: r}
	}
	return s.Apply(ctx, writes)
}

// PageSize reports the database page size (for tests and diagnostics).
func (s *Store) PageSize() int {
	var n int
	s.r.QueryRow("PRAGMA page_size").Scan(&n)
	return n
}

// CreateFresh implements resources.FreshCreator. A create is one job of the writer either way,
// so it is Put.
func (s *Store) CreateFresh(ctx context.Context, r *resources.Resource) error {
	return s.Put(ctx, r)
}
