package sqlitestore

import (
	"database/sql"
	"strconv"

	"github.com/calaimfhir/calaimfhir/resources"
)

// Value rows on update.
//
// The string, date and number rows of a resource carry no lastUpdated (unlike its
// search_keys rows, which move with every version), so the rows a new version shares with
// the one it replaces can stay where they are: an update deletes only the rows the new
// version no longer has and inserts only the ones it adds. A Task moving from requested to
// accepted keeps its authoredOn: deleting and inserting that one date cost four B-tree pages
// (search_dates and its three indexes) in every such update's commit.

// A resource's rows of each value table, and how one of them is deleted.
const (
	sqlSelStrings = `SELECT param, value FROM search_strings WHERE type = ? AND id = ?`
	sqlSelDates   = `SELECT rowid, param, lo, hi FROM search_dates WHERE type = ? AND id = ?`
	sqlSelNumbers = `SELECT rowid, param, v FROM search_numbers WHERE type = ? AND id = ?`

	sqlDelStringRow = `DELETE FROM search_strings WHERE type = ? AND id = ? AND param = ? AND value = ?`
	sqlDelDateRow   = `DELETE FROM search_dates WHERE rowid = ?`
	sqlDelNumberRow = `DELETE FROM search_numbers WHERE rowid = ?`
)

// oldRow is a stored value row: what identifies it for a delete (its rowid, or its key
// columns p and v), under a key equal for rows that hold the same values.
type oldRow struct {
	rowid int64
	p, v  string
}

// rowSet is a resource's stored rows of one table by what they hold (a multiset: a date can
// occur twice).
type rowSet map[string][]oldRow

// keep reports whether a stored row holds same, and if so spends it.
func (s rowSet) keep(same string) bool {
	rows := s[same]
	if len(rows) == 0 {
		return false
	}
	s[same] = rows[1:]
	return true
}

// valueTable is one value table as putValues handles it.
type valueTable struct {
	sel, del string
	width    int    // columns of an inserted row
	insert   string // multi-row INSERT prefix
	// scan reads a selected row; delArgs are the delete's parameters for a stored row.
	scan    func(rows *sql.Rows) (same string, r oldRow, err error)
	delArgs func(typ, id string, r oldRow) []any
	// rows appends the new version's rows to args, each after asking keep whether it is
	// stored already (then it is left out).
	rows func(typ, id string, k *resources.Keys, keep func(string) bool, args []any) []any
}

const valueSep = "\x00"

var valueTables = []valueTable{
	{sel: sqlSelStrings, del: sqlDelStringRow, width: 4, insert: insStrings,
		scan: func(rows *sql.Rows) (string, oldRow, error) {
			var r oldRow
			err := rows.Scan(&r.p, &r.v)
			return r.p + valueSep + r.v, r, err
		},
		delArgs: func(typ, id string, r oldRow) []any { return []any{typ, id, r.p, r.v} },
		rows: func(typ, id string, k *resources.Keys, keep func(string) bool, args []any) []any {
			for _, v := range k.Strings {
				if !keep(v.Param + valueSep + v.Value) {
					args = append(args, typ, v.Param, v.Value, id)
				}
			}
			return args
		}},
	{sel: sqlSelDates, del: sqlDelDateRow, width: 5, insert: insDates,
		scan: func(rows *sql.Rows) (string, oldRow, error) {
			var r oldRow
			var lo, hi int64
			err := rows.Scan(&r.rowid, &r.p, &lo, &hi)
			return dateSame(r.p, lo, hi), r, err
		},
		delArgs: func(_, _ string, r oldRow) []any { return []any{r.rowid} },
		rows: func(typ, id string, k *resources.Keys, keep func(string) bool, args []any) []any {
			for _, v := range k.Dates {
				if !keep(dateSame(v.Param, v.Lo, v.Hi)) {
					args = append(args, typ, v.Param, v.Lo, v.Hi, id)
				}
			}
			return args
		}},
	{sel: sqlSelNumbers, del: sqlDelNumberRow, width: 4, insert: insNumbers,
		scan: func(rows *sql.Rows) (string, oldRow, error) {
			var r oldRow
			var v float64
			err := rows.Scan(&r.rowid, &r.p, &v)
			return numberSame(r.p, v), r, err
		},
		delArgs: func(_, _ string, r oldRow) []any { return []any{r.rowid} },
		rows: func(typ, id string, k *resources.Keys, keep func(string) bool, args []any) []any {
			for _, v := range k.Numbers {
				if !keep(numberSame(v.Param, v.V)) {
					args = append(args, typ, v.Param, v.V, id)
				}
			}
			return args
		}},
}

func dateSame(param string, lo, hi int64) string {
	return param + valueSep + strconv.FormatInt(lo, 10) + valueSep + strconv.FormatInt(hi, 10)
}

func numberSame(param string, v float64) string {
	return param + valueSep + strconv.FormatFloat(v, 'g', -1, 64)
}

// putValues writes the value rows of k (empty for a delete) for typ/id. With replacing set,
// the resource has rows from its previous version: the ones k still holds stay, the others
// are deleted before k's new rows go in.
func (w *writer) putValues(typ, id string, k *resources.Keys, replacing bool) error {
	args := w.args[:0]
	defer func() { clear(args); w.args = args[:0] }()
	for _, t := range valueTables {
		var stored rowSet
		if replacing {
			var err error
			if stored, err = w.storedRows(t, typ, id); err != nil {
				return err
			}
		}
		args = t.rows(typ, id, k, stored.keep, args[:0])
		for _, rows := range stored {
			for _, r := range rows {
				if _, err := w.exec(t.del, t.delArgs(typ, id, r)...); err != nil {
					return err
				}
			}
		}
		if err := w.insertRows(t.insert, t.width, args); err != nil {
			return err
		}
	}
	return nil
}

// storedRows reads the rows typ/id has in t.
func (w *writer) storedRows(t valueTable, typ, id string) (rowSet, error) {
	st, err := w.stmt(t.sel)
	if err != nil {
		return nil, err
	}
	rows, err := st.QueryContext(w.ctx, typ, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	set := rowSet{}
	for rows.Next() {
		same, r, err := t.scan(rows)
		if err != nil {
			return nil, err
		}
		set[same] = append(set[same], r)
	}
	return set, rows.Err()
}
