"""TLS: the server's ``ssl.SSLContext`` from the settings, and the ASGI ``tls`` scope extension.

The handshake itself runs in each connection's own task (``_server``), under
``timeout_tls_handshake``, so a slow or silent client never holds up accept.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import Any

from ..core.config import Config
from ..core.errors import ConfigError

#: ``SSLObject.version()`` to the protocol's wire number, as the ASGI TLS extension wants it.
_TLS_VERSIONS = {"TLSv1": 0x0301, "TLSv1.1": 0x0302, "TLSv1.2": 0x0303, "TLSv1.3": 0x0304}

#: Short names for RFC 4514 distinguished names (section 3), keyed by Python's long names.
_RDN_NAMES = {
    "commonName": "CN",
    "localityName": "L",
    "stateOrProvinceName": "ST",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "countryName": "C",
    "streetAddress": "STREET",
    "domainComponent": "DC",
    "userId": "UID",
}


@dataclass
class TLSSettings:
    """A server's TLS context plus what the scope extension reports for every connection."""

    context: ssl.SSLContext
    server_cert: str | None
    #: OpenSSL cipher name to its IANA number (``cipher_suite`` in the extension).
    cipher_ids: dict[str, int] = field(default_factory=dict)


def load_tls(config: Config) -> TLSSettings | None:
    """The TLS settings for ``config``, or None to serve plain HTTP.

    :class:`ConfigError` (one sentence) if a file is missing or unusable.
    """
    if not config.ssl_certfile:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    asked_for_password = False

    def no_password() -> str:
        # Without a callable, OpenSSL would prompt on the terminal.
        nonlocal asked_for_password
        asked_for_password = True
        return ""

    def given_password() -> str:
        # A callable rather than the string, to learn whether OpenSSL used it.
        nonlocal asked_for_password
        asked_for_password = True
        return config.ssl_keyfile_password or ""

    certfile, keyfile = config.ssl_certfile, config.ssl_keyfile
    try:
        context.load_cert_chain(
            certfile,
            keyfile,
            password=given_password if config.ssl_keyfile_password else no_password,
        )
    except (OSError, ssl.SSLError) as exc:
        if asked_for_password and config.ssl_keyfile_password:
            # OpenSSL says only "PEM lib": the key is encrypted and the password did not open it.
            raise ConfigError(
                f"could not decrypt the key file {keyfile or certfile}: wrong password?"
            ) from None
        if asked_for_password:
            raise ConfigError(
                f"the TLS key file {keyfile or certfile} is encrypted: "
                "give its password with --ssl-keyfile-password"
            ) from None
        raise ConfigError(
            f"could not load the TLS certificate {certfile}"
            + (f" and key {keyfile}" if keyfile else "")
            + f": {_reason(exc)}"
        ) from None
    if config.ssl_ca_certs:
        try:
            context.load_verify_locations(cafile=config.ssl_ca_certs)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"could not load the CA certificates {config.ssl_ca_certs}: {_reason(exc)}"
            ) from None
    context.verify_mode = ssl.VerifyMode(config.ssl_cert_reqs)
    if config.ssl_ciphers:
        try:
            context.set_ciphers(config.ssl_ciphers)
        except ssl.SSLError:
            raise ConfigError(
                f"no usable cipher in the TLS cipher list {config.ssl_ciphers!r}"
            ) from None
    # h2 first: a client that speaks both gets HTTP/2 (docs/http2.md).
    context.set_alpn_protocols(["h2", "http/1.1"] if config.http2 else ["http/1.1"])
    return TLSSettings(
        context=context,
        server_cert=_first_pem_certificate(certfile),
        cipher_ids={c["name"]: c["id"] & 0xFFFF for c in context.get_ciphers()},
    )


def _reason(exc: OSError | ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLError):
        return (exc.reason or str(exc)).lower().replace("_", " ")
    return (exc.strerror or str(exc)).lower()


def _first_pem_certificate(certfile: str) -> str | None:
    try:
        with open(certfile, encoding="ascii", errors="replace") as file:
            text = file.read()
    except OSError:
        return None
    begin = text.find("-----BEGIN CERTIFICATE-----")
    end_marker = "-----END CERTIFICATE-----"
    end = text.find(end_marker, begin)
    if begin == -1 or end == -1:
        return None
    return text[begin : end + len(end_marker)] + "\n"


def tls_extension(settings: TLSSettings, ssl_object: Any) -> dict[str, Any]:
    """The ASGI ``tls`` extension for one handshaken connection (built once per connection).

    ``ssl_object`` is the connection's ``trio.SSLStream`` (or an ``ssl.SSLObject``). A client
    certificate that fails verification fails the handshake, so
    ``client_cert_error`` is always None here.
    """
    cipher = ssl_object.cipher()
    peer = ssl_object.getpeercert()
    return {
        "server_cert": settings.server_cert,
        "client_cert_chain": _client_chain(ssl_object),
        "client_cert_name": rfc4514_name(peer["subject"]) if peer else None,
        "client_cert_error": None,
        "tls_version": _TLS_VERSIONS.get(ssl_object.version()),
        "cipher_suite": settings.cipher_ids.get(cipher[0]) if cipher else None,
    }


def _client_chain(ssl_object: Any) -> list[str]:
    """The client's certificate as PEM, or nothing.

    Python's ``ssl`` gives the peer's own certificate only (the verified
    chain needs Python 3.13 and the raw ``SSLObject``), so the list holds
    at most that one, which is what the spec puts first.
    """
    leaf = ssl_object.getpeercert(binary_form=True)
    return [ssl.DER_cert_to_PEM_cert(leaf)] if leaf else []


def rfc4514_name(subject: tuple[tuple[tuple[str, str], ...], ...]) -> str:
    """A ``getpeercert()`` subject as an RFC 4514 string: last RDN first, values escaped."""
    rdns = []
    for rdn in reversed(subject):
        rdns.append(
            "+".join(f"{_RDN_NAMES.get(name, name)}={_escape_dn(value)}" for name, value in rdn)
        )
    return ",".join(rdns)


def _escape_dn(value: str) -> str:
    escaped = "".join("\\" + ch if ch in ',+"\\<>;=' else ch for ch in value)
    if escaped[:1] in ("#", " "):
        escaped = "\\" + escaped
    if escaped.endswith(" "):
        escaped = escaped[:-1] + "\\ "
    return escaped.replace("\x00", "\\00")
