package ferrettest

import (
	"context"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

func TestStopStartKeepsDataAndAddress(t *testing.T) {
	s := Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client, err := mongo.Connect(options.Client().ApplyURI(s.URI("ferrettest")))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Disconnect(context.Background())
	coll := client.Database("ferrettest").Collection("things")
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "a"}, {Key: "n", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	addr := s.Addr()

	s.Stop()
	start := time.Now()
	if err := client.Ping(ctx, nil); err == nil {
		t.Fatal("ping succeeded on a stopped server")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("ping on a stopped server took %v", d)
	}
	s.Stop() // idempotent

	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if s.Addr() != addr {
		t.Fatalf("address changed from %s to %s", addr, s.Addr())
	}
	// The old client reconnects to the same address and sees the data written before.
	var got struct {
		N int `bson:"n"`
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		err = coll.FindOne(ctx, bson.D{{Key: "_id", Value: "a"}}).Decode(&got)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil || got.N != 1 {
		t.Fatalf("after restart: n=%d err=%v", got.N, err)
	}
}

func TestServersAreIndependent(t *testing.T) {
	a, b := Start(t), Start(t)
	if a.Addr() == b.Addr() || a.Dir() == b.Dir() {
		t.Fatalf("two servers share %s / %s", a.Addr(), a.Dir())
	}
	b.Stop()
	client, err := mongo.Connect(options.Client().ApplyURI(a.URI("x")))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Disconnect(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := client.Ping(ctx, nil); err != nil {
		t.Fatalf("stopping one server broke the other: %v", err)
	}
}
