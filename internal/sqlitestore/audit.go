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
// record with the record as JSON and the columns searches filter on, and audit_keys, one row per
// agent, entity and entity-type key (resources.AuditKeys) carrying the record's time, so that
// "this agent, newest first" is one index range. audit_events is indexed on time for the date
// filter, the newest-first order and the retention purge.
//
// Every request writes a record, so the layout keeps inserts cheap (BenchmarkAudit in
// server/audit_test.go): audit_events is keyed by id alone (no rowid and separate id index), and
// audit_keys has no time index: the purge finds a record's keys again from the record itself
// and deletes them by primary key.
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
	t   INTEGER NOT NULL,
	id  TEXT    NOT NULL,
	PRIMARY KEY (key, t, id)
) WITHOUT ROWID;
`

var _ resources.AuditLog = (*Store)(nil)

// AppendAudit implements resources.AuditLog: the batch is one job of the writer (writer.go),
// committed with whatever resource writes are waiting at the time.
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
		for i, r := range recs {
			t := micros(r.Recorded)
			res, err := w.exec(`INSERT OR IGNORE INTO audit_events (id, t, action, outcome, subtype, rec) VALUES (?, ?, ?, ?, ?, ?)`,
				r.ID, t, r.Action, r.Outcome, r.Subtype, bodies[i])
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n == 0 {
				continue // stored by an earlier attempt
			}
			for _, k := range resources.AuditKeys(r) {
				if _, err := w.exec(`INSERT OR IGNORE INTO audit_keys (key, t, id) VALUES (?, ?, ?)`, k, t, r.ID); err != nil {
					return err
				}
			}
		}
		return nil
	})
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
		where = append(where, "id IN (SELECT id FROM audit_keys WHERE "+in("key", len(clause))+")")
		for _, k := range clause {
			args = append(args, k)
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

// purgeBatch bounds the records one purge transaction deletes, so that a purge of a large
// backlog never holds the write lock for long.
const purgeBatch = 1000

// PurgeAudit implements resources.AuditLog, in transactions of at most purgeBatch records: each
// record's keys are recomputed from the record and deleted by primary key with it.
func (s *Store) PurgeAudit(ctx context.Context, before time.Time) (int64, error) {
	t := micros(before)
	var total int64
	for {
		var n int
		err := s.submit(ctx, 0, func(w *writer) error {
			n = 0
			rows, err := w.conn.QueryContext(w.ctx, `SELECT id, t, rec FROM audit_events WHERE t < ? ORDER BY t, id LIMIT ?`, t, purgeBatch)
			if err != nil {
				return err
			}
			type victim struct {
				id   string
				t    int64
				keys []string
			}
			var victims []victim
			for rows.Next() {
				var v victim
				var body []byte
				if err := rows.Scan(&v.id, &v.t, &body); err != nil {
					rows.Close()
					return err
				}
				if r, err := decodeAudit(body); err == nil {
					v.keys = resources.AuditKeys(r)
				}
				victims = append(victims, v)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
			for _, v := range victims {
				for _, k := range v.keys {
					if _, err := w.exec(`DELETE FROM audit_keys WHERE key = ? AND t = ? AND id = ?`, k, v.t, v.id); err != nil {
						return err
					}
				}
				if _, err := w.exec(`DELETE FROM audit_events WHERE id = ?`, v.id); err != nil {
					return err
				}
			}
			n = len(victims)
			return nil
		})
		if err != nil {
			return total, err
		}
		total += int64(n)
		if n < purgeBatch {
			return total, nil
		}
	}
}
