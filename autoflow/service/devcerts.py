"""Certificates for trying the extender's mutual TLS on one machine: a CA, a server
certificate for 127.0.0.1 / localhost and a client certificate (what kube-scheduler
presents), written as PEM files. For tests and benchmarks; production certificates come
from your PKI (``docs/k8s-extender.md`` shows the openssl commands). Needs
``cryptography`` (the ``dev`` extra)."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path


def make_certs(folder: str | Path, rogue: bool = False) -> dict:
    """Writes ``ca.pem``, ``server.pem``/``.key``, ``client.pem``/``.key`` into
    ``folder`` (valid for a day) and returns their paths: ``{"ca": path, "server": (cert,
    key), "client": (cert, key)}``; with ``rogue``, a second CA and its leaves too
    (``rogue-ca``, ``rogue-server``, ``rogue-client``: what a stranger would present)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    tmp_path = Path(folder)
    now = datetime.datetime.now(datetime.UTC)

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def cert(cn, key, issuer_name, issuer_key, ca=False, san=None, usage=None):
        b = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(issuer_name)
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(minutes=5))
             .not_valid_after(now + datetime.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if san:
            b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
        if usage:
            b = b.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        return b.sign(issuer_key, hashes.SHA256())

    def write(stem, c, key=None):
        (tmp_path / f"{stem}.pem").write_bytes(c.public_bytes(serialization.Encoding.PEM))
        if key is not None:
            (tmp_path / f"{stem}.key").write_bytes(key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption()))
        return str(tmp_path / f"{stem}.pem")

    out = {}
    for ca_stem in ("ca", "rogue-ca") if rogue else ("ca",):
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = cert(f"autoflow test {ca_stem}", ca_key, name(f"autoflow test {ca_stem}"),
                  ca_key, ca=True)
        out[ca_stem] = write(ca_stem, ca)
        for leaf, san, usage in (
                ("server", [x509.DNSName("localhost"),
                            x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
                 ExtendedKeyUsageOID.SERVER_AUTH),
                ("client", None, ExtendedKeyUsageOID.CLIENT_AUTH)):
            k = ec.generate_private_key(ec.SECP256R1())
            stem = leaf if ca_stem == "ca" else f"rogue-{leaf}"
            write(stem, cert(f"kube-scheduler {stem}", k, ca.subject, ca_key, san=san,
                             usage=usage), k)
            out[stem] = (str(tmp_path / f"{stem}.pem"), str(tmp_path / f"{stem}.key"))
    return out
