//go:build pprof

// This file is built only with -tags pprof, for profiling a running
// postern (bench/README.md, "Profiling"): it serves net/http/pprof on the
// loopback address in POSTERN_PPROF (e.g. 127.0.0.1:6060). Release builds
// do not contain it.

package main

import (
	"net/http"
	_ "net/http/pprof" // registers /debug/pprof/ on http.DefaultServeMux
	"os"
)

func init() {
	addr := os.Getenv("POSTERN_PPROF")
	if addr == "" {
		return
	}
	go func() { _ = http.ListenAndServe(addr, nil) }()
}
