package mongostore_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/calaimfhir/calaimfhir/internal/ferrettest"
	"github.com/calaimfhir/calaimfhir/internal/mongostore"
	"github.com/calaimfhir/calaimfhir/resources"
)

// BenchmarkStoreVsDriver measures the MongoDB store's own overhead: each store operation next
// to the least the driver must do for the same result on the same server, in the same run.
//
//   - read: Store.Read vs findOne by _id returning the stored JSON;
//   - create: Store.Put of a new Task (current document, history entry, index keys, written so
//     that a crash leaves no half-write) vs one insertOne of the JSON with its keys;
//   - search-owner: Store.Search for one owner's first 20 Tasks vs find on the indexed key
//     array, sorted by lastUpdated, limit 20 (with the key as {k: key} and as {k: {$in: [key]}},
//     the form the store once used for a one-value key);
//   - create/with=history: the least a store that keeps history must write without
//     transactions (history entry, then current document);
//   - impl=driver-on-store-docs: read and search as hand-written queries on the store's own
//     documents, which separates the store's code and protocol from the cost of its layout.
//
// By default it runs on an in-process FerretDB (SQLite backend); set
// CALAIMFHIR_BENCH_MONGODB_URI to use an external server, e.g. FerretDB on PostgreSQL from
// scripts/ferretdb-pg.sh (mongodb://127.0.0.1:27019/):
//
//	CALAIMFHIR_BENCH_MONGODB_URI=mongodb://127.0.0.1:27019/ go test ./internal/mongostore -run '^$' -bench StoreVsDriver -benchtime 200x
func BenchmarkStoreVsDriver(b *testing.B) {
	const loaded, owners = 500, 10
	uri, run := benchDatabases(b)
	ctx := context.Background()
	tasks := make([]*resources.Resource, loaded)
	for i := range tasks {
		tasks[i] = benchTask(fmt.Sprintf("t%06d", i), fmt.Sprintf("Organization/cbo-%d", i%owners), "requested")
	}

	b.Run("impl=store", func(b *testing.B) {
		s, err := mongostore.Open(ctx, uri(run+"store"), mongostore.Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		for _, t := range tasks {
			if err := s.Put(ctx, t); err != nil {
				b.Fatal(err)
			}
		}
		b.Run("op=read", func(b *testing.B) {
			for b.Loop() {
				if _, err := s.Read(ctx, "Task", tasks[rand.IntN(loaded)].ID); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("op=create", func(b *testing.B) {
			i := 0
			for b.Loop() {
				i++
				if err := s.Put(ctx, benchTask(fmt.Sprintf("c%07d", i), "Organization/cbo-x", "requested")); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("op=search-owner", func(b *testing.B) {
			for b.Loop() {
				q := &resources.Query{Type: "Task", Count: 20, Clauses: []resources.Clause{
					{AnyKey: []string{resources.RefKey("owner", "Organization", fmt.Sprintf("cbo-%d", rand.IntN(owners)))}}}}
				page, err := s.Search(ctx, q)
				if err != nil || len(page.Resources) != 20 {
					b.Fatalf("search: %v", err)
				}
			}
		})
	})

	b.Run("impl=driver", func(b *testing.B) {
		client, err := mongo.Connect(options.Client().ApplyURI(uri(run + "driver")))
		if err != nil {
			b.Fatal(err)
		}
		defer client.Disconnect(ctx)
		coll := client.Database(run + "driver").Collection("Task")
		if _, err := coll.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: bson.D{{Key: "k", Value: 1}, {Key: "lu", Value: 1}}}); err != nil {
			b.Fatal(err)
		}
		rawDoc := func(r *resources.Resource) bson.D {
			return bson.D{{Key: "_id", Value: r.ID}, {Key: "lu", Value: r.LastUpdated}, {Key: "k", Value: r.Keys.Eq}, {Key: "j", Value: r.JSON}}
		}
		for _, t := range tasks {
			if _, err := coll.InsertOne(ctx, rawDoc(t)); err != nil {
				b.Fatal(err)
			}
		}
		b.Run("op=read", func(b *testing.B) {
			for b.Loop() {
				var d struct {
					J []byte `bson:"j"`
				}
				if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: tasks[rand.IntN(loaded)].ID}}).Decode(&d); err != nil || len(d.J) == 0 {
					b.Fatalf("findOne: %v", err)
				}
			}
		})
		b.Run("op=create", func(b *testing.B) {
			i := 0
			for b.Loop() {
				i++
				if _, err := coll.InsertOne(ctx, rawDoc(benchTask(fmt.Sprintf("c%07d", i), "Organization/cbo-x", "requested"))); err != nil {
					b.Fatal(err)
				}
			}
		})
		// A create that keeps history, as the store's does (vread and _history of version 1
		// answer from it), without transactions: the history entry and the current document,
		// one insert each, in that order (the entry is the version's commit record).
		// Its own collections, so that the searches below read as many documents as the
		// store's (which grows by one per create).
		histCur := client.Database(run + "driver").Collection("TaskH")
		hist := client.Database(run + "driver").Collection("TaskH_history")
		b.Run("op=create/with=history", func(b *testing.B) {
			i := 0
			for b.Loop() {
				i++
				t := benchTask(fmt.Sprintf("h%07d", i), "Organization/cbo-x", "requested")
				if _, err := hist.InsertOne(ctx, append(rawDoc(t), bson.E{Key: "v", Value: 1})); err != nil {
					b.Fatal(err)
				}
				if _, err := histCur.InsertOne(ctx, rawDoc(t)); err != nil {
					b.Fatal(err)
				}
			}
		})
		// The same search written as {k: key} and as {k: {$in: [key]}}: equal results, but
		// FerretDB pushes only the first down to its backend.
		for _, form := range []string{"eq", "in"} {
			b.Run("op=search-owner/filter="+form, func(b *testing.B) {
				for b.Loop() {
					key := resources.RefKey("owner", "Organization", fmt.Sprintf("cbo-%d", rand.IntN(owners)))
					filter := bson.D{{Key: "k", Value: key}}
					if form == "in" {
						filter = bson.D{{Key: "k", Value: bson.D{{Key: "$in", Value: bson.A{key}}}}}
					}
					cur, err := coll.Find(ctx, filter, options.Find().SetSort(bson.D{{Key: "lu", Value: 1}}).SetLimit(20))
					if err != nil {
						b.Fatal(err)
					}
					var docs []bson.Raw
					if err := cur.All(ctx, &docs); err != nil || len(docs) != 20 {
						b.Fatalf("find: %d docs, %v", len(docs), err)
					}
				}
			})
		}
	})

	// The driver on the store's own documents (same database, written by impl=store above):
	// the least a hand-written query must do to answer from that layout. Store minus this is
	// the store's code and protocol; this minus impl=driver is what the layout costs (the
	// search keys, value keys and sort values the store keeps beside the JSON).
	b.Run("impl=driver-on-store-docs", func(b *testing.B) {
		client, err := mongo.Connect(options.Client().ApplyURI(uri(run + "store")))
		if err != nil {
			b.Fatal(err)
		}
		defer client.Disconnect(ctx)
		coll := client.Database(run + "store").Collection("Task")
		b.Run("op=read", func(b *testing.B) {
			for b.Loop() {
				var d struct {
					J string `bson:"json"`
				}
				if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: tasks[rand.IntN(loaded)].ID}}).Decode(&d); err != nil || len(d.J) == 0 {
					b.Fatalf("findOne: %v", err)
				}
			}
		})
		b.Run("op=search-owner", func(b *testing.B) {
			for b.Loop() {
				key := resources.RefKey("owner", "Organization", fmt.Sprintf("cbo-%d", rand.IntN(owners)))
				cur, err := coll.Find(ctx, bson.D{{Key: "k", Value: key}}, options.Find().SetSort(bson.D{{Key: "lu", Value: 1}}).SetLimit(20))
				if err != nil {
					b.Fatal(err)
				}
				var docs []bson.Raw
				if err := cur.All(ctx, &docs); err != nil || len(docs) != 20 {
					b.Fatalf("find: %d docs, %v", len(docs), err)
				}
			}
		})
	})
}

// benchDatabases returns the URI of a database on the benchmark server (an external one named
// by CALAIMFHIR_BENCH_MONGODB_URI, or one in-process FerretDB started on first use) and a run
// prefix for database names. On an external server the databases run+"store" and
// run+"driver" are dropped when the benchmark ends, so that runs do not pile up (FerretDB on
// PostgreSQL keeps about 70 tables per database).
func benchDatabases(b *testing.B) (uri func(db string) string, run string) {
	var srv *ferrettest.Server
	base := os.Getenv("CALAIMFHIR_BENCH_MONGODB_URI")
	uri = func(db string) string {
		if base != "" {
			u := strings.TrimSuffix(base, "/")
			if i := strings.Index(u[len("mongodb://"):], "/"); i >= 0 {
				u = u[:len("mongodb://")+i]
			}
			return u + "/" + db
		}
		if srv == nil {
			srv = ferrettest.Start(b)
		}
		return srv.URI(db)
	}
	run = fmt.Sprintf("r%d", time.Now().UnixNano()%1e9)
	if base != "" {
		b.Cleanup(func() {
			ctx := context.Background()
			client, err := mongo.Connect(options.Client().ApplyURI(uri(run + "store")))
			if err != nil {
				return
			}
			defer client.Disconnect(ctx)
			_ = client.Database(run + "store").Drop(ctx)
			_ = client.Database(run + "driver").Drop(ctx)
			_ = client.Database(run + "same").Drop(ctx)
		})
	}
	return uri, run
}

// BenchmarkStoreVsDriverPaired is BenchmarkStoreVsDriver with the two sides interleaved: each
// iteration times one store operation and the same driver operations as there, so that both
// meet the same load on a shared machine (run after run, the separate phases of
// BenchmarkStoreVsDriver drifted by 2-3x). It reports milliseconds per operation for each side
// and their ratio (store-x); ns/op is the sum and means nothing.
//
//	CALAIMFHIR_BENCH_MONGODB_URI=mongodb://127.0.0.1:27019/ go test ./internal/mongostore -run '^$' -bench StoreVsDriverPaired -benchtime 100x
func BenchmarkStoreVsDriverPaired(b *testing.B) {
	const loaded, owners = 500, 10
	uri, run := benchDatabases(b)
	ctx := context.Background()
	s, err := mongostore.Open(ctx, uri(run+"store"), mongostore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	client, err := mongo.Connect(options.Client().ApplyURI(uri(run + "driver")))
	if err != nil {
		b.Fatal(err)
	}
	defer client.Disconnect(ctx)
	coll := client.Database(run + "driver").Collection("Task")
	// The create with history has its own collections, so that the driver's Task collection
	// grows by one document per create, like the store's.
	histCur := client.Database(run + "driver").Collection("TaskH")
	hist := client.Database(run + "driver").Collection("TaskH_history")
	storeDocs := client.Database(run + "store").Collection("Task")
	if _, err := coll.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: bson.D{{Key: "k", Value: 1}, {Key: "lu", Value: 1}}}); err != nil {
		b.Fatal(err)
	}
	rawDoc := func(r *resources.Resource) bson.D {
		return bson.D{{Key: "_id", Value: r.ID}, {Key: "lu", Value: r.LastUpdated}, {Key: "k", Value: r.Keys.Eq}, {Key: "j", Value: r.JSON}}
	}
	tasks := make([]*resources.Resource, loaded)
	for i := range tasks {
		tasks[i] = benchTask(fmt.Sprintf("t%06d", i), fmt.Sprintf("Organization/cbo-%d", i%owners), "requested")
		if err := s.Put(ctx, tasks[i]); err != nil {
			b.Fatal(err)
		}
		if _, err := coll.InsertOne(ctx, rawDoc(tasks[i])); err != nil {
			b.Fatal(err)
		}
	}
	// samewrites: the driver sending the requests that the store's CreateFresh sends (history
	// entry, index documents, current document, at the same time), with the store's own
	// documents (copied from the first Task, under new ids) into collections with the store's
	// indexes (a second store database, given its indexes by one create).
	same, err := mongostore.Open(ctx, uri(run+"same"), mongostore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer same.Close()
	if err := same.CreateFresh(ctx, benchTask("seed", "Organization/cbo-x", "requested")); err != nil {
		b.Fatal(err)
	}
	sameDB := client.Database(run + "same")
	var curTpl, histTpl bson.D
	var idxTpl []bson.D
	if err := storeDocs.FindOne(ctx, bson.D{{Key: "_id", Value: tasks[0].ID}}).Decode(&curTpl); err != nil {
		b.Fatal(err)
	}
	if err := client.Database(run+"store").Collection("Task_history").FindOne(ctx, bson.D{{Key: "_id", Value: tasks[0].ID + "/1"}}).Decode(&histTpl); err != nil {
		b.Fatal(err)
	}
	if c, err := client.Database(run+"store").Collection("Task_idx").Find(ctx, bson.D{{Key: "rid", Value: tasks[0].ID}}); err != nil || c.All(ctx, &idxTpl) != nil || len(idxTpl) == 0 {
		b.Fatalf("index documents of %s: %d, %v", tasks[0].ID, len(idxTpl), err)
	}
	withID := func(d bson.D, id string) bson.D {
		out := slices.Clone(d)
		for j := range out {
			if out[j].Key == "_id" {
				out[j].Value = id
			}
		}
		return out
	}
	find20 := func(c *mongo.Collection, key string) {
		cur, err := c.Find(ctx, bson.D{{Key: "k", Value: key}}, options.Find().SetSort(bson.D{{Key: "lu", Value: 1}}).SetLimit(20))
		if err != nil {
			b.Fatal(err)
		}
		var docs []bson.Raw
		if err := cur.All(ctx, &docs); err != nil || len(docs) != 20 {
			b.Fatalf("find: %d docs, %v", len(docs), err)
		}
	}
	// An iteration times the store's operation and each driver one on the same input, the
	// store first in every other iteration (so that neither side always meets a cold start).
	type side struct {
		name string
		fn   func(i int)
	}
	// The driver's side of both creates: one insert (the least for the same read), and a
	// create that keeps history without transactions (history entry, then the document).
	createBaselines := []side{
		{"driver", func(i int) {
			if _, err := coll.InsertOne(ctx, rawDoc(benchTask(fmt.Sprintf("c%07d", i), "Organization/cbo-x", "requested"))); err != nil {
				b.Fatal(err)
			}
		}},
		{"withhistory", func(i int) {
			t := benchTask(fmt.Sprintf("h%07d", i), "Organization/cbo-x", "requested")
			if _, err := hist.InsertOne(ctx, append(rawDoc(t), bson.E{Key: "v", Value: 1})); err != nil {
				b.Fatal(err)
			}
			if _, err := histCur.InsertOne(ctx, rawDoc(t)); err != nil {
				b.Fatal(err)
			}
		}},
	}
	ops := []struct {
		name  string
		store func(i int)
		other []side
	}{
		{
			name: "read",
			store: func(i int) {
				if _, err := s.Read(ctx, "Task", tasks[i%loaded].ID); err != nil {
					b.Fatal(err)
				}
			},
			other: []side{
				{"driver", func(i int) {
					var d struct {
						J []byte `bson:"j"`
					}
					if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: tasks[i%loaded].ID}}).Decode(&d); err != nil || len(d.J) == 0 {
						b.Fatalf("findOne: %v", err)
					}
				}},
				{"storedocs", func(i int) {
					var d struct {
						J string `bson:"json"`
					}
					if err := storeDocs.FindOne(ctx, bson.D{{Key: "_id", Value: tasks[i%loaded].ID}}).Decode(&d); err != nil || len(d.J) == 0 {
						b.Fatalf("findOne: %v", err)
					}
				}},
			},
		},
		{
			// A POST: the id is the server's (CreateFresh).
			name: "create",
			store: func(i int) {
				if err := s.CreateFresh(ctx, benchTask(fmt.Sprintf("c%07d", i), "Organization/cbo-x", "requested")); err != nil {
					b.Fatal(err)
				}
			},
			other: append(slices.Clip(createBaselines),
				side{"samewrites", func(i int) {
					id := fmt.Sprintf("s%07d", i)
					var wg sync.WaitGroup
					var errs [2]error
					wg.Add(2)
					go func() {
						defer wg.Done()
						_, errs[0] = sameDB.Collection("Task_history").InsertOne(ctx, withID(histTpl, id+"/1"))
					}()
					go func() {
						defer wg.Done()
						docs := make([]any, len(idxTpl))
						for j, d := range idxTpl {
							docs[j] = withID(d, fmt.Sprintf("%s/%d", id, j))
						}
						_, errs[1] = sameDB.Collection("Task_idx").InsertMany(ctx, docs)
					}()
					_, err := sameDB.Collection("Task").InsertOne(ctx, withID(curTpl, id))
					wg.Wait()
					if err := errors.Join(err, errs[0], errs[1]); err != nil {
						b.Fatal(err)
					}
				}},
			),
		},
		{
			// A PUT to a new id (update as create): Put, whose history entry makes one
			// writer the owner of version 1.
			name: "create-put",
			store: func(i int) {
				if err := s.Put(ctx, benchTask(fmt.Sprintf("u%07d", i), "Organization/cbo-x", "requested")); err != nil {
					b.Fatal(err)
				}
			},
			other: createBaselines,
		},
		{
			name: "search-owner",
			store: func(i int) {
				q := &resources.Query{Type: "Task", Count: 20, Clauses: []resources.Clause{
					{AnyKey: []string{resources.RefKey("owner", "Organization", fmt.Sprintf("cbo-%d", i%owners))}}}}
				page, err := s.Search(ctx, q)
				if err != nil || len(page.Resources) != 20 {
					b.Fatalf("search: %v", err)
				}
			},
			other: []side{
				{"driver", func(i int) { find20(coll, resources.RefKey("owner", "Organization", fmt.Sprintf("cbo-%d", i%owners))) }},
				{"storedocs", func(i int) {
					find20(storeDocs, resources.RefKey("owner", "Organization", fmt.Sprintf("cbo-%d", i%owners)))
				}},
			},
		},
	}
	seq := 0 // ids of created resources, fresh across -count runs
	for _, op := range ops {
		b.Run("op="+op.name, func(b *testing.B) {
			var storeT time.Duration
			otherT := make([]time.Duration, len(op.other))
			i := 0
			for b.Loop() {
				i++
				seq++
				n := rand.IntN(1 << 30)
				if strings.HasPrefix(op.name, "create") {
					n = seq
				}
				timeStore := func() {
					t0 := time.Now()
					op.store(n)
					storeT += time.Since(t0)
				}
				if i%2 == 1 { // the store goes first in every other iteration
					timeStore()
				}
				for j, o := range op.other {
					t0 := time.Now()
					o.fn(n)
					otherT[j] += time.Since(t0)
				}
				if i%2 == 0 {
					timeStore()
				}
			}
			ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(i) }
			b.ReportMetric(ms(storeT), "store-ms/op")
			for j, o := range op.other {
				b.ReportMetric(ms(otherT[j]), o.name+"-ms/op")
			}
			b.ReportMetric(float64(storeT)/float64(otherT[0]), "store-x")
		})
	}
}
