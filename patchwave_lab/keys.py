"""SSH keys for the lab: root's client key (cached, baked into the image) and per-guest host keys.

Keys are generated with ``cryptography`` (paramiko's own dependency), so the host needs no ssh-keygen.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def generate_ed25519(comment: str) -> tuple[bytes, bytes]:
    """A new key as (OpenSSH private key, ``ssh-ed25519 <base64> <comment>`` public line)."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return private, public + f" {comment}\n".encode()


def ensure_client_key(cache: Path) -> Path:
    """Root's SSH key for every lab guest: ``keys/id_ed25519`` (0600) and ``.pub``; made once."""
    private_path = cache / "keys" / "id_ed25519"
    public_path = private_path.with_suffix(".pub")
    if private_path.exists() and public_path.exists():
        return private_path
    private_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    private, public = generate_ed25519("patchwave-lab")
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(private)
    public_path.write_bytes(public)
    return private_path
