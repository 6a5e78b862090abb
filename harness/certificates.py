"""Certificates the harness's servers present: self-signed, made by openssl for the
run, so that a client that trusts the certificate itself verifies it."""

import subprocess
from pathlib import Path


def self_signed(folder: Path, names: list[str]) -> tuple[Path, Path]:
    """A certificate for `names` (addresses or DNS names) and its key, in `folder`."""
    certificate, key = folder / "certificate.pem", folder / "key.pem"
    alternatives = ",".join(f"IP:{name}" if name[0].isdigit() else f"DNS:{name}" for name in names)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", f"/CN={names[0]}", "-addext", f"subjectAltName={alternatives}",
         "-keyout", key, "-out", certificate],
        check=True, capture_output=True,
    )  # fmt: skip
    return certificate, key
