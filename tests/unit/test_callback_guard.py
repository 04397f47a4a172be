"""Which addresses callbacks may reach: the pure check behind the dispatcher's resolver."""

from __future__ import annotations

import pytest

from aqueue._services.callback_guard import literal_refusal, parse_networks, refusal
from aqueue._services.callbacks import CallbackConfig
from aqueue.errors import ConfigError


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "a loopback address"),
        ("127.9.9.9", "a loopback address"),
        ("::1", "a loopback address"),
        ("::ffff:127.0.0.1", "a loopback address"),  # IPv4-mapped: the socket dials 127.0.0.1
        ("2002:7f00:1::", "a loopback address (by 6to4)"),
        ("0.0.0.0", "an unspecified address"),  # noqa: S104 - dialled, it reaches this host
        ("10.1.2.3", "a private address"),
        ("192.168.0.1", "a private address"),
        ("fd12::1", "a private address"),
        ("169.254.169.254", "a cloud metadata address"),
        ("fd00:ec2::254", "a cloud metadata address"),
        ("169.254.1.1", "a link-local address"),
        ("fe80::1%eth0", "a link-local address"),
        ("224.0.0.1", "a multicast address"),
        ("ff02::1", "a multicast address"),
        ("8.8.8.8", None),
        ("2606:4700::1111", None),
        ("::ffff:8.8.8.8", None),
    ],
)
def test_only_public_addresses_pass_by_default(address: str, kind: str | None) -> None:
    assert refusal(address, ()) == kind


@pytest.mark.parametrize("address", ["240.0.0.1", "64:ff9b::7f00:1", "100.64.0.1", "192.0.2.1"])
def test_reserved_shared_and_documentation_ranges_are_refused(address: str) -> None:
    # which of "private", "reserved" or "not public" each is varies between Python versions
    assert refusal(address, ()) is not None


def test_allowed_networks_let_their_addresses_through_and_no_others() -> None:
    allowed = parse_networks(("127.0.0.0/8", "10.0.0.5"))
    assert refusal("127.0.0.1", allowed) is None
    assert refusal("::ffff:127.0.0.1", allowed) is None
    assert refusal("10.0.0.5", allowed) is None
    assert refusal("10.0.0.6", allowed) == "a private address"
    assert refusal("169.254.169.254", allowed) == "a cloud metadata address"


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "10.0.0.1", "169.254.169.254"])
def test_ip_literals_which_aiohttp_dials_unresolved_are_checked_too(host: str) -> None:
    refused = literal_refusal(host, ())
    assert refused is not None and refused.startswith(f"callback to {host} refused: ")
    assert "callback_allow_networks" in refused
    assert literal_refusal("hooks.example.org", ()) is None  # a name: the resolver checks it
    assert literal_refusal("93.184.215.14", ()) is None


def test_a_bad_allowed_network_is_refused_by_name() -> None:
    with pytest.raises(ConfigError, match=r"'10\.0\.0\.0/33' is not a network"):
        CallbackConfig(allow_networks=("10.0.0.0/8", "10.0.0.0/33"))
    config = CallbackConfig(allow_networks=("10.1.2.3/8",))
    assert config.networks == parse_networks(("10.0.0.0/8",))
