package transport

import (
	"net/url"
	"slices"
	"strings"
)

// queryParams lists the query parameters each route takes; a route absent
// from it takes none. checkQuery enforces it for every route the server
// serves (but /metrics, whose scrapers may add their own), so a misspelt
// parameter (ofset=2) is a 400 naming it instead of being ignored, like an
// unknown JSON field in a body.
var queryParams = map[string][]string{
	"GET /api/v1/consume": {"topic", "partition", "offset", "max_records", "max_bytes", "wait_ms", "encoding"},
	"GET /api/v1/topics/{name}/partitions/{partition}/offsets": {"timestamp"},
	"GET /api/v1/durability":                                   {"scope"},
	"GET /api/v1/topics/{name}/storage":                        {"from", "count"},
	"GET /api/v1/metrics/history":                              {"node"},
}

// queryFree are the routes whose query string is not checked.
var queryFree = map[string]bool{"GET /metrics": true, "GET /ui/": true, "GET /ui": true, "GET /{$}": true}

// checkQuery refuses a malformed query string, a parameter route does not
// take, and a parameter given twice.
func checkQuery(route, rawQuery string) error {
	if rawQuery == "" || queryFree[route] {
		return nil
	}
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return badRequest("malformed query string: %v", err)
	}
	allowed := queryParams[route]
	names := make([]string, 0, len(q))
	for name := range q {
		names = append(names, name)
	}
	slices.Sort(names) // the first offender named is deterministic
	for _, name := range names {
		if !slices.Contains(allowed, name) {
			return badRequest("unknown query parameter %q: %s", clip(name), takes(route, allowed))
		}
		if len(q[name]) > 1 {
			return badRequest("query parameter %s is given %d times; give it once", clip(name), len(q[name]))
		}
	}
	return nil
}

// takes says which query parameters route accepts.
func takes(route string, allowed []string) string {
	if len(allowed) == 0 {
		return route + " takes no query parameters"
	}
	return route + " takes " + strings.Join(allowed, ", ")
}
