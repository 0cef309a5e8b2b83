"""MLLP security settings: allow-lists of sender networks and TLS server contexts."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from pathlib import Path

import pytest
from pki import make_pki

from gateway.hl7v2.mllp_security import AllowList, MllpSecurityError, server_context


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by it."""
    return make_pki(tmp_path_factory.mktemp("pki"))


def test_an_empty_allow_list_permits_everyone() -> None:
    assert AllowList.parse([]).permits("203.0.113.9")


@pytest.mark.parametrize(
    ("address", "permitted"),
    [
        ("10.20.1.2", True),
        ("10.21.0.1", False),
        ("192.0.2.7", True),
        ("192.0.2.8", False),
        ("::ffff:10.20.9.9", True),
        ("::1", True),
        ("fe80::1%eth0", False),
        ("not-an-address", False),
    ],
)
def test_an_allow_list_permits_only_its_networks(address: str, permitted: bool) -> None:
    allow = AllowList.parse(["10.20.0.0/16", " 192.0.2.7 ", "::1", ""])
    assert allow.permits(address) is permitted


def test_a_bad_entry_is_named() -> None:
    with pytest.raises(MllpSecurityError, match=r"'10\.0\.0\.300' is not an IP address"):
        AllowList.parse(["10.0.0.300"])


def _serve_once(context: ssl.SSLContext) -> tuple[int, dict[str, object]]:
    """A TLS listener on 127.0.0.1 that answers one frame with 'ok', and what it saw."""
    listener = socket.create_server(("127.0.0.1", 0))
    seen: dict[str, object] = {}

    def run() -> None:
        conn, _ = listener.accept()
        try:
            with context.wrap_socket(conn, server_side=True) as tls:
                seen["peer"] = tls.getpeercert()
                tls.recv(100)
                tls.sendall(b"ok")
        except (ssl.SSLError, OSError) as exc:
            seen["error"] = exc
        finally:
            listener.close()

    threading.Thread(target=run, daemon=True).start()
    return listener.getsockname()[1], seen


def _client(pki: Path, port: int, with_cert: bool) -> bytes:
    context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    if with_cert:
        context.load_cert_chain(str(pki / "client.pem"), str(pki / "client.key"))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(b"\x0bMSH|^~\\&|\r\x1c\r")
        return tls.recv(10)


def test_tls_with_a_required_client_certificate(pki: Path) -> None:
    context = server_context(
        str(pki / "server.pem"), str(pki / "server.key"), str(pki / "ca.pem"), require_client=True
    )
    port, seen = _serve_once(context)
    assert _client(pki, port, with_cert=True) == b"ok"
    assert seen["peer"]
    port, seen = _serve_once(context)
    try:
        answer: bytes | None = _client(pki, port, with_cert=False)
    except (ssl.SSLError, OSError):  # TLS 1.2 fails the handshake, TLS 1.3 the first read
        answer = None
    assert not answer
    deadline = time.monotonic() + 10
    while "error" not in seen and time.monotonic() < deadline:
        time.sleep(0.01)
    assert isinstance(seen.get("error"), ssl.SSLError)


def test_tls_without_client_certificates(pki: Path) -> None:
    port, _ = _serve_once(server_context(str(pki / "server.pem"), str(pki / "server.key")))
    assert _client(pki, port, with_cert=False) == b"ok"


def test_bad_tls_settings_are_named(pki: Path) -> None:
    with pytest.raises(MllpSecurityError, match="cannot load the certificate"):
        server_context(str(pki / "missing.pem"), str(pki / "server.key"))
    with pytest.raises(MllpSecurityError, match="no client CA"):
        server_context(str(pki / "server.pem"), str(pki / "server.key"), require_client=True)
