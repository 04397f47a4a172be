"""The parts of a URL naming several Redis hosts (a Sentinel set's, a cluster's):
`scheme://[user:password@]h1:p1[,h2:p2...][/path][?query]`, read alike for both."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit


@dataclass(frozen=True)
class Hosts:
    addresses: tuple[tuple[str, int], ...]
    username: str | None
    password: str | None
    ssl: bool
    path: str  # unquoted, without its leading /
    options: dict[str, list[str]]  # the query


def split_hosts(url: str, schemes: dict[str, bool], what: str) -> Hosts | None:
    """`url`'s parts if its scheme is one of `schemes` (scheme: TLS), else None. A ValueError
    names an address that is not HOST:PORT (`what` says whose)."""
    parts = urlsplit(url)
    if parts.scheme not in schemes:
        return None
    userinfo, _, hosts = parts.netloc.rpartition("@")
    user, colon, password = userinfo.partition(":")
    return Hosts(
        tuple(_address(entry, what) for entry in hosts.split(",")),
        unquote(user) or None,
        unquote(password) if colon else None,
        schemes[parts.scheme],
        unquote(parts.path.removeprefix("/")),
        parse_qs(parts.query),
    )


def _address(entry: str, what: str) -> tuple[str, int]:
    host, _, port = entry.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) <= 65535:
        raise ValueError(f"{what} address must be HOST:PORT, got {entry!r}")
    return unquote(host.removeprefix("[").removesuffix("]")), int(port)  # [::1]:26379
