package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/postern-mta/postern/policies"
)

// DefaultDebounce is how long [Engine.Watch] waits, unless told otherwise,
// after the last change to the policy file before it loads it: editors and
// copy tools write a file in several steps, and loading after each would
// log errors for half-written policies.
const DefaultDebounce = 100 * time.Millisecond

// WatchOptions tune [Engine.Watch]. The zero value reloads on file changes
// only, after DefaultDebounce, and reports through the engine's logger
// only.
type WatchOptions struct {
	// Signals reload the policy too, at once (e.g. syscall.SIGHUP); nil
	// means none. Watch listens for them only while it runs
	// (signal.Notify, then signal.Stop), so outside it their default
	// action applies again.
	Signals []os.Signal
	// OnReload is called after each attempt, on Watch's goroutine: err is
	// nil when the file's policy is in force, and otherwise says why the
	// policy in force stays (a [policies.ErrorList] with positions, an I/O
	// error, or what [Engine.Reload] refused), wrapped with the path.
	// Watch waits for it to return before it looks at the next change.
	OnReload func(path string, err error)
	// Debounce is how long to wait after the last change to the file
	// before loading it; zero or negative means DefaultDebounce.
	Debounce time.Duration
}

// Watch reloads the engine's policy from the file at path whenever the file
// changes, and on opts.Signals, until ctx ends; then it returns nil. It
// returns an error when watching cannot start (the directory of path does
// not exist) or cannot go on (that directory is removed or renamed).
//
// The directory of path is watched, not the file, so that a file replaced
// by a rename (what editors and configuration management do) is seen as
// well as one written in place. When path is a symbolic link, a switch of
// the link, or of a link on the way to the file (a Kubernetes ConfigMap
// switches its ..data link), reloads, and so does a change to the file the
// link names, whose directory is watched too.
//
// Watch loads the file once when it starts, after the watch is in place,
// so that no change made since the engine was built is missed; the first
// OnReload call therefore says that Watch is ready. Each load reads the
// file as [LoadFile] does, with the engine's Options (Hostname among them),
// and goes through [Engine.Reload]: evaluations in flight finish with the
// policy they started with. A file that does not load leaves the policy in
// force; the outcome of every attempt is logged with Options.Logger and
// passed to opts.OnReload. Loading a file whose content did not change is
// harmless: a new copy of the same policy comes into force (throttle
// counters and MTA-STS caches are kept, as on every reload).
//
// The files a policy names (lists, zone files, secrets) are not watched:
// send one of opts.Signals after changing them.
func (e *Engine) Watch(ctx context.Context, path string, opts WatchOptions) error {
	if ctx.Err() != nil {
		return nil
	}
	w, err := newPolicyWatcher(e, path, opts)
	if err != nil {
		return err
	}
	defer w.close()
	return w.run(ctx)
}

// policyOptions are the options a policy file is loaded with for an engine
// with opts: the same for the first load and for every reload.
func policyOptions(opts Options) policies.Options {
	return policies.Options{Hostname: opts.Hostname}
}

// policyWatcher is the state of one Watch call. Only Watch's goroutine
// uses it.
type policyWatcher struct {
	e        *Engine
	path     string // as the caller gave it: loads use it, so positions read as LoadFile's
	onReload func(path string, err error)
	debounce time.Duration

	fs   *fsnotify.Watcher
	sigs chan os.Signal // nil without WatchOptions.Signals

	// dir is the directory of path with its symbolic links resolved, and
	// file the policy file's name in it (itself possibly a link): event
	// names are under dir.
	dir, file string
	// target is file with every link resolved at the last look ("" when
	// it did not resolve), and extra the directory of target when it is
	// not dir and it is watched.
	target, extra string
}

// newPolicyWatcher starts watching the directory of path, and listens for
// the signals.
func newPolicyWatcher(e *Engine, path string, opts WatchOptions) (*policyWatcher, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("engine: watching %s: %w", path, err)
	}
	// Resolved once, so that the names events carry and the resolved
	// target of the file are spelt the same way.
	dir, err := filepath.EvalSymlinks(filepath.Dir(abs))
	if err != nil {
		return nil, fmt.Errorf("engine: watching %s: %w", path, err)
	}
	fs, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("engine: watching %s: %w", path, err)
	}
	if err := fs.Add(dir); err != nil {
		fs.Close()
		return nil, fmt.Errorf("engine: watching %s: directory %s: %w", path, dir, err)
	}
	w := &policyWatcher{e: e, path: path, onReload: opts.OnReload, debounce: opts.Debounce,
		fs: fs, dir: dir, file: filepath.Join(dir, filepath.Base(abs))}
	if w.debounce <= 0 {
		w.debounce = DefaultDebounce
	}
	w.follow()
	if len(opts.Signals) > 0 {
		w.sigs = make(chan os.Signal, 1)
		signal.Notify(w.sigs, opts.Signals...)
	}
	return w, nil
}

// close stops listening for signals and watching: fsnotify's Close returns
// once its reading goroutine has ended.
func (w *policyWatcher) close() {
	if w.sigs != nil {
		signal.Stop(w.sigs)
	}
	w.fs.Close()
}

// run loads the file now, then after each burst of changes and on each
// signal, until ctx ends.
func (w *policyWatcher) run(ctx context.Context) error {
	w.reload("watch started")
	// One timer for the whole run, reset by every change: the load
	// happens debounce after the last one. (Since Go 1.23, Stop and Reset
	// leave no stale tick in the channel; under GODEBUG asynctimerchan=1
	// one would only cause one more load of the same file.)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case sig := <-w.sigs:
			timer.Stop() // this load covers a pending change too
			w.reload("signal " + sig.String())
		case <-timer.C:
			w.reload("file changed")
		case ev, ok := <-w.fs.Events:
			if !ok {
				return fmt.Errorf("engine: watching %s: the watcher stopped", w.path)
			}
			if ev.Name == w.dir && ev.Op.Has(fsnotify.Remove|fsnotify.Rename) {
				return fmt.Errorf("engine: watching %s: directory %s was removed or renamed", w.path, w.dir)
			}
			if w.changed(ev) {
				timer.Reset(w.debounce)
			}
		case err, ok := <-w.fs.Errors:
			if !ok {
				return fmt.Errorf("engine: watching %s: the watcher stopped", w.path)
			}
			w.e.opts.Logger.Warn("policy watch", "file", w.path, "error", err)
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				timer.Reset(w.debounce) // a change may be among the events lost
			}
		}
	}
}

// changed reports whether ev may have changed the policy file: an event
// for the file or for the file its links name, or any event after which
// the links name another file. An attribute change alone does not count
// (indexers and backup tools make many; inotify sends one on every
// unlink, followed by the unlink's own event).
func (w *policyWatcher) changed(ev fsnotify.Event) bool {
	name := filepath.Clean(ev.Name)
	if name == w.extra && ev.Op.Has(fsnotify.Remove|fsnotify.Rename) {
		w.extra = "" // inotify dropped the watch with the directory
	}
	moved := w.follow()
	if ev.Op == fsnotify.Chmod {
		return moved
	}
	return moved || name == w.file || (w.target != "" && name == w.target)
}

// follow resolves the links of the policy file and watches the directory
// of the file they name, when it is not dir. It reports whether they name
// another file than at the last look.
func (w *policyWatcher) follow() bool {
	target, err := filepath.EvalSymlinks(w.file)
	if err != nil {
		target = "" // missing for now: the next event looks again
	}
	moved := target != w.target
	w.target = target
	want := ""
	if target != "" && filepath.Dir(target) != w.dir {
		want = filepath.Dir(target)
	}
	if want == w.extra {
		return moved
	}
	if w.extra != "" {
		_ = w.fs.Remove(w.extra) // fails when the directory went away; nothing to undo then
	}
	w.extra = ""
	if want != "" {
		if err := w.fs.Add(want); err != nil {
			w.e.opts.Logger.Warn("policy watch: changes to the file the link names will not be seen",
				"file", w.path, "target", target, "error", err)
		} else {
			w.extra = want
		}
	}
	return moved
}

// reload loads the file and puts its policy in force, logs the outcome
// and reports it to OnReload.
func (w *policyWatcher) reload(trigger string) {
	err := w.e.reloadFile(w.path)
	log := w.e.opts.Logger
	if err != nil {
		err = fmt.Errorf("engine: reloading %s: %w", w.path, err)
		log.Error("policy not reloaded: the policy in force stays", "file", w.path, "trigger", trigger, "error", err)
	} else {
		log.Info("policy reloaded", "file", w.path, "trigger", trigger)
	}
	if w.onReload != nil {
		w.onReload(w.path, err)
	}
}

// reloadFile loads the policy at path as LoadFile does and puts it in
// force. A file that does not load counts as a failed reload in the
// metrics, as one Reload refuses does.
func (e *Engine) reloadFile(path string) error {
	set, err := policies.LoadFile(path, policyOptions(e.opts))
	if err != nil {
		e.opts.Metrics.Reload(false, e.opts.Clock())
		return err
	}
	return e.Reload(set)
}
