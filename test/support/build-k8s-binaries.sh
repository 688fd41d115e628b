#!/usr/bin/env bash
# Builds the binaries the operator and chart tiers need from the Go module proxy and caches them
# outside the checkout: kube-apiserver and etcd (envtest-style control plane) and helm; arguments
# name more k8s.io/kubernetes commands to build beside them (setup-cluster.sh: kubelet & co.).
# Rebuilds only when a binary is missing or a pinned version below changes.
# Prints the bin folder on stdout; progress goes to stderr.
set -euo pipefail

K8S_VERSION=1.34.4      # kube-apiserver; staging modules are pinned to v0.34.4
ETCD_VERSION=3.6.16     # etcd server
HELM_VERSION=3.19.0     # helm v3 CLI

cache_root=${CELERIAC_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/celeriac}
bin="$cache_root/bin/k8s-$K8S_VERSION-etcd-$ETCD_VERSION-helm-$HELM_VERSION"
mkdir -p "$bin"
log() { echo "[k8s-binaries] $*" >&2; }

if ! command -v go >/dev/null 2>&1; then
  log "Go is not installed: cannot build kube-apiserver, etcd and helm"
  exit 3
fi
export GOFLAGS=-mod=mod GOTOOLCHAIN=${GOTOOLCHAIN:-auto}

# A binary from an earlier, wrong build (e.g. an unpinned etcd) is rebuilt: the version it
# reports must contain the pinned one.
# (Output captured first: `| grep -q` under pipefail fails at random when grep exits before the
# binary finished writing and the binary dies of SIGPIPE.)
has_version() { # binary, version
  local out flag=--version
  [ "${1##*/}" = kubectl ] && flag="version --client" # kubectl has no --version
  [ -x "$1" ] && out=$("$1" $flag 2>/dev/null) && [[ $out == *"$2"* ]]
}

# build_kube_commands <name>...: builds k8s.io/kubernetes/cmd/<name> for each name into $bin.
build_kube_commands() {
  # k8s.io/kubernetes requires its staging modules at v0.0.0 with replaces into ./staging;
  # a throwaway main module replaces each of them with the published v0.<minor>.<patch>.
  local modjson gomod staging_version replaces work names=("$@")
  modjson=$(cd "$(mktemp -d)" && go mod download -json "k8s.io/kubernetes@v$K8S_VERSION")
  gomod=$(printf '%s' "$modjson" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  staging_version="v0.${K8S_VERSION#1.}"
  replaces=$(grep -oE '^\s*k8s\.io/[a-z0-9-]+ => \./staging' "$gomod" | awk '{print $1}' |
    while read -r m; do echo "replace $m => $m $staging_version"; done)
  [ -n "$replaces" ] || { log "no staging replaces found in $gomod"; exit 1; }
  work=$(mktemp -d)
  log "building ${names[*]} v$K8S_VERSION in $work (first time: 10-20 minutes on 2 cores)"
  ( cd "$work"
    go mod init celeriac.local/build-kube >/dev/null 2>&1
    { echo "require k8s.io/kubernetes v$K8S_VERSION"; echo "$replaces"; } >> go.mod
    { echo '//go:build tools'; echo 'package tools'
      for n in "${names[@]}"; do echo "import _ \"k8s.io/kubernetes/cmd/$n\""; done; } > tools.go
    go mod tidy >&2
    # Stamp the version (as the Kubernetes Makefile does), so /version and helm's kubeVersion work.
    minor=${K8S_VERSION#*.}; minor=${minor%%.*}
    ldflags="-s -w"
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ldflags="$ldflags -X $pkg.gitVersion=v$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
    done
    for n in "${names[@]}"; do
      go build -trimpath -ldflags="$ldflags" -o "$bin/$n.tmp" "k8s.io/kubernetes/cmd/$n" >&2
      mv "$bin/$n.tmp" "$bin/$n"
    done )
  rm -rf "$work"
}

# The kube commands asked for on the command line (the cluster tier adds kubelet & co.), plus
# kube-apiserver always. A binary from an earlier build is kept when it reports the pinned version.
kube_commands=(kube-apiserver "$@")
missing=()
for n in "${kube_commands[@]}"; do has_version "$bin/$n" "v$K8S_VERSION" || missing+=("$n"); done
if [ ${#missing[@]} -gt 0 ]; then build_kube_commands "${missing[@]}"; fi

if ! has_version "$bin/etcd" "$ETCD_VERSION"; then
  # etcd's server module replaces its siblings with ../ paths, so `go install` refuses it; a
  # throwaway module requires it and its siblings at the same tag. tools.go keeps the requirements
  # through `go mod tidy` (without it tidy drops them and the build silently takes the latest etcd).
  v=v$ETCD_VERSION
  work=$(mktemp -d)
  log "building etcd $v in $work"
  ( cd "$work"
    go mod init celeriac.local/build-etcd >/dev/null 2>&1
    cat >> go.mod <<MOD
require (
  go.etcd.io/etcd/server/v3 $v
  go.etcd.io/etcd/api/v3 $v
  go.etcd.io/etcd/client/pkg/v3 $v
  go.etcd.io/etcd/client/v3 $v
  go.etcd.io/etcd/pkg/v3 $v
)
MOD
    cat > tools.go <<'GO'
//go:build tools
package tools
import _ "go.etcd.io/etcd/server/v3"
GO
    go mod tidy >&2
    grep -q "go.etcd.io/etcd/server/v3 $v" go.mod || { echo "etcd server version drifted from $v" >&2; exit 1; }
    go build -trimpath -ldflags='-s -w' -o "$bin/etcd.tmp" go.etcd.io/etcd/server/v3 >&2
    mv "$bin/etcd.tmp" "$bin/etcd" )
  rm -rf "$work"
fi

if [ ! -x "$bin/helm" ]; then
  log "installing helm v$HELM_VERSION"
  GOBIN="$bin" go install -trimpath -ldflags='-s -w' "helm.sh/helm/v3/cmd/helm@v$HELM_VERSION" >&2
fi

for n in "${kube_commands[@]}"; do
  has_version "$bin/$n" "v$K8S_VERSION" || { log "$n is not v$K8S_VERSION after build"; exit 1; }
done
has_version "$bin/etcd" "$ETCD_VERSION" || { log "etcd is not $ETCD_VERSION after build"; exit 1; }
[ -x "$bin/helm" ] || { log "missing helm after build"; exit 1; }
echo "$bin"
