"""Which addresses a callback may reach: public ones, and the networks the operator allows.

Any client with a write token chooses its callback URL, and reads each outcome back from the
job's callback log, so a dispatcher that called any address would let it scan and poke the
daemons' own network (loopback services, the cloud metadata endpoint, private hosts). The
check is made on the addresses actually connected to: a name is resolved once, by
`GuardedResolver`, which hands the connector only the addresses that pass, so a name whose
DNS answer changes between a check and the connection (DNS rebinding) cannot slip past.
aiohttp connects to an IP literal without resolving it: `literal_refusal` checks those first.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aiohttp.abc import AbstractResolver, ResolveResult

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

METADATA = frozenset(ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254"))


class CallbackRefused(OSError):
    """A callback's host is, or resolves only to, addresses callbacks may not reach."""


def parse_networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    """The operator's allowed networks (CIDR, or one address); ValueError names a bad one."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ValueError(
                f"{entry!r} is not a network, e.g. 10.0.0.0/8, fd00::/8 or 127.0.0.1"
            ) from None
    return tuple(networks)


def _kind(address: Address) -> str | None:
    """What makes `address` unreachable for callbacks by default, or None for a public one."""
    if address in METADATA:
        return "a cloud metadata address"
    for what, flag in (
        ("an unspecified", address.is_unspecified),
        ("a loopback", address.is_loopback),
        ("a link-local", address.is_link_local),
        ("a multicast", address.is_multicast),
        ("a private", address.is_private),
        ("a reserved", address.is_reserved),
        ("a site-local", isinstance(address, ipaddress.IPv6Address) and address.is_site_local),
    ):
        if flag:
            return f"{what} address"
    if not address.is_global:  # shared (100.64.0.0/10), documentation, benchmarking ranges
        return "not a public address"
    return None


def refusal(address: str, allowed: tuple[Network, ...]) -> str | None:
    """What makes IP `address` one a callback may not connect to ("a loopback address"), or
    None when it may."""
    ip: Address = ipaddress.ip_address(address.split("%", 1)[0])  # a zone names no other host
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # the socket connects to the IPv4 address itself
    if any(ip in network for network in allowed):
        return None
    if (kind := _kind(ip)) is not None:
        return kind
    # 6to4 leads to the IPv4 address inside (NAT64's 64:ff9b::/96 is reserved: refused above)
    inner = ip.sixtofour if isinstance(ip, ipaddress.IPv6Address) else None
    if inner is not None and not any(inner in network for network in allowed):
        if (kind := _kind(inner)) is not None:
            return f"{kind} (by 6to4)"
    return None


_HINT = "allow its network with the callback_allow_networks setting"


def literal_refusal(host: str, allowed: tuple[Network, ...]) -> str | None:
    """Why a callback to `host` (a URL's raw host) is refused, when aiohttp would connect to
    it as an IP literal, without asking the resolver; None otherwise."""
    from aiohttp.helpers import is_ip_address  # aiohttp's own test of what it won't resolve

    if not is_ip_address(host):
        return None
    try:
        kind = refusal(host, allowed)
    except ValueError:  # a form aiohttp takes for an address and ipaddress does not
        kind = "not a canonical IP address"
    return None if kind is None else f"callback to {host} refused: {kind}; {_HINT}"


def guarded_resolver(allowed: tuple[Network, ...]) -> AbstractResolver:
    """aiohttp's default resolver, passing on only the addresses `refusal` lets through."""
    from aiohttp.abc import AbstractResolver  # lazily: the memory of idle workers
    from aiohttp.resolver import DefaultResolver

    class GuardedResolver(AbstractResolver):
        def __init__(self) -> None:
            self._inner = DefaultResolver()

        async def resolve(
            self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
        ) -> list[ResolveResult]:
            results = await self._inner.resolve(host, port, family)
            verdicts = [(result, refusal(result["host"], allowed)) for result in results]
            passed = [result for result, kind in verdicts if kind is None]
            if not passed:  # a name with public addresses among private ones keeps those
                # the kinds, not the addresses: the log is read back by whoever posted the job
                kinds = " or ".join(sorted({kind for _, kind in verdicts if kind is not None}))
                raise CallbackRefused(
                    f"callback to {host!r} refused: it resolves only to {kinds}; {_HINT}"
                )
            return passed

        async def close(self) -> None:
            await self._inner.close()

    return GuardedResolver()
