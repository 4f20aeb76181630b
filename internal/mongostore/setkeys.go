package mongostore

import (
	"context"
	"errors"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/calaimfhir/calaimfhir/resources"
)

// SetKeys implements resources.Store. It reads the current document's keys and sets the new
// list with an update filtered on the version and its write token, so a version written in
// between keeps the keys its writer gave it (KindConflict). On MongoDB the update is atomic.
// FerretDB's updates read the document and write it back whole (see "Writes without
// transactions"): a Put replacing the document between the two can be undone by the write-back,
// leaving the current document one version behind its history entry, the state a writer that
// died between its two writes leaves, which the next Put rolls forward.
func (s *Store) SetKeys(ctx context.Context, typ, id string, version int64, prefix string, keys []string) error {
	cur, _, err := s.colls(ctx, typ, false)
	if err != nil {
		return err
	}
	var d struct {
		V   int64    `bson:"v"`
		Del bool     `bson:"del"`
		K   []string `bson:"k"`
		W   string   `bson:"w"`
	}
	proj := bson.D{{Key: "v", Value: 1}, {Key: "del", Value: 1}, {Key: "k", Value: 1}, {Key: "w", Value: 1}}
	err = cur.FindOne(ctx, bson.D{{Key: "_id", Value: id}}, options.FindOne().SetProjection(proj)).Decode(&d)
	switch {
	case errors.Is(err, mongo.ErrNoDocuments):
		return nil
	case err != nil:
		return fail(err, "read keys")
	case d.V != version:
		return resources.Errorf(resources.KindConflict, "%s/%s is at version %d, not %d", typ, id, d.V, version)
	case d.Del:
		return nil
	}
	next, added, removed := resources.ReplacePrefixed(d.K, prefix, keys)
	if len(added) == 0 && len(removed) == 0 {
		return nil
	}
	res, err := cur.UpdateOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "v", Value: version}, {Key: "w", Value: d.W}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "k", Value: next}}}})
	if err != nil {
		return fail(err, "set keys")
	}
	if res.MatchedCount == 0 {
		return resources.Errorf(resources.KindConflict, "%s/%s changed while its keys were set", typ, id)
	}
	return nil
}

// migrationsColl records the one-time data migrations done (resources.Store.Migrated).
const migrationsColl = "migrations"

// Migrated implements resources.Store.
func (s *Store) Migrated(ctx context.Context, name string) (bool, error) {
	n, err := s.db.Collection(migrationsColl).CountDocuments(ctx, bson.D{{Key: "_id", Value: name}})
	if err != nil {
		return false, fail(err, "read migrations")
	}
	return n > 0, nil
}

// SetMigrated implements resources.Store.
func (s *Store) SetMigrated(ctx context.Context, name string) error {
	_, err := s.db.Collection(migrationsColl).UpdateOne(ctx, bson.D{{Key: "_id", Value: name}},
		bson.D{{Key: "$setOnInsert", Value: bson.D{{Key: "at", Value: bson.NewDateTimeFromTime(time.Now())}}}},
		options.UpdateOne().SetUpsert(true))
	return fail(err, "record migration")
}
