package claims

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
)

// X12 837P (ASC X12N 005010X222A1) for the claims a CBO sends to a plan. Mapping (domain
// brief): CLM01 ← Claim.identifier, CLM02 ← total of the accepted lines, HI ← diagnosis
// (without the dot), SV101 ← productOrService + modifiers, SV104 ← quantity, SV107 ←
// diagnosisSequence, DTP*472 ← servicedDate, REF*G1 ← insurance.preAuthRef.

// Party is an organization in the file (submitter, receiver, billing provider, payer).
type Party struct {
	Name    string
	ID      string // NPI for providers, payer id for payers, ETIN/NPI for the submitter
	TaxID   string
	Phone   string
	Address *Address
}

// Member is the subscriber (the member is always the subscriber on Medi-Cal).
type Member struct {
	Family, Given string
	ID            string // CIN
	BirthDate     string // YYYY-MM-DD
	Gender        string // FHIR gender
	Address       *Address
}

// Line837 is one service line (loop 2400).
type Line837 struct {
	Code        string
	Modifiers   []string
	Amount      float64
	Units       float64
	Pointers    []int // into the claim's diagnoses, 1-based
	Date        time.Time
	Supervising *Person
}

// Claim837 is one claim (loop 2300) with its billing provider, subscriber and payer.
type Claim837 struct {
	Billing    Party
	Subscriber Member
	Payer      Party
	ID         string
	POS        string
	PreAuth    string
	Diagnoses  []string // dotted ICD-10-CM
	Rendering  *Person
	Lines      []Line837
}

// Total is the sum of the line charges.
func (c *Claim837) Total() float64 {
	t := 0.0
	for _, l := range c.Lines {
		t += l.Amount
	}
	return t
}

// Interchange is one 837P file: ISA/GS/ST around the claims.
type Interchange struct {
	Sender, Receiver Party
	Control          int // interchange, group and BHT reference number (1..999999999)
	At               time.Time
	Production       bool
	Claims           []Claim837
}

// Build837 maps a stored claim and what it refers to into a Claim837 with the accepted items
// only. It fails when something the 837P requires is missing.
func Build837(c *Claim, cr *ResponseView, p *Patient, cov *Coverage, billing, payer *Organization, personOf PersonOf) (Claim837, error) {
	out := Claim837{}
	if !cr.Accepted(0) {
		return out, fmt.Errorf("the claim was not accepted")
	}
	if len(c.Identifier) == 0 || c.Identifier[0].Value == "" {
		return out, fmt.Errorf("Claim.identifier is missing")
	}
	out.ID = c.Identifier[0].Value
	if billing == nil || NPI(billing.Identifier) == "" {
		return out, fmt.Errorf("the billing provider has no NPI")
	}
	out.Billing = Party{Name: billing.Name, ID: NPI(billing.Identifier), TaxID: taxID(billing.Identifier), Phone: phone(billing)}
	if len(billing.Address) > 0 {
		out.Billing.Address = &billing.Address[0]
	}
	if p == nil {
		return out, fmt.Errorf("the patient is not available")
	}
	out.Subscriber = Member{ID: MemberID(p, cov), BirthDate: p.BirthDate, Gender: p.Gender}
	if len(p.Name) > 0 {
		out.Subscriber.Family, out.Subscriber.Given = p.Name[0].Family, strings.Join(p.Name[0].Given, " ")
	}
	if len(p.Address) > 0 {
		out.Subscriber.Address = &p.Address[0]
	}
	if out.Subscriber.ID == "" {
		return out, fmt.Errorf("the member has no Medi-Cal CIN (Patient.identifier or Coverage)")
	}
	if payer != nil {
		out.Payer = Party{Name: payer.Name, ID: payerID(payer)}
	} else {
		out.Payer = Party{Name: "MEDI-CAL MANAGED CARE PLAN", ID: "MEDI-CAL"}
	}
	if _, pre := c.FocalCoverage(); len(pre) > 0 {
		out.PreAuth = pre[0]
	}
	// Diagnoses in sequence order; pointers are positions in that order.
	type dx struct {
		seq  int
		code string
	}
	var dxs []dx
	for _, d := range c.Diagnosis {
		dxs = append(dxs, dx{d.Sequence, d.DiagnosisCodeableConcept.Code(ICD10CM)})
	}
	slices.SortFunc(dxs, func(a, b dx) int { return a.seq - b.seq })
	pos := map[int]int{}
	for i, d := range dxs {
		out.Diagnoses = append(out.Diagnoses, d.code)
		pos[d.seq] = i + 1
	}
	if r := c.CareTeamRole("primary"); r != nil {
		out.Rendering = personFor(r, personOf)
	}
	var sup *Person
	if r := c.CareTeamRole("supervisor"); r != nil {
		sup = personFor(r, personOf)
	}
	for i := range c.Item {
		it := &c.Item[i]
		if !cr.Accepted(it.Sequence) {
			continue
		}
		_, code := it.Code()
		l := Line837{Code: code, Modifiers: it.Modifiers(), Amount: it.Amount(), Units: it.Units(), Date: it.Date(), Supervising: sup}
		for _, s := range it.DiagnosisSequence {
			if pos[s] > 0 {
				l.Pointers = append(l.Pointers, pos[s])
			}
		}
		if out.POS == "" && it.LocationCodeableConcept != nil && len(it.LocationCodeableConcept.Coding) > 0 {
			out.POS = it.LocationCodeableConcept.Coding[0].Code
		}
		out.Lines = append(out.Lines, l)
	}
	if len(out.Lines) == 0 {
		return out, fmt.Errorf("the claim has no accepted items")
	}
	if out.POS == "" {
		return out, fmt.Errorf("no item gives a place of service")
	}
	return out, nil
}

func personFor(r *Reference, personOf PersonOf) *Person {
	if personOf != nil {
		if p := personOf(r); p != nil && p.ID != "" {
			return p
		}
	}
	if r.Identifier != nil && r.Identifier.System == NPISystem {
		p := &Person{ID: r.Identifier.Value}
		p.Family, p.Given, _ = strings.Cut(r.Display, ", ")
		return p
	}
	return nil
}

// EINSystem is the US employer identification number (tax id).
const EINSystem = "urn:oid:2.16.840.1.113883.4.4"

func taxID(ids []Identifier) string {
	for _, id := range ids {
		if id.System == EINSystem {
			return strings.ReplaceAll(id.Value, "-", "")
		}
	}
	return ""
}

func payerID(o *Organization) string {
	for _, id := range o.Identifier {
		if id.System != NPISystem && id.Value != "" {
			return id.Value
		}
	}
	return "MEDI-CAL"
}

func phone(o *Organization) string {
	for _, t := range o.Telecom {
		if t.System == "phone" {
			return digits(t.Value)
		}
	}
	return ""
}

func digits(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, s)
}

// x12Text makes a value safe for an element: no separators, upper case, trimmed.
func x12Text(s string) string {
	s = strings.Map(func(r rune) rune {
		switch r {
		case '*', '~', ':', '^', '\n', '\r':
			return ' '
		}
		if r < 0x20 || r > 0x7e {
			return ' '
		}
		return r
	}, s)
	return strings.ToUpper(strings.Join(strings.Fields(s), " "))
}

func pad(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s + strings.Repeat(" ", n-len(s))
}

// Write837 writes the interchange: one ISA/GS/ST, a billing-provider HL per provider, a
// subscriber HL per member under it, their claims and lines; segments end with "~" and a
// line break.
func Write837(w io.Writer, ic Interchange) error {
	if ic.Control < 1 || ic.Control > 999999999 {
		return fmt.Errorf("the control number must be 1..999999999")
	}
	if len(ic.Claims) == 0 {
		return fmt.Errorf("no claims to write")
	}
	var segs []string
	seg := func(elems ...string) {
		for len(elems) > 1 && elems[len(elems)-1] == "" {
			elems = elems[:len(elems)-1] // trailing empty elements are dropped
		}
		segs = append(segs, strings.Join(elems, "*"))
	}
	at := ic.At.UTC()
	ctrl := strconv.Itoa(ic.Control)
	usage := "T"
	if ic.Production {
		usage = "P"
	}
	sender, receiver := x12Text(ic.Sender.ID), x12Text(ic.Receiver.ID)
	isa := strings.Join([]string{"ISA", "00", pad("", 10), "00", pad("", 10), "ZZ", pad(sender, 15), "ZZ", pad(receiver, 15),
		at.Format("060102"), at.Format("1504"), "^", "00501", fmt.Sprintf("%09d", ic.Control), "0", usage, ":"}, "*")
	seg("GS", "HC", sender, receiver, at.Format("20060102"), at.Format("1504"), ctrl, "X", "005010X222A1")
	stStart := len(segs)
	seg("ST", "837", "0001", "005010X222A1")
	seg("BHT", "0019", "00", ctrl, at.Format("20060102"), at.Format("1504"), "CH")
	seg("NM1", "41", "2", x12Text(ic.Sender.Name), "", "", "", "", "46", sender)
	if ic.Sender.Phone != "" {
		seg("PER", "IC", x12Text(ic.Sender.Name), "TE", ic.Sender.Phone)
	}
	seg("NM1", "40", "2", x12Text(ic.Receiver.Name), "", "", "", "", "46", receiver)

	// Group claims: billing provider, then subscriber, in order of first appearance.
	hl := 0
	var providers []string
	byProvider := map[string][]int{}
	for i, c := range ic.Claims {
		if _, ok := byProvider[c.Billing.ID]; !ok {
			providers = append(providers, c.Billing.ID)
		}
		byProvider[c.Billing.ID] = append(byProvider[c.Billing.ID], i)
	}
	for _, npi := range providers {
		idx := byProvider[npi]
		bp := ic.Claims[idx[0]].Billing
		hl++
		parent := strconv.Itoa(hl)
		seg("HL", parent, "", "20", "1")
		seg("NM1", "85", "2", x12Text(bp.Name), "", "", "", "", "XX", bp.ID)
		if bp.Address != nil {
			seg("N3", x12Text(strings.Join(bp.Address.Line, " ")))
			seg("N4", x12Text(bp.Address.City), x12Text(bp.Address.State), digits(bp.Address.PostalCode))
		}
		if bp.TaxID != "" {
			seg("REF", "EI", bp.TaxID)
		}
		var members []string
		byMember := map[string][]int{}
		for _, i := range idx {
			m := ic.Claims[i].Subscriber.ID
			if _, ok := byMember[m]; !ok {
				members = append(members, m)
			}
			byMember[m] = append(byMember[m], i)
		}
		for _, m := range members {
			first := ic.Claims[byMember[m][0]]
			sub := first.Subscriber
			hl++
			seg("HL", strconv.Itoa(hl), parent, "22", "0")
			seg("SBR", "P", "18", "", "", "", "", "", "", "MC")
			seg("NM1", "IL", "1", x12Text(sub.Family), x12Text(sub.Given), "", "", "", "MI", x12Text(sub.ID))
			if sub.Address != nil {
				seg("N3", x12Text(strings.Join(sub.Address.Line, " ")))
				seg("N4", x12Text(sub.Address.City), x12Text(sub.Address.State), digits(sub.Address.PostalCode))
			}
			if sub.BirthDate != "" {
				seg("DMG", "D8", strings.ReplaceAll(sub.BirthDate, "-", ""), genderCode(sub.Gender))
			}
			seg("NM1", "PR", "2", x12Text(first.Payer.Name), "", "", "", "", "PI", x12Text(first.Payer.ID))
			for _, i := range byMember[m] {
				writeClaim(seg, &ic.Claims[i])
			}
		}
	}
	seg("SE", strconv.Itoa(len(segs)-stStart+1), "0001")
	seg("GE", "1", ctrl)
	seg("IEA", "1", fmt.Sprintf("%09d", ic.Control))
	var b strings.Builder
	b.WriteString(isa + "~\n")
	for _, s := range segs {
		b.WriteString(s)
		b.WriteString("~\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func writeClaim(seg func(...string), c *Claim837) {
	seg("CLM", x12Text(c.ID), money(c.Total()), "", "", c.POS+":B:1", "Y", "A", "Y", "Y")
	if c.PreAuth != "" {
		seg("REF", "G1", x12Text(c.PreAuth))
	}
	hi := []string{"HI"}
	for i, d := range c.Diagnoses {
		q := "ABF"
		if i == 0 {
			q = "ABK"
		}
		hi = append(hi, q+":"+strings.ReplaceAll(d, ".", ""))
	}
	seg(hi...)
	if c.Rendering != nil {
		seg("NM1", "82", "1", x12Text(c.Rendering.Family), x12Text(c.Rendering.Given), "", "", "", "XX", c.Rendering.ID)
	}
	for n, l := range c.Lines {
		seg("LX", strconv.Itoa(n+1))
		proc := "HC:" + x12Text(l.Code)
		for _, m := range l.Modifiers {
			proc += ":" + x12Text(m)
		}
		ptrs := make([]string, len(l.Pointers))
		for i, p := range l.Pointers {
			ptrs[i] = strconv.Itoa(p)
		}
		seg("SV1", proc, money(l.Amount), "UN", num(l.Units), "", "", strings.Join(ptrs, ":"))
		seg("DTP", "472", "D8", l.Date.Format("20060102"))
		if l.Supervising != nil {
			seg("NM1", "DQ", "1", x12Text(l.Supervising.Family), x12Text(l.Supervising.Given), "", "", "", "XX", l.Supervising.ID)
		}
	}
}

func genderCode(g string) string {
	switch g {
	case "female":
		return "F"
	case "male":
		return "M"
	}
	return "U"
}

// Verify837 checks the structure of an 837P written by Write837 (or anyone): the ISA is
// 106 characters with the separators it declares; GS/GE, ST/SE and ISA/IEA agree on
// control numbers and counts (SE01 counts ST through SE); HL parents precede their
// children; every claim has lines, every line an SV1 and a DTP*472, and CLM02 is the sum
// of its SV102 amounts.
func Verify837(text string) error {
	if len(text) < 106 || !strings.HasPrefix(text, "ISA") {
		return fmt.Errorf("the file does not start with a 106-character ISA segment")
	}
	isa := text[:106]
	elemSep, compSep, segTerm := isa[3], isa[104], isa[105]
	if elemSep != '*' || compSep != ':' || segTerm != '~' {
		return fmt.Errorf("unexpected separators %q %q %q", elemSep, compSep, segTerm)
	}
	isaF := strings.Split(isa[:105], "*")
	if len(isaF) != 17 {
		return fmt.Errorf("ISA has %d elements, want 16", len(isaF)-1)
	}
	var segs [][]string
	for _, raw := range strings.Split(text, "~") {
		raw = strings.TrimSpace(raw)
		if raw != "" {
			segs = append(segs, strings.Split(raw, "*"))
		}
	}
	last := segs[len(segs)-1]
	if last[0] != "IEA" || len(last) != 3 || last[2] != isaF[13] {
		return fmt.Errorf("IEA does not close interchange %s", isaF[13])
	}
	groups, sets, stAt := 0, 0, -1
	var gs []string
	hls := map[string]bool{}
	var clmTotal, lineSum float64
	inClaim, lines := false, 0
	closeClaim := func() error {
		if !inClaim {
			return nil
		}
		if lines == 0 {
			return fmt.Errorf("a claim has no service lines")
		}
		if fmt.Sprintf("%.2f", clmTotal) != fmt.Sprintf("%.2f", lineSum) {
			return fmt.Errorf("CLM02 %.2f is not the sum of its lines %.2f", clmTotal, lineSum)
		}
		inClaim = false
		return nil
	}
	for i, s := range segs {
		switch s[0] {
		case "GS":
			groups++
			gs = s
		case "GE":
			if len(s) != 3 || gs == nil || s[2] != gs[6] || s[1] != strconv.Itoa(sets) {
				return fmt.Errorf("GE %v does not close GS %v with %d transaction sets", s, gs, sets)
			}
			sets = 0
		case "ST":
			sets++
			stAt = i
		case "SE":
			if err := closeClaim(); err != nil {
				return err
			}
			if stAt < 0 || len(s) != 3 || s[2] != segs[stAt][2] {
				return fmt.Errorf("SE %v does not match its ST", s)
			}
			if n, _ := strconv.Atoi(s[1]); n != i-stAt+1 {
				return fmt.Errorf("SE01 is %s but the transaction set has %d segments", s[1], i-stAt+1)
			}
		case "HL":
			if len(s) < 4 || hls[s[1]] || (s[2] != "" && !hls[s[2]]) {
				return fmt.Errorf("HL %v: duplicate id or parent not seen", s)
			}
			hls[s[1]] = true
		case "CLM":
			if err := closeClaim(); err != nil {
				return err
			}
			inClaim, lines, lineSum = true, 0, 0
			clmTotal, _ = strconv.ParseFloat(s[2], 64)
		case "LX":
			lines++
			if i+2 >= len(segs) || segs[i+1][0] != "SV1" || segs[i+2][0] != "DTP" || segs[i+2][1] != "472" {
				return fmt.Errorf("LX*%s is not followed by SV1 and DTP*472", s[1])
			}
			v, _ := strconv.ParseFloat(segs[i+1][2], 64)
			lineSum += v
		}
	}
	if n, _ := strconv.Atoi(last[1]); n != groups {
		return fmt.Errorf("IEA01 is %s but there are %d functional groups", last[1], groups)
	}
	return nil
}
