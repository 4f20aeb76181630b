package server

import (
	"context"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/calaimfhir/calaimfhir/internal/auth"
	"github.com/calaimfhir/calaimfhir/mapping"
	"github.com/calaimfhir/calaimfhir/profiles"
	"github.com/calaimfhir/calaimfhir/resources"
)

// POST /fhir/$import?format=referral|screening|chw-encounter|dhcs-mif[&atomic=true][&dryRun=true]
// takes a file of non-FHIR records (a JSON array, or CSV with a header of field names) and
// stores what mapping makes of it. Rows are independent by default (batch semantics): good rows
// are stored, bad rows are reported, each with its row number, field and problem. With
// atomic=true the file is stored whole in one transaction or not at all. dryRun=true returns
// the transaction Bundle without storing anything.

// ImportOptions adjust RunImport.
type ImportOptions struct {
	Format  string
	Atomic  bool
	Convert mapping.Options
	// ChunkRows is how many rows share one transaction (default 50): rows are stored in
	// chunks for speed, and a chunk that fails is retried row by row, so one bad row never
	// holds back the others.
	ChunkRows int
	// Progress, when set, is told after each chunk how many rows are done.
	Progress func(done, total int)
}

// RowOutcome is what became of one row.
type RowOutcome struct {
	Row      int
	Key      string
	Stored   bool
	Created  int // resources this row created (the others already existed)
	Errors   []mapping.RowError
	Warnings []string
}

// ImportReport is the result of an import.
type ImportReport struct {
	Format  string
	Rows    []RowOutcome
	Stored  int // rows stored (new or already present)
	Created int // resources created
}

// Rejected is the number of rows not stored.
func (r *ImportReport) Rejected() int { return len(r.Rows) - r.Stored }

// fatal reports errors that concern the whole request, not a row: the caller may not write,
// or the store failed. The import stops there; rows stored so far stay, and importing the
// same file again is safe (every create is conditional).
func fatal(err error) bool {
	switch resources.KindOf(err) {
	case resources.KindUnauthorized, resources.KindForbidden, resources.KindUnavailable, resources.KindInternal, resources.KindTooManyRequests:
		return true
	}
	return false
}

// Executor runs a transaction Bundle and returns the HTTP status of each entry, in order.
// Its errors are *resources.Error (the kinds say whether the row or the whole import failed).
type Executor func(ctx context.Context, tx []byte) ([]int, error)

// ServiceExecutor runs transactions on svc.
func ServiceExecutor(svc *resources.Service) Executor {
	return func(ctx context.Context, tx []byte) ([]int, error) {
		res, err := svc.ProcessBundle(ctx, tx, resources.BundleOptions{})
		if err != nil {
			return nil, err
		}
		out := make([]int, len(res.Entries))
		for i, e := range res.Entries {
			out[i] = e.Status
		}
		return out, nil
	}
}

// RunImport converts rows and stores them with exec, in transactions of at most maxEntries
// entries (resources.DefaultMaxBundleEntries when 0).
func RunImport(ctx context.Context, exec Executor, maxEntries int, rows []mapping.Row, opts ImportOptions) (*ImportReport, error) {
	results, err := mapping.Convert(opts.Format, rows, opts.Convert)
	if err != nil {
		return nil, importFileError(err)
	}
	rep := &ImportReport{Format: opts.Format, Rows: make([]RowOutcome, len(results))}
	var good []int
	for i, res := range results {
		rep.Rows[i] = RowOutcome{Row: res.Row, Key: res.Key, Errors: res.Errors, Warnings: res.Warnings}
		if res.Bundle != nil {
			good = append(good, i)
		}
	}
	if maxEntries <= 0 {
		maxEntries = resources.DefaultMaxBundleEntries
	}
	if opts.Atomic {
		if len(good) < len(results) {
			return rep, &resources.Error{Kind: resources.KindUnprocessable, Message: "atomic import refused: some rows are invalid; nothing was stored",
				Issues: rep.issues(false)}
		}
		all := mapping.NewBundle()
		for _, i := range good {
			all.Merge(results[i].Bundle)
		}
		if all.Len() > maxEntries {
			return rep, resources.Errorf(resources.KindTooLarge, "an atomic import of this file is a transaction of %d resources; the limit is %d: import it without atomic=true, or split it", all.Len(), maxEntries)
		}
		statuses, err := runTx(ctx, exec, all)
		if err != nil {
			if fatal(err) {
				return rep, err
			}
			return rep, blameRows(err, all, results)
		}
		for _, i := range good {
			rep.record(i, results[i].Bundle, statuses)
		}
		if opts.Progress != nil {
			opts.Progress(len(rows), len(rows))
		}
		return rep, nil
	}

	chunkRows := opts.ChunkRows
	if chunkRows <= 0 {
		chunkRows = 50
	}
	done := len(results) - len(good) // rejected rows need no more work
	for start := 0; start < len(good); {
		chunk := mapping.NewBundle()
		end := start
		for end < len(good) && end-start < chunkRows {
			b := results[good[end]].Bundle
			if end > start && chunk.Len()+b.Len() > maxEntries {
				break
			}
			chunk.Merge(b)
			end++
		}
		statuses, err := runTx(ctx, exec, chunk)
		switch {
		case err == nil:
			for _, i := range good[start:end] {
				rep.record(i, results[i].Bundle, statuses)
			}
		case fatal(err):
			return rep, err
		default:
			// Some row of the chunk fails as a transaction: store each on its own.
			for _, i := range good[start:end] {
				statuses, err := runTx(ctx, exec, results[i].Bundle)
				if err != nil {
					if fatal(err) {
						return rep, err
					}
					rep.Rows[i].Errors = append(rep.Rows[i].Errors, mapping.RowError{Row: results[i].Row, Message: "not stored: " + errorText(err)})
					continue
				}
				rep.record(i, results[i].Bundle, statuses)
			}
		}
		done += end - start
		if opts.Progress != nil {
			opts.Progress(done, len(results))
		}
		start = end
	}
	return rep, nil
}

var entryIndex = regexp.MustCompile(`Bundle\.entry\[(\d+)\]`)

// blameRows names the rows whose entry failed an atomic import's transaction: the store
// reports Bundle.entry[i], which means nothing to whoever wrote the file.
func blameRows(err error, all *mapping.Bundle, results []mapping.Result) error {
	e, ok := err.(*resources.Error)
	if !ok {
		return err
	}
	out := &resources.Error{Kind: e.Kind, Message: "atomic import failed, nothing was stored: " + e.Message, Err: e.Err}
	for _, is := range e.OutcomeIssues() {
		m := entryIndex.FindStringSubmatch(is.Diagnostics + " " + strings.Join(is.Expression, " "))
		if m != nil {
			i, _ := strconv.Atoi(m[1])
			var rows []string
			if i < len(all.Entries) {
				for _, r := range results {
					if r.Bundle != nil && r.Bundle.Has(all.Entries[i].FullURL) {
						rows = append(rows, strconv.Itoa(r.Row))
					}
				}
			}
			if len(rows) > 0 {
				is.Diagnostics = "row " + strings.Join(rows, ", ") + ": " + is.Diagnostics
				is.Expression = append(is.Expression, "row["+rows[0]+"]")
			}
		}
		out.Issues = append(out.Issues, is)
	}
	return out
}

// runTx runs a transaction and returns the status of each fullUrl.
func runTx(ctx context.Context, exec Executor, b *mapping.Bundle) (map[string]int, error) {
	res, err := exec(ctx, b.Transaction())
	if err != nil {
		return nil, err
	}
	statuses := map[string]int{}
	for i, st := range res {
		if i < len(b.Entries) {
			statuses[b.Entries[i].FullURL] = st
		}
	}
	return statuses, nil
}

func (rep *ImportReport) record(i int, b *mapping.Bundle, statuses map[string]int) {
	row := &rep.Rows[i]
	row.Stored = true
	rep.Stored++
	for _, e := range b.Entries {
		if statuses[e.FullURL] == http.StatusCreated {
			row.Created++
			statuses[e.FullURL] = http.StatusOK // a resource shared by rows is counted once
		}
	}
	rep.Created += row.Created
}

func errorText(err error) string {
	var parts []string
	if e, ok := err.(*resources.Error); ok {
		for _, is := range e.OutcomeIssues() {
			parts = append(parts, is.Diagnostics)
		}
		return strings.Join(parts, "; ")
	}
	return "internal error"
}

// importFileError turns a problem with the file as a whole into a request error.
func importFileError(err error) error {
	if fe, ok := err.(*mapping.FileError); ok {
		kind := resources.KindBadRequest
		if fe.TooLarge {
			kind = resources.KindTooLarge
		}
		return resources.Errorf(kind, "%s", fe.Message)
	}
	return resources.Wrap(resources.KindInternal, err, "import failed")
}

// issues lists the report: a summary, then each rejected row's problems (and, with all, a line
// per stored row and the warnings).
func (rep *ImportReport) issues(all bool) []resources.Issue {
	out := []resources.Issue{{Severity: resources.SeverityInformation, Code: resources.IssueInformational,
		Diagnostics: fmt.Sprintf("%s import: %d rows, %d stored, %d rejected; %d resources created", rep.Format, len(rep.Rows), rep.Stored, rep.Rejected(), rep.Created)}}
	for _, row := range rep.Rows {
		for _, e := range row.Errors {
			expr := fmt.Sprintf("row[%d]", e.Row)
			if e.Field != "" {
				expr += "." + e.Field
			}
			out = append(out, resources.Issue{Severity: resources.SeverityError, Code: resources.IssueInvalid, Diagnostics: e.Error(), Expression: []string{expr}})
		}
		if !all {
			continue
		}
		for _, w := range row.Warnings {
			out = append(out, resources.Issue{Severity: resources.SeverityWarning, Code: resources.IssueIncomplete,
				Diagnostics: fmt.Sprintf("row %d: %s", row.Row, w), Expression: []string{fmt.Sprintf("row[%d]", row.Row)}})
		}
		if row.Stored {
			state := "already present, nothing new"
			if row.Created > 0 {
				state = fmt.Sprintf("%d resources created", row.Created)
			}
			out = append(out, resources.Issue{Severity: resources.SeverityInformation, Code: resources.IssueInformational,
				Diagnostics: fmt.Sprintf("row %d (%s): stored, %s", row.Row, row.Key, state), Expression: []string{fmt.Sprintf("row[%d]", row.Row)}})
		}
	}
	return out
}

// ImportSummaryURL is the extension on the report's OperationOutcome that carries the counts.
const ImportSummaryURL = profiles.Base + "/StructureDefinition/import-summary"

// OutcomeJSON renders the report as an OperationOutcome: a summary issue, a line per row and
// an error issue per problem (expression row[N].field), with the counts in an extension.
func (rep *ImportReport) OutcomeJSON() []byte {
	type ext struct {
		URL          string `json:"url"`
		ValueInteger *int   `json:"valueInteger,omitempty"`
		ValueCode    string `json:"valueCode,omitempty"`
		Extension    []ext  `json:"extension,omitempty"`
	}
	n := func(v int) *int { return &v }
	rejected := rep.Rejected()
	o := struct {
		ResourceType string         `json:"resourceType"`
		Extension    []ext          `json:"extension"`
		Issue        []outcomeIssue `json:"issue"`
	}{
		ResourceType: "OperationOutcome",
		Extension: []ext{{URL: ImportSummaryURL, Extension: []ext{
			{URL: "format", ValueCode: rep.Format},
			{URL: "rows", ValueInteger: n(len(rep.Rows))},
			{URL: "stored", ValueInteger: n(rep.Stored)},
			{URL: "rejected", ValueInteger: n(rejected)},
			{URL: "created", ValueInteger: n(rep.Created)},
		}}},
	}
	o.Issue = newOutcome(rep.issues(true)).Issue
	b, _ := json.Marshal(o)
	return b
}

// CBOReferOnly are the types a CBO may not create (resources/tenancy.go) that imports make:
// its imports refer to them instead (mapping.Options.ReferOnly).
var CBOReferOnly = map[string]bool{"Patient": true, "Organization": true, "Coverage": true}

// importFile is POST /fhir/$import.
func (s *Server) importFile(c echo.Context) error {
	format := c.QueryParam("format")
	if format == "" {
		return resources.Errorf(resources.KindBadRequest, "say which format the file is in: ?format=%s", strings.Join(mapping.Formats, "|"))
	}
	atomic, err := boolParam(c, "atomic")
	if err != nil {
		return err
	}
	dryRun, err := boolParam(c, "dryRun")
	if err != nil {
		return err
	}
	ct := c.Request().Header.Get(echo.HeaderContentType)
	mt, _, _ := mime.ParseMediaType(ct)
	var read func(string, []byte) ([]mapping.Row, error)
	switch {
	case mt == "text/csv" || mt == "application/csv":
		read = func(f string, b []byte) ([]mapping.Row, error) {
			return mapping.ReadCSV(f, strings.NewReader(string(b)), 0)
		}
	case jsonTypes[mt]:
		read = func(f string, b []byte) ([]mapping.Row, error) {
			return mapping.ReadJSON(f, strings.NewReader(string(b)), 0)
		}
	default:
		return resources.Errorf(resources.KindUnsupportedMediaType, "send the file as text/csv or application/json (got %q)", ct)
	}
	body, err := s.readBody(c)
	if err != nil {
		return err
	}
	rows, err := read(format, body)
	if err != nil {
		return importFileError(err)
	}
	ctx := c.Request().Context()
	opts := ImportOptions{Format: format, Atomic: atomic, Convert: mapping.Options{Today: time.Now().UTC()}}
	if caller, ok := auth.CallerFrom(ctx); ok && caller.Role != auth.RoleAdmin {
		// The referral workflow lets only the requester's organization create a Task.
		opts.Convert.Requester = caller.Org
		if caller.Role == auth.RoleCBO {
			// A CBO creates no members, organizations or coverage: its rows refer to them.
			opts.Convert.ReferOnly = CBOReferOnly
		}
	}
	if dryRun {
		return s.convertOnly(c, rows, opts)
	}
	rep, err := RunImport(ctx, ServiceExecutor(s.svc), s.svc.MaxBundleEntries, rows, opts)
	if err != nil {
		return err
	}
	status := http.StatusOK
	if rep.Stored == 0 {
		status = http.StatusUnprocessableEntity // nothing in the file could be stored
	}
	return c.Blob(status, fhirJSON, rep.OutcomeJSON())
}

// convertOnly answers dryRun=true: the transaction Bundle of the whole file, or a 422 listing
// every bad row.
func (s *Server) convertOnly(c echo.Context, rows []mapping.Row, opts ImportOptions) error {
	results, err := mapping.Convert(opts.Format, rows, opts.Convert)
	if err != nil {
		return importFileError(err)
	}
	rep := &ImportReport{Format: opts.Format}
	all := mapping.NewBundle()
	for _, r := range results {
		rep.Rows = append(rep.Rows, RowOutcome{Row: r.Row, Key: r.Key, Errors: r.Errors, Warnings: r.Warnings})
		if r.Bundle != nil {
			all.Merge(r.Bundle)
		}
	}
	bad := 0
	for _, r := range rep.Rows {
		if len(r.Errors) > 0 {
			bad++
		}
	}
	if bad > 0 {
		return &resources.Error{Kind: resources.KindUnprocessable, Message: fmt.Sprintf("%d rows are invalid", bad), Issues: rep.issues(false)[1:]}
	}
	return c.Blob(http.StatusOK, fhirJSON, all.Transaction())
}

func boolParam(c echo.Context, name string) (bool, error) {
	v := c.QueryParam(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, resources.Errorf(resources.KindBadRequest, "%s must be true or false, not %q", name, v)
	}
	return b, nil
}
