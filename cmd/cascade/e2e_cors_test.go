package main

import (
	"encoding/base64"
	"net/http"
	"testing"
	"time"

	"github.com/cascade-rtc/cascade/balancer"
	"github.com/cascade-rtc/cascade/config"
)

// TestNullOriginWithGrant: a page on one origin POSTs to a balancer on
// another, which redirects to a node on a third; the browser then sends
// Origin: null. A node whose allowed origins do not include "null" admits
// it only when the URL carries a valid grant for it.
func TestNullOriginWithGrant(t *testing.T) {
	n := startNode(t, []string{"CASCADE_HTTP_ALLOWED_ORIGINS=https://page.example"},
		"--node-id", "cors-a", "--listen", "127.0.0.2:0", "--cluster-bind", "127.0.0.2:0")
	key, err := base64.StdEncoding.DecodeString(config.DevClusterKey)
	if err != nil {
		t.Fatal(err)
	}
	good := balancer.SignGrant(key, balancer.Publish, "s", "cors-a", time.Now().Add(time.Minute))
	forged := balancer.SignGrant([]byte("another key, 16b"), balancer.Publish, "s", "cors-a", time.Now().Add(time.Minute))
	for _, tc := range []struct {
		name, query, origin, want string
	}{
		{"valid grant", "?grant=" + good, "null", "null"},
		{"forged grant", "?grant=" + forged, "null", ""},
		{"no grant", "", "null", ""},
		{"allowed origin", "", "https://page.example", "https://page.example"},
		{"other origin", "?grant=" + good, "https://evil.example", ""},
	} {
		req, _ := http.NewRequest(http.MethodOptions, n.URL+"/whip/s"+tc.query, nil)
		req.Header.Set("Origin", tc.origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("Access-Control-Allow-Origin"); got != tc.want {
			t.Errorf("%s: preflight from %s: Access-Control-Allow-Origin %q, want %q", tc.name, tc.origin, got, tc.want)
		}
	}
}
