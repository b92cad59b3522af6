#!/usr/bin/env bash
# Guest layer test dependencies (orchestrator/guests, tests/e2e/test_ssh_channel.py):
#   openssh-server  /usr/sbin/sshd, started by the e2e fixture on 127.0.0.1:<random port> only
#   openssh-client  ssh-keygen for the fixture's temporary host and client keys
#   mmdebstrap      a throwaway Debian chroot for the apt GuestPatcher test (never this machine's dpkg)
#   dpkg-dev        dpkg-scanpackages for the test's local apt repository
# Idempotent. Assumes `apt-get update` already ran. Never starts a system-wide sshd: service starts
# from maintainer scripts are refused through policy-rc.d while we install, and the package's own
# service is left stopped (this machine has no init that would start it later).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

packages=(openssh-server openssh-client mmdebstrap dpkg-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "guest test dependencies present: ${packages[*]}"
  exit 0
fi

policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\n# patchwave .ci/setup-guests.sh: no service starts during install\nexit 101\n' >"$policy"
  chmod 0755 "$policy"
  created_policy=1
fi
cleanup() { if [ "$created_policy" = 1 ]; then rm -f "$policy"; fi; }
trap cleanup EXIT

echo "installing: ${missing[*]}"
apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null

# If some init system did start sshd anyway, stop the system-wide one: the tests run their own.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  systemctl disable --now ssh.service ssh.socket >/dev/null 2>&1 || true
fi
