package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func cmdVersion(w io.Writer) int {
	fmt.Fprintf(w, "postern %s (%s, %s/%s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, m := range bi.Deps {
			fmt.Fprintf(w, "  %s %s\n", m.Path, m.Version)
		}
	}
	return exitOK
}
