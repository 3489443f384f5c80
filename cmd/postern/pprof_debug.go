//go:build pprof

// This file is built only with -tags pprof, for profiling a running
// postern (bench/README.md, "Profiling a running postern"): it serves
// net/http/pprof on the loopback address in POSTERN_PPROF (e.g.
// 127.0.0.1:6060). Release builds do not contain it.

package main

import (
	"net"
	"net/http"
	"net/http/pprof"
	"os"
)

func init() {
	if addr := os.Getenv("POSTERN_PPROF"); addr != "" {
		_, _ = servePprof(addr)
	}
}

// servePprof serves the profiles on addr, in the background, and returns
// the address it listens on.
func servePprof(addr string) (net.Addr, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	go func() { _ = http.Serve(l, mux) }()
	return l.Addr(), nil
}
