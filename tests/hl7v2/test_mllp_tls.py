"""Secure MLLP on real sockets: TLS with client certificates, and per-source sender allow-lists."""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest
from pki import make_pki
from support import FIXTURES
from v2wire import SB, TRAILER, Wire, msa, read_frame

from gateway import metrics
from gateway.hl7v2.mllp_security import (
    AllowList,
    MllpSecurityError,
    allow_list_for,
    allow_lists,
)
from gateway.listener import tls_context

REFERRAL = (FIXTURES / "gp-v2" / "01-new-referral.hl7").read_bytes()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, the listener's certificate for 127.0.0.1 and a sender's certificate."""
    return make_pki(tmp_path_factory.mktemp("pki"))


def _tls_settings(pki: Path, require: bool = True) -> dict[str, object]:
    return {
        "MLLP_TLS_CERT": str(pki / "server.pem"),
        "MLLP_TLS_KEY": str(pki / "server.key"),
        "MLLP_TLS_CLIENT_CA": str(pki / "ca.pem"),
        "MLLP_TLS_REQUIRE_CLIENT_CERT": int(require),
    }


def _tls_send(wire: Wire, pki: Path, with_cert: bool) -> bytes:
    """One framed message over TLS; the unframed answer."""
    context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    if with_cert:
        context.load_cert_chain(str(pki / "client.pem"), str(pki / "client.key"))
    with (
        wire.connect() as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(SB + REFERRAL + TRAILER)
        return read_frame(tls)


def _refused(source: str, reason: str) -> float:
    return float(metrics.MLLP_REFUSED.labels(source, reason)._value.get())


def _closed_without_answer(sock: socket.socket) -> bool:
    """True when the peer closes (or resets) the connection without sending anything."""
    try:
        sock.sendall(SB + REFERRAL + TRAILER)
        return sock.recv(100) == b""
    except OSError:
        return True


def test_a_sender_with_a_certificate_gets_aa_over_tls(
    wire: Callable[..., Wire],
    pki: Path,
) -> None:
    server = wire(**_tls_settings(pki))
    opened = metrics.MLLP_OPENED.labels("gp-v2")._value.get()
    code, _ = msa(_tls_send(server, pki, with_cert=True))
    assert code == "AA"
    assert [m.status for m in server.messages()] == ["accepted"]
    assert metrics.MLLP_OPENED.labels("gp-v2")._value.get() == opened + 1


def test_a_sender_without_a_certificate_is_refused(
    wire: Callable[..., Wire],
    pki: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = wire(**_tls_settings(pki))
    before = _refused("gp-v2", "tls")
    with caplog.at_level(logging.WARNING, logger="gateway.hl7v2.mllp"):
        with pytest.raises((ssl.SSLError, OSError, AssertionError)):
            _tls_send(server, pki, with_cert=False)  # TLS 1.3: refused at the first read
        server.server.shutdown()
    assert server.messages() == []
    assert _refused("gp-v2", "tls") == before + 1
    refusal = [r.getMessage() for r in caplog.records if "TLS handshake failed" in r.getMessage()]
    assert refusal and "127.0.0.1:" in refusal[0]


def test_plain_mllp_to_a_tls_port_is_refused(
    wire: Callable[..., Wire],
    pki: Path,
) -> None:
    server = wire(**_tls_settings(pki, require=False))
    with server.connect() as sock:
        assert _closed_without_answer(sock)
    assert server.messages() == []


def test_tls_without_client_certificates_takes_any_tls_sender(
    wire: Callable[..., Wire],
    pki: Path,
) -> None:
    server = wire(MLLP_TLS_CERT=str(pki / "server.pem"), MLLP_TLS_KEY=str(pki / "server.key"))
    assert msa(_tls_send(server, pki, with_cert=False))[0] == "AA"


def test_an_address_not_allowed_for_the_source_is_refused(
    wire: Callable[..., Wire], caplog: pytest.LogCaptureFixture
) -> None:
    server = wire(MLLP_ALLOW="gp-v2=10.9.0.0/16,192.0.2.7;*=127.0.0.1")
    before = _refused("gp-v2", "address")
    with caplog.at_level(logging.WARNING, logger="gateway.hl7v2.mllp"), server.connect() as sock:
        assert _closed_without_answer(sock)
    assert server.messages() == []
    assert _refused("gp-v2", "address") == before + 1
    (line,) = [r.getMessage() for r in caplog.records if "not allowed" in r.getMessage()]
    assert "127.0.0.1:" in line and "gp-v2" in line
    assert "MSH" not in line


def test_an_allowed_address_is_served(wire: Callable[..., Wire]) -> None:
    server = wire(MLLP_ALLOW="gp-v2=127.0.0.0/8;*=10.0.0.0/8")
    assert msa(server.mllp(REFERRAL))[0] == "AA"


def test_plain_mllp_still_works_without_tls_settings(wire: Callable[..., Wire]) -> None:
    server = wire()
    assert server.server.tls is None
    assert msa(server.mllp(REFERRAL))[0] == "AA"


def test_allow_lists_inline_and_from_a_file(tmp_path: Path) -> None:
    lists = allow_lists("gp-v2=10.1.0.0/16, 192.0.2.7 ; *=10.0.0.0/8")
    assert allow_list_for(lists, "gp-v2").permits("192.0.2.7")
    assert not allow_list_for(lists, "gp-v2").permits("10.2.0.1")
    assert allow_list_for(lists, "hospital-a").permits("10.2.0.1")
    assert allow_list_for({}, "hospital-a") == AllowList()
    listed = tmp_path / "allow.txt"
    listed.write_text("# sender addresses\ngp-v2 10.1.0.0/16,192.0.2.7\ngp-v2 ::1  # lab\n")
    from_file = allow_lists(str(listed))
    assert from_file["gp-v2"].permits("::1") and from_file["gp-v2"].permits("10.1.3.4")
    with pytest.raises(MllpSecurityError, match="no address"):
        allow_lists("gp-v2=")
    with pytest.raises(MllpSecurityError, match="cannot read"):
        allow_lists(str(tmp_path / "missing.txt"))


def test_tls_settings_without_a_certificate_are_named() -> None:
    with pytest.raises(MllpSecurityError, match="need MLLP_TLS_CERT"):
        tls_context(
            {
                "MLLP_TLS_CERT": "",
                "MLLP_TLS_KEY": "",
                "MLLP_TLS_CLIENT_CA": "ca.pem",
                "MLLP_TLS_REQUIRE_CLIENT_CERT": 1,
            }
        )
