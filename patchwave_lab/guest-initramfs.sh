#!/bin/sh
# mmdebstrap essential hook ($1 = the root): configure initramfs-tools *before* the kernel package
# is installed, so its postinst builds a small MODULES=list initrd (with virtio) once.
# The lab boots with its own fast initrd; this Debian initrd is the fallback (`initrd.img`).
set -eu
R="$1"
mkdir -p "$R/etc/initramfs-tools/conf.d" "$R/etc/initramfs-tools/hooks"
printf 'MODULES=list\nCOMPRESS=zstd\n' > "$R/etc/initramfs-tools/conf.d/patchwave-lab"
cat > "$R/etc/initramfs-tools/hooks/patchwave-virtio" <<'HOOK'
#!/bin/sh
case "$1" in prereqs) echo ""; exit 0 ;; esac
. /usr/share/initramfs-tools/hook-functions
for m in virtio_pci virtio_blk; do force_load "$m"; done
HOOK
chmod 755 "$R/etc/initramfs-tools/hooks/patchwave-virtio"
