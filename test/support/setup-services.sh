#!/usr/bin/env bash
# Test setup for the integration, interop and operator tiers: makes sure redis-server and
# rabbitmq-server are installed (apt-get, quietly, when missing). The servers themselves are started
# per test file on free loopback ports by test/support/servers.ts, never as system services.
# Prints CELERIAC_REDIS_SERVER=<path> and CELERIAC_RABBITMQ_SERVER=<path> (and CELERIAC_PROMETHEUS=<path>
# when Prometheus could be had, for the dashboard test); progress goes to stderr.
set -euo pipefail

find_bin() { command -v "$1" 2>/dev/null || { [ -x "/usr/sbin/$1" ] && echo "/usr/sbin/$1"; } || true; }

missing=()
[ -n "$(find_bin redis-server)" ] || missing+=(redis-server)
[ -n "$(find_bin rabbitmq-server)" ] || missing+=(rabbitmq-server)

if [ ${#missing[@]} -gt 0 ]; then
  source "$(dirname "$0")/apt-install.sh"
  apt_install setup-services "${missing[@]}" || { echo "[setup-services] the tiers needing ${missing[*]} cannot run" >&2; exit 1; }
fi

redis=$(find_bin redis-server); rabbit=$(find_bin rabbitmq-server)
[ -n "$redis" ] || { echo "[setup-services] redis-server still missing after install" >&2; exit 1; }
[ -n "$rabbit" ] || { echo "[setup-services] rabbitmq-server still missing after install" >&2; exit 1; }
echo "CELERIAC_REDIS_SERVER=$redis"
echo "CELERIAC_RABBITMQ_SERVER=$rabbit"

# Prometheus (Debian's package) for the Grafana dashboard test only: its absence skips that test
# loudly instead of failing the tiers that need just the brokers.
if [ -z "$(find_bin prometheus)" ]; then
  source "$(dirname "$0")/apt-install.sh"
  apt_install setup-services prometheus || echo "[setup-services] prometheus unavailable: the dashboard test will skip" >&2
fi
prometheus=$(find_bin prometheus)
[ -z "$prometheus" ] || echo "CELERIAC_PROMETHEUS=$prometheus"
