"""Self-signed OPC UA application certificates for tests, made with `openssl` the way docs/line-guide.md
tells an integrator to make them (RSA 2048, the application URI in subjectAltName)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.conftest import require


def make_certificate(folder: Path, name: str, uri: str, *, der: bool = False, days: int = 30) -> tuple[Path, Path]:
    """(certificate, private key) for the application `uri`, in `folder`; the certificate in DER when `der`
    (the key always PEM)."""
    require(shutil.which("openssl") is not None, "openssl is not installed")
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / f"{name}-cert.pem", folder / f"{name}-key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", str(days), "-subj", f"/CN={name}",
         "-addext", f"subjectAltName=URI:{uri},DNS:localhost,IP:127.0.0.1",
         "-addext", "basicConstraints=critical,CA:FALSE",
         "-addext", "keyUsage=critical,digitalSignature,nonRepudiation,keyEncipherment,dataEncipherment",
         "-addext", "extendedKeyUsage=serverAuth,clientAuth"],
        check=True, capture_output=True, timeout=60)
    if der:
        der_cert = folder / f"{name}-cert.der"
        subprocess.run(["openssl", "x509", "-in", str(cert), "-outform", "der", "-out", str(der_cert)],
                       check=True, capture_output=True, timeout=60)
        cert.unlink()
        cert = der_cert
    return cert, key
