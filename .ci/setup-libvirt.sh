#!/usr/bin/env bash
# libvirtd + QEMU (TCG) for the libvirt adapter's tests (tests/contract/test_libvirt_*.py) and the lab.
# Run as root on a fresh Debian 12 machine; assumes `apt-get update` already ran. Idempotent: packages
# already installed, users/groups that exist and daemons that run are left as they are.
#
# The machine has no init system that would start the daemons, so they are started directly
# (`virtlogd -d`, `libvirtd -d`). QEMU runs as root without a security driver or ownership
# juggling (qemu.conf below): the tests create disks in pytest's temp dirs owned by root.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

packages=(
  libvirt-daemon            # libvirtd
  libvirt-daemon-system     # /etc/libvirt configs, virtlogd, the qemu.conf we edit below
  libvirt-daemon-driver-qemu
  libvirt-clients           # virsh (used below to wait for the daemon)
  qemu-system-x86           # qemu-system-x86_64 (TCG; no /dev/kvm needed)
  qemu-utils                # qemu-img for the tests' qcow2 disks
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  # Maintainer scripts must not start libvirtd before qemu.conf is written (it would keep the
  # packaged user/security defaults): refuse service starts while installing, as setup-guests.sh does.
  policy=/usr/sbin/policy-rc.d
  created_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# patchwave .ci/setup-libvirt.sh: no service starts during install\nexit 101\n' >"$policy"
    chmod 0755 "$policy"
    created_policy=1
  fi
  trap '[ "$created_policy" = 1 ] && rm -f "$policy"' EXIT
  echo "installing: ${missing[*]}"
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  [ "$created_policy" = 1 ] && rm -f "$policy"
  created_policy=0
else
  echo "libvirt/QEMU packages present: ${packages[*]}"
fi

mkdir -p /var/log/libvirt /var/run/libvirt
getent group kvm >/dev/null || groupadd -r kvm
id -u libvirt-qemu >/dev/null 2>&1 || useradd -r -g kvm libvirt-qemu
getent group libvirt-qemu >/dev/null || groupadd -r libvirt-qemu

# qemu.conf: set each key on its active line (all of them, if repeated), append it when absent.
# Commented-out defaults and examples are left alone.
conf=/etc/libvirt/qemu.conf
mkdir -p "$(dirname "$conf")"
touch "$conf"
set_conf() {
  local key=$1 value=$2
  if grep -Eq "^[[:space:]]*${key}[[:space:]]*=" "$conf"; then
    sed -Ei "s|^[[:space:]]*${key}[[:space:]]*=.*|${key} = ${value}|" "$conf"
  else
    printf '%s = %s\n' "$key" "$value" >>"$conf"
  fi
}
set_conf user '"root"'
set_conf group '"root"'
set_conf dynamic_ownership 0
set_conf remember_owner 0
set_conf security_driver '"none"'

# Start the daemons when they do not run yet (a running libvirtd keeps its config until restarted).
pgrep -x virtlogd >/dev/null || virtlogd -d
pgrep -x libvirtd >/dev/null || libvirtd -d

for _ in $(seq 1 60); do
  if virsh -c qemu:///system version >/dev/null 2>&1; then
    virsh -c qemu:///system version
    exit 0
  fi
  sleep 0.5
done
echo "libvirtd did not answer on qemu:///system within 30s (see /var/log/libvirt/)" >&2
exit 1
