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


def allow_lists(setting: str) -> dict[str, AllowList]:
    """Each source's allow-list from MLLP_ALLOW: inline ``gp-v2=10.1.0.0/16,192.0.2.7;*=10.0.0.0/8``
    or the path of a file of ``source address[,address...]`` lines (``#`` starts a comment).

    ``*`` is the list of every source without its own entry; with no entry at all a source
    takes any address. An entry with no address is an error, not "everyone".
    """
    text = setting.strip()
    if not text:
        return {}
    if "=" not in text:
        try:
            with open(text, encoding="utf-8") as handle:
                lines = [line.split("#", 1)[0].split(None, 1) for line in handle]
        except OSError as exc:
            raise MllpSecurityError(f"cannot read MLLP_ALLOW {text}: {exc.strerror}") from None
        pairs = [(line[0], line[1] if len(line) > 1 else "") for line in lines if line]
    else:  # inline
        pairs = []
        for item in text.split(";"):
            source, _, addresses = item.partition("=")
            if item.strip():
                pairs.append((source, addresses))
    lists: dict[str, list[str]] = {}
    for source, addresses in pairs:
        entries = [entry for entry in addresses.replace(",", " ").split() if entry]
        if not entries:
            raise MllpSecurityError(f"MLLP_ALLOW names {source.strip()!r} with no address")
        lists.setdefault(source.strip(), []).extend(entries)
    return {source: AllowList.parse(entries) for source, entries in lists.items()}


def allow_list_for(lists: dict[str, AllowList], source: str) -> AllowList:
    """The source's own list, else the ``*`` list, else one that takes any address."""
    return lists.get(source) or lists.get("*") or AllowList()
