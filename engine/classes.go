package engine

import "github.com/postern-mta/postern/transport"

// ClassInvalidAddress is the last_error class of a recipient whose address
// cannot be used (the transport uses the same word for addresses a server
// could not parse).
const ClassInvalidAddress = transport.ClassUnexpectedReply

// ClassPolicy is the last_error class of a recipient deferred because of
// the policy itself: its route failed to evaluate (a run-time expression
// error), or a relay's secret could not be read.
const ClassPolicy transport.Class = "policy"

// ClassStore is the last_error class of a recipient deferred because the
// throttle store (Redis) could not be reached, with
// limits.on-store-error: defer.
const ClassStore transport.Class = "store"

// Classes are every last_error word, as the policy variable and
// `postern dry-run --var last_error=` take them: the transport's classes,
// ClassPolicy, ClassStore and ClassExpired.
var Classes = []transport.Class{transport.ClassNone, transport.ClassDNS, transport.ClassConnection, transport.ClassTLS,
	transport.ClassDANE, transport.ClassMTASTS, transport.ClassUnexpectedReply, transport.ClassRate, transport.ClassConcurrency,
	transport.ClassIO, transport.ClassLoop, ClassPolicy, ClassStore, ClassExpired}
