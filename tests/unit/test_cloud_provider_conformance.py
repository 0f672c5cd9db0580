"""kube-vip-cloud-provider's own test tables, replayed against kvip's pure allocator (kvip.core.ipam).

Source: kube-vip/kube-vip-cloud-provider at d3522c6, pkg/ipam/ipam_test.go, pkg/provider/loadBalancer_test.go
and pkg/provider/loadbalancerclass_test.go. Each Go table is one parametrized test here, its rows the
provider's data and expectations. The provider's answer for one Service from an address set becomes kvip's
plan over Services holding those addresses plus one new Service; its "preferred IPv4" (an address found by
allow-share) becomes a Service holding that address on other ports with allow-share on.

Where kvip writes or checks something else on purpose, the row asserts kvip's behaviour and says why in
`differs`; docs/migrating-from-kube-vip.md, section "IPAM (kube-vip-cloud-provider)", lists every such row
and the tables not ported (finalizer and update-filter tables of an edge-triggered controller).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from types import MappingProxyType

import pytest

from kvip.core.decide import DecideConfig, is_handled
from kvip.core.ipam import PoolConfig, parse_pools, plan
from kvip.core.model import PortView, ServiceKey, ServiceView

IPS = "kube-vip.io/loadbalancerIPs"
NEW = ServiceKey("default", "new")


def service(name: str, ns: str = "default", *, ips: str = "", ports: Sequence[tuple[int, str]] = ((80, "TCP"),),
            families: Sequence[str] = (), policy: str = "", lb_ip: str | None = None,
            cls: str | None = None) -> ServiceView:
    return ServiceView(ServiceKey(ns, name), ports=tuple(PortView(None, p, proto) for p, proto in ports),
                       ip_families=tuple(families), ip_family_policy=policy, load_balancer_ip=lb_ip,
                       load_balancer_class=cls, annotations=MappingProxyType({IPS: ips} if ips else {}))


def holders(existing: Sequence[str], port: int = 80) -> list[ServiceView]:
    return [service(f"existing-{i}", ips=ip, ports=((port, "TCP"),)) for i, ip in enumerate(existing)]


def allocate(config: PoolConfig, existing: Sequence[ServiceView], new: ServiceView) -> str | None:
    """What the new Service gets, as the annotation would read; None when it gets nothing (an error)."""
    got, problems = plan(config, [*existing, new])
    if new.key in got:
        return ",".join(got[new.key].ips)
    assert any(p.service == new.key for p in problems), "no address and no reason"
    return None


def addresses(config: PoolConfig, key: str) -> set[str]:
    pool = config.pools[key]
    return {str(ipaddress.ip_address(a)) for version in (4, 6) for a in pool.addresses(version)}


# --- pkg/ipam: the address set of a pool -----------------------------------------------------------------

BUILD_FROM_RANGE = [
    ("192.168.0.10-192.168.0.10", ["192.168.0.10"]),
    ("192.168.0.10-192.168.0.12", ["192.168.0.10", "192.168.0.11", "192.168.0.12"]),
    ("192.168.0.253-192.168.1.2", ["192.168.0.253", "192.168.0.254", "192.168.0.255", "192.168.1.0",
                                   "192.168.1.1", "192.168.1.2"]),
    ("192.168.0.10-192.168.0.11,192.168.1.20-192.168.1.21", ["192.168.0.10", "192.168.0.11", "192.168.1.20",
                                                             "192.168.1.21"]),
    ("192.168.0.10-192.168.0.11,192.168.0.10-192.168.0.13", ["192.168.0.10", "192.168.0.11", "192.168.0.12",
                                                             "192.168.0.13"]),
    ("fe80::13-fe80::14", ["fe80::13", "fe80::14"]),
    ("fe80::ffff-fe80::1:3", ["fe80::ffff", "fe80::1:0", "fe80::1:1", "fe80::1:2", "fe80::1:3"]),
    ("fe80::10-fe80::12,fe81::13-fe81::14", ["fe80::10", "fe80::11", "fe80::12", "fe81::13", "fe81::14"]),
    ("fe80::10-fe80::12,fe80::10-fe80::14", ["fe80::10", "fe80::11", "fe80::12", "fe80::13", "fe80::14"]),
]


@pytest.mark.parametrize(("value", "want"), BUILD_FROM_RANGE)
def test_build_hosts_from_range(value: str, want: list[str]) -> None:
    assert addresses(parse_pools({"range-global": value}), "range-global") == set(want)


BUILD_FROM_CIDR = [
    ("192.168.0.200/32", False, ["192.168.0.200"]),
    ("192.168.0.200/32", True, ["192.168.0.200"]),
    ("192.168.0.200/30", False, ["192.168.0.200", "192.168.0.201", "192.168.0.202", "192.168.0.203"]),
    ("192.168.0.200/30", True, ["192.168.0.201", "192.168.0.202"]),
    ("192.168.0.200/31", True, ["192.168.0.200", "192.168.0.201"]),
    ("192.168.0.200/30,192.168.0.200/29", False, [f"192.168.0.{i}" for i in range(200, 208)]),
    ("192.168.0.200/30,192.168.0.200/29", True, [f"192.168.0.{i}" for i in range(201, 207)]),
    ("fe80::10/127", False, ["fe80::10", "fe80::11"]),
    ("fe80::10/127,fe80::fe/127", False, ["fe80::10", "fe80::11", "fe80::fe", "fe80::ff"]),
    ("fe80::10/126,fe80::12/127", False, ["fe80::10", "fe80::11", "fe80::12", "fe80::13"]),
]


@pytest.mark.parametrize(("value", "skip_end", "want"), BUILD_FROM_CIDR)
def test_build_hosts_from_cidr(value: str, skip_end: bool, want: list[str]) -> None:
    data = {"cidr-global": value, **({"skip-end-ips-in-cidr": "true"} if skip_end else {})}
    assert addresses(parse_pools(data), "cidr-global") == set(want)


SPLIT_BY_FAMILY = [
    ("192.168.0.200/30", "192.168.0.200/30", ""),
    ("192.168.0.200/30,192.168.1.200/30", "192.168.0.200/30,192.168.1.200/30", ""),
    ("fe80::10/127", "", "fe80::10/127"),
    ("fe80::10/127,fe80::fe/127", "", "fe80::10/127,fe80::fe/127"),
    ("192.168.0.200/30,fe80::10/127", "192.168.0.200/30", "fe80::10/127"),
    ("192.168.0.200/30,192.168.1.200/30,fe80::10/127,fe80::fe/127", "192.168.0.200/30,192.168.1.200/30",
     "fe80::10/127,fe80::fe/127"),
    ("192.168.0.10-192.168.0.12", "192.168.0.10-192.168.0.12", ""),
    ("192.168.0.10-192.168.0.12,192.168.0.100-192.168.0.120", "192.168.0.10-192.168.0.12,192.168.0.100-192.168.0.120",
     ""),
    ("fe80::13-fe80::14", "", "fe80::13-fe80::14"),
    ("fe80::13-fe80::14,fe80::130-fe80::140", "", "fe80::13-fe80::14,fe80::130-fe80::140"),
    ("192.168.0.10-192.168.0.12,fe80::13-fe80::14", "192.168.0.10-192.168.0.12", "fe80::13-fe80::14"),
    ("192.168.0.10-192.168.0.12,192.168.0.100-192.168.0.120,fe80::13-fe80::14,fe80::130-fe80::140",
     "192.168.0.10-192.168.0.12,192.168.0.100-192.168.0.120", "fe80::13-fe80::14,fe80::130-fe80::140"),
]


def _bounds(text: str) -> tuple[tuple[int, int], ...]:
    """The expected per-family string, read with Python's ipaddress alone (not with kvip's parser)."""
    out = []
    for part in filter(None, text.split(",")):
        if "/" in part:
            net = ipaddress.ip_network(part)
            out.append((int(net.network_address), int(net.broadcast_address)))
        else:
            first, last = part.split("-")
            out.append((int(ipaddress.ip_address(first)), int(ipaddress.ip_address(last))))
    return tuple(out)


@pytest.mark.parametrize(("value", "ipv4", "ipv6"), SPLIT_BY_FAMILY)
def test_split_by_ip_family(value: str, ipv4: str, ipv6: str) -> None:
    pool = parse_pools({"range-global": value}).pools["range-global"]
    assert (pool.ranges.get(4, ()), pool.ranges.get(6, ())) == (_bounds(ipv4), _bounds(ipv6))


# --- pkg/ipam: the first free address -------------------------------------------------------------------

FIND_IN_RANGE = [  # (range, in use, search-order desc, want)
    ("192.168.0.10-192.168.0.10", [], False, "192.168.0.10"),
    ("192.168.0.10-192.168.0.10", [], True, "192.168.0.10"),
    ("192.168.0.10-192.168.0.12", [], False, "192.168.0.10"),
    ("192.168.0.10-192.168.0.12", [], True, "192.168.0.12"),
    ("192.168.0.253-192.168.1.2", ["192.168.0.253", "192.168.0.254"], False, "192.168.1.1"),
    ("192.168.0.253-192.168.1.2", ["192.168.1.1", "192.168.1.2"], True, "192.168.0.254"),
    ("192.168.0.10-192.168.0.11,192.168.1.20-192.168.1.21", ["192.168.0.9", "192.168.0.10"], False, "192.168.0.11"),
    ("192.168.0.10-192.168.0.11,192.168.1.20-192.168.1.22", ["192.168.1.21", "192.168.1.22"], True, "192.168.1.20"),
    ("fe80::13-fe80::14", [], False, "fe80::13"),
    ("fe80::13-fe80::14", [], True, "fe80::14"),
    ("fe80::13-fe80::15", [], False, "fe80::13"),
    ("fe80::13-fe80::15", [], True, "fe80::15"),
    ("fe80::ffff-fe80::1:3", ["fe80::ffff"], False, "fe80::1:0"),
    ("fe80::ffff-fe80::1:3", ["fe80::1:3", "fe80::1:2", "fe80::1:1", "fe80::1:0"], True, "fe80::ffff"),
    ("fe80::10-fe80::12,fe81::20-fe81::21", ["fe80::10", "fe80::11", "fe80::12"], False, "fe81::20"),
    ("fe80::10-fe80::12,fe81::20-fe81::21", ["fe81::21", "fe81::20"], True, "fe80::12"),
]


@pytest.mark.parametrize(("value", "in_use", "desc", "want"), FIND_IN_RANGE)
def test_find_available_host_from_range(value: str, in_use: list[str], desc: bool, want: str) -> None:
    config = parse_pools({"range-default": value, **({"search-order": "desc"} if desc else {})})
    assert allocate(config, holders(in_use), service("new")) == want


FIND_IN_CIDR = [  # (cidr, in use, skip-end-ips-in-cidr, search-order desc, want; None: no address)
    ("192.168.0.200/30", [], False, False, "192.168.0.200"),
    ("192.168.0.200/30", [], True, False, "192.168.0.201"),
    ("192.168.0.200/30", [], False, True, "192.168.0.203"),
    ("192.168.0.200/30", [], True, True, "192.168.0.202"),
    ("192.168.0.10/24", [], False, False, "192.168.0.1"),
    ("192.168.0.10/24", [], False, True, "192.168.0.254"),
    ("192.168.0.255/30", ["192.168.0.254", "192.168.0.252", "192.168.0.253"], False, False, None),
    ("192.168.0.255/30", ["192.168.0.254", "192.168.0.252", "192.168.0.253"], False, True, None),
    ("192.168.0.200/30,192.168.0.200/29", ["192.168.0.201", "192.168.0.202"], False, False, "192.168.0.200"),
    ("192.168.0.200/30,192.168.0.200/29", ["192.168.0.201", "192.168.0.202"], True, False, "192.168.0.203"),
    ("192.168.0.200/30,192.168.0.200/29", ["192.168.0.201", "192.168.0.202"], False, True, "192.168.0.207"),
    ("192.168.0.200/30,192.168.0.200/29", ["192.168.0.201", "192.168.0.202"], True, True, "192.168.0.206"),
    ("2001::49fe/127", [], False, False, "2001::49fe"),
    ("2001::49fe/127", [], True, False, "2001::49fe"),
    ("2001::49fe/127", [], False, True, "2001::49ff"),
    ("2001::49fe/127", ["2001::49fe", "2001::49ff"], False, False, None),
    ("2001::49fe/127", ["2001::49fe", "2001::49ff"], False, True, None),
    ("2001::10/126,2001::12/127", ["2001::10", "2001::11"], False, False, "2001::12"),
    ("2001::10/126,2001::12/127", ["2001::10", "2001::11"], False, True, "2001::13"),
]


@pytest.mark.parametrize(("value", "in_use", "skip_end", "desc", "want"), FIND_IN_CIDR)
def test_find_available_host_from_cidr(value: str, in_use: list[str], skip_end: bool, desc: bool,
                                       want: str | None) -> None:
    data = {"cidr-default": value, **({"skip-end-ips-in-cidr": "true"} if skip_end else {}),
            **({"search-order": "desc"} if desc else {})}
    assert allocate(parse_pools(data), holders(in_use), service("new")) == want


# --- pkg/provider: which pool, which address --------------------------------------------------------------

POOLS_CIDR = {"cidr-dummystart": "172.16.0.1/24", "cidr-global": "192.168.1.1/24", "cidr-system": "10.10.10.8/29",
              "allow-share-system": "true", "cidr-dummyend": "172.16.0.2/24", "cidr-ipv6": "2001::10/127"}
POOLS_RANGE = {"range-dummystart": "172.16.0.1-172.16.0.254", "range-global": "192.168.1.1-192.168.1.254",
               "range-system": "10.10.10.8-10.10.10.15", "range-dummyend": "172.16.1.1-172.16.1.254",
               "cidr-ipv6": "2001::10-2001::20"}  # a range under a cidr- key: the provider uses it as a range
DISCOVER_POOL = [  # (ConfigMap, namespace, value, from global, allow-share)
    (POOLS_CIDR, "system", "10.10.10.8/29", False, True),
    (POOLS_CIDR, "ipv6", "2001::10/127", False, False),
    (POOLS_CIDR, "basic", "192.168.1.1/24", True, False),
    (POOLS_RANGE, "system", "10.10.10.8-10.10.10.15", False, False),
    (POOLS_RANGE, "ipv6", "2001::10-2001::20", False, False),
    (POOLS_RANGE, "basic", "192.168.1.1-192.168.1.254", True, False),
]


@pytest.mark.parametrize(("data", "namespace", "want", "from_global", "share"), DISCOVER_POOL)
def test_discover_pool(data: dict[str, str], namespace: str, want: str, from_global: bool, share: bool) -> None:
    config = parse_pools(data)
    key = config.pool_key(namespace)
    assert key is not None and key in config.pools and not config.problems
    assert (data[key], key.endswith("-global"), config.share_allowed(namespace)) == (want, from_global, share)


DISCOVER_ADDRESS = [  # (namespace, pool, in use, want)
    ("system", "10.10.10.8/29", ["10.10.10.8", "10.10.10.9", "10.10.10.10", "10.10.10.12"], "10.10.10.11"),
    ("unknown", "192.168.1.1/24", ["10.10.10.8", "172.16.0.3", "192.168.1.1", "10.10.10.9", "10.10.10.10",
                                   "172.16.0.4", "192.168.1.2", "10.10.10.12"], "192.168.1.3"),
    ("system", "fe80::10/126", ["fe80::10", "fe80::11", "fe80::12"], "fe80::13"),
    ("unknown", "fe80::10/126", ["fe80::10", "fe80::11", "fe80::12"], "fe80::13"),
    ("system", "10.10.10.8-10.10.10.15", ["10.10.10.8", "10.10.10.9", "10.10.10.10", "10.10.10.12"], "10.10.10.11"),
    ("unknown", "192.168.1.1-192.168.1.254", ["10.10.10.8", "172.16.0.3", "192.168.1.1", "10.10.10.9",
                                              "10.10.10.10", "172.16.0.4", "192.168.1.2", "10.10.10.12"],
     "192.168.1.3"),
    ("system", "fe80::ffff-fe80::1:3", ["fe80::ffff", "fe80::1:0", "fe80::1:1"], "fe80::1:2"),
    ("unknown", "fe80::ffff-fe80::1:3", ["fe80::ffff", "fe80::1:0", "fe80::1:1"], "fe80::1:2"),
]


@pytest.mark.parametrize(("namespace", "value", "in_use", "want"), DISCOVER_ADDRESS)
def test_discover_address(namespace: str, value: str, in_use: list[str], want: str) -> None:
    config = parse_pools({f"range-{namespace}": value})
    assert allocate(config, holders(in_use), service("new", namespace)) == want


V4, V6 = "IPv4", "IPv6"
FULL_V4, FULL_V6 = ["10.10.10.8", "10.10.10.9"], ["fd00::1", "fd00::2"]
SMALL = "10.10.10.8-10.10.10.9,fd00::1-fd00::2"
DUAL = "10.10.10.8-10.10.10.15,fd00::1-fd00::10"
SOME_V4 = ["10.10.10.8", "10.10.10.9", "10.10.10.10", "10.10.10.12"]
DISCOVER_VIPS = [  # (policy, families, pool, preferred IPv4, in use, want; None: error)
    ("", [], "10.10.10.8-10.10.10.15", "", SOME_V4, "10.10.10.11"),
    ("SingleStack", [V4], "10.10.10.8-10.10.10.15", "", SOME_V4, "10.10.10.11"),
    ("SingleStack", [V4], "10.10.10.8-10.10.10.15", "10.10.10.9", SOME_V4, "10.10.10.9"),
    ("", [], "fd00::1-fd00::10", "", ["fd00::1", "fd00::2", "fd00::4"], "fd00::3"),
    ("SingleStack", [V6], "fd00::1-fd00::10", "", ["fd00::1", "fd00::2", "fd00::4"], "fd00::3"),
    ("SingleStack", [V4], "fd00::1-fd00::10", "", [], None),
    ("SingleStack", [V6], "10.10.10.8-10.10.10.15", "", [], None),
    ("PreferDualStack", [V4, V6], "10.10.10.8-10.10.10.15", "", SOME_V4, "10.10.10.11"),
    ("PreferDualStack", [V4, V6], "10.10.10.8-10.10.10.15", "10.10.10.10", SOME_V4, "10.10.10.10"),
    ("PreferDualStack", [V4, V6], "fd00::1-fd00::10", "", ["fd00::1", "fd00::2", "fd00::4"], "fd00::3"),
    ("PreferDualStack", [], DUAL, "", [], "10.10.10.8,fd00::1"),
    ("PreferDualStack", [V4, V6], DUAL, "", [], "10.10.10.8,fd00::1"),
    ("PreferDualStack", [V6, V4], DUAL, "", [], "fd00::1,10.10.10.8"),
    ("PreferDualStack", [V4, V6], DUAL, "10.10.10.8", SOME_V4, "10.10.10.8,fd00::1"),
    ("PreferDualStack", [V6, V4], DUAL, "10.10.10.8", SOME_V4, "fd00::1,10.10.10.8"),
    ("PreferDualStack", [V4, V6], SMALL, "", FULL_V6, "10.10.10.8"),
    ("PreferDualStack", [V4, V6], SMALL, "", FULL_V4, "fd00::1"),
    ("PreferDualStack", [V4, V6], SMALL, "", FULL_V6, "10.10.10.8"),  # the Go rows say IPv6,IPv4 but list IPv4,IPv6
    ("PreferDualStack", [V4, V6], SMALL, "", FULL_V4, "fd00::1"),
    ("PreferDualStack", [V4, V6], SMALL, "", FULL_V4 + FULL_V6, None),
    ("PreferDualStack", [V4, V6], SMALL + ",invalid-pool", "", [], None),
    ("RequireDualStack", [V4, V6], "10.10.10.8-10.10.10.15", "", [], None),
    ("RequireDualStack", [V4, V6], "fd00::1-fd00::10", "", [], None),
    ("RequireDualStack", [V4, V6], "", "", [], None),
    ("RequireDualStack", [V4, V6], DUAL, "", [], "10.10.10.8,fd00::1"),
    ("RequireDualStack", [V6, V4], DUAL, "", [], "fd00::1,10.10.10.8"),
    ("RequireDualStack", [V4, V6], SMALL, "", FULL_V6, None),
    ("RequireDualStack", [V4, V6], SMALL, "", FULL_V4, None),
    ("RequireDualStack", [V4, V6], SMALL, "", FULL_V6, None),
    ("RequireDualStack", [V4, V6], SMALL, "", FULL_V4, None),
    ("RequireDualStack", [V4, V6], SMALL, "", FULL_V4 + FULL_V6, None),
]


@pytest.mark.parametrize(("policy", "families", "value", "preferred", "in_use", "want"), DISCOVER_VIPS)
def test_discover_vips(policy: str, families: list[str], value: str, preferred: str, in_use: list[str],
                       want: str | None) -> None:
    data = {"range-discover-vips-test-ns": value}
    existing = holders([ip for ip in in_use if ip != preferred])  # port 80, as the new Service: not shareable
    if preferred:  # the provider was handed an address allow-share found: one whose ports do not clash
        data["allow-share-global"] = "true"
        existing.append(service("sharer", "discover-vips-test-ns", ips=preferred, ports=((443, "TCP"),)))
    new = service("new", "discover-vips-test-ns", families=families, policy=policy)
    assert allocate(parse_pools(data), existing, new) == want


# --- pkg/provider: syncLoadBalancer and the loadBalancerClass controller ------------------------------------

SYNC = [  # (ConfigMap, the Service as created, kube-vip.io/loadbalancerIPs written, serviceInterface written)
    # Legacy Service with spec.loadBalancerIP: the provider copies it into the annotation; kvip reads it where it
    # is and writes nothing (differs: no copy, no label), but counts it as in use.
    ({"cidr-global": "192.168.1.1/24"}, service("name", "test", lb_ip="192.168.1.1"), None, None),
    ({"cidr-global": "192.168.1.1/24"}, service("name", "test"), "192.168.1.1", None),
    ({}, service("name", "test", ips="192.168.1.1"), None, None),  # already annotated: nothing to write
    ({"cidr-global": "fe80::10/126"}, service("name", "test"), "fe80::10", None),
    ({"cidr-global": "10.120.120.1/24,fe80::10/126"},
     service("name", "test", policy="RequireDualStack", families=[V6, V4]), "fe80::10,10.120.120.1", None),
    ({"cidr-global": "192.168.1.1/24", "interface-global": "eth0"}, service("name", "test"), "192.168.1.1", "eth0"),
    ({"cidr-global": "192.168.1.1/24", "interface-test": "eth0"}, service("name", "test"), "192.168.1.1", "eth0"),
    ({"cidr-global": "192.168.1.1/24", "interface-what": "eth0"}, service("name", "test"), "192.168.1.1", None),
]


@pytest.mark.parametrize(("data", "svc", "want_ips", "want_interface"), SYNC)
def test_sync_load_balancer(data: dict[str, str], svc: ServiceView, want_ips: str | None,
                            want_interface: str | None) -> None:
    config = parse_pools(data)
    got, problems = plan(config, [svc])
    assert problems == []
    allocation = got.get(svc.key)
    if want_ips is None:
        assert allocation is None
    else:
        assert allocation is not None and (",".join(allocation.ips), allocation.interface) == (want_ips, want_interface)
    if svc.load_balancer_ip:  # the legacy address is in use: the next Service gets the one after it
        assert allocate(config, [svc], service("other", "test")) == "192.168.1.2"


def _sequence(data: dict[str, str], steps: list[tuple[ServiceView, bool, str | None]]) -> None:
    """The provider's controller tables: Services created one after the other in one cluster."""
    config = parse_pools(data)
    cluster: list[ServiceView] = []
    deleting: set[ServiceKey] = set()
    for svc, being_deleted, want in steps:
        if being_deleted:
            deleting.add(svc.key)
        got, _ = plan(config, [*cluster, svc], frozenset(deleting))
        allocation = got.get(svc.key)
        assert (allocation and ",".join(allocation.ips)) == want, svc.key
        cluster.append(service(svc.key.name, ips=want, ports=[(p.port or 0, p.protocol) for p in svc.ports],
                               families=svc.ip_families, policy=svc.ip_family_policy) if want else svc)


def test_sync_load_balancer_if_needed() -> None:
    _sequence({"cidr-global": "10.0.0.1/24"}, [
        (service("udp-service", ports=[(80, "UDP")]), False, "10.0.0.1"),
        (service("basic-service1"), False, "10.0.0.2"),
        (service("sctp-service", ports=[(80, "SCTP")]), False, "10.0.0.3"),
        (service("basic-service2"), True, None),  # deletionTimestamp: cleaned up, never allocated
        (service("basic-service3"), False, "10.0.0.4"),
    ])


def test_sync_load_balancer_if_needed_with_multiple_ip_use() -> None:
    dual = {"policy": "RequireDualStack", "families": [V4, V6]}
    _sequence({"cidr-global": "10.0.0.2/31,2001::0/48", "allow-share-global": "true"}, [
        (service("udp-service", ports=[(123, "UDP")], **dual), False, "10.0.0.2,2001::"),
        (service("basic-service1", ports=[(345, "TCP")], **dual), False, "10.0.0.2,2001::1"),
        (service("sctp-service", ports=[(1234, "SCTP")]), False, "10.0.0.2"),
        (service("basic-service2"), True, None),
        (service("basic-service3"), False, "10.0.0.2"),
        (service("basic-service4", ports=[(8080, "TCP")]), False, "10.0.0.2"),
        (service("basic-service5", ports=[(80, "TCP")]), False, "10.0.0.3"),
        (service("basic-service6", ports=[(80, "TCP")]), False, None),
    ])


@pytest.mark.parametrize(("cls", "handled"), [("test-class", True), ("nok-class", False)])
def test_wants_load_balancer(cls: str, handled: bool) -> None:
    rules = DecideConfig(node_name="controller", lb_class_name="test-class")
    svc = service("basic-service1", ports=[(345, "TCP")], policy="RequireDualStack", families=[V4, V6], cls=cls)
    assert is_handled(rules, svc, []) is handled
