#!/bin/sh
# Configure the lab guest's root file system. Run by mmdebstrap as a customize hook: $1 = the root.
# Inputs (environment): PW_PUBKEY (file: root's authorized key), PW_DEMO_DEB (demo-app 1.0 .deb),
# PW_REPO_PORT (placeholder port for the apt source; `lab up` rewrites it per run).
# Any change here changes the image cache key (the file is hashed).
set -eu
R="$1"

# --- identity, console password, empty fstab (a root entry costs 7-10 s of dev-vda.device wait)
echo pw-lab > "$R/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tpw-lab\n' > "$R/etc/hosts"
: > "$R/etc/fstab"
echo 'root:root' | chroot "$R" chpasswd

# --- root's SSH key; sshd offers one host key (ed25519), replaced per guest by `lab up`
install -d -m 700 "$R/root/.ssh"
install -m 600 "$PW_PUBKEY" "$R/root/.ssh/authorized_keys"
rm -f "$R"/etc/ssh/ssh_host_*_key "$R"/etc/ssh/ssh_host_*_key.pub
chroot "$R" ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key
cat > "$R/etc/ssh/sshd_config.d/patchwave-lab.conf" <<'EOF'
HostKey /etc/ssh/ssh_host_ed25519_key
PasswordAuthentication no
UseDNS no
EOF

# --- network: static slirp address, no DHCP and no wait-online
cat > "$R/etc/systemd/network/10-slirp.network" <<'EOF'
[Match]
Name=en* eth*

[Network]
Address=10.0.2.15/24
Gateway=10.0.2.2
DNS=10.0.2.3
LinkLocalAddressing=no
IPv6AcceptRA=no
EOF
echo 'nameserver 10.0.2.3' > "$R/etc/resolv.conf"
chroot "$R" systemctl enable systemd-networkd.service >/dev/null 2>&1

# --- units masked: flakiness (timers that grab the dpkg lock) and boot time under TCG
chroot "$R" systemctl mask \
    apt-daily.timer apt-daily.service apt-daily-upgrade.timer apt-daily-upgrade.service \
    systemd-networkd-wait-online.service e2scrub_all.timer e2scrub_all.service e2scrub_reap.service \
    fstrim.timer getty-static.service getty@tty1.service serial-getty@ttyS0.service \
    systemd-pstore.service dpkg-db-backup.timer dpkg-db-backup.service \
    dev-hugepages.mount dev-mqueue.mount sys-kernel-debug.mount sys-kernel-tracing.mount \
    sys-kernel-config.mount sys-fs-fuse-connections.mount kmod-static-nodes.service \
    modprobe@dm_mod.service modprobe@configfs.service modprobe@efi_pstore.service \
    modprobe@fuse.service modprobe@loop.service modprobe@drm.service \
    systemd-network-generator.service >/dev/null 2>&1
# unattended-upgrades is installed (`patchwave autoupdates` configures it; its timers are the
# apt-daily ones masked above until then). Its shutdown helper (a python process waiting from boot
# to shutdown, for InstallOnShutdown, which patchwave never sets) only costs boot and reboot time.
chroot "$R" systemctl mask unattended-upgrades.service >/dev/null 2>&1
mkdir -p "$R/etc/systemd/journald.conf.d"
printf '[Journal]\nStorage=volatile\n' > "$R/etc/systemd/journald.conf.d/patchwave-lab.conf"

# --- apt and dpkg: the local repo is the only source (main and security pockets; `lab up` points
# both at the guest's own views); no languages, no recommends; unsafe io
rm -f "$R"/etc/apt/sources.list.d/*
echo "deb [trusted=yes] http://10.0.2.2:${PW_REPO_PORT}/ ./" > "$R/etc/apt/sources.list"
echo "deb [trusted=yes] http://10.0.2.2:${PW_REPO_PORT}/security/ ./" \
    > "$R/etc/apt/sources.list.d/patchwave-lab-security.list"
cat > "$R/etc/apt/apt.conf.d/90patchwave-lab" <<'EOF'
Acquire::Languages "none";
APT::Install-Recommends "false";
APT::Install-Suggests "false";
EOF
echo force-unsafe-io > "$R/etc/dpkg/dpkg.cfg.d/patchwave-unsafe-io"

# --- `wget` for health checks run in the guest (busybox ships the applet, not the link)
ln -sf /bin/busybox "$R/usr/local/bin/wget"

# --- demo-app 1.0, preinstalled (its postinst enables the unit; systemd is not running here)
cp "$PW_DEMO_DEB" "$R/tmp/demo-app.deb"
chroot "$R" dpkg -i /tmp/demo-app.deb >/dev/null
rm -f "$R/tmp/demo-app.deb"

# --- leave no mirror state behind
rm -rf "$R"/var/lib/apt/lists/* "$R"/var/cache/apt/*.bin "$R"/var/cache/apt/archives/*.deb
