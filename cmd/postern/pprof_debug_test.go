//go:build pprof

package main

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestPprofServer: the profiling build serves the profile index (make lint
// runs it with -tags pprof).
func TestPprofServer(t *testing.T) {
	addr, err := servePprof("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + addr.String() + "/debug/pprof/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(body), "goroutine") {
		t.Fatalf("GET /debug/pprof/: %d\n%s", resp.StatusCode, body)
	}
}
