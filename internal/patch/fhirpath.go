package patch

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// This file holds the small FHIRPath subset that FHIRPath Patch paths may use (see doc.go):
// a parser to a list of steps and an evaluator that returns the locations the path selects,
// so that operations can change the document there.

type stepKind int

const (
	stepName  stepKind = iota // .name
	stepIndex                 // [n]
	stepFirst                 // .first()
	stepLast                  // .last()
	stepWhere                 // .where(a.b = literal)
)

type step struct {
	kind  stepKind
	name  string // stepName
	index int    // stepIndex
	where *criterion
}

// criterion is the argument of where(): a relative path of element names compared with a
// literal.
type criterion struct {
	path []string
	lit  literal
}

type literal struct {
	kind  byte // 's' string, 'b' boolean, 'n' number
	text  string
	truth bool
}

// fhirPath is a parsed path: an optional type name at the root, then steps.
type fhirPath struct {
	root  string // a type name such as "Patient", or "" when the path starts at an element
	steps []step
}

// maxPathSteps bounds a path; real paths have a handful of steps.
const maxPathSteps = 256

type pathError struct{ msg string }

func (e *pathError) Error() string { return e.msg }

func unsupported(format string, args ...any) error {
	return &pathError{msg: fmt.Sprintf(format, args...)}
}

// lexer tokens
type tokKind int

const (
	tEOF tokKind = iota
	tIdent
	tString
	tNumber
	tPunct // . [ ] ( ) = -
)

type token struct {
	kind tokKind
	text string // identifier name, decoded string, number text, or the punctuation character
	pos  int
}

func lex(src string) ([]token, error) {
	var toks []token
	i := 0
	for i < len(src) {
		c := src[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '.' || c == '[' || c == ']' || c == '(' || c == ')' || c == '=' || c == '-':
			toks = append(toks, token{tPunct, string(c), i})
			i++
		case isIdentStart(c):
			j := i + 1
			for j < len(src) && isIdentPart(src[j]) {
				j++
			}
			toks = append(toks, token{tIdent, src[i:j], i})
			i = j
		case c >= '0' && c <= '9':
			j := i
			for j < len(src) && src[j] >= '0' && src[j] <= '9' {
				j++
			}
			// A fraction only when a digit follows the dot: "name[0].given" has no decimals.
			if j+1 < len(src) && src[j] == '.' && src[j+1] >= '0' && src[j+1] <= '9' {
				j++
				for j < len(src) && src[j] >= '0' && src[j] <= '9' {
					j++
				}
			}
			toks = append(toks, token{tNumber, src[i:j], i})
			i = j
		case c == '`':
			s, n, err := lexQuoted(src[i:], '`')
			if err != nil {
				return nil, err
			}
			if s == "" {
				return nil, unsupported("empty delimited identifier at %d", i)
			}
			toks = append(toks, token{tIdent, s, i})
			i += n
		case c == '\'':
			s, n, err := lexQuoted(src[i:], '\'')
			if err != nil {
				return nil, err
			}
			toks = append(toks, token{tString, s, i})
			i += n
		default:
			r, _ := utf8.DecodeRuneInString(src[i:])
			return nil, unsupported("%q at %d is not supported", r, i)
		}
	}
	return append(toks, token{tEOF, "", len(src)}), nil
}

func isIdentStart(c byte) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

func isIdentPart(c byte) bool { return isIdentStart(c) || (c >= '0' && c <= '9') }

// lexQuoted reads a FHIRPath string literal or delimited identifier starting at s[0] == quote
// and returns its decoded text and length.
func lexQuoted(s string, quote byte) (string, int, error) {
	var b strings.Builder
	i := 1
	for i < len(s) {
		c := s[i]
		switch {
		case c == quote:
			return b.String(), i + 1, nil
		case c == '\\':
			if i+1 >= len(s) {
				return "", 0, unsupported("unterminated escape")
			}
			e := s[i+1]
			i += 2
			switch e {
			case '\'', '"', '`', '\\', '/':
				b.WriteByte(e)
			case 'f':
				b.WriteByte('\f')
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			case 't':
				b.WriteByte('\t')
			case 'u':
				if i+4 > len(s) {
					return "", 0, unsupported("bad \\u escape")
				}
				v, err := strconv.ParseUint(s[i:i+4], 16, 16)
				if err != nil {
					return "", 0, unsupported("bad \\u escape")
				}
				i += 4
				r := rune(v)
				// A surrogate pair is two escapes.
				if utf16.IsSurrogate(r) && i+6 <= len(s) && s[i] == '\\' && s[i+1] == 'u' {
					if w, err := strconv.ParseUint(s[i+2:i+6], 16, 16); err == nil {
						if p := utf16.DecodeRune(r, rune(w)); p != utf8.RuneError {
							r = p
							i += 6
						}
					}
				}
				b.WriteRune(r)
			default:
				return "", 0, unsupported("unknown escape \\%c", e)
			}
		default:
			b.WriteByte(c)
			i++
		}
	}
	return "", 0, unsupported("unterminated %c", quote)
}

type parser struct {
	toks []token
	i    int
}

func (p *parser) peek() token { return p.toks[p.i] }

func (p *parser) next() token {
	t := p.toks[p.i]
	if t.kind != tEOF {
		p.i++
	}
	return t
}

func (p *parser) punct(c string) bool {
	if t := p.peek(); t.kind == tPunct && t.text == c {
		p.i++
		return true
	}
	return false
}

func (p *parser) expect(c string) error {
	if !p.punct(c) {
		t := p.peek()
		return unsupported("expected %q at %d", c, t.pos)
	}
	return nil
}

// parsePath parses a path of the supported subset. Its errors are *pathError.
func parsePath(src string) (*fhirPath, error) {
	if strings.TrimSpace(src) == "" {
		return nil, unsupported("the path is empty")
	}
	toks, err := lex(src)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks}
	out := &fhirPath{}
	first := p.next()
	if first.kind != tIdent {
		return nil, unsupported("a path starts with a resource type or element name")
	}
	if p.peek().kind == tPunct && p.peek().text == "(" {
		return nil, unsupported("function %s() is not supported at the start of a path", first.text)
	}
	if isTypeName(first.text) {
		out.root = first.text
	} else {
		out.steps = append(out.steps, step{kind: stepName, name: first.text})
	}
	for p.peek().kind != tEOF {
		if len(out.steps) >= maxPathSteps {
			return nil, unsupported("the path has more than %d steps", maxPathSteps)
		}
		switch {
		case p.punct("."):
			id := p.next()
			if id.kind != tIdent {
				return nil, unsupported("expected an element name or function at %d", id.pos)
			}
			if !p.punct("(") {
				out.steps = append(out.steps, step{kind: stepName, name: id.text})
				continue
			}
			switch id.text {
			case "first", "last":
				if err := p.expect(")"); err != nil {
					return nil, err
				}
				k := stepFirst
				if id.text == "last" {
					k = stepLast
				}
				out.steps = append(out.steps, step{kind: k})
			case "where":
				c, err := p.criterion()
				if err != nil {
					return nil, err
				}
				out.steps = append(out.steps, step{kind: stepWhere, where: c})
			default:
				return nil, unsupported("function %s() is not supported", id.text)
			}
		case p.punct("["):
			n := p.next()
			if n.kind != tNumber || strings.Contains(n.text, ".") {
				return nil, unsupported("an index is a non-negative integer, at %d", n.pos)
			}
			idx, err := strconv.Atoi(n.text)
			if err != nil {
				return nil, unsupported("index %s is too large", n.text)
			}
			if err := p.expect("]"); err != nil {
				return nil, err
			}
			out.steps = append(out.steps, step{kind: stepIndex, index: idx})
		default:
			t := p.peek()
			return nil, unsupported("%q at %d is not supported", t.text, t.pos)
		}
	}
	return out, nil
}

// criterion parses "a.b = literal)" after "where(".
func (p *parser) criterion() (*criterion, error) {
	c := &criterion{}
	for {
		id := p.next()
		if id.kind != tIdent || id.text == "true" || id.text == "false" {
			return nil, unsupported("where() supports only element = literal, at %d", id.pos)
		}
		if p.peek().kind == tPunct && p.peek().text == "(" {
			return nil, unsupported("functions inside where() are not supported")
		}
		c.path = append(c.path, id.text)
		if len(c.path) > maxPathSteps {
			return nil, unsupported("the where() path is too long")
		}
		if !p.punct(".") {
			break
		}
	}
	if err := p.expect("="); err != nil {
		return nil, unsupported("where() supports only element = literal")
	}
	neg := p.punct("-")
	t := p.next()
	switch {
	case t.kind == tString && !neg:
		c.lit = literal{kind: 's', text: t.text}
	case t.kind == tNumber:
		text := t.text
		if neg {
			text = "-" + text
		}
		c.lit = literal{kind: 'n', text: text}
	case t.kind == tIdent && !neg && (t.text == "true" || t.text == "false"):
		c.lit = literal{kind: 'b', truth: t.text == "true"}
	default:
		return nil, unsupported("where() compares with a string, number or boolean literal, at %d", t.pos)
	}
	if err := p.expect(")"); err != nil {
		return nil, err
	}
	return c, nil
}

// isTypeName reports whether a path's first identifier names a type (FHIR resource types start
// with an upper-case letter, element names with a lower-case one).
func isTypeName(s string) bool { return s != "" && s[0] >= 'A' && s[0] <= 'Z' }

// node is one location a path selects: the member key of an object, or item index of the
// array in that member. The root node (the resource) has a nil parent.
type node struct {
	parent map[string]any
	key    string // JSON member name (for a choice element, e.g. "valueString")
	name   string // name the path used ("value" for "valueString")
	index  int    // item index in parent[key], or -1 when parent[key] is not an array
	value  any
	elem   string // element path without indexes, e.g. "Patient.name.given" (see Schema)
}

// childElemBase is the element path under which a node's children are named: a resource
// (the root, a contained resource, a Bundle entry) restarts at its type.
func childElemBase(n node, m map[string]any) string {
	if rt, ok := m["resourceType"].(string); ok && rt != "" {
		return rt
	}
	return n.elem
}

// memberKeys returns the members of m an element name selects: the name itself or, for a
// choice element, name followed by a type ("value" → "valueQuantity").
func memberKeys(m map[string]any, name string) []string {
	if _, ok := m[name]; ok {
		return []string{name}
	}
	var keys []string
	for k := range m {
		if len(k) > len(name) && strings.HasPrefix(k, name) && k[len(name)] >= 'A' && k[len(name)] <= 'Z' {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

// children evaluates one element-name step on a collection.
func children(coll []node, name string) []node {
	var out []node
	for _, n := range coll {
		m, ok := n.value.(map[string]any)
		if !ok {
			continue
		}
		base := childElemBase(n, m)
		for _, key := range memberKeys(m, name) {
			elem := base + "." + key
			switch v := m[key].(type) {
			case nil:
			case []any:
				for i, item := range v {
					if item != nil {
						out = append(out, node{parent: m, key: key, name: name, index: i, value: item, elem: elem})
					}
				}
			default:
				out = append(out, node{parent: m, key: key, name: name, index: -1, value: v, elem: elem})
			}
		}
	}
	return out
}

// evaluate returns the nodes path selects in doc. A root type that is not the resource's type
// is an error (the path was written for another kind of resource).
func evaluate(doc map[string]any, p *fhirPath, src string) ([]node, error) {
	rt, _ := doc["resourceType"].(string)
	if p.root != "" && p.root != rt && p.root != "Resource" && p.root != "DomainResource" {
		return nil, unprocessable("the path %q is for a %s but the resource is a %s", clip(src), p.root, clip(rt))
	}
	coll := []node{{value: doc, index: -1, elem: rt}}
	return evalSteps(coll, p.steps), nil
}

func evalSteps(coll []node, steps []step) []node {
	for _, s := range steps {
		if len(coll) == 0 {
			return nil
		}
		switch s.kind {
		case stepName:
			coll = children(coll, s.name)
		case stepIndex:
			if s.index < len(coll) {
				coll = coll[s.index : s.index+1]
			} else {
				coll = nil
			}
		case stepFirst:
			coll = coll[:1]
		case stepLast:
			coll = coll[len(coll)-1:]
		case stepWhere:
			var kept []node
			for _, n := range coll {
				if s.where.matches(n) {
					kept = append(kept, n)
				}
			}
			coll = kept
		}
	}
	return coll
}

// matches applies FHIRPath equality: true only when the relative path selects exactly one value
// and it equals the literal (an empty or multi-item collection is not equal).
func (c *criterion) matches(n node) bool {
	coll := []node{n}
	for _, name := range c.path {
		coll = children(coll, name)
	}
	if len(coll) != 1 {
		return false
	}
	switch c.lit.kind {
	case 's':
		s, ok := coll[0].value.(string)
		return ok && s == c.lit.text
	case 'b':
		b, ok := coll[0].value.(bool)
		return ok && b == c.lit.truth
	case 'n':
		t, ok := numberText(coll[0].value)
		return ok && equalNumbers(t, c.lit.text)
	}
	return false
}
