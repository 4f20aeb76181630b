package mongostore

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/calaimfhir/calaimfhir/resources"
)

// The audit trail (resources.AuditLog) is the collection audit_events, one document per record:
//
//	{_id: id, t: recorded (Unix µs), a: action, o: outcome, st: subtype, k: [keys], r: record JSON}
//
// k holds resources.AuditKeys (agent, entity, entity-type), so every filter is an equality on an
// indexed field or a range on t: no $elemMatch, no regular expressions (see the package comment
// on FerretDB). Indexes: t_id for the date range, the newest-first order and the retention
// purge; k_t_id for agent and entity searches. The collection name has no upper-case first
// letter, so it can never clash with a resource type's collections.
const auditCollection = "audit_events"

var auditIndexes = []mongo.IndexModel{
	{Keys: bson.D{{Key: "t", Value: -1}, {Key: "_id", Value: -1}}, Options: options.Index().SetName("t_id")},
	{Keys: bson.D{{Key: "k", Value: 1}, {Key: "t", Value: -1}, {Key: "_id", Value: -1}}, Options: options.Index().SetName("k_t_id")},
}

type auditDoc struct {
	ID      string   `bson:"_id"`
	T       int64    `bson:"t"`
	Action  string   `bson:"a"`
	Outcome int      `bson:"o"`
	Subtype string   `bson:"st"`
	K       []string `bson:"k"`
	R       string   `bson:"r"`
}

var _ resources.AuditLog = (*Store)(nil)

// audit returns the collection, creating its indexes once per Store (the ensured map's keys are
// otherwise resource types, which never equal this name).
func (s *Store) audit(ctx context.Context) (*mongo.Collection, error) {
	c := s.db.Collection(auditCollection)
	if _, ok := s.ensured.Load(auditCollection); ok {
		return c, nil
	}
	for _, ix := range auditIndexes { // one per command: see ensure
		if _, err := c.Indexes().CreateOne(ctx, ix); err != nil {
			return nil, fail(err, "create audit indexes")
		}
	}
	s.ensured.Store(auditCollection, struct{}{})
	return c, nil
}

// AppendAudit implements resources.AuditLog with one unordered InsertMany; records stored by an
// earlier attempt (duplicate _id) are skipped.
func (s *Store) AppendAudit(ctx context.Context, recs []*resources.AuditRecord) error {
	if len(recs) == 0 {
		return nil
	}
	c, err := s.audit(ctx)
	if err != nil {
		return err
	}
	docs := make([]any, len(recs))
	for i, r := range recs {
		body, err := json.Marshal(r)
		if err != nil {
			return resources.Wrap(resources.KindInternal, err, "encode audit record")
		}
		docs[i] = auditDoc{ID: r.ID, T: r.Recorded.UnixMicro(), Action: r.Action, Outcome: r.Outcome,
			Subtype: r.Subtype, K: resources.AuditKeys(r), R: string(body)}
	}
	_, err = c.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
	if err == nil {
		return nil
	}
	var bwe mongo.BulkWriteException
	if errors.As(err, &bwe) && bwe.WriteConcernError == nil && len(bwe.WriteErrors) > 0 {
		dupsOnly := true
		for _, we := range bwe.WriteErrors {
			dupsOnly = dupsOnly && we.Code == 11000
		}
		if dupsOnly {
			return nil
		}
	}
	return fail(err, "append audit")
}

// ReadAudit implements resources.AuditLog.
func (s *Store) ReadAudit(ctx context.Context, id string) (*resources.AuditRecord, error) {
	var d auditDoc
	err := s.db.Collection(auditCollection).FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, resources.Errorf(resources.KindNotFound, "AuditEvent/%s is not known", id)
	}
	if err != nil {
		return nil, fail(err, "read audit")
	}
	return decodeAudit(d.R)
}

func decodeAudit(body string) (*resources.AuditRecord, error) {
	var r resources.AuditRecord
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		return nil, resources.Wrap(resources.KindInternal, err, "unreadable audit record")
	}
	return &r, nil
}

// SearchAudit implements resources.AuditLog. Request values reach the filter only as strings
// and numbers compared for equality, and times.
func (s *Store) SearchAudit(ctx context.Context, q *resources.AuditQuery) (*resources.AuditPage, error) {
	and := bson.A{}
	if !q.From.IsZero() {
		and = append(and, bson.D{{Key: "t", Value: bson.D{{Key: "$gte", Value: q.From.UnixMicro()}}}})
	}
	if !q.To.IsZero() {
		and = append(and, bson.D{{Key: "t", Value: bson.D{{Key: "$lt", Value: q.To.UnixMicro()}}}})
	}
	if len(q.Actions) > 0 {
		and = append(and, bson.D{{Key: "a", Value: bson.D{{Key: "$in", Value: q.Actions}}}})
	}
	if len(q.Outcomes) > 0 {
		and = append(and, bson.D{{Key: "o", Value: bson.D{{Key: "$in", Value: q.Outcomes}}}})
	}
	if len(q.Subtypes) > 0 {
		and = append(and, bson.D{{Key: "st", Value: bson.D{{Key: "$in", Value: q.Subtypes}}}})
	}
	for _, clause := range q.Keys {
		and = append(and, bson.D{{Key: "k", Value: bson.D{{Key: "$in", Value: clause}}}})
	}
	if q.After != nil {
		t := q.After.Recorded.UnixMicro()
		and = append(and, bson.D{{Key: "$or", Value: bson.A{
			bson.D{{Key: "t", Value: bson.D{{Key: "$lt", Value: t}}}},
			bson.D{{Key: "t", Value: t}, {Key: "_id", Value: bson.D{{Key: "$lt", Value: q.After.ID}}}},
		}}})
	}
	filter := bson.D{}
	if len(and) > 0 {
		filter = bson.D{{Key: "$and", Value: and}}
	}
	count := max(q.Count, 1)
	opts := options.Find().SetSort(bson.D{{Key: "t", Value: -1}, {Key: "_id", Value: -1}}).
		SetLimit(int64(count + 1)).SetProjection(bson.D{{Key: "r", Value: 1}})
	cur, err := s.db.Collection(auditCollection).Find(ctx, filter, opts)
	if err != nil {
		return nil, fail(err, "search audit")
	}
	var docs []auditDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fail(err, "search audit")
	}
	page := &resources.AuditPage{}
	for _, d := range docs {
		r, err := decodeAudit(d.R)
		if err != nil {
			return nil, err
		}
		page.Records = append(page.Records, r)
	}
	if len(page.Records) > count {
		page.Records = page.Records[:count]
		last := page.Records[count-1]
		page.Next = &resources.AuditCursor{Recorded: last.Recorded, ID: last.ID}
	}
	return page, nil
}

// PurgeAudit implements resources.AuditLog: one deleteMany on the t index (a top-level field,
// which FerretDB deletes correctly).
func (s *Store) PurgeAudit(ctx context.Context, before time.Time) (int64, error) {
	c, err := s.audit(ctx)
	if err != nil {
		return 0, err
	}
	res, err := c.DeleteMany(ctx, bson.D{{Key: "t", Value: bson.D{{Key: "$lt", Value: before.UnixMicro()}}}})
	if err != nil {
		return 0, fail(err, "purge audit")
	}
	return res.DeletedCount, nil
}
