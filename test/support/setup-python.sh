#!/usr/bin/env bash
# Test setup for the interop tier: a virtualenv with Python Celery (pinned), built once and cached
# under ${XDG_CACHE_HOME:-$HOME/.cache}/celeriac. Also tries Debian's python3-celery (Celery 5.2).
# Prints CELERIAC_PYTHON=<venv python>, CELERIAC_PYTHON_CELERY53..56 (one virtualenv per Celery series
# between, see CELERY_SERIES) and, when 5.2 imports, CELERIAC_PYTHON_CELERY52=/usr/bin/python3.
# Progress goes to stderr; exit non-zero when the pinned Celery cannot be installed.
set -euo pipefail
source "$(dirname "$0")/apt-install.sh"
CELERY_VERSION=5.7.0
# Tools the interop tier drives beside Celery: cryptography (the auth serializer), Flower (its HTTP API) and OpenTelemetry's Celery
# instrumentation (traces across languages). Pinned; the cache key changes with this list.
EXTRA_PACKAGES="cryptography==50.0.2 flower==2.2.0 opentelemetry-sdk==1.45.2 opentelemetry-instrumentation-celery==0.66b2"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/celeriac"
key=$(printf '%s' "$EXTRA_PACKAGES" | sha256sum | cut -c1-8)
venv="$cache/venv-celery-$CELERY_VERSION-$key"

# make_venv DIR WHAT IMPORTS PIP-ARGS...: builds the virtualenv DIR (WHAT names it in messages) and
# checks that IMPORTS (Python) runs in it, unless it is cached. The marker is written last, so an
# interrupted install is never mistaken for a cache hit.
make_venv() {
  local v=$1 what=$2 imports=$3
  shift 3
  [ -f "$v/.celeriac-complete" ] && return 0
  echo "[setup-python] creating $v ($what)" >&2
  rm -rf "$v"
  python3 -m venv "$v" >&2 &&
    "$v/bin/pip" install -q --disable-pip-version-check "$@" >&2 &&
    "$v/bin/python" -c "$imports" >&2 &&
    touch "$v/.celeriac-complete" || { echo "[setup-python] $what: pip install or its import check failed (is PyPI reachable?)" >&2; return 1; }
}

if [ ! -f "$venv/.celeriac-complete" ] && ! python3 -m venv --help >/dev/null 2>&1; then
  echo "[setup-python] python3 venv module missing" >&2
  apt_install setup-python python3-venv || {
    echo "[setup-python] cannot install python3-venv: no Python virtualenv, interop tier unavailable" >&2; exit 1; }
fi
make_venv "$venv" "celery==$CELERY_VERSION" \
  "import celery, redis, msgpack, amqp, cryptography, flower, opentelemetry.sdk, opentelemetry.instrumentation.celery" \
  "celery[redis,msgpack]==$CELERY_VERSION" $EXTRA_PACKAGES || exit 1
echo "CELERIAC_PYTHON=$venv/bin/python"

# The Celery releases between 5.2 and 5.7, each with the kombu of its series (pip would otherwise
# pair it with the newest kombu, which no 5.3 deployment runs): the wire-format cases run on each.
# One small virtualenv per pair (celery, kombu, redis, msgpack), built in parallel, cached as above.
CELERY_SERIES="5.3.6:5.3.7 5.4.0:5.4.2 5.5.3:5.5.4 5.6.3:5.6.2"
pids=()
for pair in $CELERY_SERIES; do
  c=${pair%%:*} k=${pair##*:}
  make_venv "$cache/venv-celery-$c-kombu-$k" "celery==$c, kombu==$k" \
    "import celery, kombu, redis, msgpack, amqp; assert celery.__version__ == '$c' and kombu.__version__ == '$k'" \
    "celery[redis,msgpack]==$c" "kombu==$k" &
  pids+=($!)
  echo "CELERIAC_PYTHON_CELERY$(echo "$c" | cut -d. -f1,2 | tr -d .)=$cache/venv-celery-$c-kombu-$k/bin/python"
done
for pid in "${pids[@]}"; do wait "$pid" || exit 1; done

# Celery 5.2 as Debian ships it (older services still run it). Optional: skipped when apt cannot.
if ! /usr/bin/python3 -c "import celery, redis" 2>/dev/null; then
  echo "[setup-python] Debian's Celery 5.2 is missing" >&2
  apt_install setup-python python3-celery python3-redis python3-msgpack ||
    echo "[setup-python] python3-celery unavailable; Celery 5.2 interop cases will be skipped" >&2
fi
if /usr/bin/python3 -c "import celery, redis, amqp; assert celery.__version__.startswith('5.2')" 2>/dev/null; then
  echo "CELERIAC_PYTHON_CELERY52=/usr/bin/python3"
fi
