package web

import (
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/livecart/livecart/web/auth"
)

// TestRequestMetricsRouteLabels: every request is counted under the route the mux
// matches for it (the pattern the handler was served by, or the one the mux would take
// for a request answered before it: a bad token, an unclean path, a preflight), as
// ServeMux.Handler names it, with its status, and observed under the same route.
func TestRequestMetricsRouteLabels(t *testing.T) {
	e := newTestEnv(t)
	viewer := e.token(auth.RoleViewer, "metrics-viewer")
	st := e.createStream("metrics-creator")
	type req struct{ method, path, token, body string }
	reqs := []req{
		{"GET", "/api/noop", viewer, ""},
		{"GET", "/api/noop", viewer, ""},
		{"GET", "/api/noop", "", ""},                   // 401 from the handler
		{"GET", "/api/noop", "garbage", ""},            // 401 before the mux
		{"POST", "/api/cart/items", "", `{}`},          // 401 from the handler
		{"POST", "/api/cart/items", viewer, `{"x":1}`}, // 400
		{"GET", "/api/streams/" + st.ID, "", ""},
		{"GET", "/api/streams//end", viewer, ""}, // unclean: 404 before the mux
		{"PUT", "/api/noop", viewer, ""},         // 405 from the catch-all
		{"GET", "/api/nothing-here", viewer, ""}, // 404 from the catch-all
		{"OPTIONS", "/api/cart/items", "", ""},   // a preflight, answered by cors
		{"GET", "/nothing-at-all", "", ""},
		{"GET", "/healthz", "", ""},
	}
	count := func() (map[string]float64, map[string]uint64) {
		mfs, err := e.web.deps.Registry.Gather()
		if err != nil {
			t.Fatal(err)
		}
		reqN, obsN := map[string]float64{}, map[string]uint64{}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				labels := map[string]string{}
				for _, l := range m.GetLabel() {
					labels[l.GetName()] = l.GetValue()
				}
				switch mf.GetName() {
				case "livecart_http_requests_total":
					reqN[labels["route"]+" "+labels["code"]] = m.GetCounter().GetValue()
				case "livecart_http_request_seconds":
					obsN[labels["route"]] = m.GetHistogram().GetSampleCount()
				}
			}
		}
		return reqN, obsN
	}
	reqBefore, obsBefore := count()
	wantReq, wantObs := map[string]float64{}, map[string]uint64{}
	for k, v := range reqBefore {
		wantReq[k] = v
	}
	for k, v := range obsBefore {
		wantObs[k] = v
	}
	for _, q := range reqs {
		_, route := e.web.mux.Handler(httptest.NewRequest(q.method, q.path, nil)) // the label as instrument named it before
		if route == "" {
			route = "unmatched"
		}
		var hdr []string
		if q.method == "OPTIONS" {
			hdr = []string{"Origin", "https://shop.example", "Access-Control-Request-Method", "POST"}
		}
		var body any
		if q.body != "" {
			body = q.body
		}
		resp, _ := e.doHeaders(q.method, q.path, q.token, body, hdr...)
		wantReq[route+" "+strconv.Itoa(resp.StatusCode)]++
		wantObs[route]++
	}
	gotReq, gotObs := count()
	for k, n := range wantReq {
		if gotReq[k] != n {
			t.Errorf("requests %q: got %v, want %v", k, gotReq[k], n)
		}
	}
	for k, n := range gotReq {
		if _, ok := wantReq[k]; !ok {
			t.Errorf("requests %q: got %v, want no such series", k, n)
		}
	}
	for k, n := range wantObs {
		if gotObs[k] != n {
			t.Errorf("latency %q: got %d observations, want %d", k, gotObs[k], n)
		}
	}
	if len(gotObs) != len(wantObs) {
		t.Errorf("latency series: got %v, want %v", gotObs, wantObs)
	}
}
