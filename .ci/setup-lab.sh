#!/usr/bin/env bash
# The real Debian guest lab (patchwave_lab, tests/e2e/test_lab.py) needs on the host:
#   mmdebstrap       builds the guest root file system from the Debian mirror in apt's sources
#   qemu-system-x86  the TCG guests (libvirtd itself is set up by .ci/setup-libvirt.sh)
#   qemu-utils       qemu-img: qcow2 base image, overlays
#   e2fsprogs        mkfs.ext4 -d: the root file system without a loop mount
#   busybox-static   the fast initrd's /init (must be static: the initrd has no libc)
#   dpkg-dev         dpkg-scanpackages for the local apt repo (dpkg-deb builds demo-app)
#   zstd             the Debian initrd's compressor inside the build
#   openssh-client   ssh/ssh-keygen for poking at lab guests by hand (the code uses paramiko)
# Idempotent. Assumes `apt-get update` already ran. The image cache is $PATCHWAVE_LAB_CACHE or
# /var/cache/patchwave/lab; keep it between CI runs to skip the ~30 s build and the golden boots.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

packages=(mmdebstrap qemu-system-x86 qemu-utils e2fsprogs busybox-static dpkg-dev zstd openssh-client)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "lab dependencies present: ${packages[*]}"
else
  echo "installing: ${missing[*]}"
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
mkdir -p "${PATCHWAVE_LAB_CACHE:-/var/cache/patchwave/lab}"
