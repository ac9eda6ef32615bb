"""Addresses a webhook may not reach unless its sink sets `allow_link_local`: link-local and instance metadata.

One policy for two checks: the configuration refuses a URL whose host is such an address written literally (in
any spelling the resolver accepts), and the webhook sink refuses a name that resolves to one when it connects.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import unquote

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Link-local ranges are refused by `is_link_local`; these are the credential endpoints outside them: EC2 instance
# metadata over IPv6 and the EKS Pod Identity agent over IPv6 (169.254.169.254 and 169.254.170.x are link-local).
METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "fd00:ec2::23"))


def forbidden(address: IpAddress) -> str | None:
    """Why a webhook may not connect to this address, or None if it may."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address in METADATA_ADDRESSES:
        return "an instance-metadata (credentials) address"
    if address.is_link_local:
        return "a link-local address"
    return None


def literal_address(host: str) -> IpAddress | None:
    """The address a URL's host denotes without a DNS lookup, or None for a name.

    The system resolver reads more than dotted quads: 2852039166, 0xa9fea9fe, 0251.0376.0251.0376 and 169.254.43518
    are all 169.254.169.254 to getaddrinfo (inet_aton's forms), so those spellings are decoded the same way here.
    """
    text = host.removesuffix(".")
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if ":" in text:
        try:
            return ipaddress.IPv6Address(unquote(text))  # a zone id arrives percent-encoded: fe80::1%25eth0
        except ValueError:
            return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(text))
    except (OSError, ValueError):
        return None
