// Package control is the relay's admin API: what `postern queue` asks the
// running daemon (list, show, flush, hold, release, delete, stats,
// reload), and the same questions answered from the spool files when no
// daemon runs.
//
// [Queue] is the interface both sides offer. The daemon implements it on
// its in-memory queue and serves it with [Serve] (or [Listen] then
// [Listener.Serve]) on SPOOL/control.sock: HTTP/1.1 (RFC 9112) with JSON
// bodies (RFC 8259) over a unix-domain socket, created mode 0600, whose
// peers are checked with SO_PEERCRED (unix(7)): only root and the
// socket's owner are served. [Dial] returns a [*Client], which implements
// [Queue] over that socket. [OpenOffline] implements [Queue] on the spool
// directory itself, read-only (no lock; the daemon may be stopped) or
// writable (it takes the spool lock, so the daemon must be stopped).
//
// # Protocol
//
// Every path starts with /v1/. Request and response bodies are JSON;
// times are RFC 3339 strings in UTC, and zero times are left out.
//
//	POST /v1/list                 Filter              -> [MessageInfo, ...] (ID order)
//	GET  /v1/messages/{id}                            -> MessageInfo
//	GET  /v1/messages/{id}/body                       -> the stored message, application/octet-stream
//	POST /v1/flush                Filter              -> {"count": N}
//	POST /v1/hold                 Filter              -> {"count": N}
//	POST /v1/release              {"ids": [...]}      -> {"count": N}
//	POST /v1/delete               {"ids": [...], "bounce": B} -> {"count": N}
//	GET  /v1/stats                                    -> Stats
//	POST /v1/reload                                   -> {}
//
// A failure is a 4xx or 5xx status with {"error": TEXT, "kind": KIND},
// where KIND is "not_found" (404, [ErrNotFound]), "offline" (409,
// [ErrOffline]), "bad_request" (400), "forbidden" (403, a peer that is
// neither root nor the owner) or "internal" (500). The client returns an
// error whose text is TEXT and which matches [ErrNotFound] or
// [ErrOffline] with errors.Is. A count may come with an error (some IDs
// were not queued): {"count": N, "error": ..., "kind": ...}.
package control
