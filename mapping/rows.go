package mapping

import (
	"bytes"
	"embed"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

//go:embed schemas/*.schema.json
var schemaFS embed.FS

// Formats lists the input formats, in the order the README documents them.
var Formats = []string{"referral", "screening", "chw-encounter", "dhcs-mif"}

// DefaultMaxRows bounds the rows of one file: larger files are refused whole (split them).
const DefaultMaxRows = 100_000

// Row is one input record: its 1-based position among the data records (the CSV header is not
// counted) and its fields as JSON values (strings, json.Number, []any, map[string]any).
type Row struct {
	Num    int
	Fields map[string]any
}

// RowError is one problem with one row: which row, which field ("" for the row as a whole)
// and what is wrong, in words a person fixing the spreadsheet understands.
type RowError struct {
	Row     int
	Field   string
	Message string
}

func (e RowError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("row %d: %s", e.Row, e.Message)
	}
	return fmt.Sprintf("row %d, %s: %s", e.Row, e.Field, e.Message)
}

// FileError is a problem with the file as a whole (not JSON, wrong CSV header, too many rows):
// nothing in it is converted.
type FileError struct {
	Message  string
	TooLarge bool // the file exceeds a size bound (HTTP 413), rather than being malformed (400)
}

func (e *FileError) Error() string { return e.Message }

// fieldKind is how a CSV cell becomes a JSON value, read from the format's schema.
type fieldKind int

const (
	kindString fieldKind = iota
	kindList             // "array" of strings: cells split on ';'
	kindInt              // "integer"
	kindPairs            // "object" of code → answer(s): cells like 88122-7=LA28397-0;88123-5=LA28398-8
)

type schemaDoc struct {
	Properties map[string]struct {
		Type any `json:"type"`
	} `json:"properties"`
	Required []string `json:"required"`
}

// format is one input format: its compiled schema and the CSV reading of each field.
type format struct {
	name     string
	raw      []byte
	schema   *jsonschema.Schema
	kinds    map[string]fieldKind
	required []string
}

var (
	formatsOnce sync.Once
	formatsErr  error
	formatByKey map[string]*format
)

func loadFormats() {
	formatByKey = map[string]*format{}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	for _, name := range Formats {
		path := "schemas/" + name + ".schema.json"
		raw, err := schemaFS.ReadFile(path)
		if err != nil {
			formatsErr = err
			return
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
		if err != nil {
			formatsErr = fmt.Errorf("%s: %w", path, err)
			return
		}
		url := "https://calaimfhir.org/fhir/import/" + name + ".schema.json"
		if err := c.AddResource(url, doc); err != nil {
			formatsErr = err
			return
		}
		sch, err := c.Compile(url)
		if err != nil {
			formatsErr = fmt.Errorf("%s: %w", path, err)
			return
		}
		var sd schemaDoc
		if err := json.Unmarshal(raw, &sd); err != nil {
			formatsErr = err
			return
		}
		f := &format{name: name, raw: raw, schema: sch, kinds: map[string]fieldKind{}, required: sd.Required}
		for field, p := range sd.Properties {
			switch p.Type {
			case "array":
				f.kinds[field] = kindList
			case "integer":
				f.kinds[field] = kindInt
			case "object":
				f.kinds[field] = kindPairs
			default:
				f.kinds[field] = kindString
			}
		}
		formatByKey[name] = f
	}
}

func getFormat(name string) (*format, error) {
	formatsOnce.Do(loadFormats)
	if formatsErr != nil {
		return nil, formatsErr
	}
	f, ok := formatByKey[name]
	if !ok {
		return nil, &FileError{Message: fmt.Sprintf("unknown format %q: use one of %s", name, strings.Join(Formats, ", "))}
	}
	return f, nil
}

// Schema returns the JSON Schema of a format (for the README and for clients).
func Schema(name string) ([]byte, error) {
	f, err := getFormat(name)
	if err != nil {
		return nil, err
	}
	return f.raw, nil
}

// Columns returns a format's field names, sorted: the accepted CSV header columns.
func Columns(name string) ([]string, error) {
	f, err := getFormat(name)
	if err != nil {
		return nil, err
	}
	cols := make([]string, 0, len(f.kinds))
	for k := range f.kinds {
		cols = append(cols, k)
	}
	sort.Strings(cols)
	return cols, nil
}

// ReadJSON reads a JSON array of records (or one record) of the given format.
func ReadJSON(name string, r io.Reader, maxRows int) ([]Row, error) {
	if _, err := getFormat(name); err != nil {
		return nil, err
	}
	if maxRows <= 0 {
		maxRows = DefaultMaxRows
	}
	v, err := jsonschema.UnmarshalJSON(r)
	if err != nil {
		return nil, &FileError{Message: "the body is not JSON: " + err.Error()}
	}
	var items []any
	switch x := v.(type) {
	case []any:
		items = x
	case map[string]any:
		items = []any{x}
	default:
		return nil, &FileError{Message: "the body must be a JSON array of records (or one record object)"}
	}
	if len(items) == 0 {
		return nil, &FileError{Message: "the file has no records"}
	}
	if len(items) > maxRows {
		return nil, &FileError{Message: fmt.Sprintf("the file has %d records; the limit is %d per import", len(items), maxRows), TooLarge: true}
	}
	rows := make([]Row, len(items))
	for i, it := range items {
		m, ok := it.(map[string]any)
		if !ok {
			// Kept as a row so that the report names it; the schema rejects it.
			m = map[string]any{"": it}
		}
		rows[i] = Row{Num: i + 1, Fields: m}
	}
	return rows, nil
}

// ReadCSV reads a CSV file of the given format: a header row of field names (any order; every
// required field present; no unknown names), then one record per row. Empty cells are absent
// fields; list cells are split on ';'.
func ReadCSV(name string, r io.Reader, maxRows int) ([]Row, error) {
	f, err := getFormat(name)
	if err != nil {
		return nil, err
	}
	if maxRows <= 0 {
		maxRows = DefaultMaxRows
	}
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = 0 // every record has the header's width
	cr.ReuseRecord = false
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, &FileError{Message: "the file is empty: it needs a header row of field names"}
	}
	if err != nil {
		return nil, &FileError{Message: "the header row is not CSV: " + err.Error()}
	}
	seen := map[string]bool{}
	for i, h := range header {
		h = strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")) // spreadsheet exports start with a BOM
		header[i] = h
		if _, ok := f.kinds[h]; !ok {
			return nil, &FileError{Message: fmt.Sprintf("header column %d %q is not a %s field (fields: %s)", i+1, h, name, strings.Join(mustColumns(name), ", "))}
		}
		if seen[h] {
			return nil, &FileError{Message: fmt.Sprintf("header column %q appears twice", h)}
		}
		seen[h] = true
	}
	var missing []string
	for _, req := range f.required {
		if !seen[req] {
			missing = append(missing, req)
		}
	}
	if len(missing) > 0 {
		return nil, &FileError{Message: "the header lacks required columns: " + strings.Join(missing, ", ")}
	}
	var rows []Row
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				return nil, &FileError{Message: fmt.Sprintf("line %d is not valid CSV: %v", pe.Line, pe.Err)}
			}
			return nil, &FileError{Message: "the file is not valid CSV: " + err.Error()}
		}
		if len(rows) >= maxRows {
			return nil, &FileError{Message: fmt.Sprintf("the file has more than %d records; the limit is %d per import", maxRows, maxRows), TooLarge: true}
		}
		row := Row{Num: len(rows) + 1, Fields: map[string]any{}}
		for i, cell := range rec {
			cell = strings.TrimSpace(cell)
			if cell == "" {
				continue
			}
			row.Fields[header[i]] = cellValue(f.kinds[header[i]], cell)
		}
		rows = append(rows, row)
	}
	if len(rows) == 0 {
		return nil, &FileError{Message: "the file has a header but no records"}
	}
	return rows, nil
}

func mustColumns(name string) []string {
	c, _ := Columns(name)
	return c
}

// cellValue turns a CSV cell into the JSON value the schema expects. A cell that does not
// parse as its kind is kept as a string, so that the schema reports it with the field's name.
func cellValue(k fieldKind, cell string) any {
	switch k {
	case kindList:
		var out []any
		for _, p := range strings.Split(cell, ";") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
		return out
	case kindInt:
		n := json.Number(cell)
		if _, err := n.Int64(); err != nil {
			return cell
		}
		return n
	case kindPairs:
		out := map[string]any{}
		for _, p := range strings.Split(cell, ";") {
			p = strings.TrimSpace(p)
			if p == "" {
				continue
			}
			k, v, ok := strings.Cut(p, "=")
			if !ok {
				return cell
			}
			k, v = strings.TrimSpace(k), strings.TrimSpace(v)
			switch prev := out[k].(type) {
			case nil:
				out[k] = v
			case string:
				out[k] = []any{prev, v}
			case []any:
				out[k] = append(prev, v)
			}
		}
		return out
	}
	return cell
}

var printer = message.NewPrinter(language.English)

// validateSchema checks a row against the format's schema and returns one RowError per
// problem, each naming the top-level field concerned.
func (f *format) validateSchema(row Row) []RowError {
	if _, ok := row.Fields[""]; ok && len(row.Fields) == 1 {
		return []RowError{{Row: row.Num, Message: "a record must be a JSON object of fields"}}
	}
	err := f.schema.Validate(map[string]any(row.Fields))
	if err == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return []RowError{{Row: row.Num, Message: err.Error()}}
	}
	var out []RowError
	var walk func(e *jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(e.Causes) > 0 {
			for _, c := range e.Causes {
				walk(c)
			}
			return
		}
		switch k := e.ErrorKind.(type) {
		case *kind.Required:
			for _, m := range k.Missing {
				out = append(out, RowError{Row: row.Num, Field: joinPath(e.InstanceLocation, m), Message: "is required"})
			}
			return
		case *kind.AdditionalProperties:
			for _, p := range k.Properties {
				out = append(out, RowError{Row: row.Num, Field: joinPath(e.InstanceLocation, p), Message: "is not a field of this format"})
			}
			return
		}
		field := joinPath(e.InstanceLocation, "")
		msg := e.ErrorKind.LocalizedString(printer)
		if p, ok := e.ErrorKind.(*kind.Pattern); ok {
			if help, ok := patternHelp[field]; ok {
				msg = fmt.Sprintf("%q %s", p.Got, help)
			} else if strings.HasSuffix(field, "_npi") {
				msg = fmt.Sprintf("%q is not an NPI (10 digits)", p.Got)
			}
		}
		out = append(out, RowError{Row: row.Num, Field: field, Message: msg})
	}
	walk(ve)
	slices.SortStableFunc(out, func(a, b RowError) int { return strings.Compare(a.Field, b.Field) })
	return out
}

// patternHelp says in words what a field's pattern asks for.
var patternHelp = map[string]string{
	"member_cin":       "is not a Medi-Cal CIN (8 digits then a capital letter, as 91234567A)",
	"reporting_period": "is not a reporting period (YYYY-MM)",
	"zip":              "is not a ZIP code (5 digits, or ZIP+4)",
	"language":         "is not a BCP 47 language code (en, es, vi, zh, ...)",
	"referral_id":      "is not an id (letters, digits, '.', '_' and '-', at most 64)",
	"encounter_id":     "is not an id (letters, digits, '.', '_' and '-', at most 64)",
	"screening_id":     "is not an id (letters, digits, '.', '_' and '-', at most 64)",
	"start_time":       "is not a time (HH:MM, 24-hour)",
	"end_time":         "is not a time (HH:MM, 24-hour)",
}

func joinPath(loc []string, last string) string {
	parts := slices.Clone(loc)
	if last != "" {
		parts = append(parts, last)
	}
	return strings.Join(parts, ".")
}
