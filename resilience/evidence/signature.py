"""Ed25519 keys and the manifest's signature (MANIFEST.sig, JSON).

A signature shows the manifest was not changed after someone signed it; only a
check against a key the reader trusts (`verify`) shows who that was.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..atomic import write_json_atomic
from ..errors import UserError
from ..inputs import check_path
from .manifest import MANIFEST, SIGNATURE


def keygen(path: Path) -> Path:
    """Create an Ed25519 key pair: private key at `path` (PEM, mode 600), public at `path.pub`.

    Refuses to overwrite either file: losing a signing key silently would make
    old signatures unverifiable against the key people trust.
    """
    path = check_path(Path(path), "key")
    public_path = check_path(path.with_name(path.name + ".pub"), "key")
    for existing in (path, public_path):
        if existing.exists():
            raise UserError(f"{existing} already exists; refusing to overwrite a key. Choose another path or move "
                            f"the old key away first.")
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(private_pem)
        os.chmod(path, 0o600)
        fd = os.open(public_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(public_pem)
    except OSError as exc:
        raise UserError(f"cannot write the key pair at {path} ({exc.strerror or exc}: {exc.filename}). Choose a "
                        f"path in a folder you can write, e.g. ~/.config/resilience/signing-key.") from None
    return public_path


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_fingerprint(key: Ed25519PublicKey) -> str:
    """`SHA256:<hex>` of the raw 32-byte public key: short enough to compare by eye."""
    return "SHA256:" + hashlib.sha256(_raw_public(key)).hexdigest()


def _load_private(key_path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(Path(key_path).read_bytes(), password=None)
    except FileNotFoundError:
        raise UserError(f"signing key {key_path} does not exist. Create one with `resilience keygen {key_path}` "
                        f"or fix 'evidence.signing_key'.") from None
    except (ValueError, TypeError) as exc:
        raise UserError(f"signing key {key_path} is not an unencrypted PEM private key ({exc}). "
                        f"Create one with `resilience keygen PATH`.") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise UserError(f"signing key {key_path} is not an Ed25519 key. Create one with `resilience keygen PATH`.")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """An Ed25519 public key from a PEM file (or from a private key file, whose public half is used)."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise UserError(f"public key {path} does not exist. Pass the .pub file `resilience keygen` wrote.") from None
    except OSError as exc:
        raise UserError(f"public key {path} cannot be read ({exc.strerror or exc}). Fix its permissions or pass "
                        f"another file.") from None
    try:
        key: Any = serialization.load_pem_public_key(data)
    except ValueError:
        try:
            key = serialization.load_pem_private_key(data, password=None).public_key()
        except (ValueError, TypeError) as exc:
            raise UserError(f"{path} is neither a PEM public nor private key ({exc}).") from None
    if not isinstance(key, Ed25519PublicKey):
        raise UserError(f"{path} is not an Ed25519 key. Pass the .pub file `resilience keygen` wrote.")
    return key


def sign_manifest(run_dir: Path, key_path: Path) -> Path:
    """Sign MANIFEST.sha256 with an Ed25519 private key; write MANIFEST.sig (JSON) and return its path."""
    manifest = run_dir / MANIFEST
    if not manifest.is_file():
        raise UserError(f"{run_dir} has no {MANIFEST} to sign; write the manifest first (write_manifest).")
    key = _load_private(key_path)
    signature = key.sign(manifest.read_bytes())
    public = key.public_key()
    data = {
        "algorithm": "ed25519",
        "signed_file": MANIFEST,
        "signature": base64.b64encode(signature).decode("ascii"),
        "public_key": base64.b64encode(_raw_public(public)).decode("ascii"),
        "public_key_fingerprint": key_fingerprint(public),
    }
    path = run_dir / SIGNATURE
    write_json_atomic(path, data)
    return path
