package patch

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/calaimfhir/calaimfhir/resources"
)

// jsonOp is one parsed operation of a JSON Patch document.
type jsonOp struct {
	op       string
	path     string   // as written, for messages
	tokens   []string // path as unescaped reference tokens; empty for the whole document
	from     string
	fromToks []string
	value    any
}

// JSON applies an RFC 6902 JSON Patch document (application/json-patch+json) to doc and returns
// the patched document; doc itself is never modified. The operations are applied in order to a
// deep copy and the patch is atomic: on any error nothing is returned.
//
// Errors are *resources.Error:
//   - KindBadRequest (400) when the patch document is malformed: not a JSON array of operation
//     objects, an unknown op, a missing or mistyped member (op, path, from, value), a member
//     given twice, or a JSON Pointer that is not valid RFC 6901 syntax. The whole document is
//     checked before anything is applied, so a malformed patch is always a 400.
//   - KindUnprocessable (422) when a well-formed operation cannot be applied to this document:
//     a path or from that does not exist, an array index out of range or not a valid index,
//     moving a value into one of its own children, removing or replacing the document itself
//     with something other than an object, and a failed "test".
//
// A failed "test" is 422, not 412: the FHIR server reserves 412 Precondition Failed for version
// preconditions (If-Match), and RFC 5789 §2.2 classes a patch that is well-formed but cannot be
// applied to the resource's current content as unprocessable. Clients that need optimistic
// locking should send If-Match with the patch.
func JSON(doc map[string]any, patch []byte) (map[string]any, error) {
	ops, err := parseJSONPatch(patch)
	if err != nil {
		return nil, err
	}
	var root any = cloneDoc(doc)
	for i, op := range ops {
		root, err = applyJSONOp(root, op)
		if err != nil {
			var e *resources.Error
			if errors.As(err, &e) {
				e.Message = fmt.Sprintf("patch operation %d (%s %s): %s", i, op.op, clip(op.path), e.Message)
			}
			return nil, err
		}
	}
	out, ok := root.(map[string]any)
	if !ok || out == nil {
		return nil, unprocessable("the patched document is not a JSON object")
	}
	return out, nil
}

// parseJSONPatch checks the whole patch document and returns its operations.
func parseJSONPatch(patch []byte) ([]jsonOp, error) {
	malformed := func(err error) error {
		return resources.Wrap(resources.KindBadRequest, err, "the JSON Patch document is not valid JSON")
	}
	dec := json.NewDecoder(bytes.NewReader(patch))
	dec.UseNumber()
	tok, err := dec.Token()
	if err == io.EOF {
		return nil, badRequest("the JSON Patch document is empty")
	}
	if err != nil {
		return nil, malformed(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return nil, badRequest("a JSON Patch document must be a JSON array of operations")
	}
	var ops []jsonOp
	for dec.More() {
		n := len(ops)
		tok, err := dec.Token()
		if err != nil {
			return nil, malformed(err)
		}
		if d, ok := tok.(json.Delim); !ok || d != '{' {
			return nil, badRequest("patch operation %d is not a JSON object", n)
		}
		members := map[string]any{}
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				return nil, malformed(err)
			}
			name, _ := tok.(string)
			var v any
			if err := dec.Decode(&v); err != nil {
				return nil, malformed(err)
			}
			switch name {
			case "op", "path", "from", "value":
				if _, dup := members[name]; dup {
					return nil, badRequest("patch operation %d has the member %q twice", n, name)
				}
				members[name] = v
			}
			// Other members are ignored (RFC 6902 §4).
		}
		if _, err := dec.Token(); err != nil { // the closing '}'
			return nil, malformed(err)
		}
		op, err := checkJSONOp(n, members)
		if err != nil {
			return nil, err
		}
		ops = append(ops, op)
	}
	if _, err := dec.Token(); err != nil { // the closing ']'
		return nil, malformed(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, badRequest("the JSON Patch document has data after its closing bracket")
	}
	return ops, nil
}

func checkJSONOp(n int, members map[string]any) (jsonOp, error) {
	var op jsonOp
	name, ok := members["op"].(string)
	if !ok {
		return op, badRequest("patch operation %d needs an \"op\" string", n)
	}
	op.op = name
	switch name {
	case "add", "remove", "replace", "move", "copy", "test":
	default:
		return op, badRequest("patch operation %d has the unknown op %q (add, remove, replace, move, copy or test)", n, clip(name))
	}
	path, ok := members["path"].(string)
	if !ok {
		return op, badRequest("patch operation %d (%s) needs a \"path\" string", n, name)
	}
	op.path = path
	var err error
	if op.tokens, err = parsePointer(path); err != nil {
		return op, badRequest("patch operation %d (%s): path %q: %v", n, name, clip(path), err)
	}
	switch name {
	case "add", "replace", "test":
		v, ok := members["value"]
		if !ok {
			return op, badRequest("patch operation %d (%s %s) needs a \"value\"", n, name, clip(path))
		}
		op.value = v
	case "move", "copy":
		from, ok := members["from"].(string)
		if !ok {
			return op, badRequest("patch operation %d (%s %s) needs a \"from\" string", n, name, clip(path))
		}
		op.from = from
		if op.fromToks, err = parsePointer(from); err != nil {
			return op, badRequest("patch operation %d (%s): from %q: %v", n, name, clip(from), err)
		}
	}
	return op, nil
}

// parsePointer splits an RFC 6901 JSON Pointer into unescaped reference tokens.
func parsePointer(p string) ([]string, error) {
	if p == "" {
		return []string{}, nil
	}
	if p[0] != '/' {
		return nil, errors.New(`a JSON Pointer is empty or starts with "/"`)
	}
	tokens := strings.Split(p[1:], "/")
	for i, t := range tokens {
		if !strings.Contains(t, "~") {
			continue
		}
		for j := 0; j < len(t); j++ {
			if t[j] == '~' && (j+1 == len(t) || (t[j+1] != '0' && t[j+1] != '1')) {
				return nil, errors.New(`"~" must be followed by "0" or "1"`)
			}
		}
		tokens[i] = strings.ReplaceAll(strings.ReplaceAll(t, "~1", "/"), "~0", "~")
	}
	return tokens, nil
}

func applyJSONOp(root any, op jsonOp) (any, error) {
	switch op.op {
	case "add":
		return addAt(root, op.tokens, clone(op.value))
	case "remove":
		if len(op.tokens) == 0 {
			return nil, unprocessable("the whole document cannot be removed")
		}
		root, _, err := removeAt(root, op.tokens)
		return root, err
	case "replace":
		if _, err := getAt(root, op.tokens); err != nil {
			return nil, err
		}
		return replaceAt(root, op.tokens, clone(op.value))
	case "move":
		if len(op.fromToks) < len(op.tokens) && slices.Equal(op.fromToks, op.tokens[:len(op.fromToks)]) {
			return nil, unprocessable("a value cannot be moved into one of its own children")
		}
		if slices.Equal(op.fromToks, op.tokens) {
			_, err := getAt(root, op.fromToks)
			return root, err
		}
		root, v, err := removeAt(root, op.fromToks)
		if err != nil {
			return nil, err
		}
		return addAt(root, op.tokens, v)
	case "copy":
		v, err := getAt(root, op.fromToks)
		if err != nil {
			return nil, err
		}
		return addAt(root, op.tokens, clone(v))
	case "test":
		v, err := getAt(root, op.tokens)
		if err != nil {
			return nil, err
		}
		if !equalJSON(v, op.value) {
			return nil, unprocessable("test failed: the value differs")
		}
		return root, nil
	}
	return nil, badRequest("unknown op %q", clip(op.op))
}

// arrayIndex parses an array reference token: "0" or digits without a leading zero.
func arrayIndex(tok string, n int, allowEnd bool) (int, error) {
	if tok == "-" {
		if allowEnd {
			return n, nil
		}
		return 0, unprocessable(`"-" (after the last item) names no existing array item`)
	}
	if tok == "" || (len(tok) > 1 && tok[0] == '0') || strings.TrimLeft(tok, "0123456789") != "" {
		return 0, unprocessable("%q is not an array index", clip(tok))
	}
	i, err := strconv.Atoi(tok)
	limit := n - 1
	if allowEnd {
		limit = n
	}
	if err != nil || i > limit {
		return 0, unprocessable("array index %s is out of range (the array has %d items)", clip(tok), n)
	}
	return i, nil
}

// getAt returns the value a pointer refers to.
func getAt(root any, tokens []string) (any, error) {
	cur := root
	for i, tok := range tokens {
		switch c := cur.(type) {
		case map[string]any:
			v, ok := c[tok]
			if !ok {
				return nil, unprocessable("the path does not exist: no member %q at %s", clip(tok), clip(pointerText(tokens[:i])))
			}
			cur = v
		case []any:
			j, err := arrayIndex(tok, len(c), false)
			if err != nil {
				return nil, err
			}
			cur = c[j]
		default:
			return nil, unprocessable("the path does not exist: %s is not an object or array", clip(pointerText(tokens[:i])))
		}
	}
	return cur, nil
}

// modifyAt finds the container of the last token and replaces it with what change returns.
// Containers on the way are updated in place (the document is already a private copy); an
// array that change reallocates is stored back into its parent.
func modifyAt(root any, tokens []string, change func(container any, last string) (any, error)) (any, error) {
	if len(tokens) == 1 {
		return change(root, tokens[0])
	}
	switch c := root.(type) {
	case map[string]any:
		child, ok := c[tokens[0]]
		if !ok {
			return nil, unprocessable("the path does not exist: no member %q", clip(tokens[0]))
		}
		nc, err := modifyAt(child, tokens[1:], change)
		if err != nil {
			return nil, err
		}
		c[tokens[0]] = nc
		return c, nil
	case []any:
		j, err := arrayIndex(tokens[0], len(c), false)
		if err != nil {
			return nil, err
		}
		nc, err := modifyAt(c[j], tokens[1:], change)
		if err != nil {
			return nil, err
		}
		c[j] = nc
		return c, nil
	default:
		return nil, unprocessable("the path does not exist: %q is below a value that is not an object or array", clip(tokens[0]))
	}
}

// addAt implements "add": set an object member, insert into an array, or replace the root.
func addAt(root any, tokens []string, v any) (any, error) {
	if len(tokens) == 0 {
		return v, nil
	}
	return modifyAt(root, tokens, func(container any, last string) (any, error) {
		switch c := container.(type) {
		case map[string]any:
			c[last] = v
			return c, nil
		case []any:
			j, err := arrayIndex(last, len(c), true)
			if err != nil {
				return nil, err
			}
			return slices.Insert(c, j, v), nil
		default:
			return nil, unprocessable("cannot add %q to a value that is not an object or array", clip(last))
		}
	})
}

// removeAt implements "remove" and returns the removed value.
func removeAt(root any, tokens []string) (any, any, error) {
	if len(tokens) == 0 {
		return nil, nil, unprocessable("the whole document cannot be removed")
	}
	var removed any
	out, err := modifyAt(root, tokens, func(container any, last string) (any, error) {
		switch c := container.(type) {
		case map[string]any:
			v, ok := c[last]
			if !ok {
				return nil, unprocessable("the path does not exist: no member %q", clip(last))
			}
			removed = v
			delete(c, last)
			return c, nil
		case []any:
			j, err := arrayIndex(last, len(c), false)
			if err != nil {
				return nil, err
			}
			removed = c[j]
			return slices.Delete(c, j, j+1), nil
		default:
			return nil, unprocessable("the path does not exist: %q is below a value that is not an object or array", clip(last))
		}
	})
	return out, removed, err
}

// replaceAt implements "replace" on a path known to exist.
func replaceAt(root any, tokens []string, v any) (any, error) {
	if len(tokens) == 0 {
		if _, ok := v.(map[string]any); !ok {
			return nil, unprocessable("the document can only be replaced by a JSON object")
		}
		return v, nil
	}
	return modifyAt(root, tokens, func(container any, last string) (any, error) {
		switch c := container.(type) {
		case map[string]any:
			c[last] = v
			return c, nil
		case []any:
			j, err := arrayIndex(last, len(c), false)
			if err != nil {
				return nil, err
			}
			c[j] = v
			return c, nil
		default:
			return nil, unprocessable("the path does not exist")
		}
	})
}

// pointerText re-escapes tokens into a JSON Pointer, for messages.
func pointerText(tokens []string) string {
	if len(tokens) == 0 {
		return `"" (the document)`
	}
	var b strings.Builder
	for _, t := range tokens {
		b.WriteByte('/')
		b.WriteString(strings.ReplaceAll(strings.ReplaceAll(t, "~", "~0"), "/", "~1"))
	}
	return b.String()
}
