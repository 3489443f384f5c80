package main

import (
	"runtime/debug"
	"testing"
)

// buildVersion: -ldflags wins, then the module version, then the VCS
// revision go build stamps, then "dev".
func TestBuildVersion(t *testing.T) {
	vcs := &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "1a2b3c4d5e6f7a8b9c0d"}, {Key: "vcs.time", Value: "2026-12-01T10:00:00Z"}, {Key: "vcs.modified", Value: "true"}}}
	for _, tt := range []struct {
		v    string
		bi   *debug.BuildInfo
		ok   bool
		want string
	}{
		{"1.2.3", vcs, true, "1.2.3"},
		{"dev", &debug.BuildInfo{Main: debug.Module{Version: "v0.4.0"}}, true, "v0.4.0"},
		{"dev", vcs, true, "dev-1a2b3c4d5e6f, 2026-12-01T10:00:00Z, modified"},
		{"dev", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, true, "dev"},
		{"dev", nil, false, "dev"},
	} {
		if got := buildVersion(tt.v, tt.bi, tt.ok); got != tt.want {
			t.Errorf("buildVersion(%q) = %q, want %q", tt.v, got, tt.want)
		}
	}
}
