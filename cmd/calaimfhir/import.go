package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/calaimfhir/calaimfhir/internal/r4"
	"github.com/calaimfhir/calaimfhir/internal/sqlitestore"
	"github.com/calaimfhir/calaimfhir/mapping"
	"github.com/calaimfhir/calaimfhir/resources"
	"github.com/calaimfhir/calaimfhir/server"
)

const importUsage = `calaimfhir import --format FORMAT [--url BASE --token T | --data DIR] [flags] FILE

Maps a non-FHIR file into CalAIM FHIR and stores it. FORMAT is referral, screening,
chw-encounter or dhcs-mif; FILE is CSV (header = field names) or JSON (an array of records),
told apart by its extension (.csv, .json) or --input; "-" reads standard input.

With --url the resources go to a running server (POST BASE as transaction Bundles, with the
bearer token from --token or CALAIMFHIR_TOKEN). Without it they go straight into the embedded
store under --data (stop the server first, or use --url). Progress goes to stderr, the per-row
report to stdout. Importing the same file again stores nothing new. Exit status 1 when any row
was rejected.

Flags:
`

// importCmd is calaimfhir import.
func importCmd(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("import", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, importUsage); fs.PrintDefaults() }
	format := fs.String("format", "", "referral, screening, chw-encounter or dhcs-mif (required)")
	base := fs.String("url", "", "FHIR base URL of a running server, e.g. http://127.0.0.1:8080/fhir")
	token := fs.String("token", os.Getenv("CALAIMFHIR_TOKEN"), "bearer token for --url (CALAIMFHIR_TOKEN)")
	data := fs.String("data", envOr("CALAIMFHIR_DATA", "./data"), "embedded store directory, when --url is not given (CALAIMFHIR_DATA)")
	input := fs.String("input", "", "csv or json (default: from FILE's extension)")
	atomic := fs.Bool("atomic", false, "store the whole file in one transaction, or nothing if any row is bad")
	dryRun := fs.Bool("dry-run", false, "print the transaction Bundle instead of storing it")
	chunk := fs.Int("chunk", 100, "rows per transaction")
	maxEntries := fs.Int("max-bundle-entries", resources.DefaultMaxBundleEntries, "largest transaction sent (the server's --max-bundle-entries)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *format == "" || fs.NArg() != 1 {
		fs.Usage()
		return errors.New("import needs --format and one FILE")
	}
	file := fs.Arg(0)
	kind := *input
	if kind == "" {
		kind = strings.TrimPrefix(strings.ToLower(filepath.Ext(file)), ".")
	}
	var r io.Reader = stdin
	if file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return err
		}
		defer f.Close()
		r = f
	}
	var rows []mapping.Row
	var err error
	switch kind {
	case "csv":
		rows, err = mapping.ReadCSV(*format, r, 0)
	case "json":
		rows, err = mapping.ReadJSON(*format, r, 0)
	default:
		return fmt.Errorf("say whether %s is csv or json (--input)", file)
	}
	if err != nil {
		return err
	}
	opts := server.ImportOptions{Format: *format, Atomic: *atomic, ChunkRows: *chunk, Convert: mapping.Options{Today: time.Now().UTC()}}

	if *dryRun {
		results, err := mapping.Convert(*format, rows, opts.Convert)
		if err != nil {
			return err
		}
		all := mapping.NewBundle()
		bad := 0
		for _, res := range results {
			for _, e := range res.Errors {
				fmt.Fprintln(stderr, e.Error())
			}
			if res.Bundle == nil {
				bad++
				continue
			}
			all.Merge(res.Bundle)
		}
		stdout.Write(all.Transaction())
		fmt.Fprintln(stdout)
		if bad > 0 {
			return fmt.Errorf("%d of %d rows rejected", bad, len(results))
		}
		return nil
	}

	var exec server.Executor
	if *base != "" {
		if *token == "" {
			return errors.New("--url needs --token (or CALAIMFHIR_TOKEN)")
		}
		exec = httpExecutor(strings.TrimSuffix(*base, "/"), *token)
		if org, role := tokenClaims(*token); role != "admin" {
			opts.Convert.Requester = org // the server lets only the requester's organization create a Task
			if role == "cbo" {
				opts.Convert.ReferOnly = server.CBOReferOnly
			}
		}
	} else {
		store, err := sqlitestore.Open(ctx, *data, sqlitestore.Options{})
		if err != nil {
			return fmt.Errorf("open embedded store in %s: %w", *data, err)
		}
		defer store.Close()
		svc := &resources.Service{Store: store, Validate: r4.Validate, RequiredReferences: resources.DefaultRequiredReferences,
			MaxBundleEntries: *maxEntries, ApplyPatch: server.Patcher}
		exec = server.ServiceExecutor(svc)
	}
	bar := newProgress(stderr, *format)
	opts.Progress = bar.update
	rep, err := server.RunImport(ctx, exec, *maxEntries, rows, opts)
	bar.finish()
	if rep != nil {
		writeReport(stdout, rep)
	}
	if err != nil {
		var re *resources.Error
		if errors.As(err, &re) {
			var msgs []string
			for _, is := range re.OutcomeIssues() {
				msgs = append(msgs, is.Diagnostics)
			}
			return errors.New(strings.Join(msgs, "; "))
		}
		return err
	}
	if rep.Rejected() > 0 {
		return fmt.Errorf("%d of %d rows rejected", rep.Rejected(), len(rep.Rows))
	}
	return nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// writeReport prints a line per row and a summary.
func writeReport(w io.Writer, rep *server.ImportReport) {
	for _, row := range rep.Rows {
		switch {
		case len(row.Errors) > 0:
			for _, e := range row.Errors {
				fmt.Fprintf(w, "row %d\trejected\t%s\n", row.Row, strings.TrimPrefix(e.Error(), fmt.Sprintf("row %d, ", row.Row)))
			}
		case row.Stored && row.Created > 0:
			fmt.Fprintf(w, "row %d\tstored\t%s: %d resources created\n", row.Row, row.Key, row.Created)
		case row.Stored:
			fmt.Fprintf(w, "row %d\tunchanged\t%s: already stored\n", row.Row, row.Key)
		default:
			fmt.Fprintf(w, "row %d\tnot processed\n", row.Row)
		}
		for _, warn := range row.Warnings {
			fmt.Fprintf(w, "row %d\twarning\t%s\n", row.Row, warn)
		}
	}
	fmt.Fprintf(w, "%s import: %d rows, %d stored, %d rejected; %d resources created\n", rep.Format, len(rep.Rows), rep.Stored, rep.Rejected(), rep.Created)
}

// progress draws a bar on stderr: rewritten in place on a terminal, a line per 10% otherwise.
type progress struct {
	w        io.Writer
	label    string
	tty      bool
	lastTen  int
	start    time.Time
	finished bool
	drawn    bool
}

func newProgress(w io.Writer, label string) *progress {
	p := &progress{w: w, label: label, start: time.Now(), lastTen: -1}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	return p
}

func (p *progress) update(done, total int) {
	if total == 0 {
		return
	}
	pct := done * 100 / total
	const width = 30
	fill := done * width / total
	bar := strings.Repeat("=", fill) + strings.Repeat(" ", width-fill)
	rate := float64(done) / max(time.Since(p.start).Seconds(), 0.001)
	line := fmt.Sprintf("%s [%s] %3d%% %d/%d rows (%.0f rows/s)", p.label, bar, pct, done, total, rate)
	if p.tty {
		fmt.Fprint(p.w, "\r"+line)
		p.drawn = true
		return
	}
	if ten := pct / 10; ten != p.lastTen {
		p.lastTen = ten
		fmt.Fprintln(p.w, line)
	}
}

func (p *progress) finish() {
	if p.tty && p.drawn {
		fmt.Fprintln(p.w)
	}
}

// httpExecutor posts transactions to a server's base URL.
func httpExecutor(base, token string) server.Executor {
	client := &http.Client{Timeout: 5 * time.Minute}
	return func(ctx context.Context, tx []byte) ([]int, error) {
		for attempt := 0; ; attempt++ {
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, base, bytes.NewReader(tx))
			if err != nil {
				return nil, resources.Wrap(resources.KindBadRequest, err, "bad --url")
			}
			req.Header.Set("Content-Type", "application/fhir+json")
			req.Header.Set("Accept", "application/fhir+json")
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := client.Do(req)
			if err != nil {
				return nil, resources.Wrap(resources.KindUnavailable, err, "the server did not answer: "+err.Error())
			}
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
			resp.Body.Close()
			if resp.StatusCode == http.StatusTooManyRequests && attempt < 5 {
				wait, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
				time.Sleep(time.Duration(max(wait, 1)) * time.Second)
				continue
			}
			if resp.StatusCode != http.StatusOK {
				return nil, remoteError(resp.StatusCode, body)
			}
			var b struct {
				Entry []struct {
					Response struct {
						Status string `json:"status"`
					} `json:"response"`
				} `json:"entry"`
			}
			if err := json.Unmarshal(body, &b); err != nil {
				return nil, resources.Wrap(resources.KindInternal, err, "the server's answer is not a Bundle")
			}
			out := make([]int, len(b.Entry))
			for i, e := range b.Entry {
				code, _, _ := strings.Cut(e.Response.Status, " ")
				out[i], _ = strconv.Atoi(code)
			}
			return out, nil
		}
	}
}

// statusKinds maps a server's answer back to the kind the import logic reasons about.
var statusKinds = map[int]resources.Kind{
	400: resources.KindBadRequest, 401: resources.KindUnauthorized, 403: resources.KindForbidden, 404: resources.KindNotFound,
	409: resources.KindConflict, 412: resources.KindPreconditionFailed, 413: resources.KindTooLarge, 422: resources.KindUnprocessable,
	429: resources.KindTooManyRequests, 503: resources.KindUnavailable,
}

func remoteError(status int, body []byte) error {
	kind, ok := statusKinds[status]
	if !ok {
		kind = resources.KindInternal
	}
	var o struct {
		Issue []struct {
			Diagnostics string `json:"diagnostics"`
		} `json:"issue"`
	}
	msg := fmt.Sprintf("the server answered %d", status)
	if json.Unmarshal(body, &o) == nil {
		var parts []string
		for _, is := range o.Issue {
			parts = append(parts, is.Diagnostics)
		}
		if len(parts) > 0 {
			msg = strings.Join(parts, "; ")
		}
	}
	return resources.Errorf(kind, "%s", msg)
}

// tokenClaims reads the org and role claims of a JWT without verifying it: the server
// verifies; the importer only needs to know whom to name as the Tasks' requester.
func tokenClaims(tok string) (org, role string) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return "", ""
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", ""
	}
	var c struct {
		Org  string `json:"org"`
		Role string `json:"role"`
	}
	json.Unmarshal(payload, &c)
	return c.Org, c.Role
}
