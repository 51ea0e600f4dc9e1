"""The platform app on AWS: rediss:// to ElastiCache with in-transit encryption, credentials apart from the DSN.

The TLS tests speak real TLS to a tiny RESP server on 127.0.0.1 with a
certificate for "localhost" from a throw-away CA: the app's Redis client must
verify both the chain and the host name (as it must with ElastiCache, whose
certificate names the primary endpoint, not an in-cluster alias).
"""

from __future__ import annotations

import asyncio
import datetime
import ssl
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from resilience.errors import UserError
from resilience.platform import db
from resilience.platform.cache import Cache, make_redis_client
from resilience.platform.settings import settings_from_env


def _certificate(subject: str, issuer_key: Any, issuer: x509.Name | None, key: Any, ca: bool,
                 names: list[x509.GeneralName]) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer or name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(hours=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                                      content_commitment=False, key_encipherment=False,
                                                      data_encipherment=False, key_agreement=False,
                                                      encipher_only=False, decipher_only=False), critical=True)
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    else:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA and a server certificate for DNS:localhost only (not for 127.0.0.1)."""
    root = tmp_path_factory.mktemp("pki")
    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("test CA", ca_key, None, ca_key, True, [])
    server = _certificate("localhost", ca_key, ca.subject, server_key, False, [x509.DNSName("localhost")])
    paths = {"ca": root / "ca.pem", "cert": root / "server.pem", "key": root / "server.key"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(server_key.private_bytes(serialization.Encoding.PEM,
                                                      serialization.PrivateFormat.PKCS8,
                                                      serialization.NoEncryption()))
    return paths


def _hello_reply(words: list[str]) -> bytes:
    """HELLO [2|3]: the handshake redis-py 8 opens with (RESP3 by default); older clients never send it.

    The reply is a map in RESP3 and a flat array in RESP2, as a real server's is, and the
    connection speaks the version asked for from then on (the replies below mean the same in both).
    """
    protocol = words[1] if len(words) > 1 else "2"
    fields = [b"$6\r\nserver\r\n", b"$5\r\nredis\r\n", b"$7\r\nversion\r\n", b"$5\r\n7.2.0\r\n",
              b"$5\r\nproto\r\n", f":{protocol}\r\n".encode(), b"$4\r\nmode\r\n", b"$10\r\nstandalone\r\n"]
    header = b"%4\r\n" if protocol == "3" else b"*8\r\n"
    return header + b"".join(fields)


def _reply(words: list[str]) -> bytes:
    command = words[0].upper()
    if command == "HELLO":
        if len(words) > 1 and words[1] not in ("2", "3"):
            return b"-NOPROTO unsupported protocol version\r\n"
        return _hello_reply(words)
    if command == "GET":
        return b"$5\r\nhello\r\n"
    if command == "PING":
        return b"+PONG\r\n"
    return b"+OK\r\n"  # SELECT, CLIENT SETINFO/SETNAME, SET, ...


async def _serve_resp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: list[list[str]]) -> None:
    """Just enough of a Redis server for RESP2 and RESP3 clients: HELLO, GET answers 'hello', PING 'PONG', else OK."""
    try:
        while True:
            header = await reader.readline()
            if not header:
                return
            words = []
            for _ in range(int(header[1:])):
                length = int((await reader.readline())[1:])
                words.append((await reader.readexactly(length + 2))[:-2].decode())
            seen.append(words)
            writer.write(_reply(words))
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
        return
    finally:
        writer.close()


async def _get(url: str) -> tuple[tuple[bool, bytes | None], list[BaseException]]:
    failures: list[BaseException] = []
    settings = settings_from_env({"RSL_REDIS_URL": url, "RSL_REDIS_TIMEOUT_S": "2"})
    cache = Cache(make_redis_client(settings), settings.redis_timeout_s,
                  on_failure=lambda _op, exc: failures.append(exc))
    try:
        return await cache.get("rsl:menu:v1"), failures
    finally:
        await cache.close()


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_rediss_verifies_the_certificate_and_talks_to_the_server(pki: dict[str, Path]) -> None:
    async def scenario() -> None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(pki["cert"], pki["key"])
        seen: list[list[str]] = []
        server = await asyncio.start_server(lambda r, w: _serve_resp(r, w, seen), "127.0.0.1", 0, ssl=context)
        port = server.sockets[0].getsockname()[1]
        try:
            # trusted chain, matching host name: served
            result, failures = await _get(f"rediss://localhost:{port}/0?ssl_ca_certs={pki['ca']}")
            assert result == (True, b"hello") and failures == []
            assert ["GET", "rsl:menu:v1"] in seen
            # the system's CAs do not know this CA: refused, and the request is not stalled by it
            result, failures = await _get(f"rediss://localhost:{port}/0")
            assert result == (False, None) and failures
            # right chain, wrong name (what an ExternalName alias in front of ElastiCache would be): refused
            result, failures = await _get(f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={pki['ca']}")
            assert result == (False, None) and failures
            assert any("certificate" in str(exc).lower() or "match" in str(exc).lower() for exc in failures)
        finally:
            server.close()
            await server.wait_closed()

    _run(scenario())


def test_redis_url_must_be_redis_or_rediss() -> None:
    assert settings_from_env({"RSL_REDIS_URL": "rediss://master.cache.example:6379/0"}).redis_url == \
        "rediss://master.cache.example:6379/0"
    with pytest.raises(UserError, match="RSL_REDIS_URL"):
        settings_from_env({"RSL_REDIS_URL": "https://cache.example"})


def test_postgres_credentials_apart_from_the_dsn_need_no_encoding(monkeypatch: pytest.MonkeyPatch) -> None:
    password = "p@ss:w/rd%20#?"  # every character that would break or change a URL
    settings = settings_from_env({"RSL_PG_DSN": "postgresql://db.example:5432/meals?target_session_attrs=read-write",
                                  "RSL_PG_USER": "app", "RSL_PG_PASSWORD": password})
    assert (settings.pg_user, settings.pg_password) == ("app", password)
    assert password not in repr(settings.pg_dsn)
    calls: list[tuple[str, dict[str, Any]]] = []

    async def fake_connect(dsn: str, **kwargs: Any) -> str:
        calls.append((dsn, kwargs))
        return "connection"

    monkeypatch.setattr(db.asyncpg, "connect", fake_connect)
    connector = db.PrimaryConnector(settings.pg_dsn, 1.0, 2.0, settings.pg_user, settings.pg_password)
    assert _run(connector.connect()) == "connection"
    dsn, kwargs = calls[0]
    assert "@" not in dsn and (kwargs["user"], kwargs["password"]) == ("app", password)
    # without them, the DSN's own credentials are used (the local target's way)
    calls.clear()
    _run(db.PrimaryConnector("postgresql://u:p@h:1/db", 1.0, 2.0).connect())
    assert "user" not in calls[0][1] and "password" not in calls[0][1]


def test_asyncpg_prefers_explicit_credentials_to_the_dsn() -> None:
    """The property PrimaryConnector relies on, checked against asyncpg's own DSN parser."""
    from asyncpg import connect_utils
    parse = connect_utils._parse_connect_dsn_and_args
    try:
        params = parse(dsn="postgresql://dsnuser:dsnpass@h:5432/db", host=None, port=None, user="app",
                       password="p@ss:w/rd", passfile=None, database=None, ssl=None, direct_tls=None,
                       server_settings=None, target_session_attrs=None, krbsrvname=None, gsslib=None,
                       service=None, servicefile=None)[1]
    except TypeError as exc:  # another asyncpg signature: the property still holds, the probe does not fit
        pytest.skip(f"asyncpg's private parser changed: {exc}")
    assert (params.user, params.password) == ("app", "p@ss:w/rd")

