package main

import (
	"bytes"
	"context"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postern-mta/postern/internal/testbed"
)

// postern is built once for the tests.
var (
	buildOnce  sync.Once
	posternBin string
	buildErr   error
)

func postern(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "postern-bench-relay-test-")
		if err != nil {
			buildErr = err
			return
		}
		posternBin = filepath.Join(dir, "postern")
		buildErr = buildPostern(context.Background(), posternBin)
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return posternBin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if posternBin != "" {
		_ = os.RemoveAll(filepath.Dir(posternBin))
	}
	os.Exit(code)
}

// requireRoot skips (or, under POSTERN_REQUIRE_PEERS=1, fails) a test that
// must start Postfix, which starts as root.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("POSTERN_REQUIRE_PEERS") == "1" {
		t.Fatal("Postfix must be started as root")
	}
	t.Skip("Postfix must be started as root")
}

// TestBenchmarkCountsAddUp runs the whole benchmark with 200 messages
// through each system and checks that every phase delivered exactly the
// messages sent, that every figure of the table was measured, and that the
// strace run counted at least one sync call per message (both systems
// sync each accepted message before their 250).
func TestBenchmarkCountsAddUp(t *testing.T) {
	for _, name := range []string{"relay", "postfix"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			for _, p := range []string{"smtp-sink", "smtp-source", "strace"} {
				testbed.Require(t, p)
			}
			if name == "postfix" {
				testbed.Require(t, "postfix")
				requireRoot(t)
			}
			const n = 200
			// A 5 s retry keeps the relay's dead destination down for 5 s
			// only, so that the release waits for 5 s at most should the
			// flush not end the down period.
			cfg := config{n: n, conns: 4, size: 2048, runs: 1, straceN: n, only: name,
				timeout: 2 * time.Minute, quiet: true, relayRetry: "5s"} // background 0: no idle second before the end-to-end phase
			if name == "relay" {
				cfg.postern = postern(t)
			}
			var out bytes.Buffer
			rep, err := run(t.Context(), cfg, &out)
			if err != nil {
				t.Fatalf("run: %v\n%s", err, out.String())
			}
			rs := rep.results[name]
			if len(rs) != 1 {
				t.Fatalf("%d results, want 1", len(rs))
			}
			r := rs[0]
			if r.drained.Messages != n || r.delivered.Messages != n {
				t.Errorf("the sinks counted %d messages after the release and %d end to end, want %d each", r.drained.Messages, r.delivered.Messages, n)
			}
			for what, sess := range map[string]int{"release": r.drained.Sessions, "end to end": r.delivered.Sessions} {
				if sess < 1 || sess > n {
					t.Errorf("%s: %d sessions at the sink, want 1 to %d", what, sess, n)
				}
			}
			for what, d := range map[string]time.Duration{"intake": r.intake, "delivery only": r.drain, "end to end": r.e2e,
				"end-to-end CPU": r.e2eCPU.total(), "intake CPU": r.intakeCPU.total()} {
				if d <= 0 {
					t.Errorf("%s: %v, want a positive duration", what, d)
				}
			}
			if r.e2ePeak.SumHWMKB <= 0 || r.intakePeak.SumHWMKB <= 0 {
				t.Errorf("peak memory not sampled: %+v, %+v", r.e2ePeak, r.intakePeak)
			}
			if name == "relay" && r.spoolSyncs < n {
				t.Errorf("the relay's metrics counted %v spool fsyncs for %d messages, want at least one each", r.spoolSyncs, n)
			}
			s, ok := rep.syncs[name]
			if !ok || s.n != n || s.total() < n {
				t.Errorf("strace: %+v, want at least %d sync calls for %d messages", s, n, n)
			}
			if !strings.Contains(out.String(), "| "+name+" | ") {
				t.Errorf("no table row for %s in:\n%s", name, out.String())
			}
		})
	}
}

// TestParseStrace counts the calls of strace -f -y output by call and by
// file class, each interrupted call once, and ignores other lines.
func TestParseStrace(t *testing.T) {
	text := `14118 fsync(9</b/spool>)          = 0
14118 fsync(9</b/spool/msg>)      = 0
14121 syncfs(9</b/spool>)         = 0
14121 fsync(23</b/spool/tmp/06H3AI58MTCQIBEJ> <unfinished ...>
14124 fsync(26</b/spool/tmp/06H3AI58N5A8672P> <unfinished ...>
14121 <... fsync resumed>)        = 0
14124 <... fsync resumed>)        = 0
14125 fsync(27</b/spool/msg/EJ>)  = 0
14126 fdatasync(3</var/lib/x.db>) = 0
14126 --- SIGURG {si_signo=SIGURG, si_code=SI_TKILL} ---
14126 +++ exited with 0 +++
`
	calls, byPath, err := parseStrace(strings.NewReader(text), "/b")
	if err != nil {
		t.Fatal(err)
	}
	wantCalls := map[string]int{"fsync": 5, "syncfs": 1, "fdatasync": 1}
	wantPaths := map[string]int{"fsync spool": 1, "fsync spool/msg": 1, "syncfs spool": 1, "fsync spool/tmp/*": 2,
		"fsync spool/msg/*": 1, "fdatasync /var/lib/x.db": 1}
	if !maps.Equal(calls, wantCalls) {
		t.Errorf("calls = %v, want %v", calls, wantCalls)
	}
	if !maps.Equal(byPath, wantPaths) {
		t.Errorf("by path = %v, want %v", byPath, wantPaths)
	}
}
