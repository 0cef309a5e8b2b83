"""Who may open an MLLP connection: TLS (optionally with client certificates) and allow-lists.

HL7 v2 over MLLP has no security of its own; the HL7 UK and NHS guidance is to carry it over
TLS on networks that are not wholly trusted. Each listener can have a TLS context (the
standard library ``ssl`` module, TLS 1.2 or newer) and a list of sender addresses or networks
it accepts; a connection from anywhere else is closed at once and logged with its address.
"""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Iterable
from dataclasses import dataclass

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class MllpSecurityError(ValueError):
    """A TLS or allow-list setting cannot be used; says which and why."""


@dataclass(frozen=True)
class AllowList:
    """The sender networks one listener accepts; empty means any address."""

    networks: tuple[Network, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> AllowList:
        """From addresses and CIDR networks (``10.1.2.3``, ``10.20.0.0/16``, ``::1``)."""
        networks = []
        for entry in entries:
            text = entry.strip()
            if not text:
                continue
            try:
                networks.append(ipaddress.ip_network(text, strict=False))
            except ValueError:
                raise MllpSecurityError(f"{text!r} is not an IP address or network") from None
        return cls(tuple(networks))

    def permits(self, address: str) -> bool:
        """Whether a connection from ``address`` may proceed."""
        if not self.networks:
            return True
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self.networks)


def server_context(
    certificate: str, key: str, client_ca: str | None = None, require_client: bool = False
) -> ssl.SSLContext:
    """A TLS server context: our certificate and key, and the CA that signs senders' certificates.

    With ``require_client`` a sender without a certificate signed by ``client_ca`` cannot
    connect; with only ``client_ca`` a certificate is checked when one is offered.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(certificate, key)
    except (OSError, ssl.SSLError) as exc:
        raise MllpSecurityError(f"cannot load the certificate {certificate}: {exc}") from None
    if client_ca:
        try:
            context.load_verify_locations(client_ca)
        except (OSError, ssl.SSLError) as exc:
            raise MllpSecurityError(f"cannot load the client CA {client_ca}: {exc}") from None
        context.verify_mode = ssl.CERT_REQUIRED if require_client else ssl.CERT_OPTIONAL
    elif require_client:
        raise MllpSecurityError("client certificates are required but no client CA is given")
    return context
