"""The real Debian guest lab and the demo: libvirt/QEMU (TCG) guests with demo-app and a local apt repo.

Not a provider (it drives libvirt directly to build and boot its own guests); shipped in the wheel
and imported only by ``orchestrator.cli.lab`` (lazily). Modules: ``control`` (``up`` / ``down`` /
``status`` / ``publish``, also ``python -m patchwave_lab``), ``image`` (mmdebstrap build, cached by
content hash), ``initrd`` (the fast busybox initrd), ``repo`` (demo-app packages and the HTTP repo
server), ``domain`` (domain XML, golden states, restore), ``guest_clock`` (agent wait, clock set;
exec through ``providers.libvirt.agent``), ``state`` (``lab.json`` / ``guests.toml``), ``keys`` (SSH
keys; SSH itself is ``providers.ssh``), ``demo`` (``patchwave demo``),
``fakeguest`` (the chroot "guest" of the test-driver demo and tests) and ``configs/`` (lab.toml,
testdriver.toml).
"""
