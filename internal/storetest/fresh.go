package storetest

import (
	"bytes"
	"testing"

	"github.com/calaimfhir/calaimfhir/resources"
)

func init() {
	// A resource stored by CreateFresh is indistinguishable from one stored by Put: read,
	// vread, history, equality and value searches, and its next version by Put.
	register("CreateFresh_LikePut", func(t *testing.T, h Harness) {
		s, _ := h.OpenFresh(t)
		fc := implements[resources.FreshCreator](t, s)
		id := resources.NewID()
		body := `{"name":[{"family":"Okafor","given":["Ada"]}],"birthDate":"1961-04-02","identifier":[{"system":"urn:cin","value":"91234567A"}]}`
		if err := fc.CreateFresh(ctx(t), fromJSON(t, "Patient", id, 1, body)); err != nil {
			t.Fatal(err)
		}
		if r, err := s.Read(ctx(t), "Patient", id); err != nil || r.VersionID != 1 {
			t.Fatalf("read: %v, %+v", err, r)
		}
		if r, err := s.VRead(ctx(t), "Patient", id, 1); err != nil || r.VersionID != 1 {
			t.Fatalf("vread 1: %v, %+v", err, r)
		}
		expect(t, s, "Patient", map[string][]string{
			"identifier=urn:cin|91234567A": {id},
			"family=okaf":                  {id},
			"birthdate=1961-04":            {id},
			"birthdate=1962":               nil,
		})
		v2 := fromJSON(t, "Patient", id, 2, `{"name":[{"family":"Okafor-Reyes"}],"birthDate":"1961-04-02"}`)
		mustPut(t, s, v2)
		if r, err := s.VRead(ctx(t), "Patient", id, 1); err != nil || r.VersionID != 1 {
			t.Fatalf("vread 1 after the update: %v, %+v", err, r)
		}
		page, err := s.History(ctx(t), &resources.HistoryQuery{Type: "Patient", ID: id, Count: 10})
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Resources) != 2 || page.Resources[0].VersionID != 2 || page.Resources[1].VersionID != 1 {
			t.Fatalf("history: %d versions", len(page.Resources))
		}
		expect(t, s, "Patient", map[string][]string{
			"identifier=urn:cin|91234567A": nil,
			"family=okafor-":               {id},
			"birthdate=1961-04":            {id},
		})
	})

	// An id that exists already (which NewID never repeats, so only a store's own retry could
	// meet one) fails as a conflict and leaves the stored resource exactly as it was.
	register("CreateFresh_ExistingIDIsAConflictAndChangesNothing", func(t *testing.T, h Harness) {
		s, _ := h.OpenFresh(t)
		fc := implements[resources.FreshCreator](t, s)
		id := resources.NewID()
		mustPut(t, s, fromJSON(t, "Patient", id, 1, `{"name":[{"family":"First"}],"birthDate":"1970-01-01"}`))
		err := fc.CreateFresh(ctx(t), fromJSON(t, "Patient", id, 1, `{"name":[{"family":"Second"}],"birthDate":"1980-01-01"}`))
		if !resources.IsKind(err, resources.KindConflict) {
			t.Fatalf("got %v, want a conflict", err)
		}
		r, err := s.Read(ctx(t), "Patient", id)
		if err != nil || r.VersionID != 1 || !bytes.Contains(r.JSON, []byte("First")) {
			t.Fatalf("read: %v, %s", err, r.JSON)
		}
		if r, err := s.VRead(ctx(t), "Patient", id, 1); err != nil || !bytes.Contains(r.JSON, []byte("First")) {
			t.Fatalf("vread: %v", err)
		}
		expect(t, s, "Patient", map[string][]string{
			"family=first":   {id},
			"family=second":  nil,
			"birthdate=1970": {id},
			"birthdate=1980": nil,
		})
	})
}
