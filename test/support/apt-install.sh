# Sourced by the setup scripts: apt_install TAG PACKAGE... installs Debian packages quietly, as
# root or through sudo, without letting them start system-wide services (the tests run private
# ones). Returns 1 with a message on stderr when they cannot be installed.
apt_install() {
  local tag=$1; shift
  echo "[$tag] installing $* with apt-get" >&2
  if [ "$(id -u)" -ne 0 ] && ! command -v sudo >/dev/null; then
    echo "[$tag] cannot install $*: not root and no sudo" >&2; return 1
  fi
  local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  local policy=/usr/sbin/policy-rc.d made_policy=0 ok=1
  if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null; $sudo chmod +x "$policy"; made_policy=1; fi
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || ok=0
  [ $ok = 1 ] && { $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2 || ok=0; }
  [ $made_policy = 1 ] && $sudo rm -f "$policy"
  [ $ok = 1 ] || echo "[$tag] apt-get could not install $*" >&2
  [ $ok = 1 ]
}
