package claims_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/calaimfhir/calaimfhir/internal/claims"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/claims")

// golden compares got with testdata/claims/name (rewriting it with -update).
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := testdata(name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file:\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

// exportFixture checks the two fixture claims (the CHW one with item 2 made invalid, so the
// exports must leave it out) and returns what the exports read.
type exported struct {
	claim *claims.Claim
	cr    *claims.ResponseView
}

func exportFixtures(t *testing.T) (*memLookup, []exported) {
	lk := newMemLookup(t)
	chw := claimDoc(t, "claim-chw.json")
	setCode(chw, 1, "http://www.ama-assn.org/go/cpt", "99213")
	cs := claimDoc(t, "claim-cs.json")
	var out []exported
	for i, r := range check(t, lk, body(t, chw), body(t, cs)) {
		if r.Outcome == "error" {
			t.Fatalf("fixture %d rejected: %v", i, codes(r))
		}
		cr := claims.Response(r, time.Now())
		b, _ := json.Marshal(cr)
		var v claims.ResponseView
		json.Unmarshal(b, &v)
		out = append(out, exported{r.Claim, &v})
	}
	return lk, out
}

func decode[T any](t *testing.T, lk *memLookup, ref string) *T {
	var v T
	if err := json.Unmarshal(lk.res[ref], &v); err != nil {
		t.Fatalf("%s: %v", ref, err)
	}
	return &v
}

func personOf(t *testing.T, lk *memLookup) claims.PersonOf {
	return func(ref *claims.Reference) *claims.Person {
		raw, ok := lk.res[ref.Reference]
		if !ok {
			return nil
		}
		var p claims.Practitioner
		json.Unmarshal(raw, &p)
		return &claims.Person{Family: p.Name[0].Family, Given: p.Name[0].Given[0], ID: claims.NPI(p.Identifier)}
	}
}

func TestInvoice_Golden(t *testing.T) {
	lk, fx := exportFixtures(t)
	p := decode[claims.Patient](t, lk, "Patient/member-1")
	cov := decode[claims.Coverage](t, lk, "Coverage/cov-1")
	var lines []claims.InvoiceLine
	from := time.Date(2025, 2, 1, 0, 0, 0, 0, time.UTC)
	for _, e := range fx {
		lines = append(lines, claims.InvoiceLines(e.claim, e.cr, p, cov, personOf(t, lk), from, from.AddDate(0, 2, 0))...)
	}
	claims.SortInvoice(lines)
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2 (the rejected item is left out)", len(lines))
	}
	var buf bytes.Buffer
	if err := claims.WriteInvoice(&buf, lines); err != nil {
		t.Fatal(err)
	}
	golden(t, "invoice.csv.golden", buf.Bytes())

	// February only: the March claim is left out.
	if got := claims.InvoiceLines(fx[1].claim, fx[1].cr, p, cov, nil, from, from.AddDate(0, 1, 0)); len(got) != 0 {
		t.Errorf("March line in the February invoice: %v", got)
	}
}

func TestInvoice_FormulaCellsAreNeutralized(t *testing.T) {
	var buf bytes.Buffer
	claims.WriteInvoice(&buf, []claims.InvoiceLine{{ClaimID: "=HYPERLINK(\"x\")", MemberFamily: "+1", MemberGiven: "@SUM"}})
	if got := buf.String(); !strings.Contains(got, `"'=HYPERLINK(""x"")"`) || !strings.Contains(got, ",'+1,'@SUM,") {
		t.Errorf("formula cells kept: %s", got)
	}
}

func build837(t *testing.T) claims.Interchange {
	lk, fx := exportFixtures(t)
	p := decode[claims.Patient](t, lk, "Patient/member-1")
	cov := decode[claims.Coverage](t, lk, "Coverage/cov-1")
	billing := decode[claims.Organization](t, lk, "Organization/cbo-1")
	payer := decode[claims.Organization](t, lk, "Organization/plan-1")
	ic := claims.Interchange{Control: 42, At: time.Date(2025, 4, 1, 14, 30, 0, 0, time.UTC)}
	for _, e := range fx {
		c, err := claims.Build837(e.claim, e.cr, p, cov, billing, payer, personOf(t, lk))
		if err != nil {
			t.Fatal(err)
		}
		ic.Claims = append(ic.Claims, c)
	}
	ic.Sender, ic.Receiver = ic.Claims[0].Billing, ic.Claims[0].Payer
	return ic
}

func Test837_GoldenAndStructure(t *testing.T) {
	ic := build837(t)
	var buf bytes.Buffer
	if err := claims.Write837(&buf, ic); err != nil {
		t.Fatal(err)
	}
	if err := claims.Verify837(buf.String()); err != nil {
		t.Fatalf("structure: %v\n%s", err, buf.String())
	}
	golden(t, "claims.837p.golden", buf.Bytes())
	text := buf.String()
	for _, want := range []string{
		"CLM*VCHW-2025-0001*41.00***12:B:1*Y*A*Y*Y~", // item 2 was rejected: only item 1 counts
		"REF*G1*PA-7781~",
		"HI*ABK:Z5941*ABF:Z560~",
		"SV1*HC:98960:U2*41.00*UN*2***1:2~",
		"DTP*472*D8*20250218~",
		"NM1*DQ*1*NGUYEN*LINH****XX*1987654328~",
		"NM1*85*2*VALLEY COMMUNITY HEALTH WORKERS*****XX*1234567893~",
		"NM1*IL*1*GARCIA*MARIA****MI*91234567A~",
		"NM1*PR*2*GOLDEN STATE HEALTH PLAN*****PI*GSHP01~",
		"SV1*HC:H0043:U6*120.00*UN*4***1~",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("missing %s", want)
		}
	}
	if strings.Count(text, "HL*") != 2 {
		t.Errorf("want one billing-provider and one subscriber HL for two claims of one member:\n%s", text)
	}
}

func TestVerify837_CatchesBrokenFiles(t *testing.T) {
	var buf bytes.Buffer
	if err := claims.Write837(&buf, build837(t)); err != nil {
		t.Fatal(err)
	}
	good := buf.String()
	for name, broken := range map[string]string{
		"segment count":     strings.Replace(good, "SE*", "SE*9", 1),
		"group control":     strings.Replace(good, "GE*1*42", "GE*1*43", 1),
		"interchange count": strings.Replace(good, "IEA*1*", "IEA*2*", 1),
		"claim total":       strings.Replace(good, "CLM*VCHW-2025-0001*41.00", "CLM*VCHW-2025-0001*42.00", 1),
		"line without date": strings.Replace(good, "DTP*472*D8*20250218~\n", "", 1),
		"short ISA":         strings.Replace(good, "*ZZ*", "*ZZ", 1),
	} {
		if err := claims.Verify837(broken); err == nil {
			t.Errorf("%s: a broken file passed", name)
		}
	}
}

func TestWrite837_RejectsBadInput(t *testing.T) {
	ic := build837(t)
	ic.Control = 0
	if err := claims.Write837(&bytes.Buffer{}, ic); err == nil {
		t.Error("control number 0 accepted")
	}
	ic = build837(t)
	ic.Claims = nil
	if err := claims.Write837(&bytes.Buffer{}, ic); err == nil {
		t.Error("empty interchange accepted")
	}
	// Separators in data never break the structure.
	ic = build837(t)
	ic.Claims[0].Subscriber.Family = "O*Brien~IEA:x^"
	var buf bytes.Buffer
	if err := claims.Write837(&buf, ic); err != nil {
		t.Fatal(err)
	}
	if err := claims.Verify837(buf.String()); err != nil || !strings.Contains(buf.String(), "NM1*IL*1*O BRIEN IEA X*MARIA") {
		t.Errorf("separators in a name: %v\n%s", err, buf.String())
	}
}

func TestBuild837_RejectedClaim(t *testing.T) {
	lk := newMemLookup(t)
	d := claimDoc(t, "claim-chw.json")
	delete(d, "priority")
	r := check(t, lk, body(t, d))[0]
	b, _ := json.Marshal(claims.Response(r, time.Now()))
	var v claims.ResponseView
	json.Unmarshal(b, &v)
	if _, err := claims.Build837(r.Claim, &v, nil, nil, nil, nil, nil); err == nil {
		t.Error("a rejected claim was exported")
	}
}
