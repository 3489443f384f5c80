#!/usr/bin/env bash
# Imports flow one way: nothing imports upward. The module's own imports
# (tests aside; README.md, section Layout, draws the same graph):
#
#   cmd/postern       -> engine policies expr transport transport/tlsrpt relay relay/control internal/textsafe internal/safefile internal/jsonout internal/corpus internal/mtalog internal/policytest internal/policydiff
#   relay             -> engine engine/metrics policies expr transport transport/dns relay/spool relay/sched relay/smtpd relay/control internal/safefile
#   relay/smtpd       -> relay/spool (its Envelope type only) internal/safefile
#   relay/control     -> relay/spool
#   relay/spool, relay/sched: leaves
#   engine            -> engine/throttle engine/metrics engine/dsn policies expr transport transport/dns transport/mailbox transport/dane transport/mtasts transport/tlsrpt internal/textsafe internal/safefile internal/jsonout
#   policies          -> expr internal/safefile internal/jsonout internal/suggest
#   expr              -> internal/textsafe internal/suggest
#   transport         -> transport/mailbox internal/xtext
#   transport/dns     -> internal/safefile
#   transport/mtasts  -> internal/safefile
#   engine/dsn        -> internal/xtext
#   engine/throttle, engine/metrics, transport/mailbox, transport/dane, transport/tlsrpt, internal/textsafe, internal/safefile, internal/jsonout, internal/xtext: leaves (nothing of the module)
#
# transport and transport/dns do not know each other: the engine resolves,
# the transport dials the addresses it is handed. Tools and tests sit on
# top: internal/gendocs -> policies expr internal/jsonout, internal/corpus ->
# engine, internal/mtalog -> internal/corpus, internal/policytest and
# internal/policydiff -> engine policies internal/corpus, examples/embed ->
# engine policies, bench/e2e -> engine transport, internal/testbed/* for
# tests only.
#
# This script checks the rules below (run it from the module's root).
set -euo pipefail
mod=$(go list -m)
fail=0

# deps PATTERN: the import paths PATTERN (a directory, or dir/... for its
# subpackages too) depends on, itself included.
deps() { go list -e -deps "./$1"; }

# check PATTERN FORBIDDEN...: PATTERN must not depend on any FORBIDDEN
# package nor on a package under it.
check() {
	local pkg=$1 d f
	shift
	[ -d "${pkg%/...}" ] || return 0
	d=$(deps "$pkg") || { echo "check-imports: go list ./$pkg failed" >&2; fail=1; return 0; }
	for f in "$@"; do
		if grep -qx "$mod/$f\(/.*\)\?" <<<"$d"; then
			echo "import rule broken: ${pkg%/...} imports $f (see README.md, Layout)" >&2
			fail=1
		fi
	done
}

# leaf PKG: PKG imports no package of the module.
leaf() {
	local pkg=$1 d others
	[ -d "$pkg" ] || return 0
	d=$(deps "$pkg") || { echo "check-imports: go list ./$pkg failed" >&2; fail=1; return 0; }
	others=$(grep -x "$mod\(/.*\)\?" <<<"$d" | grep -vxF "$mod/$pkg" || true)
	if [ -n "$others" ]; then
		echo "import rule broken: $pkg must import nothing of the module, depends on:" $others "(see README.md, Layout)" >&2
		fail=1
	fi
}

check expr/... policies engine transport
check policies/... engine transport
check transport/... expr policies engine
# The review tools sit on top: nothing the engine is built of imports them.
check engine/... internal/corpus internal/mtalog internal/policytest internal/policydiff internal/gendocs
check policies/... internal/corpus internal/mtalog internal/policytest internal/policydiff
check transport transport/dns transport/dane transport/mtasts transport/tlsrpt
check transport/mtasts transport/dns transport/dane transport/tlsrpt transport/mailbox
# The relay daemon sits on top of the engine: nothing below imports it,
# and its parts know only the spool's types, never the engine.
check engine/... relay
check policies/... relay
check transport/... relay
check relay/spool engine policies transport relay/smtpd relay/sched relay/control
check relay/smtpd engine policies transport relay/sched relay/control
check relay/control engine policies transport relay/smtpd relay/sched
leaf relay/spool
leaf relay/sched
leaf transport/mailbox
leaf transport/dane
leaf engine/throttle
check engine/dsn policies expr transport relay engine/throttle engine/metrics
leaf engine/metrics
leaf transport/tlsrpt
leaf internal/textsafe
leaf internal/safefile
leaf internal/jsonout
leaf internal/procgroup
leaf internal/suggest
leaf internal/xtext
exit $fail
