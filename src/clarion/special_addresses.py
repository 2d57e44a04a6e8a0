"""The IANA IPv4 and IPv6 Special-Purpose Address Registries, as data: which blocks are
globally reachable. The SSRF guard (`clarion.net.permitted`) decides from these tables, not
from the Python version's own `is_global`, whose lists trail the registries (Python 3.11 takes
`64:ff9b:1::/48`, `fec0::/10`, `5f00::/16` and `3fff::/20` for global).

Each row: the block, the registry's name for it, and whether it is globally reachable (the
registry's "Globally Reachable" column; its "N/A" rows, the deprecated ones and the blocks
that carry another address (decided by `clarion.net.embedded_ipv4` before this table is read)
are False here). Sources: iana.org/assignments/iana-ipv4-special-registry and
iana-ipv6-special-registry (2025 editions), RFC 3879 (site-local), RFC 2765 (SIIT).
"""

from __future__ import annotations

import ipaddress
from typing import Final

IPv4 = ipaddress.IPv4Network
IPv6 = ipaddress.IPv6Network

SPECIAL_V4: Final[tuple[tuple[str, str, bool], ...]] = (
    ("0.0.0.0/8", "This network", False),
    ("10.0.0.0/8", "Private-Use", False),
    ("100.64.0.0/10", "Shared Address Space", False),
    ("127.0.0.0/8", "Loopback", False),
    ("169.254.0.0/16", "Link Local", False),
    ("172.16.0.0/12", "Private-Use", False),
    ("192.0.0.0/24", "IETF Protocol Assignments", False),
    ("192.0.0.0/29", "IPv4 Service Continuity Prefix", False),
    ("192.0.0.8/32", "IPv4 dummy address", False),
    ("192.0.0.9/32", "Port Control Protocol Anycast", True),
    ("192.0.0.10/32", "Traversal Using Relays around NAT Anycast", True),
    ("192.0.0.170/31", "NAT64/DNS64 Discovery", False),
    ("192.0.2.0/24", "Documentation (TEST-NET-1)", False),
    ("192.31.196.0/24", "AS112-v4", True),
    ("192.52.193.0/24", "AMT", True),
    ("192.88.99.0/24", "Deprecated (6to4 Relay Anycast)", False),
    ("192.168.0.0/16", "Private-Use", False),
    ("192.175.48.0/24", "Direct Delegation AS112 Service", True),
    ("198.18.0.0/15", "Benchmarking", False),
    ("198.51.100.0/24", "Documentation (TEST-NET-2)", False),
    ("203.0.113.0/24", "Documentation (TEST-NET-3)", False),
    ("224.0.0.0/4", "Multicast (never a web server)", False),
    ("240.0.0.0/4", "Reserved", False),
    ("255.255.255.255/32", "Limited Broadcast", False),
)

SPECIAL_V6: Final[tuple[tuple[str, str, bool], ...]] = (
    ("::/128", "Unspecified Address", False),
    ("::1/128", "Loopback Address", False),
    ("::ffff:0:0/96", "IPv4-mapped Address", False),
    ("::ffff:0:0:0/96", "IPv4-translated Address (SIIT, RFC 2765)", False),
    ("64:ff9b::/96", "IPv4-IPv6 Translation", False),
    ("64:ff9b:1::/48", "IPv4-IPv6 Translation (local use)", False),
    ("100::/64", "Discard-Only Address Block", False),
    ("100:0:0:1::/64", "Dummy IPv6 Prefix", False),
    ("2001::/23", "IETF Protocol Assignments", False),
    ("2001::/32", "TEREDO", False),
    ("2001:1::1/128", "Port Control Protocol Anycast", True),
    ("2001:1::2/128", "Traversal Using Relays around NAT Anycast", True),
    ("2001:1::3/128", "DNS-SD Service Registration Protocol Anycast", True),
    ("2001:2::/48", "Benchmarking", False),
    ("2001:3::/32", "AMT", True),
    ("2001:4:112::/48", "AS112-v6", True),
    ("2001:10::/28", "Deprecated (previously ORCHID)", False),
    ("2001:20::/28", "ORCHIDv2", True),
    ("2001:30::/28", "Drone Remote ID Protocol Entity Tags (DETs) Prefix", True),
    ("2001:db8::/32", "Documentation", False),
    ("2002::/16", "6to4", False),
    ("2620:4f:8000::/48", "Direct Delegation AS112 Service", True),
    ("3fff::/20", "Documentation", False),
    ("5f00::/16", "Segment Routing (SRv6) SIDs", False),
    ("fc00::/7", "Unique-Local", False),
    ("fe80::/10", "Link-Local Unicast", False),
    ("fec0::/10", "Site-Local (deprecated, RFC 3879)", False),
    ("ff00::/8", "Multicast (never a web server)", False),
)

# Outside this, no IPv6 address is global unicast today (RFC 4291 section 2.4; IANA's IPv6
# Address Space registry): an address there is refused whatever its block.
GLOBAL_UNICAST_V6: Final = ipaddress.IPv6Network("2000::/3")

_V4 = sorted(((IPv4(n), g) for n, _, g in SPECIAL_V4), key=lambda r: r[0].prefixlen, reverse=True)
_V6 = sorted(((IPv6(n), g) for n, _, g in SPECIAL_V6), key=lambda r: r[0].prefixlen, reverse=True)


def globally_reachable(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether the registries say `ip` is globally reachable: the most specific block that
    holds it decides; an address in no block is global (IPv4), or global if it is in
    2000::/3 (IPv6)."""
    if isinstance(ip, ipaddress.IPv4Address):
        for v4net, reachable in _V4:
            if ip in v4net:
                return reachable
        return True
    for v6net, reachable in _V6:
        if ip in v6net:
            return reachable
    return ip in GLOBAL_UNICAST_V6
