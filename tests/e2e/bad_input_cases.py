"""The bad-input corpus (kvip issue #17): malformed and hostile objects a tenant can write, each with the
modes in which `decide()` must report it (an Event, or past the Event rate limit a log line).

Every agent that plays the corpus runs with the VIP allow-list on (`ALLOW_ENV`): the good VIPs and most
corpus VIPs are inside it, the `allow-*` cases try to claim the lab's gateway, a node's address, an
address outside the list or another tenant's VIP.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kvip.lab.objects import Endpoint, endpoint_slice, load_balancer_service

IPS = "kube-vip.io/loadbalancerIPs"
MODES = ("table", "arp", "bgp")
ALL = frozenset(MODES)
NONE: frozenset[str] = frozenset()
BGP = frozenset({"bgp"})
ALLOW_ENV = {"kvip_vip_allow": "10.96.0.0/12,2001:db8::/32",
             "kvip_vip_allow_namespaces": "team-a=10.96.200.0/24"}
NAMESPACES = ("default", "team-a", "team-b")
# Advertised from the start and never to leave, whatever the corpus does: (namespace, name, VIP, policy).
GOOD = (("default", "good", "10.96.0.1", "Cluster"), ("default", "good-local", "10.96.0.2", "Local"),
        ("team-a", "good-tenant", "10.96.200.1", "Cluster"))
# Corpus services whose VIP must be advertised once the corpus is in (bad input next to a good VIP).
SURVIVORS = {"10.96.3.20", "10.96.3.22", "10.96.3.23", "10.96.3.29", "10.96.3.30", "10.96.200.2", "10.96.3.31",
             "10.96.3.40", "10.96.3.41"}  # (the last two: bad egress annotations cost the SNAT, not the VIP)


@dataclass(frozen=True)
class Case:
    name: str
    objects: tuple[dict[str, Any], ...]
    reported_in: frozenset[str]  # modes in which decide() must report a problem against this Service
    namespace: str = "default"


def lb(name: str, namespace: str = "default", **kw: Any) -> dict[str, Any]:
    return load_balancer_service(name, namespace=namespace, external_traffic_policy="Cluster", **kw)


def annotated(name: str, value: str) -> dict[str, Any]:
    return lb(name, annotations={IPS: value})


def spec_patched(name: str, vips: str | None = None, **spec: Any) -> dict[str, Any]:
    obj = lb(name, annotations={IPS: vips} if vips else None)
    obj["spec"].update(spec)
    return obj


def merged(name: str, patch: dict[str, Any]) -> dict[str, Any]:
    """A LoadBalancer Service with `patch` merged into its metadata, spec and status."""
    obj = lb(name)
    for part, fields in patch.items():
        if isinstance(obj.get(part), dict):
            obj[part].update(fields)
        else:
            obj[part] = fields
    return obj


BAD_ADDRESSES = ["10.96.0.300", ",,,", "lb.example.com", "10.96.0.0/24", "fe80::1", "169.254.1.1", "127.0.0.1",
                 "0.0.0.0", "224.0.0.5", "::ffff:10.96.0.1", "255.255.255.255", "１０.96.0.1", "2001:db8::1::2",
                 "10.96. 0.1", "-1", "10.96.0.20x", "::", "::1", "ff02::1", "10.96.0", "1.2.3.4.5", "0x0a.0.0.1",
                 "10.96.0.1%eth0", "[2001:db8::1]", "2001:db8::g", " ; drop table", "ö", "10.96.0.1,10.96.0.300",
                 ",".join(f"10.96.{i}.300" for i in range(300)),  # a huge list of bad entries
                 # zone ids, non-ASCII digits, log forging, too many or too long
                 "2001:db8::99%x", "2001:db8::99%eth0", "2001:db8::99%1\nforged", "fe80::1%lo",
                 "10.96.0.1\n2024-01-01 ERROR forged", "10.96.0.1\r\nforged", "\x1b[2J10.96.0.1", "\u202e1.0.69.01",
                 "١٠.96.0.1", "10.96.0.²", "10.096.0.1", "010.96.0.1", "10.96.0.1.", ".10.96.0.1", "10..96.0.1",
                 "2001:db8:::1", "2001:db8::1:2:3:4:5:6:7", "2001:db8::/64", "10.96.0.1 10.96.0.2", "1.2.3",
                 "256.0.0.1", "10.96.0.-1", "0.0.0.0/0", "::/0", "ff00::", "239.255.255.255", "127.255.255.254",
                 "::1%lo", "2001:db8::1%25eth0", "[::1]:80", "10.96.0.1:80", "http://10.96.0.1", "ⅰ.1.1.1",
                 "10.96.0.1\x00",
                 ",".join(f"10.97.0.{i}" for i in range(1, 18)),  # 17 VIPs: over the limit of 16
                 ",".join(f"10.{100 + i // 62500}.{i // 250 % 250}.{i % 250 + 1}" for i in range(20_000)),
                 "x" * 70_000, "10.96.0.1" + " " * 70_000, "1" * 5000, "0", "4294967295", "2001:db8::1" * 10,
                 # shell, template and injection text; more spellings no address parser should accept
                 "10.96.0.1/32", "2001:db8::1/128", "2001:0db8:0:0:0:0:0:00001", "1::2::3", "fe80::1%", "%",
                 "10.96.0.1%", "0177.0.0.1", "10.96.0.1e0", "1e1.0.0.1", "10.96.0x1.1", "+10.96.0.1",
                 "10.96.0.1;rm -rf /", "$(reboot)", "${jndi:ldap://x}", "<script>alert(1)</script>",
                 "'; DROP TABLE services;--", "10.96.0.1\u200b", "𝟏𝟎.96.0.1", "10.96.0.1 #comment",
                 "255.255.255.255/32", "2001:db8::1:", ":2001:db8::1", "2001:db8:0:0:0:0:0:0:1", "ffff::ffff::",
                 "::ffff:255.255.255.255", "ff05::2", "224.0.0.0", "169.254.169.254", "fe80::a:b:c:d", "::0.0.0.0",
                 "0:0:0:0:0:0:0:1", "\ufeff10.96.0.1", "1.1.1.1.in-addr.arpa", "0x0a600001", "167772161",
                 "10.96.0.1/0", "fc00::/7", "ⅼ0.96.0.1", "10,96,0,1x", "10.96.0.256"]
LOCAL_PREFS = ["²", "1" * 5000, "-1", "4294967296", "٣٠٠", "+200", "1e3", "0x10", "200\nforged", "", "abc"]
COMMUNITIES = ["²:1", "65000:" + "9" * 5000, "65536:1", "65000:65536", "65000", "65000:1:2", "no-such-name",
               ",".join(f"65000:{i}" for i in range(33)), "65000:1\nforged", "x" * 70_000]
LARGE_COMMUNITIES = ["1:2", "4294967296:1:1", "1:²:1", ",".join(f"1:1:{i}" for i in range(33)), "1:2:3:4"]
INTERFACES = ["eth0\nforged", "a" * 16, "../etc", "eth 0", "eth0:1", "/dev/null", "-eth0"]
WRONG_TYPES: list[tuple[str, dict[str, Any]]] = [
    ("ann-list", {"metadata": {"annotations": {IPS: ["10.96.4.1"]}}}),
    ("ann-null", {"metadata": {"annotations": {IPS: None}}}),
    ("ann-object", {"metadata": {"annotations": {IPS: {"ip": "10.96.4.1"}}}}),
    ("ann-number", {"metadata": {"annotations": {"kvip.io/bgp-local-pref": 200}}}),
    ("annotations-list", {"metadata": {"annotations": ["x"]}}),
    ("lbip-list", {"spec": {"loadBalancerIP": ["10.96.4.1"]}}),
    ("lbip-number", {"spec": {"loadBalancerIP": 167772161}}),
    ("lbip-zone", {"spec": {"loadBalancerIP": "2001:db8::4%x"}}),
    ("lbip-long", {"spec": {"loadBalancerIP": "1" * 1000}}),
    ("ports-string", {"spec": {"ports": "80"}}),
    ("ports-object", {"spec": {"ports": {"port": 80}}}),
    ("port-bool", {"spec": {"ports": [{"port": True}]}}),
    ("port-huge", {"spec": {"ports": [{"port": 70000}]}}),
    ("port-negative", {"spec": {"ports": [{"port": -1}]}}),
    ("port-float", {"spec": {"ports": [{"port": 80.5}]}}),
    ("port-protocol", {"spec": {"ports": [{"port": 80, "protocol": "TCP\nforged"}]}}),
    ("ports-many", {"spec": {"ports": [{"port": i, "name": f"p{i}"} for i in range(1, 300)]}}),
    ("families-string", {"spec": {"ipFamilies": "IPv4"}}),
    ("families-many", {"spec": {"ipFamilies": ["IPv4", "IPv6", "IPv4"]}}),
    ("families-nested", {"spec": {"ipFamilies": [["IPv4"]]}}),
    ("class-object", {"spec": {"loadBalancerClass": {"x": 1}}}),
    ("policy-list", {"spec": {"externalTrafficPolicy": ["Local"]}}),
    ("ingress-string", {"status": {"loadBalancer": {"ingress": "10.96.4.1"}}}),
    ("ingress-many", {"status": {"loadBalancer": {"ingress": [{"ip": f"10.96.5.{i}"} for i in range(1, 30)]}}}),
    ("ingress-ip-list", {"status": {"loadBalancer": {"ingress": [{"ip": ["10.96.4.1"]}]}}}),
    ("ingress-zone", {"status": {"loadBalancer": {"ingress": [{"ip": "2001:db8::5%eth0"}]}}}),
    ("ann-bool", {"metadata": {"annotations": {"kube-vip.io/ignore": True}}}),
    ("ann-many", {"metadata": {"annotations": {f"kvip.io/x{i}": "y" for i in range(40)}}}),
    ("ann-key-long", {"metadata": {"annotations": {"kvip.io/" + "k" * 400: "y"}}}),
    ("policy-number", {"spec": {"externalTrafficPolicy": 5}}),
    ("port-string", {"spec": {"ports": [{"port": "80"}]}}),
]
ALLOW_LIST = [  # (name, namespace, VIPs) each refused by ALLOW_ENV: a tenant claiming what is not its own
    ("allow-gateway", "default", "10.250.0.1"),  # the lab router: the API server's address
    ("allow-node-a", "default", "10.250.0.2"),
    ("allow-node-b", "default", "10.250.0.3"),
    ("allow-public", "default", "192.0.2.1"),
    ("allow-v6-outside", "default", "2001:db9::1"),
    ("allow-tenant-steals-good", "team-a", "10.96.0.1"),  # another tenant's (default's) VIP
    ("allow-tenant-global-only", "team-a", "10.96.9.1"),  # in the global list, not in team-a's entry
    ("allow-other-tenant-entry", "team-b", "10.96.200.1"),  # no entry: global list, which excludes team-a's /24
    ("allow-mixed", "default", "10.96.3.30,10.250.0.1"),  # the allowed one is advertised (SURVIVORS)
    ("allow-tenant-mixed", "team-a", "10.96.200.2,10.96.0.2"),
    ("allow-many-outside", "default", ",".join(f"192.0.2.{i}" for i in range(1, 17))),
    ("allow-spec-gateway", "default", None),  # spec.loadBalancerIP, not the annotation
]


def _allow_case(name: str, namespace: str, vips: str | None) -> Case:
    obj = lb(name, namespace, annotations={IPS: vips} if vips else None)
    if vips is None:
        obj["spec"]["loadBalancerIP"] = "10.250.0.1"
    return Case(name, (obj,), ALL, namespace)


def with_vip(name: str, vip: str, annotations: dict[str, Any]) -> dict[str, Any]:
    return lb(name, vips=[vip], annotations=annotations)


SLICE_CASES = [  # EndpointSlices are not reported (no Service to report against): no crash is the claim
    ("orphan-slice", [endpoint_slice("no-such-service", [Endpoint("10.244.9.9", "node-a")])]),
    ("slice-no-endpoints", [lb("slice-no-endpoints", vips=["10.96.3.25"]),
                            endpoint_slice("slice-no-endpoints", []) | {"endpoints": None}]),
    ("slice-no-addresses", [lb("slice-no-addresses", vips=["10.96.3.26"]),
                            endpoint_slice("slice-no-addresses", []) | {"endpoints": [{"nodeName": "node-a"}]}]),
    ("slice-garbage-conditions", [lb("slice-garbage-conditions", vips=["10.96.3.27"]), endpoint_slice(
        "slice-garbage-conditions", []) | {"endpoints": [{"addresses": ["x"], "conditions": "ready"}]}]),
    ("slice-no-label", [endpoint_slice("x", [Endpoint("10.244.9.8", "node-a")], name="unlabelled") | {
        "metadata": {"name": "unlabelled", "namespace": "default"}}]),
    ("slice-huge", [lb("slice-huge", vips=["10.96.3.28"]), endpoint_slice(
        "slice-huge", [Endpoint(f"10.245.{i // 250}.{i % 250 + 1}", "node-b") for i in range(1000)])]),
    ("slice-too-many", [lb("slice-too-many", vips=["10.96.3.32"]), endpoint_slice(
        "slice-too-many", [Endpoint(f"10.246.{i // 250}.{i % 250 + 1}", "node-b") for i in range(1500)])]),
    ("slice-addresses-many", [lb("slice-addresses-many", vips=["10.96.3.33"]), endpoint_slice(
        "slice-addresses-many", []) | {"endpoints": [{"addresses": [f"10.247.0.{i}" for i in range(1, 200)],
                                                      "nodeName": "node-b"}]}]),
    ("slice-node-forged", [lb("slice-node-forged", vips=["10.96.3.34"]), endpoint_slice(
        "slice-node-forged", [Endpoint("10.244.9.7", "node-a\nforged")])]),
    ("slice-fqdn", [lb("slice-fqdn", vips=["10.96.3.35"]), endpoint_slice(
        "slice-fqdn", [Endpoint("10.244.9.6", "node-b")]) | {"addressType": "FQDN"}]),
    ("slice-ports-garbage", [lb("slice-ports-garbage", vips=["10.96.3.36"]), endpoint_slice(
        "slice-ports-garbage", [Endpoint("10.244.9.5", "node-b")]) | {"ports": [{"port": "x"}, 7, None]}]),
]

CORPUS: list[Case] = [
    Case(f"addr{i}", (annotated(f"addr{i}", value),), ALL) for i, value in enumerate(BAD_ADDRESSES)
] + [
    Case(f"lpref{i}", (with_vip(f"lpref{i}", f"10.96.6.{i + 1}", {"kvip.io/bgp-local-pref": v}),),
         BGP if v else NONE)  # BGP attributes are read in BGP mode only
    for i, v in enumerate(LOCAL_PREFS)
] + [
    Case(f"comm{i}", (with_vip(f"comm{i}", f"10.96.7.{i + 1}", {"kvip.io/bgp-communities": v}),),
         ALL if len(v) > 65536 else BGP)  # over 64 KiB: refused at the conversion, whatever the mode
    for i, v in enumerate(COMMUNITIES)
] + [
    Case(f"lcomm{i}", (with_vip(f"lcomm{i}", f"10.96.8.{i + 1}", {"kvip.io/bgp-large-communities": v}),), BGP)
    for i, v in enumerate(LARGE_COMMUNITIES)
] + [
    Case(f"iface{i}", (with_vip(f"iface{i}", f"10.96.9.{i + 1}", {"kube-vip.io/serviceInterface": v}),), ALL)
    for i, v in enumerate(INTERFACES)
] + [
    Case(f"type-{name}", (merged(f"type-{name}", patch),), ALL) for name, patch in WRONG_TYPES
] + [
    _allow_case(*case) for case in ALLOW_LIST
] + [
    Case(name, tuple(objects), NONE) for name, objects in SLICE_CASES
] + [
    Case("badspec", (spec_patched("badspec", loadBalancerIP="not-an-ip"),), ALL),
    Case("v6onv4", (spec_patched("v6onv4", "2001:db8::5", ipFamilies=["IPv4"]),), ALL),
    Case("v4onv6", (spec_patched("v4onv6", "10.96.0.17", ipFamilies=["IPv6"]),), ALL),
    Case("ignoremaybe", (with_vip("ignoremaybe", "10.96.3.1", {"kube-vip.io/ignore": "sometimes"}),), ALL),
    Case("badingress", (lb("badingress") | {"status": {"loadBalancer": {"ingress": [{"ip": "999.1.1.1"}]}}},), ALL),
    Case("clash-a", (lb("clash-a", vips=["10.96.3.9"]),), ALL),
    Case("clash-b", (lb("clash-b", vips=["10.96.3.9"]),), ALL),
    Case("noports", (spec_patched("noports", "10.96.3.20", ports=None),), NONE),
    Case("weirdpolicy", (spec_patched("weirdpolicy", "10.96.3.21", externalTrafficPolicy="Sideways"),), NONE),
    Case("hugeannotation", (with_vip("hugeannotation", "10.96.3.22", {"x.io/blob": "y" * 200_000}),), NONE),
    Case("unicode-label", (lb("unicode-label", vips=["10.96.3.23"]) | {"metadata": {
        "name": "unicode-label", "namespace": "default", "labels": {"app": "ünïcødé"}}},), NONE),
    Case("otherclass", (lb("otherclass", vips=["10.96.3.24"], load_balancer_class="acme.io/lb"),), NONE),
    Case("dup-vips", (annotated("dup-vips", "10.96.3.29,10.96.3.29,10.96.3.29"),), NONE),
    Case("nodeport-type", (spec_patched("nodeport-type", type="NodePort"),), NONE),
    Case("missing-spec", ({"apiVersion": "v1", "kind": "Service",
                           "metadata": {"name": "missing-spec", "namespace": "default"}},), NONE),
    Case("ok-with-bad-bgp-and-iface", (with_vip("ok-with-bad-bgp-and-iface", "10.96.3.31", {
        "kvip.io/bgp-local-pref": "abc", "kube-vip.io/serviceInterface": "eth0\nforged"}),), ALL),
    # DHCP and egress (issue #19; the full set is tests/unit/test_bad_input_dhcp_egress.py): a MAC that is no
    # host's refuses the DHCP client, egress networks or ports that do not parse refuse the SNAT only.
    Case("dhcp-mac-multicast", (lb("dhcp-mac-multicast", vips=["0.0.0.0"], via="spec",
                                   annotations={"kube-vip.io/hwaddr": "01:00:5e:00:00:01"}),), ALL),
    Case("dhcp-mac-short", (lb("dhcp-mac-short", vips=["0.0.0.0"], via="spec",
                               annotations={"kube-vip.io/hwaddr": "02:00:00:00:01"}),), ALL),
    Case("egress-denied-garbage", (with_vip("egress-denied-garbage", "10.96.3.40", {
        "kube-vip.io/egress": "true", "kube-vip.io/egress-denied-networks": "10.0.0.0/33,not-a-network"}),), ALL),
    Case("egress-ports-garbage", (with_vip("egress-ports-garbage", "10.96.3.41", {
        "kube-vip.io/egress": "true", "kube-vip.io/egress-destination-ports": "tcp:0,icmp:1"}),), ALL),
]
