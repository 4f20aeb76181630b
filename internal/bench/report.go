package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
)

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteTable writes the report as aligned text tables, one per phase.
func (r *Report) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "target %s", r.Target)
	if r.Store != "" {
		fmt.Fprintf(w, " (%s store)", r.Store)
	}
	fmt.Fprintf(w, "; %d clients; seed %d; %d members, %d CBOs; claims via %s\n", r.Clients, r.Seed, r.Members, r.CBOs, claimModeText(r.ClaimMode))
	fmt.Fprintf(w, "load: %d resources in %.1f s = %.0f resources/s (transaction Bundles)\n", r.Loaded, r.LoadSecs, r.LoadPerSec)
	for _, ph := range r.Phases {
		fmt.Fprintf(w, "\n%s (%.1f s", ph.Name, ph.Seconds)
		if ph.Name == "solo" {
			fmt.Fprint(w, ", each operation alone; x ceiling = its rate / the ceiling's")
		}
		fmt.Fprintln(w, ")")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "op\tcount\treq/s\tres/s\tp50 ms\tp95 ms\tp99 ms\terrors\tx ceiling\t")
		rows := ph.Ops
		if ph.Name != "solo" {
			rows = append(rows[:len(rows):len(rows)], ph.Total)
		}
		for _, o := range rows {
			res, ratio := "", ""
			if o.ResourcesPerSec > 0 {
				res = fmt.Sprintf("%.0f", o.ResourcesPerSec)
			}
			if o.Ceiling > 0 {
				ratio = fmt.Sprintf("%.3f", o.Ceiling)
			}
			fmt.Fprintf(tw, "%s\t%d\t%.0f\t%s\t%.2f\t%.2f\t%.2f\t%d\t%s\t\n", o.Op, o.Count, o.PerSecond, res, o.P50, o.P95, o.P99, o.Errors, ratio)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if ph.Total.CPUPerRequest > 0 {
			fmt.Fprintf(w, "  CPU time of this process per request: %.3f ms\n", ph.Total.CPUPerRequest)
		}
		for _, o := range ph.Ops {
			if o.FirstError != "" {
				fmt.Fprintf(w, "  %s: first error: %s\n", o.Op, o.FirstError)
			}
			if o.Skipped > 0 {
				fmt.Fprintf(w, "  %s: %d times no open Task was left to move\n", o.Op, o.Skipped)
			}
		}
	}
	return nil
}

func claimModeText(mode string) string {
	if mode == "$submit" {
		return "POST Claim/$submit (Bundle of claims)"
	}
	return "batch Bundles of Claim creates (the server lists no Claim $submit)"
}
