package sqlitestore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"time"

	"github.com/calaimfhir/calaimfhir/resources"
)

// SetKeys implements resources.Store: the keys of version of typ/id that start with prefix
// become keys, in search_keys and in the version's eq_keys, in one job of the writer.
func (s *Store) SetKeys(ctx context.Context, typ, id string, version int64, prefix string, keys []string) error {
	return s.submit(ctx, 64*(len(keys)+1), func(w *writer) error {
		sel, err := w.stmt(sqlSelVersion)
		if err != nil {
			return err
		}
		var current, lu int64
		var eq sql.NullString
		err = sel.QueryRowContext(w.ctx, typ, id).Scan(&current, &lu, &eq)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return nil
		case err != nil:
			return err
		case current != version:
			return resources.Errorf(resources.KindConflict, "%s/%s is at version %d, not %d", typ, id, current, version)
		case !eq.Valid:
			return nil // a tombstone keeps no keys
		}
		var old []string
		if err := json.Unmarshal([]byte(eq.String), &old); err != nil {
			return err
		}
		next, added, removed := resources.ReplacePrefixed(old, prefix, keys)
		if len(added) == 0 && len(removed) == 0 {
			return nil
		}
		if err := w.deleteKeys(typ, id, lu, removed); err != nil {
			return err
		}
		if err := w.insertKeys(typ, id, lu, added); err != nil {
			return err
		}
		b, err := json.Marshal(next)
		if err != nil {
			return err
		}
		if _, err = w.exec(`UPDATE resources SET eq_keys = ? WHERE type = ? AND id = ?`, string(b), typ, id); err != nil {
			return err
		}
		w.touched = append(w.touched, typ)
		return nil
	})
}

// Migrated implements resources.Store.
func (s *Store) Migrated(ctx context.Context, name string) (bool, error) {
	var n int
	err := s.r.QueryRowContext(ctx, `SELECT count(*) FROM migrations WHERE name = ?`, name).Scan(&n)
	if err != nil {
		return false, mapErr(err)
	}
	return n > 0, nil
}

// SetMigrated implements resources.Store.
func (s *Store) SetMigrated(ctx context.Context, name string) error {
	return s.submit(ctx, len(name), func(w *writer) error {
		_, err := w.exec(`INSERT OR IGNORE INTO migrations (name, at) VALUES (?, ?)`, name, time.Now().UnixMicro())
		return err
	})
}
