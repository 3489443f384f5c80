#!/usr/bin/env bash
# Imports flow one way (design.md): nothing imports upward.
#   cmd/postern -> engine -> policies -> expr
#                        \-> transport -> transport/dns
set -euo pipefail
mod=$(go list -m)
fail=0
check() { # package, forbidden...
	local pkg=$1; shift
	[ -d "$pkg" ] || return 0
	local deps
	deps=$(go list -deps "./$pkg/..." 2>/dev/null || true)
	for f in "$@"; do
		if grep -qx "$mod/$f\(/.*\)\?" <<<"$deps"; then
			echo "import rule broken: $pkg imports $f (see design.md)" >&2
			fail=1
		fi
	done
}
check expr policies engine transport
check policies engine transport
check transport expr policies engine
check transport/dns expr policies engine
exit $fail
