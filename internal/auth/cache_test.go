package auth

import (
	"crypto/sha256"
	"testing"
	"time"
)

func TestVerifiedCache_RespectsExpiryAndCopies(t *testing.T) {
	var c verified
	now := time.Now()
	key := sha256.Sum256([]byte("token"))
	c.put(key, &Caller{Subject: "s", Scopes: []Scope{{ResourceType: "Task"}}}, now.Add(time.Minute), now)
	got, ok := c.get(key, now)
	if !ok || got.Subject != "s" {
		t.Fatalf("fresh entry: %v %v", got, ok)
	}
	got.Scopes[0].ResourceType = "Patient" // callers cannot change what later requests see
	if again, _ := c.get(key, now); again.Scopes[0].ResourceType != "Task" {
		t.Fatal("the cached caller was modified through a returned copy")
	}
	if _, ok := c.get(key, now.Add(2*time.Minute)); ok {
		t.Fatal("an entry outlived the token's exp")
	}
	c.put(key, &Caller{}, now.Add(time.Hour), now)
	if _, ok := c.get(key, now.Add(cacheTTL+time.Second)); ok {
		t.Fatal("an entry outlived cacheTTL")
	}
	for i := 0; i < cacheEntries+10; i++ {
		c.put(sha256.Sum256([]byte{byte(i), byte(i >> 8)}), &Caller{}, now.Add(time.Hour), now)
	}
	if len(c.entries) > cacheEntries {
		t.Fatalf("%d entries, bound %d", len(c.entries), cacheEntries)
	}
}
