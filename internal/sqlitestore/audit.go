package sqlitestore

import (
	"context"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/calaimfhir/calaimfhir/resources"
)

// The audit trail (resources.AuditLog) lives in tables of its own: audit_events, one row per
// record with the columns searches filter on and the rest of the record in rec, and audit_keys,
// the postings of agent, entity and entity-type keys (resources.AuditKeys), so that "this
// agent" or "this entity" is one index range. audit_events is indexed on time for the date
// filter, the newest-first order and the retention purge.
//
// Every request writes a record, so the layout keeps appends cheap (BenchmarkAudit in
// server/audit_test.go, BenchmarkWALPagesAudit here): nearly all of a record's cost is the
// pages its rows add to the commit's WAL frames.
//   - audit_events is keyed by id alone (ids begin with the time, so records are appended), and
//     rec holds only what the columns do not, in a compact binary form (encodeAuditRec); rows
//     written before that hold the whole record as JSON, which decodeAuditRow still reads.
//   - A batch writes nothing else. Postings are keyed by key, so a batch's would land on as many
//     leaves as it has distinct keys, scattered over the key order: each caller's three agent
//     keys, the type, and one entity per record. Even grouped one per key per batch, those
//     leaves were 70% of the trail's WAL frames. Instead, once the records gathered past the
//     watermark (audit_posted.t: every record recorded before it has its postings) have
//     auditPostEvery entity keys, one job posts all of them (postAudit): grouped by key, so
//     each key's leaf is written once per round rather than once per batch, and the
//     watermark moves past them.
//     A record older than the watermark when it arrives (a batch retried late) is posted by
//     its own batch.
//   - A posting stands for one record (id, ids and last NULL), for the records it lists (ids, a
//     JSON array, up to auditListMax), or for a range of ids (id to last), when more records of
//     a round share its key. A range also spans records without the key, and the records past
//     the watermark have no postings yet, so a search reads those too and tests every record
//     it finds against the query (resources.AuditQuery.Matches): at most auditPostEvery
//     records, and per range at most its round. Audit searches are an administrator's, and rare.
//
// Purges delete a posting once its t (the latest time of its records) is older than every
// record left (see PurgeAudit); a posting that also lists or spans records purged before it is
// harmless, since searches join postings to audit_events.
const auditSchema = `
CREATE TABLE IF NOT EXISTS audit_events (
	id      TEXT    NOT NULL PRIMARY KEY,
	t       INTEGER NOT NULL, -- recorded, unix microseconds
	action  TEXT    NOT NULL,
	outcome INTEGER NOT NULL,
	subtype TEXT    NOT NULL,
	rec     BLOB    NOT NULL  -- the rest of the resources.AuditRecord (encodeAuditRec), or all of it as JSON
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS audit_events_t ON audit_events (t, id);

CREATE TABLE IF NOT EXISTS audit_keys (
	key  TEXT    NOT NULL,
	t    INTEGER NOT NULL, -- the latest time of the posting's records
	id   TEXT    NOT NULL, -- its least record id
	ids  TEXT,             -- every record id, a JSON array; NULL: id alone, or a range
	last TEXT,             -- the greatest record id of a range; NULL: not a range
	PRIMARY KEY (key, t, id)
) WITHOUT ROWID;

-- One row: the watermark. Records recorded (t) before it have their postings in audit_keys.
CREATE TABLE IF NOT EXISTS audit_posted (t INTEGER NOT NULL);
`

// auditPostEvery is how many entity postings to come (of the records past the watermark, each
// counted as one at least) make the next batch post them all: it bounds a round's work
// whatever its records, and amortizes each round's scattered leaves over as many records as it
// can (a variable for tests); auditListMax the most record ids one posting lists.
var auditPostEvery = 16384

const auditListMax = 64

// migrateAuditPostings adds audit_keys.ids to a database made before postings were grouped,
// and migrateAuditRanges audit_keys.last to one made before range postings: their rows have
// none (one record each, or a list), so nothing else changes.
func migrateAuditPostings(ctx context.Context, w *sql.DB) error {
	return addColumn(ctx, w, "audit_keys", "ids TEXT")
}

func migrateAuditRanges(ctx context.Context, w *sql.DB) error {
	return addColumn(ctx, w, "audit_keys", "last TEXT")
}

// addColumn adds the column (its name, then its type) to table unless it is there.
func addColumn(ctx context.Context, w *sql.DB, table, column string) error {
	name, _, _ := strings.Cut(column, " ")
	var n int
	if err := w.QueryRowContext(ctx, `SELECT count(*) FROM pragma_table_info(?) WHERE name = ?`, table, name).Scan(&n); err != nil || n > 0 {
		return err
	}
	_, err := w.ExecContext(ctx, `ALTER TABLE `+table+` ADD COLUMN `+column)
	return err
}

// migrateAuditPosted sets the watermark of a database that has none: past every record, whose
// postings are all in audit_keys once the entity keys an older build staged in audit_staged are
// moved there, as it did, and that table is dropped. A new database's watermark is 0.
func migrateAuditPosted(ctx context.Context, w *sql.DB) error {
	var n int
	if err := w.QueryRowContext(ctx, `SELECT count(*) FROM audit_posted`).Scan(&n); err != nil || n > 0 {
		return err
	}
	tx, err := w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'audit_staged'`).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		for _, stmt := range []string{`INSERT OR IGNORE INTO audit_keys (key, t, id, ids)
			SELECT key, max(t), min(id), CASE WHEN count(*) > 1 THEN json_group_array(id) END
			FROM audit_staged GROUP BY key`, `DROP TABLE audit_staged`} {
			if _, err := tx.ExecContext(ctx, stmt); err != nil {
				return err
			}
		}
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO audit_posted (t) SELECT coalesce(max(t) + 1, 0) FROM audit_events`); err != nil {
		return err
	}
	return tx.Commit()
}

var _ resources.AuditLog = (*Store)(nil)

// auditPosting is the posting of one key for a set of records.
type auditPosting struct {
	key  string
	t    int64    // the latest time of the records
	id   string   // the least of their ids
	ids  []string // every id, in the order given
	last string   // the greatest id
}

// auditPostings groups the keys of recs into one posting per key, sorted by key (the order of
// audit_keys, so that the inserts walk its leaves once).
func auditPostings(recs []*resources.AuditRecord) []auditPosting {
	var out []auditPosting
	at := map[string]int{}
	for _, r := range recs {
		t := micros(r.Recorded)
		for _, k := range resources.AuditKeys(r) {
			i, ok := at[k]
			if !ok {
				at[k] = len(out)
				out = append(out, auditPosting{key: k, t: t, id: r.ID, ids: []string{r.ID}, last: r.ID})
				continue
			}
			p := &out[i]
			p.t = max(p.t, t)
			p.id = min(p.id, r.ID)
			p.last = max(p.last, r.ID)
			p.ids = append(p.ids, r.ID)
		}
	}
	slices.SortFunc(out, func(a, b auditPosting) int { return strings.Compare(a.key, b.key) })
	return out
}

// insertPostings writes postings as audit_keys rows: one record alone, a list of up to
// auditListMax, or else a range.
func (w *writer) insertPostings(postings []auditPosting) error {
	args := w.args[:0]
	defer func() { clear(args); w.args = args[:0] }()
	for _, p := range postings {
		var ids, last any // NULL
		switch {
		case len(p.ids) == 1:
		case len(p.ids) <= auditListMax:
			b, err := json.Marshal(p.ids)
			if err != nil {
				return err
			}
			ids = string(b)
		default:
			last = p.last
		}
		args = append(args, p.key, p.t, p.id, ids, last)
	}
	return w.insertRows(`INSERT OR IGNORE INTO audit_keys (key, t, id, ids, last) VALUES `, 5, args)
}

// AppendAudit implements resources.AuditLog: the batch is one job of the writer (writer.go),
// committed with whatever resource writes are waiting at the time. Records stored by an earlier
// call are skipped. The records go in without postings, but for those older than the
// watermark; once auditPostEvery entity keys wait, the batch posts them all (postAudit).
func (s *Store) AppendAudit(ctx context.Context, recs []*resources.AuditRecord) error {
	if len(recs) == 0 {
		return nil
	}
	var buf []byte
	ends := make([]int, len(recs))
	for i, r := range recs {
		buf = encodeAuditRec(buf, r)
		ends[i] = len(buf)
	}
	return s.submit(ctx, len(buf), func(w *writer) error {
		posted, err := w.auditPosted()
		if err != nil {
			return err
		}
		args := w.args[:0]
		start := 0
		for i, r := range recs {
			args = append(args, r.ID, micros(r.Recorded), r.Action, r.Outcome, r.Subtype, buf[start:ends[i]:ends[i]])
			start = ends[i]
		}
		stored := make(map[string]bool, len(recs))
		err = w.insertRowsReturning(`INSERT OR IGNORE INTO audit_events (id, t, action, outcome, subtype, rec) VALUES `, 6, args,
			"id", func(id string) { stored[id] = true })
		clear(args)
		w.args = args[:0]
		if err != nil {
			return err
		}
		var late []*resources.AuditRecord
		for _, r := range recs {
			switch {
			case !stored[r.ID]:
			case micros(r.Recorded) < posted:
				late = append(late, r)
			default:
				w.auditTent = append(w.auditTent, r)
			}
		}
		if err := w.insertPostings(auditPostings(late)); err != nil {
			return err
		}
		if w.auditUnpostedNow() >= auditPostEvery {
			return w.postAudit(posted)
		}
		return nil
	})
}

// auditUnpostedNow is how many entity postings the records past the watermark have to come,
// this group's included: a round's size (a transaction Bundle's record has one per entry; the
// agent and type keys of a round's records are few, grouped).
func (w *writer) auditUnpostedNow() int {
	n := w.auditUnposted
	from := 0
	if w.auditRound >= 0 {
		n, from = 0, w.auditRound
	}
	for _, r := range w.auditTent[from:] {
		n += auditWeight(r)
	}
	return n
}

// auditWeight is what a record past the watermark counts toward a round: its entity keys, the
// postings that scatter, and one at least (searches read it until it is posted).
func auditWeight(r *resources.AuditRecord) int { return max(1, len(r.Entities)) }

// auditCommitted keeps what the group's jobs did to the records past the watermark.
func (w *writer) auditCommitted() {
	if w.auditPurged {
		clear(w.auditPending)
		w.auditPending = w.auditPending[:0]
		w.auditKnown = false
	} else if w.auditRound >= 0 {
		clear(w.auditPending)
		w.auditPending = append(w.auditPending[:0], w.auditTent[w.auditRound:]...)
		w.auditKnown = true
	} else if w.auditKnown {
		w.auditPending = append(w.auditPending, w.auditTent...)
	}
	w.auditUnposted = w.auditUnpostedNow()
	w.auditDropped()
}

// auditDropped forgets what the group's jobs did: their transaction was rolled back.
func (w *writer) auditDropped() {
	clear(w.auditTent)
	w.auditTent = w.auditTent[:0]
	w.auditRound = -1
	w.auditPurged = false
}

// auditPosted reads the watermark in the writer's transaction.
func (w *writer) auditPosted() (int64, error) {
	st, err := w.stmt(`SELECT t FROM audit_posted`)
	if err != nil {
		return 0, err
	}
	var t int64
	err = st.QueryRowContext(w.ctx).Scan(&t)
	return t, err
}

// postAudit posts every record recorded at or after the watermark posted and moves the
// watermark past them: from memory when the writer holds them all (auditKnown), else read back
// (after Open found some, or a purge of this group took some). A record read back that cannot be decoded gets no postings (it can
// be found by time only); the round goes on without it.
func (w *writer) postAudit(posted int64) error {
	var recs []*resources.AuditRecord
	next := posted
	switch {
	case !w.auditPurged && w.auditRound >= 0: // a round of this group posted the rest
		recs = w.auditTent[w.auditRound:]
	case !w.auditPurged && w.auditKnown:
		recs = append(slices.Clip(w.auditPending), w.auditTent...)
	default: // after Open found some, or a purge of this group took some the writer holds
		var err error
		if recs, next, err = w.readUnposted(posted); err != nil {
			return err
		}
	}
	for _, r := range recs {
		next = max(next, micros(r.Recorded)+1)
	}
	if err := w.insertPostings(auditPostings(recs)); err != nil {
		return err
	}
	if _, err := w.exec(`UPDATE audit_posted SET t = ?`, next); err != nil {
		return err
	}
	w.auditRound = len(w.auditTent)
	return nil
}

// readUnposted reads back the records recorded at or after the watermark posted, and returns
// them with the time just past the latest of them, undecodable ones included.
func (w *writer) readUnposted(posted int64) (recs []*resources.AuditRecord, next int64, err error) {
	st, err := w.stmt(`SELECT ` + auditColumns + ` FROM audit_events WHERE t >= ?`)
	if err != nil {
		return nil, 0, err
	}
	rows, err := st.QueryContext(w.ctx, posted)
	if err != nil {
		return nil, 0, err
	}
	next = posted
	err = eachAuditRow(rows, func(c *auditRow, r *resources.AuditRecord) {
		next = max(next, c.t+1)
		if r != nil {
			recs = append(recs, r)
		}
	})
	return recs, next, err
}

// auditColumns are the columns decodeAuditRow reads, in its order.
const auditColumns = `id, t, action, outcome, subtype, rec`

// ReadAudit implements resources.AuditLog.
func (s *Store) ReadAudit(ctx context.Context, id string) (*resources.AuditRecord, error) {
	r, err := scanAudit(s.r.QueryRowContext(ctx, `SELECT `+auditColumns+` FROM audit_events WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, resources.Errorf(resources.KindNotFound, "AuditEvent/%s is not known", id)
	}
	return r, err
}

// auditRow is one row of auditColumns.
type auditRow struct {
	id, action, subtype string
	t                   int64
	outcome             int
	rec                 []byte
}

func (c *auditRow) dest() []any {
	return []any{&c.id, &c.t, &c.action, &c.outcome, &c.subtype, &c.rec}
}

func (c *auditRow) decode() (*resources.AuditRecord, error) {
	return decodeAuditRow(c.id, c.t, c.action, c.outcome, c.subtype, c.rec)
}

// eachAuditRow calls fn with each row of auditColumns and its record (nil when it cannot be
// decoded), and closes rows.
func eachAuditRow(rows *sql.Rows, fn func(*auditRow, *resources.AuditRecord)) error {
	defer rows.Close()
	for rows.Next() {
		var c auditRow
		if err := rows.Scan(c.dest()...); err != nil {
			return err
		}
		r, err := c.decode()
		if err != nil {
			r = nil
		}
		fn(&c, r)
	}
	return rows.Err()
}

// scanAudit reads and decodes one row of auditColumns.
func scanAudit(row interface{ Scan(...any) error }) (*resources.AuditRecord, error) {
	var c auditRow
	if err := row.Scan(c.dest()...); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, err
		}
		return nil, mapErr(err)
	}
	return c.decode()
}

// The compact form of rec (encodeAuditRec): a version byte, then the record's fields that
// audit_events has no column for. Integers are varints; strings and the entity list are a
// length, then their bytes or entries; Start is the microseconds it comes before Recorded.
// Rows of older builds hold the record as JSON, which begins with '{'.
const auditRecV1 = 1

// auditRecStrings are the string fields of the compact form, in its order.
func auditRecStrings(r *resources.AuditRecord) [11]*string {
	return [11]*string{&r.Method, &r.Subject, &r.ClientID, &r.Org, &r.Role, &r.Address, &r.RequestID,
		&r.Type, &r.Query, &r.Operation, &r.Path}
}

// encodeAuditRec appends the compact rec of r to buf.
func encodeAuditRec(buf []byte, r *resources.AuditRecord) []byte {
	buf = append(buf, auditRecV1)
	buf = binary.AppendVarint(buf, micros(r.Recorded)-micros(r.Start))
	buf = binary.AppendVarint(buf, int64(r.Status))
	for _, f := range auditRecStrings(r) {
		buf = binary.AppendUvarint(buf, uint64(len(*f)))
		buf = append(buf, *f...)
	}
	buf = binary.AppendUvarint(buf, uint64(len(r.Entities)))
	for _, e := range r.Entities {
		buf = binary.AppendUvarint(buf, uint64(len(e)))
		buf = append(buf, e...)
	}
	return buf
}

// decodeAuditRow rebuilds a record from its audit_events row.
func decodeAuditRow(id string, t int64, action string, outcome int, subtype string, rec []byte) (*resources.AuditRecord, error) {
	if len(rec) > 0 && rec[0] == '{' {
		var r resources.AuditRecord
		if err := json.Unmarshal(rec, &r); err != nil {
			return nil, resources.Wrap(resources.KindInternal, err, "unreadable audit record")
		}
		return &r, nil
	}
	r := &resources.AuditRecord{ID: id, Recorded: fromMicros(t), Action: action, Outcome: outcome, Subtype: subtype}
	d := auditDecoder{b: rec}
	if v := d.byte(); v != auditRecV1 && d.err == nil {
		d.err = fmt.Errorf("rec version %d", v)
	}
	r.Start = fromMicros(t - d.varint())
	r.Status = int(d.varint())
	for _, f := range auditRecStrings(r) {
		*f = d.string()
	}
	if n := d.uvarint(); n > 0 && n <= uint64(len(d.b)) { // each entity takes a byte at least
		r.Entities = make([]string, n)
		for i := range r.Entities {
			r.Entities[i] = d.string()
		}
	} else if n > 0 && d.err == nil {
		d.err = errors.New("entity count beyond the record")
	}
	if d.err == nil && len(d.b) > 0 {
		d.err = errors.New("bytes after the record")
	}
	if d.err != nil {
		return nil, resources.Wrap(resources.KindInternal, d.err, "unreadable audit record "+id)
	}
	return r, nil
}

// auditDecoder reads the compact form; after the first error every read returns zero.
type auditDecoder struct {
	b   []byte
	err error
}

func (d *auditDecoder) fail(what string) {
	if d.err == nil {
		d.err = errors.New("truncated " + what)
	}
	d.b = nil
}

func (d *auditDecoder) byte() byte {
	if len(d.b) == 0 {
		d.fail("version")
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *auditDecoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("integer")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *auditDecoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("length")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *auditDecoder) string() string {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail("string")
		return ""
	}
	v := string(d.b[:n])
	d.b = d.b[n:]
	return v
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
		// A posting stands for its id alone, for every id it lists (ids) or for the records
		// of its range (last), some of which may lack the key; records past the watermark
		// have no postings yet. Rows are tested against the query below.
		where = append(where, "id IN (SELECT e.id FROM audit_keys k JOIN audit_events e ON e.id BETWEEN k.id AND k.last WHERE "+in("k.key", len(clause))+
			" UNION ALL SELECT coalesce(j.value, k.id) FROM audit_keys k LEFT JOIN json_each(k.ids) j WHERE "+in("k.key", len(clause))+" AND k.last IS NULL"+
			" UNION ALL SELECT id FROM audit_events WHERE t >= (SELECT t FROM audit_posted))")
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
	query := "SELECT " + auditColumns + " FROM audit_events"
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY t DESC, id DESC"
	if len(q.Keys) == 0 {
		// Every row found matches: the page is the first count+1 of them.
		query += " LIMIT ?"
		args = append(args, count+1)
	}
	rows, err := s.r.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, mapErr(err)
	}
	defer rows.Close()
	page := &resources.AuditPage{}
	for len(page.Records) <= count && rows.Next() {
		r, err := scanAudit(rows)
		if err != nil {
			return nil, err
		}
		if q.Matches(r) {
			page.Records = append(page.Records, r)
		}
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
			posted, err := w.auditPosted()
			if err != nil {
				return err
			}
			if cut > posted {
				// Records past the watermark go too: rounds read back those left.
				w.auditPurged = true
			}
			rows, err := w.conn.QueryContext(w.ctx, `SELECT `+auditColumns+` FROM audit_events WHERE t < ?`, cut)
			if err != nil {
				return err
			}
			keys := map[string]bool{}
			if err := eachAuditRow(rows, func(_ *auditRow, r *resources.AuditRecord) {
				if r != nil {
					for _, k := range resources.AuditKeys(r) {
						keys[k] = true
					}
				}
				n++
			}); err != nil {
				return err
			}
			for k := range keys {
				if _, err := w.exec(`DELETE FROM audit_keys WHERE key = ? AND t < ?`, k, cut); err != nil {
					return err
				}
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
