"""Throw-away certificates for the loopback receivers: a test CA, a server certificate, a client certificate.

Tests of HTTPS and mTLS need a chain the client can verify without touching the system trust store, so each
call makes a fresh CA in a given directory. ``cryptography`` (in the ``test`` extra) is imported inside
:func:`make_tls_files` so that importing ``respan_auto.testing`` never needs it.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey
    from cryptography.x509 import Certificate, CertificateBuilder, GeneralName, Name, ObjectIdentifier

SERVER_HOSTS = ("127.0.0.1", "localhost")  # what the server certificate is valid for
CLIENT_COMMON_NAME = "respan-test-client"


@dataclass(frozen=True)
class TlsFiles:
    """Paths of the PEM files :func:`make_tls_files` wrote (strings, as exporters and ``ssl`` take them)."""

    directory: str
    ca_cert: str  # the trust anchor clients pass as certificate_file / OTEL_EXPORTER_OTLP_CERTIFICATE
    ca_key: str
    server_cert: str
    server_key: str
    client_cert: str  # for mTLS: OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE
    client_key: str  # for mTLS: OTEL_EXPORTER_OTLP_CLIENT_KEY

    def read(self, name: str) -> bytes:
        """The bytes of one file by field name (``files.read("ca_cert")``): gRPC credentials take bytes."""
        return Path(getattr(self, name)).read_bytes()


def make_tls_files(directory: str | os.PathLike[str], *, days: int = 7) -> TlsFiles:
    """Write ``ca.pem``, ``server.pem``, ``client.pem`` and their ``*-key.pem`` into ``directory``.

    The server certificate names IP 127.0.0.1 and DNS localhost; the client certificate has CN
    ``respan-test-client``. Keys are P-256 (fast to make); the extensions satisfy strict verification
    (Python 3.13's ``VERIFY_X509_STRICT``): critical basic constraints, key usages, key identifiers.
    """
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)

    def name(common_name: str) -> Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "respan-auto tests"),
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            ]
        )

    def builder(subject: Name, issuer: Name, key: EllipticCurvePrivateKey) -> CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))  # tolerate a little clock skew
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = name("respan-auto test CA")
    ca_cert = (
        builder(ca_name, ca_name, ca_key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    authority = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())

    def leaf(
        common_name: str, usage: ObjectIdentifier, sans: list[GeneralName]
    ) -> tuple[Certificate, EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            builder(name(common_name), ca_name, key)
            .add_extension(authority, critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=True,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if sans:
            cert = cert.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return cert.sign(ca_key, hashes.SHA256()), key

    server_cert, server_key = leaf(
        "localhost",
        ExtendedKeyUsageOID.SERVER_AUTH,
        [x509.IPAddress(ipaddress.ip_address(SERVER_HOSTS[0])), x509.DNSName(SERVER_HOSTS[1])],
    )
    client_cert, client_key = leaf(CLIENT_COMMON_NAME, ExtendedKeyUsageOID.CLIENT_AUTH, [])

    def write_cert(file: str, cert: Certificate) -> str:
        path = folder / file
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return str(path)

    def write_key(file: str, key: EllipticCurvePrivateKey) -> str:
        path = folder / file
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        # owner-only, so nothing else on the machine can read even a throw-away key
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(pem)
        return str(path)

    return TlsFiles(
        directory=str(folder),
        ca_cert=write_cert("ca.pem", ca_cert),
        ca_key=write_key("ca-key.pem", ca_key),
        server_cert=write_cert("server.pem", server_cert),
        server_key=write_key("server-key.pem", server_key),
        client_cert=write_cert("client.pem", client_cert),
        client_key=write_key("client-key.pem", client_key),
    )
