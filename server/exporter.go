package server

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/calaimfhir/calaimfhir/internal/auth"
	"github.com/calaimfhir/calaimfhir/mapping"
	"github.com/calaimfhir/calaimfhir/resources"
)

// GET /fhir/$export-rtf?plan=PLAN&period=YYYY-MM and GET /fhir/$export-otf?plan=PLAN&period=YYYY-MM
// write the DHCS Return Transmission File and Outreach Tracker File of a plan as CSV, from what
// the caller may read: the plan's Coverages (and their Patients), the referral Tasks (with their
// ServiceRequests and owners) and the Encounters of the period. The searches run with the
// caller's context, so tenancy and scopes apply as to any search.

// maxExportResources bounds what one export reads, so a request cannot hold the store for long.
const maxExportResources = 200_000

var planParam = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

func (s *Server) exportRTF(c echo.Context) error { return s.exportDHCS(c, "rtf") }
func (s *Server) exportOTF(c echo.Context) error { return s.exportDHCS(c, "otf") }

func (s *Server) exportDHCS(c echo.Context, kind string) error {
	plan, period := c.QueryParam("plan"), c.QueryParam("period")
	if !planParam.MatchString(plan) {
		return resources.Errorf(resources.KindBadRequest, "plan must be the plan id the import files use (plan_id), e.g. plan=IEHP")
	}
	start, err := time.Parse("2006-01", period)
	if err != nil {
		return resources.Errorf(resources.KindBadRequest, "period must be a month, YYYY-MM")
	}
	first, last := start.Format(time.DateOnly), start.AddDate(0, 1, -1).Format(time.DateOnly)
	ctx := c.Request().Context()
	d := mapping.NewDataset()
	n := 0
	searches := []struct {
		typ    string
		params url.Values
	}{
		{"Coverage", url.Values{"payor:Organization.identifier": {mapping.PlanIDSystem + "|" + plan}, "_include": {"Coverage:payor", "Coverage:beneficiary"}}},
		{"Encounter", url.Values{"date": {"ge" + first, "le" + last}, "_include": {"Encounter:service-provider"}}},
	}
	if kind == "rtf" {
		searches = append(searches, struct {
			typ    string
			params url.Values
		}{"Task", url.Values{"authored-on": {"le" + last}, "_include": {"Task:focus", "Task:owner"}}})
	}
	for _, sc := range searches {
		if err := s.allowed(ctx, sc.typ, auth.Search); err != nil {
			return err
		}
		if err := s.searchAll(ctx, sc.typ, sc.params, d, &n); err != nil {
			return err
		}
	}
	var out []byte
	if kind == "rtf" {
		out, err = mapping.ReturnTransmissionFile(d, plan, period, time.Now().UTC())
	} else {
		out, err = mapping.OutreachTrackerFile(d, plan, period)
	}
	if err != nil {
		return resources.Wrap(resources.KindInternal, err, "the file could not be written")
	}
	c.Response().Header().Set("Content-Disposition", `attachment; filename="`+kind+"-"+plan+"-"+period+`.csv"`)
	return c.Blob(http.StatusOK, "text/csv; charset=utf-8", out)
}

// searchAll pages through a search and adds every match and included resource to d.
func (s *Server) searchAll(ctx context.Context, typ string, params url.Values, d *mapping.Dataset, n *int) error {
	params.Set("_count", "1000")
	for {
		sr, err := resources.ParseSearch(typ, params, s.cfg.BaseURL, true)
		if err != nil {
			return err
		}
		page, err := s.svc.Search(ctx, sr)
		if err != nil {
			return err
		}
		for _, list := range [][]*resources.Resource{page.Resources, page.Included} {
			for _, r := range list {
				var m map[string]any
				dec := json.NewDecoder(bytes.NewReader(r.JSON))
				dec.UseNumber()
				if err := dec.Decode(&m); err != nil {
					return resources.Wrap(resources.KindInternal, err, "a stored resource is not JSON")
				}
				d.Add(m)
				if *n++; *n > maxExportResources {
					return resources.Errorf(resources.KindTooLarge, "the file would read more than %d resources: ask for a shorter period", maxExportResources)
				}
			}
		}
		if page.Next == nil {
			return nil
		}
		params.Set("_cursor", resources.EncodeCursor(page.Next))
	}
}
