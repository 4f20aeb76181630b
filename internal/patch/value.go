package patch

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"github.com/calaimfhir/calaimfhir/resources"
)

// maxEcho caps how much of a caller's path or value is echoed in an error message.
const maxEcho = 100

// clip shortens s for an error message.
func clip(s string) string {
	if len(s) <= maxEcho {
		return s
	}
	// Cut on a rune boundary so the message stays valid UTF-8.
	cut := maxEcho
	for cut > 0 && !isRuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

func badRequest(format string, args ...any) error {
	return resources.Errorf(resources.KindBadRequest, format, args...)
}

func unprocessable(format string, args ...any) error {
	return resources.Errorf(resources.KindUnprocessable, format, args...)
}

// unprocessableAt is unprocessable with the FHIRPath expression of the element concerned, so
// that the OperationOutcome issue carries it.
func unprocessableAt(expr string, format string, args ...any) error {
	e := resources.Errorf(resources.KindUnprocessable, format, args...)
	if expr != "" && len(expr) <= 4*maxEcho {
		e.Issues = []resources.Issue{{
			Severity:    resources.SeverityError,
			Code:        resources.IssueProcessing,
			Diagnostics: e.Message,
			Expression:  []string{expr},
		}}
	}
	return e
}

// clone deep-copies decoded JSON: maps and []any are copied, everything else (strings,
// json.Number, bools, nil) is immutable and shared. Values of other Go types are shared as
// they are; the package never modifies them.
func clone(v any) any {
	switch t := v.(type) {
	case map[string]any:
		if t == nil {
			return t
		}
		m := make(map[string]any, len(t))
		for k, x := range t {
			m[k] = clone(x)
		}
		return m
	case []any:
		if t == nil {
			return t
		}
		s := make([]any, len(t))
		for i, x := range t {
			s[i] = clone(x)
		}
		return s
	default:
		return v
	}
}

// cloneDoc deep-copies a document; a nil document becomes an empty object.
func cloneDoc(doc map[string]any) map[string]any {
	if doc == nil {
		return map[string]any{}
	}
	return clone(doc).(map[string]any)
}

// equalJSON reports whether two decoded JSON values are equal in the sense of RFC 6902 §4.6:
// same type, numbers numerically equal, strings and booleans identical, arrays equal item by
// item, objects with the same members and equal values.
func equalJSON(a, b any) bool {
	if na, ok := numberText(a); ok {
		nb, ok := numberText(b)
		return ok && equalNumbers(na, nb)
	}
	switch x := a.(type) {
	case nil:
		return b == nil
	case string:
		y, ok := b.(string)
		return ok && x == y
	case bool:
		y, ok := b.(bool)
		return ok && x == y
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, xv := range x {
			yv, ok := y[k]
			if !ok || !equalJSON(xv, yv) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !equalJSON(x[i], y[i]) {
				return false
			}
		}
		return true
	default:
		return reflect.DeepEqual(a, b)
	}
}

// numberText returns the text of a JSON number held as json.Number (as this server decodes) or
// as a Go number (as encoding/json decodes without UseNumber, or as a caller builds it).
func numberText(v any) (string, bool) {
	switch n := v.(type) {
	case json.Number:
		return string(n), true
	case float64:
		return strconv.FormatFloat(n, 'g', -1, 64), true
	case float32:
		return strconv.FormatFloat(float64(n), 'g', -1, 32), true
	case int:
		return strconv.FormatInt(int64(n), 10), true
	case int64:
		return strconv.FormatInt(n, 10), true
	case int32:
		return strconv.FormatInt(int64(n), 10), true
	case uint:
		return strconv.FormatUint(uint64(n), 10), true
	case uint64:
		return strconv.FormatUint(n, 10), true
	case uint32:
		return strconv.FormatUint(uint64(n), 10), true
	}
	return "", false
}

// equalNumbers compares two decimal numbers exactly (1, 1.0 and 1e0 are equal) without
// converting to float64, which would make distinct large integers or decimals equal.
func equalNumbers(a, b string) bool {
	if a == b {
		return true
	}
	ca, ok := canonicalNumber(a)
	if !ok {
		return false
	}
	cb, ok := canonicalNumber(b)
	return ok && ca == cb
}

// canonicalNumber rewrites a decimal number ("-0012.50e+1") as sign, significant digits and
// exponent ("-125e0"), so that numerically equal numbers have equal text.
func canonicalNumber(s string) (string, bool) {
	neg := false
	switch {
	case strings.HasPrefix(s, "-"):
		neg, s = true, s[1:]
	case strings.HasPrefix(s, "+"):
		s = s[1:]
	}
	mant, expText, hasExp := strings.Cut(strings.ToLower(s), "e")
	var exp int64
	if hasExp {
		e, err := strconv.ParseInt(expText, 10, 64)
		if err != nil || e > 1<<40 || e < -(1<<40) {
			return "", false
		}
		exp = e
	}
	intPart, frac, _ := strings.Cut(mant, ".")
	digits := intPart + frac
	if digits == "" {
		return "", false
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return "", false
		}
	}
	exp -= int64(len(frac))
	digits = strings.TrimLeft(digits, "0")
	if digits == "" {
		return "0", true // every zero is the same number, whatever its sign or exponent
	}
	trimmed := strings.TrimRight(digits, "0")
	exp += int64(len(digits) - len(trimmed))
	sign := ""
	if neg {
		sign = "-"
	}
	return fmt.Sprintf("%s%se%d", sign, trimmed, exp), true
}
