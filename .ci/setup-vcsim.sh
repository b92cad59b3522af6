#!/usr/bin/env bash
# vCenter simulator for the vSphere adapter's tests (tests/simulators/vcsim, tests/e2e/test_vsphere_*.py,
# tests/contract/test_vsphere.py, benchmarks/vsphere_inventory.py):
#   golang-go                          Go toolchain (Debian's; no download at build time)
#   golang-github-vmware-govmomi-dev   govmomi 0.24 sources incl. the vcsim simulator package
# Then builds our launcher (tests/simulators/vcsim/*.go) into $PATCHWAVE_CACHE/vcsim (default .cache/vcsim,
# gitignored) with GOPATH=/usr/share/gocode GO111MODULE=off (~20 s; skipped when up to date).
# Idempotent. Assumes `apt-get update` already ran.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

packages=(golang-go golang-github-vmware-govmomi-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

# The launcher imports tests.support (PYTHONPATH=.); a failed build fails the install (set -e).
built=$(PYTHONPATH=. python3 tests/simulators/vcsim/launcher.py)
echo "vcsim launcher: $built"
