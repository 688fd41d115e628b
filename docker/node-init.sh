#!/bin/sh
# The image's `celeriac` and `celeriac-operator` commands (symlinks to this file). Normally the
# image's ENTRYPOINT, tini, is PID 1 and this just starts node. When Kubernetes `command:`
# replaces the ENTRYPOINT, this script is PID 1 and puts tini in front, so SIGTERM still reaches
# node (warm shutdown) and exited children are still reaped.
set -eu
app=$(dirname "$(dirname "$(readlink -f "$0")")")
case "$(basename "$0")" in
  celeriac) main="$app/dist/runtime/src/cli/main.js" ;;
  celeriac-operator) main="$app/dist/operator/src/main.js" ;;
  *) echo "$0: call me as celeriac or celeriac-operator" >&2; exit 64 ;;
esac
if [ "$$" = 1 ]; then exec tini -- node "$main" "$@"; fi
exec node "$main" "$@"
