package server

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/calaimfhir/calaimfhir/resources"
)

// Bundles are assembled around the stored resource bytes, which are copied in verbatim: a
// search or history page never re-parses or re-encodes a resource.

type bundleWriter struct {
	buf     bytes.Buffer
	entries int
}

func newBundle(typ string, total int64, links [][2]string) *bundleWriter {
	b := &bundleWriter{}
	b.buf.WriteString(`{"resourceType":"Bundle","id":"`)
	b.buf.WriteString(resources.NewID())
	b.buf.WriteString(`","meta":{"lastUpdated":"`)
	b.buf.WriteString(resources.FormatInstant(time.Now()))
	b.buf.WriteString(`"},"type":"`)
	b.buf.WriteString(typ)
	b.buf.WriteByte('"')
	if total >= 0 {
		b.buf.WriteString(`,"total":`)
		b.buf.WriteString(strconv.FormatInt(total, 10))
	}
	if len(links) > 0 {
		b.buf.WriteString(`,"link":[`)
		for i, l := range links {
			if i > 0 {
				b.buf.WriteByte(',')
			}
			b.buf.WriteString(`{"relation":`)
			writeString(&b.buf, l[0])
			b.buf.WriteString(`,"url":`)
			writeString(&b.buf, l[1])
			b.buf.WriteByte('}')
		}
		b.buf.WriteByte(']')
	}
	b.buf.WriteString(`,"entry":[`)
	return b
}

// entry appends one entry; fields are written in order, raw values verbatim.
func (b *bundleWriter) entry(fields ...any) {
	if b.entries > 0 {
		b.buf.WriteByte(',')
	}
	b.entries++
	b.buf.WriteByte('{')
	for i := 0; i < len(fields); i += 2 {
		if i > 0 {
			b.buf.WriteByte(',')
		}
		writeString(&b.buf, fields[i].(string))
		b.buf.WriteByte(':')
		switch v := fields[i+1].(type) {
		case []byte:
			b.buf.Write(v)
		case json.RawMessage:
			b.buf.Write(v)
		case string:
			writeString(&b.buf, v)
		default:
			enc, _ := json.Marshal(v)
			b.buf.Write(enc)
		}
	}
	b.buf.WriteByte('}')
}

func (b *bundleWriter) bytes() []byte {
	if b.entries == 0 {
		// An empty entry array is not valid FHIR: drop it.
		b.buf.Truncate(b.buf.Len() - len(`,"entry":[`))
		b.buf.WriteByte('}')
		return b.buf.Bytes()
	}
	b.buf.WriteString("]}")
	return b.buf.Bytes()
}

func writeString(buf *bytes.Buffer, s string) {
	enc, _ := json.Marshal(s)
	buf.Write(enc)
}

func (s *Server) searchBundle(typ string, sr *resources.SearchRequest, page *resources.Page) []byte {
	return s.searchsetBundle(s.cfg.BaseURL+"/"+typ, sr.Applied, sr.Ignored, sr.Shape, page)
}

// searchsetBundle writes a searchset; path is the search URL without its query.
// shape applies _elements and _summary to each match.
func (s *Server) searchsetBundle(path string, applied url.Values, ignored []resources.Issue, shape func([]byte) []byte, page *resources.Page) []byte {
	links := [][2]string{{"self", withQuery(path, applied)}}
	if page.Next != nil {
		next := url.Values{}
		for k, v := range applied {
			next[k] = v
		}
		next.Set("_cursor", resources.EncodeCursor(page.Next))
		links = append(links, [2]string{"next", withQuery(path, next)})
	}
	b := newBundle("searchset", page.Total, links)
	for _, r := range page.Resources {
		b.entry("fullUrl", s.cfg.BaseURL+"/"+r.Type+"/"+r.ID, "resource", shape(r.JSON), "search", json.RawMessage(`{"mode":"match"}`))
	}
	for _, r := range page.Included {
		b.entry("fullUrl", s.cfg.BaseURL+"/"+r.Type+"/"+r.ID, "resource", r.JSON, "search", json.RawMessage(`{"mode":"include"}`))
	}
	if page.Withheld {
		// Say that something was left out, never what: not the type, not the count.
		ignored = append(slices.Clip(ignored), resources.Issue{Severity: resources.SeverityInformation, Code: "suppressed",
			Diagnostics: "some matching resources were withheld under the member's consent to share"})
	}
	if len(ignored) > 0 {
		b.entry("resource", outcomeJSON(ignored), "search", json.RawMessage(`{"mode":"outcome"}`))
	}
	return b.bytes()
}

func (s *Server) historyBundle(q *resources.HistoryQuery, params url.Values, page *resources.Page) []byte {
	path := s.cfg.BaseURL + "/" + q.Type
	if q.ID != "" {
		path += "/" + q.ID
	}
	path += "/_history"
	self := url.Values{}
	for _, k := range []string{"_count", "_since", "_cursor"} {
		if v := params.Get(k); v != "" {
			self.Set(k, v)
		}
	}
	links := [][2]string{{"self", withQuery(path, self)}}
	if page.Next != nil {
		next := url.Values{}
		next.Set("_count", strconv.Itoa(q.Count))
		if v := params.Get("_since"); v != "" {
			next.Set("_since", v)
		}
		next.Set("_cursor", resources.EncodeCursor(page.Next))
		links = append(links, [2]string{"next", withQuery(path, next)})
	}
	b := newBundle("history", page.Total, links)
	for _, r := range page.Resources {
		fullURL := s.cfg.BaseURL + "/" + r.Type + "/" + r.ID
		version := strconv.FormatInt(r.VersionID, 10)
		response := map[string]string{
			"etag":         `W/"` + version + `"`,
			"lastModified": resources.FormatInstant(r.LastUpdated),
		}
		switch {
		case r.Deleted:
			response["status"] = "204"
			b.entry("fullUrl", fullURL, "request", map[string]string{"method": "DELETE", "url": r.Type + "/" + r.ID}, "response", response)
		case r.VersionID == 1:
			response["status"] = "201"
			b.entry("fullUrl", fullURL, "resource", r.JSON, "request", map[string]string{"method": "POST", "url": r.Type}, "response", response)
		default:
			response["status"] = "200"
			b.entry("fullUrl", fullURL, "resource", r.JSON, "request", map[string]string{"method": "PUT", "url": r.Type + "/" + r.ID}, "response", response)
		}
	}
	return b.bytes()
}

func withQuery(path string, q url.Values) string {
	if len(q) == 0 {
		return path
	}
	return path + "?" + q.Encode()
}

// bundleResponse renders a batch-response or transaction-response.
func (s *Server) bundleResponse(res *resources.BundleResult) []byte {
	b := newBundle(res.Type, -1, nil)
	for _, e := range res.Entries {
		response := map[string]any{"status": strconv.Itoa(e.Status) + " " + http.StatusText(e.Status)}
		if e.Location != "" {
			response["location"] = s.cfg.BaseURL + "/" + e.Location
		}
		if e.ETag != "" {
			response["etag"] = e.ETag
		}
		if !e.LastModified.IsZero() {
			response["lastModified"] = resources.FormatInstant(e.LastModified)
		}
		if len(e.Outcome) > 0 {
			response["outcome"] = json.RawMessage(outcomeJSON(e.Outcome))
		}
		if len(e.Resource) > 0 {
			fields := []any{}
			var probe struct{ ResourceType, ID string }
			if json.Unmarshal(e.Resource, &probe) == nil && probe.ID != "" {
				fields = append(fields, "fullUrl", s.cfg.BaseURL+"/"+probe.ResourceType+"/"+probe.ID)
			}
			fields = append(fields, "resource", e.Resource, "response", response)
			b.entry(fields...)
			continue
		}
		b.entry("response", response)
	}
	return b.bytes()
}
