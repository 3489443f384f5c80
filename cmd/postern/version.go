package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// version is set at build time with -ldflags "-X main.version=...";
// without it, the module version or the VCS revision the binary was
// built from is shown (see buildVersion).
var version = "dev"

func cmdVersion(w io.Writer) int {
	bi, ok := debug.ReadBuildInfo()
	fmt.Fprintf(w, "postern %s (%s, %s/%s)\n", buildVersion(version, bi, ok), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	if ok {
		for _, m := range bi.Deps {
			fmt.Fprintf(w, "  %s %s\n", m.Path, m.Version)
		}
	}
	return exitOK
}

// buildVersion is v when the build set it; else the main module's version
// (go install ...@vX.Y.Z), else the VCS revision and time stamped by go
// build in a checkout ("dev-1a2b3c4d5e6f, 2026-12-01T10:00:00Z, modified"),
// else "dev".
func buildVersion(v string, bi *debug.BuildInfo, ok bool) string {
	if v != "dev" || !ok {
		return v
	}
	if mv := bi.Main.Version; mv != "" && mv != "(devel)" {
		return mv
	}
	var rev, at string
	modified := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if rev == "" {
		return v
	}
	out := "dev-" + rev[:min(12, len(rev))]
	if at != "" {
		out += ", " + at
	}
	if modified {
		out += ", modified"
	}
	return out
}
