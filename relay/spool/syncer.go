package spool

import (
	"fmt"
	"sync"
	"time"
)

// syncer is the group-commit directory syncer of a spool: one goroutine
// that takes every request queued so far as a batch, fsyncs each distinct
// directory of the batch once, and answers the batch. A request is queued
// after its rename completed, and a batch is taken before its fsyncs
// start, so the fsync that answers a request always began after that
// request's rename. Requests queued during a batch's fsyncs wait for the
// next batch: no fsync is ever skipped.
type syncer struct {
	s       *Spool
	mu      sync.Mutex
	cond    *sync.Cond
	pending []syncReq
	stopped bool
	exited  chan struct{}
}

type syncReq struct {
	dir  string
	done chan error // buffered: the syncer never blocks on a caller that gave up
}

func newSyncer(s *Spool) *syncer {
	y := &syncer{s: s, exited: make(chan struct{})}
	y.cond = sync.NewCond(&y.mu)
	go y.run()
	return y
}

// request queues an fsync of dir; the returned channel receives its
// result. Call it only after the rename that the fsync must cover.
func (y *syncer) request(dir string) (<-chan error, error) {
	y.mu.Lock()
	defer y.mu.Unlock()
	if y.stopped {
		return nil, ErrClosed
	}
	done := make(chan error, 1)
	y.pending = append(y.pending, syncReq{dir: dir, done: done})
	y.cond.Signal()
	return done, nil
}

// stop refuses new requests, lets the pending ones be answered and waits
// for the goroutine to end.
func (y *syncer) stop() {
	y.mu.Lock()
	y.stopped = true
	y.cond.Broadcast()
	y.mu.Unlock()
	<-y.exited
}

func (y *syncer) run() {
	defer close(y.exited)
	for {
		y.mu.Lock()
		for len(y.pending) == 0 && !y.stopped {
			y.cond.Wait()
		}
		batch := y.pending
		y.pending = nil
		y.mu.Unlock()
		if len(batch) == 0 {
			return // stopped and drained
		}
		results := make(map[string]error, 1)
		for _, r := range batch {
			if _, done := results[r.dir]; !done {
				results[r.dir] = y.s.timedDirsync(r.dir)
			}
		}
		for _, r := range batch {
			r.done <- results[r.dir]
		}
	}
}

// timedDirsync fsyncs dir and reports the duration to OnFsync.
func (s *Spool) timedDirsync(dir string) error {
	start := time.Now()
	err := s.fs.dirsync(dir)
	if s.onFsync != nil {
		s.onFsync("dir", time.Since(start))
	}
	if err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}
