package sqlitestore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/calaimfhir/calaimfhir/resources"
)

// The audit trail (resources.AuditLog) lives in two tables of its own: audit_events, one row per
// record with the record as JSON and the columns searches filter on, and audit_keys, the
// postings of agent, entity and entity-type keys (resources.AuditKeys), so that "this agent"
// or "this entity" is one index range. audit_events is indexed on time for the date filter,
// the newest-first order and the retention purge.
//
// Every request writes a record, so the layout keeps inserts cheap (BenchmarkAudit in
// server/audit_test.go): audit_events is keyed by id alone (ids begin with the time, so records
// are appended), and audit_keys has one row per key per batch, not per record: the records of a
// batch that share a key (the caller's agent keys, the type read: nearly all of them) share one
// posting, which lists their ids in ids (a JSON array) and carries the latest time of them in t
// and the least id in id; a key only one record of the batch has (most entity keys) is a row
// with ids NULL, meaning id alone, as every row was before postings were grouped. Per-record key
// rows were three quarters of the cost of a record (26–37 µs each, four of five rows landing on
// the same few leaves); a batch's hot keys now cost one row each.
//
// Entity keys are the exception: nearly every record reads or writes its own resource, so
// their postings land one per record on leaves scattered over the whole key order, and each
// such leaf is one more page in the commit (WAL frames were a third of a record's cost after
// grouping). They are appended instead to audit_staged, in time order (a few pages per
// batch), and moved into audit_keys once auditStageMax rows have gathered: in one statement,
// grouped by key into postings like a batch's, so each key's leaf is written once per move
// rather than once per record. Searches read the staged rows too (a scan of at most
// auditStageMax rows: audit searches are an administrator's, and rare).
//
// Purges delete a posting once its t is older than every record left (see PurgeAudit); a
// posting that also lists records purged before it is harmless, since searches join postings
// to audit_events.
const auditSchema = `
CREATE TABLE IF NOT EXISTS audit_events (
	id      TEXT    NOT NULL PRIMARY KEY,
	t       INTEGER NOT NULL, -- recorded, unix microseconds
	action  TEXT    NOT NULL,
	outcome INTEGER NOT NULL,
	subtype TEXT    NOT NULL,
	rec     BLOB    NOT NULL  -- the resources.AuditRecord as JSON
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS audit_events_t ON audit_events (t, id);

CREATE TABLE IF NOT EXISTS audit_keys (
	key TEXT    NOT NULL,
	t   INTEGER NOT NULL, -- the latest time of the posting's records
	id  TEXT    NOT NULL, -- its least record id
	ids TEXT,             -- every record id, a JSON array; NULL: id alone
	PRIMARY KEY (key, t, id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS audit_staged (
	t   INTEGER NOT NULL, -- the record's time
	id  TEXT    NOT NULL, -- the record
	key TEXT    NOT NULL, -- one of its entity keys
	PRIMARY KEY (t, id, key)
) WITHOUT ROWID;
`

// auditStageMax is how many staged entity keys make the next batch move them all into
// audit_keys (a variable for tests).
var auditStageMax = 16384

// migrateAuditPostings adds audit_keys.ids to a database made before postings were grouped:
// its rows, one per record and key, are postings of one record each (ids NULL), so nothing
// else changes.
func migrateAuditPostings(ctx context.Context, w *sql.DB) error {
	var n int
	if err := w.QueryRowContext(ctx, `SELECT count(*) FROM pragma_table_info('audit_keys') WHERE name = 'ids'`).Scan(&n); err != nil || n > 0 {
		return err
	}
	_, err := w.ExecContext(ctx, `ALTER TABLE audit_keys ADD COLUMN ids TEXT`)
	return err
}

var _ resources.AuditLog = (*Store)(nil)

// auditPosting is one audit_keys row.
type auditPosting struct {
	key string
	t   int64
	id  string
	ids []string // nil when the posting has one record (id)
}

// auditPostings groups the keys of recs into one posting per key, in the order keys first
// appear, but for entity keys, which it returns as rows of audit_staged (t, id, key, flat).
func auditPostings(recs []*resources.AuditRecord) (postings []auditPosting, staged []any) {
	var out []auditPosting
	at := map[string]int{}
	for _, r := range recs {
		t := micros(r.Recorded)
		for _, k := range resources.AuditKeys(r) {
			if strings.HasPrefix(k, resources.AuditEntityKey) {
				staged = append(staged, t, r.ID, k)
				continue
			}
			i, ok := at[k]
			if !ok {
				at[k] = len(out)
				out = append(out, auditPosting{key: k, t: t, id: r.ID})
				continue
			}
			p := &out[i]
			if p.ids == nil {
				p.ids = []string{p.id}
			}
			p.ids = append(p.ids, r.ID)
			p.t = max(p.t, t)
			p.id = min(p.id, r.ID)
		}
	}
	return out, staged
}

// AppendAudit implements resources.AuditLog: the batch is one job of the writer (writer.go),
// committed with whatever resource writes are waiting at the time. Records stored by an earlier
// call are skipped, and so are their keys.
func (s *Store) AppendAudit(ctx context.Context, recs []*resources.AuditRecord) error {
	if len(recs) == 0 {
		return nil
	}
	bodies := make([][]byte, len(recs))
	size := 0
	for i, r := range recs {
		body, err := json.Marshal(r)
		if err != nil {
			return resources.Wrap(resources.KindInternal, err, "unencodable audit record")
		}
		bodies[i] = body
		size += len(body)
	}
	return s.submit(ctx, size, func(w *writer) error {
		args := w.args[:0]
		defer func() { clear(args); w.args = args[:0] }()
		for i, r := range recs {
			args = append(args, r.ID, micros(r.Recorded), r.Action, r.Outcome, r.Subtype, bodies[i])
		}
		stored := make(map[string]bool, len(recs))
		if err := w.insertRowsReturning(`INSERT OR IGNORE INTO audit_events (id, t, action, outcome, subtype, rec) VALUES `, 6, args,
			"id", func(id string) { stored[id] = true }); err != nil {
			return err
		}
		fresh := make([]*resources.AuditRecord, 0, len(recs))
		for _, r := range recs {
			if stored[r.ID] {
				fresh = append(fresh, r)
			}
		}
		args = args[:0]
		postings, staged := auditPostings(fresh)
		if err := w.insertRows(`INSERT OR IGNORE INTO audit_staged (t, id, key) VALUES `, 3, staged); err != nil {
			return err
		}
		w.auditStaged += len(staged) / 3
		if w.auditStaged >= auditStageMax {
			if err := w.moveStaged(); err != nil {
				return err
			}
		}
		for _, p := range postings {
			var ids any // NULL
			if p.ids != nil {
				b, err := json.Marshal(p.ids)
				if err != nil {
					return err
				}
				ids = string(b)
			}
			args = append(args, p.key, p.t, p.id, ids)
		}
		return w.insertRows(`INSERT OR IGNORE INTO audit_keys (key, t, id, ids) VALUES `, 4, args)
	})
}

// moveStaged moves every staged entity key into audit_keys, one posting per key (see the
// layout at the top). w.auditStaged counts the rows staged since the last move, as a hint:
// a move that is rolled back with its group is simply done again later.
func (w *writer) moveStaged() error {
	if _, err := w.exec(`INSERT OR IGNORE INTO audit_keys (key, t, id, ids)
		SELECT key, max(t), min(id), CASE WHEN count(*) > 1 THEN json_group_array(id) END
		FROM audit_staged GROUP BY key`); err != nil {
		return err
	}
	if _, err := w.exec(`DELETE FROM audit_staged`); err != nil {
		return err
	}
	w.auditStaged = 0
	return nil
}

// ReadAudit implements resources.AuditLog.
func (s *Store) ReadAudit(ctx context.Context, id string) (*resources.AuditRecord, error) {
	var body []byte
	err := s.r.QueryRowContext(ctx, `SELECT rec FROM audit_events WHERE id = ?`, id).Scan(&body)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, resources.Errorf(resources.KindNotFound, "AuditEvent/%s is not known", id)
	}
	if err != nil {
		return nil, mapErr(err)
	}
	return decodeAudit(body)
}

func decodeAudit(body []byte) (*resources.AuditRecord, error) {
	var r resources.AuditRecord
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, resources.Wrap(resources.KindInternal, err, "unreadable audit record")
	}
	return &r, nil
}

// SearchAudit implements resources.AuditLog. Values reach SQL only as bound parameters.
func (s *Store) SearchAudit(ctx context.Context, q *resources.AuditQuery) (*resources.AuditPage, error) {
	var where []string
	var args []any
	if !q.From.IsZero() {
		where, args = append(where, "t >= ?"), append(args, micros(q.From))
	}
	if !q.To.IsZero() {
		where, args = append(where, "t < ?"), append(args, micros(q.To))
	}
	in := func(col string, n int) string {
		return col + " IN (" + strings.TrimSuffix(strings.Repeat("?,", n), ",") + ")"
	}
	if len(q.Actions) > 0 {
		where = append(where, in("action", len(q.Actions)))
		for _, a := range q.Actions {
			args = append(args, a)
		}
	}
	if len(q.Outcomes) > 0 {
		where = append(where, in("outcome", len(q.Outcomes)))
		for _, o := range q.Outcomes {
			args = append(args, o)
		}
	}
	if len(q.Subtypes) > 0 {
		where = append(where, in("subtype", len(q.Subtypes)))
		for _, st := range q.Subtypes {
			args = append(args, st)
		}
	}
	for _, clause := range q.Keys {
		// A posting stands for its id alone (ids NULL) or for every id it lists; entity keys
		// may still be staged.
		where = append(where, "id IN (SELECT coalesce(j.value, k.id) FROM audit_keys k LEFT JOIN json_each(k.ids) j WHERE "+in("k.key", len(clause))+
			" UNION ALL SELECT id FROM audit_staged WHERE "+in("key", len(clause))+")")
		for range 2 {
			for _, k := range clause {
				args = append(args, k)
			}
		}
	}
	if q.After != nil {
		t := micros(q.After.Recorded)
		where = append(where, "(t < ? OR (t = ? AND id < ?))")
		args = append(args, t, t, q.After.ID)
	}
	count := max(q.Count, 1)
	query := "SELECT rec FROM audit_events"
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY t DESC, id DESC LIMIT ?"
	args = append(args, count+1)
	rows, err := s.r.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, mapErr(err)
	}
	defer rows.Close()
	page := &resources.AuditPage{}
	for rows.Next() {
		var body []byte
		if err := rows.Scan(&body); err != nil {
			return nil, mapErr(err)
		}
		r, err := decodeAudit(body)
		if err != nil {
			return nil, err
		}
		page.Records = append(page.Records, r)
	}
	if err := rows.Err(); err != nil {
		return nil, mapErr(err)
	}
	if len(page.Records) > count {
		page.Records = page.Records[:count]
		last := page.Records[count-1]
		page.Next = &resources.AuditCursor{Recorded: last.Recorded, ID: last.ID}
	}
	return page, nil
}

// purgeBatch bounds the records one purge transaction deletes (but for records that share
// one instant), so that a purge of a large backlog never holds the write lock for long.
const purgeBatch = 1000

// PurgeAudit implements resources.AuditLog, in rounds of one transaction each. A round deletes
// the records older than a cutoff c (the time of the purgeBatch-th oldest record, or before
// itself for the last round) and, for the keys of those records, the postings older than c.
// A posting's t is the latest time of its records, so a posting goes in the round that
// deletes its latest record, and never while a record it lists is left.
func (s *Store) PurgeAudit(ctx context.Context, before time.Time) (int64, error) {
	end := micros(before)
	var total int64
	for {
		var n int
		var cut int64
		err := s.submit(ctx, 0, func(w *writer) error {
			n = 0
			var err error
			if cut, err = purgeCut(w, end); err != nil {
				return err
			}
			rows, err := w.conn.QueryContext(w.ctx, `SELECT rec FROM audit_events WHERE t < ?`, cut)
			if err != nil {
				return err
			}
			keys := map[string]bool{}
			for rows.Next() {
				var body []byte
				if err := rows.Scan(&body); err != nil {
					rows.Close()
					return err
				}
				if r, err := decodeAudit(body); err == nil {
					for _, k := range resources.AuditKeys(r) {
						keys[k] = true
					}
				}
				n++
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
			for k := range keys {
				if _, err := w.exec(`DELETE FROM audit_keys WHERE key = ? AND t < ?`, k, cut); err != nil {
					return err
				}
			}
			if _, err := w.exec(`DELETE FROM audit_staged WHERE t < ?`, cut); err != nil {
				return err
			}
			_, err = w.exec(`DELETE FROM audit_events WHERE t < ?`, cut)
			return err
		})
		if err != nil {
			return total, err
		}
		total += int64(n)
		if cut >= end {
			return total, nil
		}
	}
}

// purgeCut is the cutoff of the next purge round (see PurgeAudit): end when fewer than
// purgeBatch records are older, else the time of the purgeBatch-th oldest, moved one
// microsecond on when every older record shares that time (so each round makes progress).
func purgeCut(w *writer, end int64) (int64, error) {
	var nth, first int64
	err := w.conn.QueryRowContext(w.ctx, `SELECT t FROM audit_events WHERE t < ? ORDER BY t, id LIMIT 1 OFFSET ?`, end, purgeBatch-1).Scan(&nth)
	if errors.Is(err, sql.ErrNoRows) {
		return end, nil
	}
	if err != nil {
		return 0, err
	}
	if err := w.conn.QueryRowContext(w.ctx, `SELECT min(t) FROM audit_events`).Scan(&first); err != nil {
		return 0, err
	}
	if first == nth {
		return min(nth+1, end), nil
	}
	return nth, nil
}
