//go:build unix

package engine_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/postern-mta/postern/engine"
	"github.com/postern-mta/postern/engine/metrics"
	"github.com/postern-mta/postern/internal/testbed"
	"github.com/postern-mta/postern/policies"
	"github.com/postern-mta/postern/transport/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// watchWait bounds every wait for Watch to react: a failure, not a pace.
const watchWait = 20 * time.Second

// watchPolicy is version n of the watched policy. Three settings carry n,
// each decided separately (the route, limits.recipients and the EHLO name
// of the host phase), so a decision that mixed two versions shows.
func watchPolicy(n int) string {
	return fmt.Sprintf(`version: 1
hostname: v%[1]d.mta.example
routing:
  route: v%[1]d
  routes:
    v%[1]d:
      type: relay
      address: 192.0.2.%[1]d
limits:
  recipients: %[1]d
`, n)
}

// watchRig is an engine whose policy file a running Watch follows.
type watchRig struct {
	t       *testing.T
	path    string
	eng     *engine.Engine
	reloads chan error    // every OnReload, in order
	stop    chan struct{} // closed when the test ends: OnReload stops sending
	done    chan error    // Watch's return
	cancel  context.CancelFunc
}

// startWatch builds an engine from the file at path, which must hold a
// policy, with opts (a static resolver with no zone unless opts has one),
// starts Watch on it and waits for the load Watch makes when it starts.
func startWatch(t *testing.T, path string, opts engine.Options, wopts engine.WatchOptions) *watchRig {
	t.Helper()
	if opts.Resolver == nil {
		res, err := dns.NewStaticFromReader(strings.NewReader(""), "empty.zone", false)
		if err != nil {
			t.Fatal(err)
		}
		opts.Resolver = res
	}
	eng, err := engine.LoadFile(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &watchRig{t: t, path: path, eng: eng, reloads: make(chan error, 64),
		stop: make(chan struct{}), done: make(chan error, 1), cancel: cancel}
	wopts.OnReload = func(p string, err error) {
		if p != path {
			t.Errorf("OnReload path %q, want %q", p, path)
		}
		select {
		case r.reloads <- err:
		case <-r.stop:
		}
	}
	if wopts.Debounce == 0 {
		wopts.Debounce = 10 * time.Millisecond
	}
	go func() { r.done <- eng.Watch(ctx, path, wopts) }()
	t.Cleanup(func() {
		cancel()
		close(r.stop)
		select {
		case err := <-r.done:
			if err != nil {
				t.Errorf("Watch: %v", err)
			}
		case <-time.After(watchWait):
			t.Errorf("Watch did not return after its context ended")
		}
		eng.Close()
	})
	if err := r.next(); err != nil {
		t.Fatalf("the load when Watch starts: %v", err)
	}
	return r
}

// next returns the error of the next OnReload call.
func (r *watchRig) next() error {
	r.t.Helper()
	select {
	case err := <-r.reloads:
		return err
	case err := <-r.done:
		r.t.Fatalf("Watch returned early: %v", err)
	case <-time.After(watchWait):
		r.t.Fatalf("no reload within %v", watchWait)
	}
	return nil
}

// waitReload waits for an OnReload call whose outcome satisfies ok (which
// may look at the engine: it runs after the attempt), and returns its
// error. Calls before it (a half-written file, a repeated event) are
// skipped.
func (r *watchRig) waitReload(what string, ok func(err error) bool) error {
	r.t.Helper()
	deadline := time.After(watchWait)
	var (
		skipped int
		last    error
	)
	for {
		select {
		case err := <-r.reloads:
			if ok(err) {
				return err
			}
			skipped, last = skipped+1, err
		case err := <-r.done:
			r.t.Fatalf("waiting for %s: Watch returned: %v", what, err)
		case <-deadline:
			r.t.Fatalf("waiting for %s: not within %v (%d other reloads, the last with error %v)", what, watchWait, skipped, last)
		}
	}
}

// waitVersion waits until a reload succeeds with version n in force.
func (r *watchRig) waitVersion(n int) {
	r.t.Helper()
	r.waitReload(fmt.Sprintf("version %d", n), func(err error) bool { return err == nil && r.version() == n })
}

// version returns the version of the policy in force, from a decision,
// after checking that the decision is wholly that version's.
func (r *watchRig) version() int {
	r.t.Helper()
	n, err := decisionVersion(r.eng)
	if err != nil {
		r.t.Fatal(err)
	}
	return n
}

// decisionVersion evaluates a message and returns the version of
// watchPolicy that decided it, or an error when the decision is not
// wholly one version's.
func decisionVersion(eng *engine.Engine) (int, error) {
	dec, err := eng.Evaluate(context.Background(), engine.Message{From: "a@example.org", To: []string{"b@example.com"}})
	if err != nil {
		return 0, err
	}
	if len(dec.Groups) != 1 {
		return 0, fmt.Errorf("%d groups, want 1", len(dec.Groups))
	}
	g := dec.Groups[0]
	var n int
	if _, err := fmt.Sscanf(g.Route.Name, "v%d", &n); err != nil {
		return 0, fmt.Errorf("route %q: %v", g.Route.Name, err)
	}
	if len(g.Hosts) != 1 || len(g.Hosts[0].Connections) != 1 {
		return 0, fmt.Errorf("version %d: hosts %+v, want one with one address", n, g.Hosts)
	}
	ehlo := g.Hosts[0].Connections[0].EHLOHostname
	if g.Limits.Recipients != n || ehlo != fmt.Sprintf("v%d.mta.example", n) {
		return 0, fmt.Errorf("mixed decision: route %s, limits.recipients %d, EHLO %s", g.Route.Name, g.Limits.Recipients, ehlo)
	}
	return n, nil
}

// writeFile writes the file in place, as an editor without backup copies
// does.
func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// replaceFile writes a temporary file beside path and renames it over
// path, as configuration management and most editors do.
func replaceFile(t *testing.T, path, text string) {
	t.Helper()
	tmp := path + ".tmp"
	writeFile(t, tmp, text)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// lockedBuffer is a log destination for a handler used by two goroutines.
type lockedBuffer = testbed.Buffer

// TestWatchEdits: a good edit written in place is in force once OnReload
// reports success; a broken edit (a YAML syntax error, then an unknown
// setting) is reported to OnReload and logged with its file:line, and
// leaves the old policy in force; a fix then reloads.
func TestWatchEdits(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	writeFile(t, path, watchPolicy(1))
	var logs lockedBuffer
	logger := slog.New(slog.NewJSONHandler(&logs, nil))
	r := startWatch(t, path, engine.Options{Logger: logger}, engine.WatchOptions{})
	if v := r.version(); v != 1 {
		t.Fatalf("version %d in force at the start, want 1", v)
	}

	writeFile(t, path, watchPolicy(2))
	r.waitVersion(2)

	broken := []struct {
		name, text string
		line       int
	}{
		// The open bracket on the line after the good policy's last.
		{"syntax error", watchPolicy(3) + "tls: [starttls\n", strings.Count(watchPolicy(3), "\n") + 1},
		{"unknown setting", strings.Replace(watchPolicy(3), "limits:", "limitz:", 1), 9},
	}
	for _, b := range broken {
		writeFile(t, path, b.text)
		at := fmt.Sprintf("%s:%d:", path, b.line)
		err := r.waitReload(b.name, func(err error) bool { return err != nil && strings.Contains(err.Error(), at) })
		var list policies.ErrorList
		if !errors.As(err, &list) || len(list) == 0 || list[0].Line != b.line {
			t.Errorf("%s: error %v, want a policies.ErrorList at line %d", b.name, err, b.line)
		}
		if v := r.version(); v != 2 {
			t.Errorf("%s: version %d in force, want 2 (the old one)", b.name, v)
		}
		if !strings.Contains(logs.String(), at) {
			t.Errorf("%s: the log does not give %s:\n%s", b.name, at, logs.String())
		}
	}
	if !strings.Contains(logs.String(), `"msg":"policy not reloaded: the policy in force stays"`) ||
		!strings.Contains(logs.String(), `"file":"`+path+`"`) {
		t.Errorf("no failure record with the file in the log:\n%s", logs.String())
	}

	writeFile(t, path, watchPolicy(4))
	r.waitVersion(4)
	if !strings.Contains(logs.String(), `"msg":"policy reloaded"`) {
		t.Errorf("no success record in the log:\n%s", logs.String())
	}
}

// TestWatchSameContent: rewriting the file with the same bytes reloads
// (a new *policies.Set is in force) and changes nothing in the decisions.
func TestWatchSameContent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	writeFile(t, path, watchPolicy(5))
	r := startWatch(t, path, engine.Options{}, engine.WatchOptions{})
	before := r.eng.Policy()
	writeFile(t, path, watchPolicy(5))
	r.waitReload("a reload of the same content", func(err error) bool { return err == nil && r.eng.Policy() != before })
	if v := r.version(); v != 5 {
		t.Errorf("version %d after reloading the same file, want 5", v)
	}
}

// TestWatchEngineOptions: a reload loads the file with the engine's
// Options, as LoadFile did: a policy without hostname takes
// Options.Hostname, not the machine's name.
func TestWatchEngineOptions(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	noHostname := func(n int) string {
		return strings.Replace(watchPolicy(n), fmt.Sprintf("hostname: v%d.mta.example\n", n), "", 1)
	}
	writeFile(t, path, noHostname(1))
	const name = "from-options.mta.example"
	r := startWatch(t, path, engine.Options{Hostname: name}, engine.WatchOptions{})
	writeFile(t, path, noHostname(2))
	var dec *engine.Decision
	r.waitReload("version 2", func(err error) bool {
		if err != nil {
			return false
		}
		dec, err = r.eng.Evaluate(context.Background(), engine.Message{From: "a@example.org", To: []string{"b@example.com"}})
		if err != nil {
			t.Fatal(err)
		}
		return dec.Groups[0].Route.Name == "v2"
	})
	if got := dec.Groups[0].Hosts[0].Connections[0].EHLOHostname; got != name {
		t.Errorf("EHLO name after the reload %q, want Options.Hostname %q", got, name)
	}
}

// TestWatchRenameReplace: a new file renamed over the policy (the old
// inode gone) reloads, and so does the next one.
func TestWatchRenameReplace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	writeFile(t, path, watchPolicy(1))
	r := startWatch(t, path, engine.Options{}, engine.WatchOptions{})
	for n := 2; n <= 3; n++ {
		replaceFile(t, path, watchPolicy(n))
		r.waitVersion(n)
	}
}

// TestWatchSymlinkSwitch: the policy is a link into a data directory
// reached through a ..data link, as Kubernetes mounts a ConfigMap; an
// update makes a new data directory, switches ..data by a rename and
// removes the old directory. Each switch reloads (the second proves the
// watch followed the first).
func TestWatchSymlinkSwitch(t *testing.T) {
	dir := t.TempDir()
	publish := func(n int) {
		data := fmt.Sprintf("..v%d", n)
		if err := os.Mkdir(filepath.Join(dir, data), 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, data, "policy.yaml"), watchPolicy(n))
		if err := os.Symlink(data, filepath.Join(dir, "..data_tmp")); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
		if n > 1 {
			if err := os.RemoveAll(filepath.Join(dir, fmt.Sprintf("..v%d", n-1))); err != nil {
				t.Fatal(err)
			}
		}
	}
	publish(1)
	path := filepath.Join(dir, "policy.yaml")
	if err := os.Symlink(filepath.Join("..data", "policy.yaml"), path); err != nil {
		t.Fatal(err)
	}
	r := startWatch(t, path, engine.Options{}, engine.WatchOptions{})
	for n := 2; n <= 3; n++ {
		publish(n)
		r.waitVersion(n)
	}
}

// TestWatchSymlinkTarget: the policy is a link to a file in another
// directory; writing that file in place reloads (its directory is
// watched), and so does pointing the link at another file.
func TestWatchSymlinkTarget(t *testing.T) {
	dir, elsewhere := t.TempDir(), t.TempDir()
	real := filepath.Join(elsewhere, "real.yaml")
	writeFile(t, real, watchPolicy(1))
	path := filepath.Join(dir, "policy.yaml")
	if err := os.Symlink(real, path); err != nil {
		t.Fatal(err)
	}
	r := startWatch(t, path, engine.Options{}, engine.WatchOptions{})
	writeFile(t, real, watchPolicy(2))
	r.waitVersion(2)

	// Switch the link itself (ln -sfn): a new link renamed over it.
	other := filepath.Join(t.TempDir(), "other.yaml")
	writeFile(t, other, watchPolicy(3))
	if err := os.Symlink(other, path+".new"); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".new", path); err != nil {
		t.Fatal(err)
	}
	r.waitVersion(3)
	writeFile(t, other, watchPolicy(4))
	r.waitVersion(4)
}

// TestWatchSignal: SIGHUP reloads the policy when no file event does: the
// route depends on a {file:} list, which Watch does not watch; after the
// list changes, SIGHUP puts the change in force. The signal is sent only
// while Watch listens for it (after its first OnReload), and Watch stops
// listening when it returns.
func TestWatchSignal(t *testing.T) {
	dir := t.TempDir()
	list := filepath.Join(dir, "relayed.txt")
	writeFile(t, list, "example.net\n")
	path := filepath.Join(dir, "policy.yaml")
	writeFile(t, path, `version: 1
hostname: v1.mta.example
lists:
  relayed: {file: relayed.txt}
routing:
  route:
    - if: in_list("relayed", rcpt_domain)
      then: v1
    - else: local
  routes:
    v1:
      type: relay
      address: 192.0.2.1
limits:
  recipients: 1
`)
	// A long debounce: only the signal, which reloads at once, can bring
	// the change in force within the test's wait.
	r := startWatch(t, path, engine.Options{}, engine.WatchOptions{Signals: []os.Signal{syscall.SIGHUP}, Debounce: time.Hour})
	route := func() string {
		dec, err := r.eng.Evaluate(context.Background(), engine.Message{From: "a@example.org", To: []string{"b@example.com"}})
		if err != nil {
			t.Fatal(err)
		}
		return dec.Groups[0].Route.Name
	}
	if got := route(); got != "local" {
		t.Fatalf("route %q before the list changes, want local", got)
	}
	writeFile(t, list, "example.net\nexample.com\n")
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	r.waitReload("the reload on SIGHUP", func(err error) bool { return err == nil && route() == "v1" })
}

// TestWatchUnderLoad: goroutines evaluate in a loop while the file is
// rewritten many times, in place and by renames, sometimes several times
// in a row; every decision is wholly one version's (decisionVersion checks
// three settings decided separately), and the evaluators see every
// version the test waited for, so reloads did happen under them. Run it
// with -race.
func TestWatchUnderLoad(t *testing.T) {
	versions := 30
	if testing.Short() {
		versions = 10
	}
	path := filepath.Join(t.TempDir(), "policy.yaml")
	writeFile(t, path, watchPolicy(1))
	r := startWatch(t, path, engine.Options{}, engine.WatchOptions{Debounce: 2 * time.Millisecond})

	var (
		saw      [256]atomic.Bool // versions an evaluator saw
		progress = make(chan struct{}, 1)
		stop     = make(chan struct{})
		wg       sync.WaitGroup
		bad      atomic.Pointer[error]
	)
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				n, err := decisionVersion(r.eng)
				if err == nil && (n < 0 || n >= len(saw)) {
					err = fmt.Errorf("version %d: no such version", n)
				}
				if err != nil {
					bad.CompareAndSwap(nil, &err)
					return
				}
				if !saw[n].Swap(true) {
					select {
					case progress <- struct{}{}:
					default:
					}
				}
			}
		})
	}
	defer func() {
		close(stop)
		wg.Wait()
	}()

	for n := 2; n <= versions; n++ {
		switch {
		case n%5 == 0: // a burst: the debounce may fold these into one load
			writeFile(t, path, watchPolicy(n-1+100))
			replaceFile(t, path, watchPolicy(n-1+200))
			writeFile(t, path, watchPolicy(n))
		case n%2 == 0:
			writeFile(t, path, watchPolicy(n))
		default:
			replaceFile(t, path, watchPolicy(n))
		}
		r.waitVersion(n)
		deadline := time.After(watchWait)
		for !saw[n].Load() && bad.Load() == nil {
			select {
			case <-progress:
			case <-deadline:
				t.Fatalf("no evaluator saw version %d within %v", n, watchWait)
			}
		}
		if p := bad.Load(); p != nil {
			t.Fatalf("an evaluator got a decision that is not one version's: %v", *p)
		}
	}
}

// TestWatchCancel: cancelling the context makes Watch return nil, also
// right after a change (a load may be pending in the debounce), and leaves no
// goroutine behind: the fsnotify reader, the timer and the signal
// subscription are all gone.
func TestWatchCancel(t *testing.T) {
	// The os/signal package starts one goroutine for the process on the
	// first signal.Notify and keeps it; start it before counting.
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGHUP)
	signal.Stop(c)

	path := filepath.Join(t.TempDir(), "policy.yaml")
	writeFile(t, path, watchPolicy(1))
	eng, err := engine.LoadFile(path, engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	before := runtime.NumGoroutine()

	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{}, 1)
	done := make(chan error, 1)
	go func() {
		done <- eng.Watch(ctx, path, engine.WatchOptions{
			Signals:  []os.Signal{syscall.SIGHUP},
			Debounce: time.Hour,
			OnReload: func(string, error) {
				select {
				case started <- struct{}{}:
				default:
				}
			},
		})
	}()
	select {
	case <-started:
	case err := <-done:
		t.Fatalf("Watch returned before it started: %v", err)
	case <-time.After(watchWait):
		t.Fatal("Watch did not start")
	}
	// A change whose load the hour-long debounce holds back, when Watch
	// sees it before the cancel (either way Watch must end cleanly).
	writeFile(t, path, watchPolicy(2))
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Watch returned %v after its context ended, want nil", err)
		}
	case <-time.After(watchWait):
		t.Fatal("Watch did not return after its context ended")
	}

	deadline := time.Now().Add(watchWait)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines after Watch returned, %d before:\n%s",
				runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		runtime.Gosched() // the goroutine that ran Watch is still ending
	}
}

// TestWatchDirectoryRemoved: when the watched directory goes away, Watch
// cannot see the file any more and returns an error naming it.
func TestWatchDirectoryRemoved(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "conf")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "policy.yaml")
	writeFile(t, path, watchPolicy(1))
	eng, err := engine.LoadFile(path, engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	started := make(chan struct{}, 1)
	done := make(chan error, 1)
	go func() {
		done <- eng.Watch(ctx, path, engine.WatchOptions{OnReload: func(string, error) {
			select {
			case started <- struct{}{}:
			default:
			}
		}})
	}()
	select {
	case <-started:
	case err := <-done:
		t.Fatalf("Watch returned before it started: %v", err)
	case <-time.After(watchWait):
		t.Fatal("Watch did not start")
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), dir) {
			t.Errorf("Watch returned %v, want an error naming %s", err, dir)
		}
	case <-time.After(watchWait):
		t.Fatal("Watch did not return after its directory was removed")
	}
}

// TestWatchMissingDirectory: Watch on a file in a directory that does not
// exist fails at once, saying which.
func TestWatchMissingDirectory(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	writeFile(t, path, watchPolicy(1))
	eng, err := engine.LoadFile(path, engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	missing := filepath.Join(dir, "gone", "policy.yaml")
	err = eng.Watch(context.Background(), missing, engine.WatchOptions{})
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Errorf("Watch(%s) = %v, want an error naming it that wraps os.ErrNotExist", missing, err)
	}
}

// TestWatchMetrics: every reload attempt is counted, ok or failed — a
// file that does not load too — and the last one's outcome is exposed.
func TestWatchMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg, metrics.Options{})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "policy.yaml")
	writeFile(t, path, watchPolicy(1))
	r := startWatch(t, path, engine.Options{Metrics: m}, engine.WatchOptions{}) // New's load, and Watch's
	writeFile(t, path, "version: 1\nlimits: [\n")
	r.waitReload("the broken file", func(err error) bool { return err != nil })
	value := func(name, result string) float64 {
		fams, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fams {
			if f.GetName() != name {
				continue
			}
			for _, mm := range f.GetMetric() {
				for _, l := range mm.GetLabel() {
					if result == "" || l.GetName() == "result" && l.GetValue() == result {
						return mm.GetCounter().GetValue() + mm.GetGauge().GetValue()
					}
				}
				if result == "" {
					return mm.GetGauge().GetValue()
				}
			}
		}
		return -1
	}
	if ok, failed, last := value("postern_policy_reloads_total", "ok"), value("postern_policy_reloads_total", "failed"),
		value("postern_policy_last_reload_successful", ""); ok != 2 || failed != 1 || last != 0 {
		t.Errorf("reloads ok %v (want 2), failed %v (want 1), last successful %v (want 0)", ok, failed, last)
	}
}
