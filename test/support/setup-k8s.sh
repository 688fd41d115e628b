#!/usr/bin/env bash
# Test setup for the operator and package tiers: kube-apiserver, etcd and helm from Go modules,
# built once and cached (see build-k8s-binaries.sh). Prints CELERIAC_K8S_BIN_DIR=<folder>.
set -euo pipefail
dir=$(bash "$(dirname "$0")/build-k8s-binaries.sh")
echo "CELERIAC_K8S_BIN_DIR=$dir"
