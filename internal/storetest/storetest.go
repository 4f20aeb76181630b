// Package storetest is the store conformance suite: the same test functions run against every
// resources.Store implementation (the embedded SQLite store and the MongoDB store on FerretDB).
// A test here may not special-case a store; a store that needs one is wrong.
package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/calaimfhir/calaimfhir/resources"
)

// Harness gives the suite access to one store implementation.
type Harness struct {
	Name string
	// New returns a fresh, empty store location (a directory, a database name). Open opens a
	// store there; opening the same location again (after Close) must see the same data.
	New  func(t testing.TB) (location string)
	Open func(t testing.TB, location string) resources.Store
	// Outage makes the database behind an open store unreachable until the returned restore
	// function is called (FerretDB stopped; the SQLite file locked by another process).
	Outage func(t testing.TB, location string) (restore func())
}

// OpenFresh opens a store at a new location and closes it when the test ends.
func (h Harness) OpenFresh(t testing.TB) (resources.Store, string) {
	t.Helper()
	loc := h.New(t)
	s := h.Open(t, loc)
	t.Cleanup(func() { s.Close() })
	return s, loc
}

// Run runs every conformance test against h.
func Run(t *testing.T, h Harness) {
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, h) })
	}
}

type test struct {
	name string
	fn   func(t *testing.T, h Harness)
}

// tests is filled by the init functions of the suite's files.
var tests []test

func register(name string, fn func(t *testing.T, h Harness)) {
	tests = append(tests, test{name, fn})
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}
