// Package spool is the relay's durable queue on local disk: one immutable
// file per message, one small mutable state file per message, and the
// rules that make a 250 reply to end-of-data (RFC 5321 section 4.1.1.4,
// "the receiver-SMTP MUST NOT lose the message") true after a power cut.
//
// # Layout
//
//	SPOOL/lock         flock(2), held by the one process that writes the spool; holds its pid
//	SPOOL/tmp/         receipts in progress and state files being replaced; emptied by [Open]
//	SPOOL/msg/AB/ID    immutable message file (AB = characters 7 and 8 of ID, see below)
//	SPOOL/state/AB/ID  per-recipient delivery state (JSON); absent = all pending, never tried
//	SPOOL/corrupt/     files that failed validation; never deleted automatically
//
// Directories are created 0700 and files 0600. A queue ID ([NewID]) is 16
// characters of RFC 4648 base32hex: 48 bits of Unix milliseconds then 32
// random bits, so IDs sort by arrival time as strings and are unique
// across hosts without coordination.
//
// # Message file format
//
// A message file is a 45-byte header, the envelope, then the body:
//
//	PSPOOL1 EEEEEEEEEE BBBBBBBBBBBBBBBB CCCCCCCC\n
//	{"from":"...","rcpt":[...],...}
//	Received: ...\r\n...
//
// E is the envelope length and B the body length in bytes, both decimal
// and zero-padded; C is the CRC-32C (Castagnoli) of everything after the
// header, in lower-case hex. The envelope is one JSON object ([Envelope]);
// the body is stored exactly as it will be sent. Intake reserves the
// header, streams the envelope and body behind it, and writes the real
// header last, so a file whose header is valid was written to the end. A
// file whose header, size, envelope or CRC does not check out is moved to
// corrupt/ and logged at error level: [Spool.Scan] checks the header, the
// size and the envelope at start-up without reading bodies; [Spool.Load]
// also checks the CRC before a delivery reads the body.
//
// # Crash guarantees
//
// [Receipt.Commit] returns (and the listener may reply 250) only after
// the temp file is fsynced, renamed into msg/AB/, and msg/AB/ is fsynced
// by a directory sync that began after the rename; directory syncs are
// shared by every commit renamed before they began (group commit), never
// skipped. A failure at any step removes the file and returns an error
// (wrapping [ErrNoSpace] when the disk or quota is full), so nothing acked
// can be lost by kill -9, a panic, an OOM kill or a power cut, and
// nothing unacked stays queued. State files are replaced by write and
// rename without fsync: they survive a process crash (page cache), and
// [Spool.Sync] (syncfs(2)) makes them durable, run by the daemon
// periodically and at shutdown; a power cut may therefore roll a state
// back, which causes only an earlier retry or a duplicate delivery.
// [Spool.Remove] unlinks state then message without fsync, so a power cut
// may resurrect a finished message: again a duplicate. Delivery is thus
// at least once; duplicates come from a crash between a delivery and the
// recording of its result, from state not yet synced at a power cut, and
// from a client that never read our 250 and sends again. Never from
// losing a message that was acked.
//
// The package does not lock individual messages: callers serialise
// [Spool.WriteState], [Spool.ReadState] and [Spool.Remove] per message
// ID. One process writes a spool at a time (the lock file); [OpenReadOnly]
// reads one without the lock, for listing with the daemon stopped.
package spool
