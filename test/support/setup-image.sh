#!/usr/bin/env bash
# Test setup for the image test of the package tier (test/package/dockerfile-image.test.ts):
# podman and buildah build the Dockerfile, runc runs the pod-like containers, debootstrap makes
# the local Debian base image (no image registry is reachable here). Installed with apt-get when
# missing; podman keeps the base image in its own storage, so it is made once per machine.
# Prints CELERIAC_IMAGE_TOOLS=1; progress goes to stderr.
set -euo pipefail

missing=()
for tool in podman buildah runc debootstrap; do
  command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  source "$(dirname "$0")/apt-install.sh"
  # uidmap: rootless podman needs newuidmap; slirp4netns: podman's default network helper.
  apt_install setup-image "${missing[@]}" uidmap slirp4netns || { echo "[setup-image] the image cannot be built" >&2; exit 1; }
fi
echo "CELERIAC_IMAGE_TOOLS=1"
