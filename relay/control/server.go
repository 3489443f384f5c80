package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/postern-mta/postern/relay/spool"
	"golang.org/x/sys/unix"
)

// maxSocketPath is the longest path a unix socket can be bound to on
// Linux (sun_path is 108 bytes, with the terminating NUL).
const maxSocketPath = 107

// maxRequest bounds a request body (a Filter or a list of IDs).
const maxRequest = 4 << 20

// shutdownGrace is how long requests in progress may run on after the
// context of Serve ends.
const shutdownGrace = 5 * time.Second

// Listener is a control socket bound by [Listen]: connections wait in its
// backlog until [Listener.Serve] runs. Close it when it is not served.
type Listener struct {
	path  string
	ul    *net.UnixListener
	fi    os.FileInfo // the socket file, to remove only our own
	owner uint32      // uid of the socket file; it and root are served

	mu     sync.Mutex
	served bool
	closed bool
}

// Listen binds the control socket at path, mode 0600. A socket file
// nobody listens on (left by a daemon that crashed) is replaced; a socket
// another process serves is an error, and so is a file that is not a
// socket. The socket is bound under a temporary name, restricted, then
// renamed to path, so it is never reachable with a wider mode.
func Listen(path string) (*Listener, error) {
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+"."+strconv.Itoa(os.Getpid()))
	for _, p := range []string{path, tmp} {
		if len(p) > maxSocketPath {
			return nil, fmt.Errorf("control socket %s: the path %s is %d bytes, over the %d bytes a unix socket can have: use a shorter spool directory", path, p, len(p), maxSocketPath)
		}
	}
	if err := checkStale(path); err != nil {
		return nil, err
	}
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("control socket %s: remove a leftover %s: %w", path, tmp, err)
	}
	ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	ul.SetUnlinkOnClose(false) // it is renamed; Close removes path itself
	fail := func(err error) (*Listener, error) {
		ul.Close()
		_ = os.Remove(tmp)
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return fail(err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fail(errors.New("cannot read the owner of the socket file"))
	}
	return &Listener{path: path, ul: ul, fi: fi, owner: st.Uid}, nil
}

// checkStale makes sure nothing serves path: absent, or a socket that
// refuses connections (a daemon that died; the rename replaces it).
func checkStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("control socket %s: %w", path, err)
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("control socket %s: the file exists and is not a socket: remove it", path)
	}
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("control socket %s: another process is serving it (is a relay daemon already running on this spool?)", path)
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return nil // stale
	}
	return fmt.Errorf("control socket %s: cannot tell whether it is in use: %w", path, err)
}

// Close stops listening and removes the socket file (if it is still
// ours). Serve calls it when its context ends.
func (l *Listener) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	err := l.ul.Close()
	if errors.Is(err, net.ErrClosed) {
		err = nil // closed by http.Server.Shutdown
	}
	if fi, serr := os.Lstat(l.path); serr == nil && os.SameFile(fi, l.fi) {
		if rerr := os.Remove(l.path); rerr != nil && err == nil {
			err = rerr
		}
	}
	if err != nil {
		return fmt.Errorf("control socket %s: close: %w", l.path, err)
	}
	return nil
}

// Serve listens on path (see [Listen]) and serves q there until ctx
// ends; it then lets the requests in progress finish for a few seconds,
// removes the socket and returns nil.
func Serve(ctx context.Context, path string, q Queue) error {
	l, err := Listen(path)
	if err != nil {
		return err
	}
	return l.Serve(ctx, q)
}

// Serve serves q on the socket until ctx ends, then stops (requests in
// progress get a few seconds), closes the listener (removing the socket)
// and returns nil. Peers whose uid is neither 0 nor the socket owner's
// get 403. It returns an error when the socket fails or was served or
// closed already.
func (l *Listener) Serve(ctx context.Context, q Queue) error {
	l.mu.Lock()
	if l.served || l.closed {
		l.mu.Unlock()
		return fmt.Errorf("control socket %s: served or closed already", l.path)
	}
	l.served = true
	l.mu.Unlock()
	srv := &http.Server{
		Handler:           newHandler(q, l.owner),
		ReadHeaderTimeout: 10 * time.Second,
		ConnContext:       withPeer,
		ErrorLog:          log.New(io.Discard, "", 0), // aborted body streams are the client's to report
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l.ul) }()
	select {
	case err := <-errc:
		l.Close()
		return fmt.Errorf("control socket %s: %w", l.path, err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	<-errc
	return l.Close()
}

// peer is the credentials of a connection's client, or why they are
// unknown.
type peer struct {
	uid uint32
	err error
}

type peerKey struct{}

// withPeer reads the client's credentials (SO_PEERCRED) once per
// connection.
func withPeer(ctx context.Context, c net.Conn) context.Context {
	p := peer{err: errors.New("not a unix socket connection")}
	if uc, ok := c.(*net.UnixConn); ok {
		p = peerOf(uc)
	}
	return context.WithValue(ctx, peerKey{}, p)
}

func peerOf(uc *net.UnixConn) peer {
	raw, err := uc.SyscallConn()
	if err != nil {
		return peer{err: err}
	}
	var (
		cred *unix.Ucred
		cerr error
	)
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return peer{err: err}
	}
	if cerr != nil {
		return peer{err: cerr}
	}
	return peer{uid: cred.Uid}
}

// allowed reports whether a client with uid may use a socket owned by
// owner: root and the owner may.
func allowed(uid, owner uint32) bool { return uid == 0 || uid == owner }

// handler serves the protocol of the package comment.
type handler struct {
	q     Queue
	owner uint32
	mux   *http.ServeMux
}

func newHandler(q Queue, owner uint32) *handler {
	h := &handler{q: q, owner: owner}
	h.routes()
	return h
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p, _ := r.Context().Value(peerKey{}).(peer)
	switch {
	case p.err != nil:
		writeJSON(w, http.StatusForbidden, errorBody{Error: "cannot read the peer's credentials: " + p.err.Error(), Kind: kindForbidden})
		return
	case !allowed(p.uid, h.owner):
		writeJSON(w, http.StatusForbidden, errorBody{
			Error: fmt.Sprintf("uid %d may not use the control socket (root and uid %d only)", p.uid, h.owner), Kind: kindForbidden})
		return
	}
	h.mux.ServeHTTP(w, r)
}

func (h *handler) routes() {
	m := http.NewServeMux()
	m.HandleFunc("POST /v1/list", func(w http.ResponseWriter, r *http.Request) {
		var f Filter
		if !readBody(w, r, &f) || !checkIDs(w, f.IDs) {
			return
		}
		ms, err := h.q.List(r.Context(), f)
		if err != nil {
			writeError(w, err, nil)
			return
		}
		if ms == nil {
			ms = []MessageInfo{}
		}
		writeJSON(w, http.StatusOK, ms)
	})
	m.HandleFunc("GET /v1/messages/{id}", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		if !checkIDs(w, []string{id}) {
			return
		}
		mi, err := h.q.Show(r.Context(), id)
		if err != nil {
			writeError(w, err, nil)
			return
		}
		writeJSON(w, http.StatusOK, mi)
	})
	m.HandleFunc("GET /v1/messages/{id}/body", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		if !checkIDs(w, []string{id}) {
			return
		}
		rc, err := h.q.Body(r.Context(), id)
		if err != nil {
			writeError(w, err, nil)
			return
		}
		defer rc.Close()
		w.Header().Set("Content-Type", "application/octet-stream")
		if _, err := io.Copy(w, rc); err != nil {
			// Break the chunked encoding, so that the client sees a
			// truncated body as an error, not as the end.
			panic(http.ErrAbortHandler)
		}
	})
	filterIDs := func(f *Filter) []string { return f.IDs }
	reqIDs := func(req *idsRequest) []string { return req.IDs }
	m.HandleFunc("POST /v1/flush", counted(filterIDs, func(ctx context.Context, f *Filter) (int, error) {
		return h.q.Flush(ctx, *f)
	}))
	m.HandleFunc("POST /v1/hold", counted(filterIDs, func(ctx context.Context, f *Filter) (int, error) {
		return h.q.Hold(ctx, *f)
	}))
	m.HandleFunc("POST /v1/release", counted(reqIDs, func(ctx context.Context, req *idsRequest) (int, error) {
		return h.q.Release(ctx, req.IDs)
	}))
	m.HandleFunc("POST /v1/delete", counted(reqIDs, func(ctx context.Context, req *idsRequest) (int, error) {
		return h.q.Delete(ctx, req.IDs, req.Bounce)
	}))
	m.HandleFunc("GET /v1/stats", func(w http.ResponseWriter, r *http.Request) {
		st, err := h.q.Stats(r.Context())
		if err != nil {
			writeError(w, err, nil)
			return
		}
		writeJSON(w, http.StatusOK, st)
	})
	m.HandleFunc("POST /v1/reload", func(w http.ResponseWriter, r *http.Request) {
		if err := h.q.Reload(r.Context()); err != nil {
			writeError(w, err, nil)
			return
		}
		writeJSON(w, http.StatusOK, struct{}{})
	})
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, errorBody{Error: fmt.Sprintf("unknown request %s %s", r.Method, r.URL.Path), Kind: kindBadRequest})
	})
	h.mux = m
}

// counted is the handler of a verb that returns a count: it decodes the
// request into a T, checks the IDs ids finds in it, and answers verb's
// count (with its error, if any).
func counted[T any](ids func(*T) []string, verb func(context.Context, *T) (int, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req T
		if !readBody(w, r, &req) || !checkIDs(w, ids(&req)) {
			return
		}
		n, err := verb(r.Context(), &req)
		if err != nil {
			writeError(w, err, &n)
			return
		}
		writeJSON(w, http.StatusOK, countBody{Count: n})
	}
}

// idsRequest is the body of release and delete.
type idsRequest struct {
	IDs    []string `json:"ids"`
	Bounce bool     `json:"bounce,omitempty"` // delete only
}

// countBody is their answer; Error and Kind are set when some failed.
type countBody struct {
	Count int    `json:"count"`
	Error string `json:"error,omitempty"`
	Kind  string `json:"kind,omitempty"`
}

// errorBody is the answer to a request that failed.
type errorBody struct {
	Error string `json:"error"`
	Kind  string `json:"kind"`
}

// Kinds of error (errorBody.Kind).
const (
	kindNotFound   = "not_found"
	kindOffline    = "offline"
	kindBadRequest = "bad_request"
	kindForbidden  = "forbidden"
	kindInternal   = "internal"
)

// readBody decodes the JSON request body into v; on failure it answers
// 400 and returns false. Unknown fields are refused: a newer client's
// selector that this daemon would ignore could widen a change to the
// whole queue.
func readBody(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxRequest))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "request body: " + err.Error(), Kind: kindBadRequest})
		return false
	}
	return true
}

// checkIDs answers 400 and returns false when an ID is malformed.
func checkIDs(w http.ResponseWriter, ids []string) bool {
	for _, id := range ids {
		if !spool.ValidID(id) {
			writeError(w, fmt.Errorf("queue ID %q: %w", id, spool.ErrBadID), nil)
			return false
		}
	}
	return true
}

// writeError answers err with its status and kind (and the count done
// before it, when there is one).
func writeError(w http.ResponseWriter, err error, count *int) {
	status, kind := http.StatusInternalServerError, kindInternal
	switch {
	case errors.Is(err, ErrNotFound):
		status, kind = http.StatusNotFound, kindNotFound
	case errors.Is(err, ErrOffline):
		status, kind = http.StatusConflict, kindOffline
	case errors.Is(err, spool.ErrBadID):
		status, kind = http.StatusBadRequest, kindBadRequest
	}
	if count != nil {
		writeJSON(w, status, countBody{Count: *count, Error: err.Error(), Kind: kind})
		return
	}
	writeJSON(w, status, errorBody{Error: err.Error(), Kind: kind})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
