#!/usr/bin/env bash
# Test setup for the integration, interop and operator tiers: makes sure redis-server and
# rabbitmq-server are installed (apt-get, quietly, when missing). The servers themselves are started
# per test file on free loopback ports by test/support/servers.ts, never as system services.
# Prints CELERIAC_REDIS_SERVER=<path> and CELERIAC_RABBITMQ_SERVER=<path>; progress goes to stderr.
set -euo pipefail

find_bin() { command -v "$1" 2>/dev/null || { [ -x "/usr/sbin/$1" ] && echo "/usr/sbin/$1"; } || true; }

missing=()
[ -n "$(find_bin redis-server)" ] || missing+=(redis-server)
[ -n "$(find_bin rabbitmq-server)" ] || missing+=(rabbitmq-server)

if [ ${#missing[@]} -gt 0 ]; then
  echo "[setup-services] installing ${missing[*]} with apt-get" >&2
  if [ "$(id -u)" -ne 0 ] && ! command -v sudo >/dev/null; then
    echo "[setup-services] cannot install ${missing[*]}: not root and no sudo" >&2; exit 1
  fi
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  # Keep the packages from starting system-wide instances: the tests run private ones.
  policy=/usr/sbin/policy-rc.d; made_policy=0
  if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null; $sudo chmod +x "$policy"; made_policy=1; fi
  ok=1
  $sudo apt-get update -qq >&2 || ok=0
  [ $ok = 1 ] && { $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 || ok=0; }
  [ $made_policy = 1 ] && $sudo rm -f "$policy"
  if [ $ok = 0 ]; then
    echo "[setup-services] apt-get could not install ${missing[*]}; the tiers needing them cannot run" >&2; exit 1
  fi
fi

redis=$(find_bin redis-server); rabbit=$(find_bin rabbitmq-server)
[ -n "$redis" ] || { echo "[setup-services] redis-server still missing after install" >&2; exit 1; }
[ -n "$rabbit" ] || { echo "[setup-services] rabbitmq-server still missing after install" >&2; exit 1; }
echo "CELERIAC_REDIS_SERVER=$redis"
echo "CELERIAC_RABBITMQ_SERVER=$rabbit"
