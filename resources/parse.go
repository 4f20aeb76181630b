package resources

import (
	"encoding/base64"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Paging limits for searches and histories.
const (
	DefaultCount = 20
	MaxCount     = 1000
)

// SearchRequest is a parsed search: the plan for the store plus what the server reports back.
type SearchRequest struct {
	Query Query
	// Applied are the parameters that were used, in canonical form, for the self link.
	Applied url.Values
	// Ignored lists parameters that were not understood and were left out (lenient mode).
	Ignored []Issue
	// CountOnly is set by _summary=count or _count=0: only the total is wanted.
	CountOnly bool
}

// Parameters that control the result rather than select resources.
var resultParams = map[string]bool{
	"_count": true, "_sort": true, "_total": true, "_summary": true, "_format": true,
	"_pretty": true, "_cursor": true,
}

// ParseSearch turns URL parameters into a search on typ. base is this server's FHIR base URL
// (absolute references to it are treated as local). In strict mode an unknown parameter,
// modifier or malformed value is a KindBadRequest error; otherwise it is skipped and reported
// in Ignored. Values for the core parameters that are malformed (a date that is not a date)
// are errors in both modes: ignoring them would widen the result silently.
func ParseSearch(typ string, params url.Values, base string, strict bool) (*SearchRequest, error) {
	sr := &SearchRequest{
		Query:   Query{Type: typ, Count: DefaultCount, Total: true},
		Applied: url.Values{},
	}
	ignore := func(name, why string) error {
		if strict {
			return Errorf(KindBadRequest, "search parameter %q: %s", name, why)
		}
		sr.Ignored = append(sr.Ignored, Issue{Severity: SeverityWarning, Code: IssueNotSupported,
			Diagnostics: fmt.Sprintf("search parameter %q was ignored: %s", name, why)})
		return nil
	}
	names := make([]string, 0, len(params))
	for name := range params {
		names = append(names, name)
	}
	slices.Sort(names) // deterministic plans, links and messages
	for _, name := range names {
		values := params[name]
		if resultParams[name] {
			if err := sr.parseResultParam(name, values[len(values)-1], ignore); err != nil {
				return nil, err
			}
			continue
		}
		for _, value := range values {
			clause, err := parseClause(typ, name, value, base)
			if err != nil {
				if e, ok := err.(*unsupported); ok {
					if err := ignore(name, e.why); err != nil {
						return nil, err
					}
					break
				}
				return nil, err
			}
			sr.Query.Clauses = append(sr.Query.Clauses, clause)
			sr.Applied.Add(name, value)
		}
	}
	return sr, nil
}

func (sr *SearchRequest) parseResultParam(name, value string, ignore func(string, string) error) error {
	switch name {
	case "_count":
		n, err := strconv.Atoi(value)
		if err != nil || n < 0 {
			return Errorf(KindBadRequest, "_count must be a non-negative integer")
		}
		if n == 0 {
			sr.CountOnly = true
			n = 1
		}
		sr.Query.Count = min(n, MaxCount)
		if !sr.CountOnly {
			sr.Applied.Set("_count", strconv.Itoa(sr.Query.Count))
		}
	case "_sort":
		switch value {
		case "_lastUpdated":
			sr.Query.Sort = SortLastUpdatedAsc
		case "-_lastUpdated":
			sr.Query.Sort = SortLastUpdatedDesc
		default:
			return ignore(name, "only _lastUpdated and -_lastUpdated are supported")
		}
		sr.Applied.Set("_sort", value)
	case "_total":
		switch value {
		case "none":
			sr.Query.Total = false
		case "accurate", "estimate":
			sr.Query.Total = true
		default:
			return ignore(name, "use none, estimate or accurate")
		}
		sr.Applied.Set("_total", value)
	case "_summary":
		if value != "count" {
			return ignore(name, "only _summary=count is supported")
		}
		sr.CountOnly = true
	case "_cursor":
		c, err := DecodeCursor(value)
		if err != nil {
			return err
		}
		sr.Query.After = c
	}
	return nil
}

// unsupported marks a parameter this server does not handle (as opposed to a malformed value).
type unsupported struct{ why string }

func (u *unsupported) Error() string { return u.why }

func parseClause(typ, name, value, base string) (Clause, error) {
	name, modifier, hasModifier := strings.Cut(name, ":")
	switch name {
	case "_id":
		if hasModifier {
			return Clause{}, &unsupported{"modifier :" + modifier + " is not supported"}
		}
		return Clause{IDs: splitOr(value)}, nil
	case "_lastUpdated":
		if hasModifier {
			return Clause{}, &unsupported{"modifier :" + modifier + " is not supported"}
		}
		var ranges []DateRange
		for _, v := range splitOr(value) {
			r, err := ParseDateParam(v)
			if err != nil {
				return Clause{}, Errorf(KindBadRequest, "_lastUpdated: %v", err)
			}
			ranges = append(ranges, r)
		}
		return Clause{LastUpdated: ranges}, nil
	}
	p, ok := LookupParam(typ, name)
	if !ok {
		return Clause{}, &unsupported{fmt.Sprintf("%s has no search parameter %s on this server", typ, name)}
	}
	if hasModifier {
		return Clause{}, &unsupported{"modifier :" + modifier + " is not supported"}
	}
	var keys []string
	for _, v := range splitOr(value) {
		switch p.Type {
		case ParamToken:
			keys = append(keys, tokenQueryKey(name, v))
		case ParamReference:
			keys = append(keys, refQueryKey(name, v, base))
		case ParamURI:
			keys = append(keys, RefURLKey(name, v))
		}
	}
	return Clause{AnyKey: keys}, nil
}

// splitOr splits a value on unescaped commas and removes FHIR search escapes (\, \| \$ \\).
func splitOr(value string) []string {
	var out []string
	var cur strings.Builder
	for i := 0; i < len(value); i++ {
		switch c := value[i]; {
		case c == '\\' && i+1 < len(value) && value[i+1] == ',':
			cur.WriteByte(',')
			i++
		case c == ',':
			out = append(out, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(c)
		}
	}
	return append(out, cur.String())
}

// cutUnescaped splits s at the first '|' not preceded by a backslash.
func cutUnescaped(s string) (before, after string, found bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' {
			i++
			continue
		}
		if s[i] == '|' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

func unescape(s string) string {
	r := strings.NewReplacer(`\|`, `|`, `\$`, `$`, `\\`, `\`)
	return r.Replace(s)
}

func tokenQueryKey(param, v string) string {
	system, code, hasSystem := cutUnescaped(v)
	if !hasSystem {
		return TokenCodeKey(param, unescape(v))
	}
	system, code = unescape(system), unescape(code)
	if code == "" {
		return TokenSystemKey(param, system)
	}
	return TokenKey(param, system, code)
}

func refQueryKey(param, v, base string) string {
	if base != "" {
		if rest, ok := strings.CutPrefix(v, strings.TrimSuffix(base, "/")+"/"); ok {
			v = rest
		}
	}
	if typ, id, ok := SplitLocalRef(v); ok {
		return RefKey(param, typ, id)
	}
	if ValidID(v) {
		return RefIDKey(param, v)
	}
	return RefURLKey(param, v)
}

// ParseDateParam parses a date search value with an optional prefix (eq ne lt gt le ge sa eb)
// into the range of instants it selects. Values without a time zone are read as UTC.
func ParseDateParam(v string) (DateRange, error) {
	prefix := "eq"
	if len(v) >= 2 && v[0] >= 'a' && v[0] <= 'z' {
		prefix, v = v[:2], v[2:]
	}
	lo, hi, err := ParseDateRange(v)
	if err != nil {
		return DateRange{}, err
	}
	switch prefix {
	case "eq":
		return DateRange{From: lo, To: hi}, nil
	case "ne":
		return DateRange{From: lo, To: hi, Not: true}, nil
	case "lt", "eb":
		return DateRange{To: lo}, nil
	case "le":
		return DateRange{To: hi}, nil
	case "gt", "sa":
		return DateRange{From: hi}, nil
	case "ge":
		return DateRange{From: lo}, nil
	}
	return DateRange{}, fmt.Errorf("unknown prefix %q", prefix)
}

var dateLayouts = []struct {
	layout string
	next   func(time.Time) time.Time
}{
	{"2006", func(t time.Time) time.Time { return t.AddDate(1, 0, 0) }},
	{"2006-01", func(t time.Time) time.Time { return t.AddDate(0, 1, 0) }},
	{"2006-01-02", func(t time.Time) time.Time { return t.AddDate(0, 0, 1) }},
	{"2006-01-02T15:04Z07:00", func(t time.Time) time.Time { return t.Add(time.Minute) }},
	{"2006-01-02T15:04:05Z07:00", func(t time.Time) time.Time { return t.Add(time.Second) }},
}

// ParseDateRange returns the half-open range [lo, hi) of instants covered by a FHIR date,
// dateTime or instant at its precision ("2024" is the whole year).
func ParseDateRange(v string) (lo, hi time.Time, err error) {
	// Fractional seconds: the precision is the number of digits given. (time.Parse accepts
	// fractions even where a layout has none, so these are told apart first.)
	if !strings.Contains(v, ".") {
		for _, l := range dateLayouts {
			if t, err := time.Parse(l.layout, v); err == nil {
				return t.UTC(), l.next(t).UTC(), nil
			}
		}
	} else if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		dot := strings.IndexByte(v, '.')
		end := dot + 1
		for end < len(v) && v[end] >= '0' && v[end] <= '9' {
			end++
		}
		step := time.Second
		for i := dot + 1; i < end; i++ {
			step /= 10
		}
		return t.UTC(), t.Add(max(step, time.Microsecond)).UTC(), nil
	}
	// A time without a zone is read as UTC.
	for _, layout := range []string{"2006-01-02T15:04:05", "2006-01-02T15:04"} {
		if t, err := time.Parse(layout, v); err == nil {
			step := time.Second
			if len(layout) == len("2006-01-02T15:04") {
				step = time.Minute
			}
			return t, t.Add(step), nil
		}
	}
	return time.Time{}, time.Time{}, fmt.Errorf("%q is not a FHIR date, dateTime or instant", v)
}

// EncodeCursor makes the opaque _cursor value for a next link.
func EncodeCursor(c *Cursor) string {
	raw := fmt.Sprintf("%d|%d|%s", c.LastUpdated.UnixMicro(), c.Version, c.ID)
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

// DecodeCursor reads a _cursor value; a tampered one is a KindBadRequest error.
func DecodeCursor(s string) (*Cursor, error) {
	bad := Errorf(KindBadRequest, "_cursor is not a cursor this server issued")
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, bad
	}
	parts := strings.SplitN(string(raw), "|", 3)
	if len(parts) != 3 {
		return nil, bad
	}
	us, err1 := strconv.ParseInt(parts[0], 10, 64)
	v, err2 := strconv.ParseInt(parts[1], 10, 64)
	if err1 != nil || err2 != nil || !ValidID(parts[2]) {
		return nil, bad
	}
	return &Cursor{LastUpdated: time.UnixMicro(us).UTC(), Version: v, ID: parts[2]}, nil
}
