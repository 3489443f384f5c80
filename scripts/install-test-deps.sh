#!/usr/bin/env bash
# Installs the Debian packages the test suite needs: real DNS servers (Knot,
# Unbound), real SMTP/LMTP receivers (Postfix's smtp-sink, aiosmtpd), openssl
# for throwaway certificates, iproute2 for network namespaces, Redis for shared
# throttles, zsh and groff/man to check the generated shell completion and man
# page, Prometheus for promtool, which lints the metrics exposition,
# libnet-ssleay-perl for swaks' STARTTLS and AUTH (the relay's listener
# tests), and strace and e2fsprogs for the relay's crash-safety tests (the
# order of fsync, rename and the reply; a small ext4 that fills up), and
# systemd-analyze, which checks the example systemd unit.
# Idempotent and non-interactive; a no-op when all are present.
# No daemon is started: the tests start their own instances on loopback.
set -euo pipefail

pkgs=(postfix swaks knot knot-dnsutils unbound ldnsutils python3-aiosmtpd
      openssl iproute2 redis-server nginx-light ca-certificates
      zsh groff-base man-db prometheus libnet-ssleay-perl strace e2fsprogs systemd)

missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	echo "install-test-deps: missing packages: ${missing[*]}; run as root or install them" >&2
	exit 1
fi

# Keep package scripts from starting system daemons (Postfix on :25, unbound,
# knot, redis, prometheus): the tests run their own, on their own ports.
cleanup_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
	printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
	chmod +x /usr/sbin/policy-rc.d
	cleanup_policy=1
fi
trap '[ $cleanup_policy -eq 1 ] && rm -f /usr/sbin/policy-rc.d' EXIT

export DEBIAN_FRONTEND=noninteractive
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
exec 9>/var/lock/postern-apt.lock
flock 9
apt-get -o DPkg::Lock::Timeout=300 update -qq
apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${missing[@]}"
