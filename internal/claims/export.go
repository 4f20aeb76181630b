package claims

import (
	"encoding/csv"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ResponseView is what the exports read from a ClaimResponse: whether the claim was
// accepted, and which items were rejected.
type ResponseView struct {
	ID      string `json:"id"`
	Outcome string `json:"outcome"`
	Request *struct {
		Reference string `json:"reference"`
	} `json:"request"`
	Meta *struct {
		LastUpdated string `json:"lastUpdated"`
	} `json:"meta"`
	Error []struct {
		ItemSequence int `json:"itemSequence"`
	} `json:"error"`
}

// Accepted reports whether the claim was accepted (complete or partial) and item seq with
// it.
func (v *ResponseView) Accepted(seq int) bool {
	if v == nil || (v.Outcome != "complete" && v.Outcome != "partial") {
		return false
	}
	for _, e := range v.Error {
		if e.ItemSequence == seq {
			return false
		}
	}
	return true
}

// Person is a named individual with an identifier (NPI or member id).
type Person struct {
	Family, Given string
	ID            string
}

// PersonOf resolves a careTeam provider to a Person (nil when it cannot be).
type PersonOf func(ref *Reference) *Person

// InvoiceLine is one line of the CSV invoice: one accepted claim item.
type InvoiceLine struct {
	ClaimID         string
	Item            int
	MemberCIN       string
	MemberFamily    string
	MemberGiven     string
	MemberBirthDate string
	ServiceDate     string
	Code            string
	Modifiers       []string
	Units           float64
	Diagnoses       []string
	RenderingNPI    string
	SupervisingNPI  string
	Amount          float64
}

// InvoiceHeader is the CSV invoice's header row.
var InvoiceHeader = []string{"claim_id", "item", "member_cin", "member_family", "member_given", "member_birth_date",
	"service_date", "code", "modifiers", "units", "diagnoses", "rendering_npi", "supervising_npi", "amount"}

// MemberID is the member's Medi-Cal CIN: from the Patient, else the Coverage.
func MemberID(p *Patient, cov *Coverage) string {
	if p != nil {
		if cin := CIN(p.Identifier); cin != "" {
			return cin
		}
	}
	if cov != nil {
		if cin := CIN(cov.Identifier); cin != "" {
			return cin
		}
		return cov.SubscriberID
	}
	return ""
}

// InvoiceLines returns the lines of one claim whose accepted items fall in [from, to).
func InvoiceLines(c *Claim, cr *ResponseView, p *Patient, cov *Coverage, personOf PersonOf, from, to time.Time) []InvoiceLine {
	var out []InvoiceLine
	if !cr.Accepted(0) {
		return nil
	}
	dx := c.DiagnosisCodes()
	family, given := "", ""
	if p != nil && len(p.Name) > 0 {
		family, given = p.Name[0].Family, strings.Join(p.Name[0].Given, " ")
	}
	birth := ""
	if p != nil {
		birth = p.BirthDate
	}
	rendering, supervising := npiOfRole(c, "primary", personOf), npiOfRole(c, "supervisor", personOf)
	id := ""
	if len(c.Identifier) > 0 {
		id = c.Identifier[0].Value
	}
	for i := range c.Item {
		it := &c.Item[i]
		d := it.Date()
		if d.IsZero() || d.Before(from) || !d.Before(to) || !cr.Accepted(it.Sequence) {
			continue
		}
		_, code := it.Code()
		var codes []string
		for _, s := range it.DiagnosisSequence {
			if dx[s] != "" {
				codes = append(codes, dx[s])
			}
		}
		out = append(out, InvoiceLine{ClaimID: id, Item: it.Sequence, MemberCIN: MemberID(p, cov), MemberFamily: family,
			MemberGiven: given, MemberBirthDate: birth, ServiceDate: it.ServicedDate, Code: code, Modifiers: it.Modifiers(),
			Units: it.Units(), Diagnoses: codes, RenderingNPI: rendering, SupervisingNPI: supervising, Amount: it.Amount()})
	}
	return out
}

func npiOfRole(c *Claim, role string, personOf PersonOf) string {
	ref := c.CareTeamRole(role)
	if ref == nil {
		return ""
	}
	if ref.Identifier != nil && ref.Identifier.System == NPISystem {
		return ref.Identifier.Value
	}
	if personOf != nil {
		if p := personOf(ref); p != nil {
			return p.ID
		}
	}
	return ""
}

// SortInvoice orders lines by service date, claim id and item.
func SortInvoice(lines []InvoiceLine) {
	slices.SortStableFunc(lines, func(a, b InvoiceLine) int {
		if c := strings.Compare(a.ServiceDate, b.ServiceDate); c != 0 {
			return c
		}
		if c := strings.Compare(a.ClaimID, b.ClaimID); c != 0 {
			return c
		}
		return a.Item - b.Item
	})
}

// WriteInvoice writes the CSV invoice (RFC 4180, header row first). Text cells that a
// spreadsheet would run as a formula are prefixed with a quote.
func WriteInvoice(w io.Writer, lines []InvoiceLine) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(InvoiceHeader); err != nil {
		return err
	}
	total := 0.0
	for _, l := range lines {
		total += l.Amount
		row := []string{l.ClaimID, strconv.Itoa(l.Item), l.MemberCIN, l.MemberFamily, l.MemberGiven, l.MemberBirthDate,
			l.ServiceDate, l.Code, strings.Join(l.Modifiers, ":"), num(l.Units), strings.Join(l.Diagnoses, " "),
			l.RenderingNPI, l.SupervisingNPI, money(l.Amount)}
		for i, v := range row {
			row[i] = safeCell(v)
		}
		if err := cw.Write(row); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

func safeCell(v string) string {
	if v != "" && strings.ContainsRune("=+-@\t\r", rune(v[0])) {
		return "'" + v
	}
	return v
}

func num(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

func money(f float64) string { return strconv.FormatFloat(f, 'f', 2, 64) }
