#!/usr/bin/env bash
# Test setup for the cluster tier (test/cluster/): everything a real single-node cluster needs,
# cached in ~/.cache/celeriac and rebuilt only when missing or when a pinned version changes.
# - kubelet, kube-controller-manager, kube-scheduler, kube-proxy and kubectl, built from Go modules
#   beside etcd, kube-apiserver and helm (build-k8s-binaries.sh; ~2.5-7.5 min the first time);
# - containerd, runc, the CNI plugins and busybox-static from apt when missing;
# - Prometheus, built from its Go module: Debian's package is built without Kubernetes service
#   discovery (its config refuses kubernetes_sd_configs), which is what the tier proves;
# - the pod sandbox ("pause") image: cluster/pause.c compiled static, packaged FROM scratch with
#   podman and saved as an archive that the harness imports into its private containerd.
# The project's image is built by the test harness (test/support/project-image.ts) as in the package
# tier, because it must be the checkout under test.
# Prints CELERIAC_K8S_BIN_DIR=<folder> and CELERIAC_PAUSE_IMAGE_ARCHIVE=<file>; progress on stderr.
set -euo pipefail
here=$(dirname "$0")
log() { echo "[setup-cluster] $*" >&2; }

find_bin() { command -v "$1" 2>/dev/null || { [ -x "/usr/sbin/$1" ] && echo "/usr/sbin/$1"; } || true; }
missing=()
[ -n "$(find_bin containerd)" ] || missing+=(containerd)
[ -n "$(find_bin runc)" ] || missing+=(runc)
[ -x /usr/lib/cni/bridge ] && [ -x /usr/lib/cni/host-local ] && [ -x /usr/lib/cni/loopback ] || missing+=(containernetworking-plugins)
[ -x /bin/busybox ] || missing+=(busybox-static)
for tool in podman gcc openssl iptables; do [ -n "$(find_bin $tool)" ] || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
  source "$here/apt-install.sh"
  # libc6-dev: gcc -static needs libc.a.
  apt_install setup-cluster "${missing[@]}" libc6-dev || { log "the cluster tier cannot run without ${missing[*]}"; exit 1; }
fi

bin=$(bash "$here/build-k8s-binaries.sh" kubelet kube-controller-manager kube-scheduler kube-proxy kubectl)

# The pause image, named after the hash of its source so a change rebuilds it.
cache_root=${CELERIAC_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/celeriac}
hash=$(sha256sum "$here/cluster/pause.c" | cut -c1-12)
archive="$cache_root/cluster/pause-$hash.tar"
if [ ! -s "$archive" ]; then
  log "building the pause image ($hash)"
  mkdir -p "$cache_root/cluster"
  work=$(mktemp -d)
  gcc -static -Os -s -o "$work/pause" "$here/cluster/pause.c"
  printf 'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n' > "$work/Containerfile"
  podman build --isolation chroot -q -t "localhost/celeriac-pause:$hash" -f "$work/Containerfile" "$work" >&2
  podman save --format docker-archive -o "$archive.tmp" "localhost/celeriac-pause:$hash" >&2
  podman rmi "localhost/celeriac-pause:$hash" >/dev/null
  mv "$archive.tmp" "$archive"
  rm -rf "$work"
fi
# Prometheus with Kubernetes service discovery (~3 min cold, cached after).
prometheus_version=v0.54.1 # Go module version of Prometheus 2.54.1
prometheus_dir="$cache_root/bin/prometheus-$prometheus_version"
if [ ! -x "$prometheus_dir/prometheus" ]; then
  log "building prometheus $prometheus_version from Go modules"
  work=$(mktemp -d)
  (
    cd "$work"
    # Prometheus' own replace lines (klog through go-kit); a build without them does not compile.
    printf 'module celeriac.test/prometheus\n\ngo 1.23\n\nreplace (\n\tk8s.io/klog => github.com/simonpasquier/klog-gokit v0.3.0\n\tk8s.io/klog/v2 => github.com/simonpasquier/klog-gokit/v3 v3.3.0\n)\n' > go.mod
    export GOFLAGS=-mod=mod GOTOOLCHAIN=${GOTOOLCHAIN:-auto}
    go get "github.com/prometheus/prometheus/cmd/prometheus@$prometheus_version" >&2
    go build -o prometheus github.com/prometheus/prometheus/cmd/prometheus >&2
  )
  mkdir -p "$prometheus_dir"
  mv "$work/prometheus" "$prometheus_dir/prometheus"
  rm -rf "$work"
fi

echo "CELERIAC_K8S_BIN_DIR=$bin"
echo "CELERIAC_PROMETHEUS_BIN=$prometheus_dir/prometheus"
echo "CELERIAC_PAUSE_IMAGE=localhost/celeriac-pause:$hash"
echo "CELERIAC_PAUSE_IMAGE_ARCHIVE=$archive"
