package resources

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
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
	// NoTotal is set by _total=none: not even a free total is reported.
	NoTotal bool
	// Includes are the _include and _revinclude requests.
	Includes []Include
	// Elements, when set, restricts each match to these top-level elements (_elements).
	Elements []string
	// Summary is _summary=true, text or data (SummaryTrue, SummaryText, SummaryData): what
	// each match shows (see ShapeResource); "" for the whole resource.
	Summary string
}

// Include is one _include (Source:Param[:Target]) or _revinclude request; Param "*" follows
// every reference parameter of Source.
type Include struct {
	Rev     bool
	Source  string
	Param   string
	Target  string
	Iterate bool
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
		Query:   Query{Type: typ, Count: DefaultCount},
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
		if base, _, _ := strings.Cut(name, ":"); base == "_include" || base == "_revinclude" || base == "_elements" {
			for _, v := range values {
				if err := sr.parseInclude(typ, name, v, ignore); err != nil {
					return nil, err
				}
			}
			continue
		}
		if p, ok := LookupParam(typ, name); ok && p.Type == ParamSpecial {
			clauses, err := parseNear(name, values)
			if err != nil {
				return nil, err
			}
			sr.Query.Clauses = append(sr.Query.Clauses, clauses...)
			for _, v := range values {
				sr.Applied.Add(name, v)
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
		fields := strings.Split(value, ",")
		for i, f := range fields {
			desc := strings.HasPrefix(f, "-")
			name := strings.TrimPrefix(f, "-")
			if name == "_lastUpdated" {
				if i != len(fields)-1 {
					return ignore(name, "_lastUpdated must be the last _sort key (it breaks ties)")
				}
				sr.Query.Sort = SortLastUpdatedAsc
				if desc {
					sr.Query.Sort = SortLastUpdatedDesc
				}
				continue
			}
			if p, ok := LookupParam(sr.Query.Type, name); !ok || p.Type == ParamComposite || p.Type == ParamSpecial {
				sr.Query.SortBy = nil
				return ignore("_sort", fmt.Sprintf("%s cannot sort by %q", sr.Query.Type, name))
			}
			sr.Query.SortBy = append(sr.Query.SortBy, SortField{Param: name, Desc: desc})
		}
		sr.Applied.Set("_sort", value)
	case "_total":
		switch value {
		case "none":
			sr.Query.Total, sr.NoTotal = false, true
		case "accurate", "estimate":
			sr.Query.Total = true
		default:
			return ignore(name, "use none, estimate or accurate")
		}
		sr.Applied.Set("_total", value)
	case "_summary":
		switch value {
		case "count":
			sr.CountOnly = true
		case SummaryTrue, SummaryText, SummaryData:
			sr.Summary = value
			sr.Applied.Set(name, value)
		case "false":
			sr.Applied.Set(name, value)
		default:
			return ignore(name, "use true, text, data, count or false")
		}
	case "_cursor":
		c, err := DecodeCursor(value)
		if err != nil {
			return err
		}
		sr.Query.After = c
	}
	return nil
}

func (sr *SearchRequest) parseInclude(typ, name, value string, ignore func(string, string) error) error {
	if name == "_elements" {
		for _, e := range strings.Split(value, ",") {
			if e = strings.TrimSpace(e); e != "" && !slices.Contains(sr.Elements, e) {
				sr.Elements = append(sr.Elements, e)
			}
		}
		sr.Applied.Add(name, value)
		return nil
	}
	base, modifier, _ := strings.Cut(name, ":")
	inc := Include{Rev: base == "_revinclude", Iterate: modifier == "iterate"}
	if modifier != "" && modifier != "iterate" {
		return ignore(name, "only the :iterate modifier is supported")
	}
	if value == "*" {
		inc.Source, inc.Param = typ, "*"
	} else {
		parts := strings.Split(value, ":")
		if len(parts) < 2 || len(parts) > 3 {
			return ignore(name, "use Type:parameter or Type:parameter:TargetType")
		}
		inc.Source, inc.Param = parts[0], parts[1]
		if len(parts) == 3 {
			inc.Target = parts[2]
			if !Supported(inc.Target) {
				return ignore(name, fmt.Sprintf("%s is not stored here", inc.Target))
			}
		}
	}
	if !Supported(inc.Source) {
		return ignore(name, fmt.Sprintf("%s is not stored here", inc.Source))
	}
	if !inc.Rev && !inc.Iterate && inc.Source != typ {
		return ignore(name, fmt.Sprintf("_include must start with the searched type %s (or use :iterate)", typ))
	}
	if inc.Param != "*" {
		if p, ok := LookupParam(inc.Source, inc.Param); !ok || p.Type != ParamReference {
			return ignore(name, fmt.Sprintf("%s is not a reference parameter of %s", inc.Param, inc.Source))
		}
	}
	sr.Includes = append(sr.Includes, inc)
	sr.Applied.Add(name, value)
	return nil
}

// unsupported marks a parameter this server does not handle (as opposed to a malformed value).
type unsupported struct{ why string }

func (u *unsupported) Error() string { return u.why }

func parseClause(typ, name, value, base string) (Clause, error) {
	if strings.HasPrefix(name, "_has:") {
		return parseHas(name, value)
	}
	if head, rest, chained := strings.Cut(name, "."); chained {
		return parseChain(typ, head, rest, value)
	}
	name, modifier, hasModifier := strings.Cut(name, ":")
	switch name {
	case "_id":
		if hasModifier {
			return Clause{}, &unsupported{"modifier :" + modifier + " is not supported on _id"}
		}
		return Clause{IDs: splitOr(value)}, nil
	case "_lastUpdated":
		if hasModifier {
			return Clause{}, &unsupported{"modifier :" + modifier + " is not supported on _lastUpdated"}
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
	if modifier == "missing" {
		switch value {
		case "true":
			return Clause{NoKey: []string{PresentKey(name)}}, nil
		case "false":
			return Clause{AnyKey: []string{PresentKey(name)}}, nil
		}
		return Clause{}, Errorf(KindBadRequest, "%s:missing takes true or false", name)
	}
	values := splitOr(value)
	switch p.Type {
	case ParamToken:
		return parseToken(name, modifier, hasModifier, values)
	case ParamReference:
		return parseReference(p, modifier, hasModifier, values, base)
	case ParamURI:
		return parseURI(name, modifier, hasModifier, values)
	case ParamString:
		return parseString(name, modifier, hasModifier, values)
	case ParamDate:
		if hasModifier {
			return Clause{}, &unsupported{"modifier :" + modifier + " is not supported on date parameters"}
		}
		var ms []ValueMatch
		for _, v := range values {
			m, err := DateMatch(name, v)
			if err != nil {
				return Clause{}, Errorf(KindBadRequest, "%s: %v", name, err)
			}
			ms = append(ms, m)
		}
		return Clause{Dates: ms}, nil
	case ParamNumber, ParamQuantity:
		if hasModifier {
			return Clause{}, &unsupported{"modifier :" + modifier + " is not supported on " + string(p.Type) + " parameters"}
		}
		var ms []ValueMatch
		for _, v := range values {
			m, err := numberMatch(name, v, p.Type == ParamQuantity)
			if err != nil {
				return Clause{}, Errorf(KindBadRequest, "%s: %v", name, err)
			}
			ms = append(ms, m)
		}
		return Clause{Numbers: ms}, nil
	case ParamComposite:
		if hasModifier {
			return Clause{}, &unsupported{"modifier :" + modifier + " is not supported on composite parameters"}
		}
		return parseComposite(typ, name, values, base)
	case ParamSpecial:
		if hasModifier {
			return Clause{}, &unsupported{"modifier :" + modifier + " is not supported on " + name}
		}
		return Clause{}, &unsupported{name + " is supported only directly on " + typ + ", not in chains or _has"}
	}
	return Clause{}, &unsupported{"parameter type " + string(p.Type) + " is not supported"}
}

// parseURI reads a uri parameter: equality, :below (the value is a prefix of the stored uri)
// or :above (the stored uri is the value or one of its parents, cut at a "/").
func parseURI(name, modifier string, hasModifier bool, values []string) (Clause, error) {
	switch {
	case !hasModifier:
		var keys []string
		for _, v := range values {
			keys = append(keys, RefURLKey(name, v))
		}
		return Clause{AnyKey: keys}, nil
	case modifier == "below":
		var ms []StringMatch
		for _, v := range values {
			ms = append(ms, StringMatch{Param: name + ":below", Value: v})
		}
		return Clause{Strings: ms}, nil
	case modifier == "above":
		var keys []string
		for _, v := range values {
			for _, parent := range uriParents(v) {
				keys = append(keys, RefURLKey(name, parent))
			}
		}
		return Clause{AnyKey: keys}, nil
	}
	return Clause{}, &unsupported{"modifier :" + modifier + " is not supported on uri parameters"}
}

// uriParents lists v and every parent of it: v cut after each "/" of its path (with and
// without that slash), the scheme and authority always kept.
func uriParents(v string) []string {
	out := []string{v}
	start := 0
	if i := strings.Index(v, "://"); i >= 0 {
		start = i + 3
		if j := strings.IndexByte(v[start:], '/'); j >= 0 {
			start += j
		} else {
			return out
		}
	}
	for i := len(v) - 1; i > start; i-- {
		if v[i] == '/' {
			out = append(out, v[:i+1], v[:i])
		}
	}
	return slices.Compact(out)
}

// parseComposite reads token$token, token$reference, token$quantity, token$date and
// token$string composite values (the kind comes from the parameter's definition).
func parseComposite(typ, name string, values []string, base string) (Clause, error) {
	kind := compositeKind(typ, name)
	var c Clause
	for _, v := range values {
		first, second, ok := strings.Cut(v, "$")
		if !ok || first == "" || second == "" {
			return Clause{}, Errorf(KindBadRequest, "%s takes two parts joined by $", name)
		}
		fk := tokenQueryKey("", first)
		param := CompositeValueParam(name, fk)
		switch kind {
		case ParamReference:
			for _, rk := range refQueryKeys(Param{}, second, base) { // any target type, as indexed
				c.AnyKey = append(c.AnyKey, CompositeKey(name, fk, rk))
			}
		case ParamQuantity:
			m, err := numberMatch(param, second, true)
			if err != nil {
				return Clause{}, Errorf(KindBadRequest, "%s: %v", name, err)
			}
			c.Numbers = append(c.Numbers, m)
		case ParamDate:
			m, err := DateMatch(param, second)
			if err != nil {
				return Clause{}, Errorf(KindBadRequest, "%s: %v", name, err)
			}
			c.Dates = append(c.Dates, m)
		case ParamString:
			c.Strings = append(c.Strings, StringMatch{Param: param, Value: NormalizeString(unescape(second))})
		default:
			c.AnyKey = append(c.AnyKey, CompositeKey(name, fk, tokenQueryKey("", second)))
		}
	}
	return c, nil
}

func parseChain(typ, head, rest, value string) (Clause, error) {
	name, modifier, _ := strings.Cut(head, ":")
	p, ok := LookupParam(typ, name)
	if !ok || p.Type != ParamReference {
		return Clause{}, &unsupported{fmt.Sprintf("%s is not a reference parameter of %s, so it cannot be chained", name, typ)}
	}
	types := p.Targets
	if modifier != "" {
		if !Supported(modifier) || (len(p.Targets) > 0 && !slices.Contains(p.Targets, modifier)) {
			return Clause{}, Errorf(KindBadRequest, "%s cannot refer to %q", name, modifier)
		}
		types = []string{modifier}
	}
	if len(types) == 0 {
		// Follow every stored type that has the inner parameter.
		inner, _, _ := strings.Cut(rest, ".")
		inner, _, _ = strings.Cut(inner, ":")
		for _, t := range Types {
			if _, ok := LookupParam(t, inner); ok || inner == "_id" || inner == "_lastUpdated" {
				types = append(types, t)
			}
		}
	}
	if len(types) == 0 {
		return Clause{}, &unsupported{fmt.Sprintf("no resource type %s refers to has a parameter %s", name, rest)}
	}
	return Clause{Chain: &Chain{Param: name, Types: types, Name: rest, Value: value}}, nil
}

func parseHas(name, value string) (Clause, error) {
	parts := strings.SplitN(name, ":", 4)
	if len(parts) != 4 || parts[3] == "" {
		return Clause{}, Errorf(KindBadRequest, "_has takes the form _has:Type:reference-parameter:parameter=value")
	}
	typ, param := parts[1], parts[2]
	if !Supported(typ) {
		return Clause{}, &unsupported{fmt.Sprintf("_has names %q, which this server does not store", typ)}
	}
	if p, ok := LookupParam(typ, param); !ok || p.Type != ParamReference {
		return Clause{}, &unsupported{fmt.Sprintf("%s is not a reference parameter of %s", param, typ)}
	}
	return Clause{Has: &Has{Type: typ, Param: param, Name: parts[3], Value: value}}, nil
}

func parseToken(name, modifier string, hasModifier bool, values []string) (Clause, error) {
	var keys []string
	switch {
	case !hasModifier, modifier == "not":
		for _, v := range values {
			keys = append(keys, tokenQueryKey(name, v))
		}
		if modifier == "not" {
			return Clause{NoKey: keys}, nil
		}
		return Clause{AnyKey: keys}, nil
	case modifier == "text":
		var ms []StringMatch
		for _, v := range values {
			ms = append(ms, StringMatch{Param: name + ":text", Value: NormalizeString(v)})
		}
		return Clause{Strings: ms}, nil
	case modifier == "of-type" && name == "identifier":
		for _, v := range values {
			parts := strings.SplitN(v, "|", 3)
			if len(parts) != 3 || parts[1] == "" || parts[2] == "" {
				return Clause{}, Errorf(KindBadRequest, "identifier:of-type takes system|code|value")
			}
			keys = append(keys, OfTypeKey(parts[0], parts[1], parts[2]))
		}
		return Clause{AnyKey: keys}, nil
	}
	return Clause{}, &unsupported{"modifier :" + modifier + " is not supported on token parameters"}
}

func parseReference(p Param, modifier string, hasModifier bool, values []string, base string) (Clause, error) {
	var keys []string
	switch {
	case !hasModifier:
		for _, v := range values {
			keys = append(keys, refQueryKeys(p, v, base)...)
		}
	case modifier == "identifier":
		for _, v := range values {
			keys = append(keys, tokenQueryKey(p.Name+":identifier", v))
		}
	case Supported(modifier):
		if len(p.Targets) > 0 && !slices.Contains(p.Targets, modifier) {
			return Clause{}, Errorf(KindBadRequest, "%s does not refer to %s", p.Name, modifier)
		}
		for _, v := range values {
			if !ValidID(v) {
				return Clause{}, Errorf(KindBadRequest, "%s:%s takes a resource id", p.Name, modifier)
			}
			keys = append(keys, RefKey(p.Name, modifier, v))
		}
	default:
		return Clause{}, &unsupported{"modifier :" + modifier + " is not supported on reference parameters"}
	}
	return Clause{AnyKey: keys}, nil
}

func parseString(name, modifier string, hasModifier bool, values []string) (Clause, error) {
	switch {
	case !hasModifier, modifier == "contains":
		var ms []StringMatch
		for _, v := range values {
			ms = append(ms, StringMatch{Param: name, Value: NormalizeString(unescape(v)), Contains: modifier == "contains"})
		}
		return Clause{Strings: ms}, nil
	case modifier == "exact":
		var keys []string
		for _, v := range values {
			keys = append(keys, TokenKey(name+":exact", "", unescape(v)))
		}
		return Clause{AnyKey: keys}, nil
	}
	return Clause{}, &unsupported{"modifier :" + modifier + " is not supported on string parameters"}
}

// splitPrefix separates a comparison prefix (eq ne gt lt ge le sa eb ap) from a value.
func splitPrefix(v string) (prefix, rest string) {
	if len(v) >= 2 {
		switch v[:2] {
		case "eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap":
			return v[:2], v[2:]
		}
	}
	return "eq", v
}

// DateMatch turns a date search value into bounds on the target's range [lo, hi), following
// https://hl7.org/fhir/R4/search.html#prefix with the search value's range [from, to):
// eq: the target lies within; ne: it does not; gt: it extends after; lt: it extends before;
// ge: it extends to or after the start (it is not wholly before); le: it starts before the
// end (it is not wholly after); sa: it starts at or after the end; eb: it ends at or before
// the start; ap: it overlaps the value widened by 10% of its distance from now (at least a day).
func DateMatch(param, v string) (ValueMatch, error) {
	prefix, rest := splitPrefix(v)
	from, to, err := ParseDateRange(rest)
	if err != nil {
		return ValueMatch{}, err
	}
	f, t := from.UnixMicro(), to.UnixMicro()
	b := func(onHi bool, op BoundOp, us int64) Bound { return Bound{OnHi: onHi, Op: op, Micros: us} }
	within := []Bound{b(false, OpGE, f), b(true, OpLE, t)}
	m := ValueMatch{Param: param}
	switch prefix {
	case "eq":
		m.Any = [][]Bound{within}
	case "ne":
		m.Any = [][]Bound{{b(false, OpLT, f)}, {b(true, OpGT, t)}}
	case "gt":
		m.Any = [][]Bound{{b(true, OpGT, t)}}
	case "lt":
		m.Any = [][]Bound{{b(false, OpLT, f)}}
	case "ge":
		m.Any = [][]Bound{{b(true, OpGT, f)}}
	case "le":
		m.Any = [][]Bound{{b(false, OpLT, t)}}
	case "sa":
		m.Any = [][]Bound{{b(false, OpGE, t)}}
	case "eb":
		m.Any = [][]Bound{{b(true, OpLE, f)}}
	case "ap":
		gap := time.Since(from)
		if gap < 0 {
			gap = -gap
		}
		widen := max(gap/10, 24*time.Hour).Microseconds()
		m.Any = [][]Bound{{b(false, OpLT, t+widen), b(true, OpGT, f-widen)}}
	}
	return m, nil
}

// numberMatch turns a number or quantity search value into bounds. A value's precision gives
// its range for eq/ne/ap ("100" is [99.5, 100.5)); gt/lt/ge/le/sa/eb compare with the value.
func numberMatch(param, v string, quantity bool) (ValueMatch, error) {
	prefix, rest := splitPrefix(v)
	if quantity {
		parts := strings.SplitN(rest, "|", 3)
		rest = parts[0]
		if len(parts) == 3 && parts[2] != "" {
			param = QuantityParam(param, parts[1], parts[2])
		} else if len(parts) == 2 || (len(parts) == 3 && parts[1] != "") {
			return ValueMatch{}, fmt.Errorf("a quantity is number|system|code or number||code")
		}
	}
	n, err := strconv.ParseFloat(rest, 64)
	if err != nil || math.IsInf(n, 0) || math.IsNaN(n) {
		return ValueMatch{}, fmt.Errorf("%q is not a number", rest)
	}
	half := 0.5
	if dot := strings.IndexByte(rest, '.'); dot >= 0 {
		digits := len(rest) - dot - 1
		if e := strings.IndexAny(rest, "eE"); e >= 0 {
			digits = e - dot - 1
		}
		half = 0.5 * math.Pow(10, -float64(digits))
	}
	b := func(op BoundOp, x float64) Bound { return Bound{Op: op, Num: x} }
	m := ValueMatch{Param: param}
	switch prefix {
	case "eq":
		m.Any = [][]Bound{{b(OpGE, n-half), b(OpLT, n+half)}}
	case "ne":
		m.Any = [][]Bound{{b(OpLT, n-half)}, {b(OpGE, n+half)}}
	case "gt", "sa":
		m.Any = [][]Bound{{b(OpGT, n)}}
	case "lt", "eb":
		m.Any = [][]Bound{{b(OpLT, n)}}
	case "ge":
		m.Any = [][]Bound{{b(OpGE, n)}}
	case "le":
		m.Any = [][]Bound{{b(OpLE, n)}}
	case "ap":
		d := math.Max(math.Abs(n)*0.1, half)
		m.Any = [][]Bound{{b(OpGE, n-d), b(OpLE, n+d)}}
	}
	return m, nil
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

// refQueryKeys returns the keys of `p=v`, any of which matches.
func refQueryKeys(p Param, v, base string) []string {
	if base != "" {
		if rest, ok := strings.CutPrefix(v, strings.TrimSuffix(base, "/")+"/"); ok {
			v = rest
		}
	}
	if typ, id, ok := SplitLocalRef(v); ok {
		return []string{RefKey(p.Name, typ, id)}
	}
	if ValidID(v) {
		if bareRefIndexed(p) {
			return []string{RefIDKey(p.Name, v)}
		}
		keys := make([]string, len(p.Targets))
		for i, t := range p.Targets {
			keys[i] = RefKey(p.Name, t, v)
		}
		return keys
	}
	return []string{RefURLKey(p.Name, v)}
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

// EncodeCursor makes the opaque _cursor value for a next link:
// "lastUpdated|version|id[|@snapshot][|sort values as JSON]", base64url.
func EncodeCursor(c *Cursor) string {
	raw := fmt.Sprintf("%d|%d|%s", c.LastUpdated.UnixMicro(), c.Version, c.ID)
	if !c.Snapshot.IsZero() {
		raw += "|@" + strconv.FormatInt(c.Snapshot.UnixMicro(), 10)
	}
	if len(c.Values) > 0 {
		vals, _ := json.Marshal(c.Values)
		raw += "|" + string(vals)
	}
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

// DecodeCursor reads a _cursor value; a tampered one is a KindBadRequest error.
func DecodeCursor(s string) (*Cursor, error) {
	bad := Errorf(KindBadRequest, "_cursor is not a cursor this server issued")
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, bad
	}
	parts := strings.SplitN(string(raw), "|", 4)
	if len(parts) < 3 {
		return nil, bad
	}
	us, err1 := strconv.ParseInt(parts[0], 10, 64)
	v, err2 := strconv.ParseInt(parts[1], 10, 64)
	if err1 != nil || err2 != nil || !ValidID(parts[2]) {
		return nil, bad
	}
	c := &Cursor{LastUpdated: time.UnixMicro(us).UTC(), Version: v, ID: parts[2]}
	if len(parts) < 4 {
		return c, nil
	}
	rest := parts[3]
	if snap, ok := strings.CutPrefix(rest, "@"); ok {
		var hasValues bool
		snap, rest, hasValues = strings.Cut(snap, "|")
		at, err := strconv.ParseInt(snap, 10, 64)
		if err != nil || at <= 0 {
			return nil, bad
		}
		c.Snapshot = time.UnixMicro(at).UTC()
		if !hasValues {
			return c, nil
		}
	}
	if err := json.Unmarshal([]byte(rest), &c.Values); err != nil || len(c.Values) == 0 {
		return nil, bad
	}
	return c, nil
}
