"""kube-vip's configuration test tables (pkg/kubevip/*_test.go and the rules of config_environment.go), run
against kvip: each case either behaves as in kube-vip, or its documented difference (docs/migrating-from-
kube-vip.md, "kube-vip's configuration tests, run against kvip") is what is asserted."""

from __future__ import annotations

from pathlib import Path

import pytest

from kvip.config.agent import AgentConfig, ConfigError, load_config
from kvip.config.bgp_values import parse_peers
from kvip.core.model import ElectionMode, Mode

DOC = Path(__file__).resolve().parents[2] / "docs" / "migrating-from-kube-vip.md"


def agent(**env: str) -> AgentConfig:
    return load_config({"vip_nodename": "node-a", "svc_enable": "true", **env})


def warned(config: AgentConfig, name: str) -> list[str]:
    return [line for line in config.notices if line.startswith(name)]


# -- config_environment_test.go: TestParseEnvironmentSkipDAD (kvip: not supported, one warning) --------

@pytest.mark.parametrize(("value", "lines"), [("", 0), ("true", 1), ("false", 0), ("not-a-bool", 1)])
def test_skip_dad_is_a_warning_never_a_failure(value: str, lines: int) -> None:
    assert len(warned(agent(vip_skipdad=value), "vip_skipdad")) == lines


# -- config_generator_test.go: TestParseEnvironment (basic config) ---------------------------------------

def test_the_services_interface_wins_over_the_interface_as_in_kube_vip() -> None:
    assert agent(vip_interface="eth0", vip_servicesinterface="eth1").interface == "eth1"
    assert agent(vip_interface="eth0").interface == "eth0"


def test_services_interface_auto_falls_back_to_vip_interface_with_a_warning() -> None:
    config = agent(vip_interface="eth0", vip_servicesinterface="auto")
    assert (config.interface, config.services_interface_auto) == ("eth0", True)
    assert len(warned(config, "vip_servicesinterface=auto")) == 1


# -- config_validation_test.go / config_manager_test.go / instance name: control plane and egress ---------

@pytest.mark.parametrize(("name", "value"), [
    ("egress_withnftables", "false"), ("config_file", "/etc/kube-vip/config.yaml"),
])
def test_egress_and_file_settings_are_one_warning_each(name: str, value: str) -> None:
    lines = warned(agent(**{name: value}), name)
    assert len(lines) == 1 and "not supported" in lines[0]


CONTROL_PLANE = {"cp_enable": "true", "address": "172.18.0.30"}


def test_the_health_check_address_must_be_an_http_url_as_kube_vip_validates() -> None:
    assert agent(**CONTROL_PLANE, control_plane_health_check_address="http://x/livez").cp_health.url == "http://x/livez"
    for bad in ("not-a-url", "ftp://x/livez"):
        with pytest.raises(ConfigError) as raised:
            load_config({"vip_nodename": "n", **CONTROL_PLANE, "control_plane_health_check_address": bad})
        assert str(raised.value).startswith("control_plane_health_check_address:")


def test_vip_address_is_the_deprecated_name_of_address_and_address_wins() -> None:
    old = agent(cp_enable="true", vip_address="172.18.0.20")
    assert old.cp_address == "172.18.0.20" and len(warned(old, "vip_address is deprecated")) == 1
    both = agent(cp_enable="true", vip_address="172.18.0.20", address="172.18.0.30")
    assert both.cp_address == "172.18.0.30" and ["address wins" in line for line in warned(both, "vip_address")] == [True]


# -- config_bgp_test.go: TestParseBGPPeerConfig --------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("192.168.0.10:65000::false,192.168.0.11:65000::false", [("192.168.0.10", 65000, 179), ("192.168.0.11", 65000, 179)]),
    ("192.168.0.10:65000::false:180,192.168.0.11:65000::false:190", [("192.168.0.10", 65000, 180),
                                                                     ("192.168.0.11", 65000, 190)]),
    ("[fd00:100:64::2]:65000:secret:true", [("fd00:100:64::2", 65000, 179)]),
    ("[fd00:100:64::2]:65000::false", [("fd00:100:64::2", 65000, 179)]),
    ("[fd00:1111:2222:3333:c7d9:7235:6bf7:5d52]:65501::false::mpbgp_nexthop=auto_sourceif",
     [("fd00:1111:2222:3333:c7d9:7235:6bf7:5d52", 65501, 179)]),
    ("[fd00:1111:2222:3333:c7d9:7235:6bf7:5d52]:65501::false:::true;300;300;3",
     [("fd00:1111:2222:3333:c7d9:7235:6bf7:5d52", 65501, 179)]),
])
def test_kube_vip_peer_strings_parse_to_the_same_peers(text: str, expected: list[tuple[str, int, int]]) -> None:
    assert [(str(p.address), p.asn, p.port) for p in parse_peers(text)] == expected


def test_documented_peer_differences_unnumbered_refused_and_empty_is_no_peers() -> None:
    with pytest.raises(ValueError, match="unnumbered peers are not supported"):
        parse_peers("unnumbered:eth0,unnumbered:eth1:65000::true::mpbgp_nexthop=auto_sourceif")
    assert parse_peers("") == ()


def test_a_peer_password_and_multihop_are_kept() -> None:
    (peer,) = parse_peers("[fd00:100:64::2]:65000:secret:true")
    assert (peer.password, peer.multihop) == ("secret", True)


@pytest.mark.parametrize("text", [":::::::", "1.2.3.4:65000/mpbgp_nexthop", "1.2.3.4:65000;unknown=value",
                                  "[fd00:100:64::2:65000"])
def test_malformed_peer_strings_are_refused_as_in_kube_vip(text: str) -> None:
    with pytest.raises(ValueError):
        parse_peers(text)


# -- config_environment.go's rules ---------------------------------------------------------------------

@pytest.mark.parametrize(("level", "name"), [("-4", "debug"), ("-8", "debug"), ("-1", "info"), ("0", "info"),
                                             ("4", "warning"), ("5", "error"), ("8", "error"), ("9", "critical")])
def test_vip_loglevel_is_slog_s_scale(level: str, name: str) -> None:
    assert agent(vip_loglevel=level).log_level == name


def test_vip_loglevel_must_be_an_integer_or_a_name() -> None:
    with pytest.raises(ConfigError, match="vip_loglevel"):
        agent(vip_loglevel="loud")


def test_lb_class_name_set_but_empty_means_no_class_name() -> None:
    assert load_config({"vip_nodename": "n", "lb_class_name": ""}).lb_class_name == ""
    assert load_config({"vip_nodename": "n"}).lb_class_name == "kube-vip.io/kube-vip-class"


def test_the_node_name_is_lower_cased_and_falls_back_to_the_host_name() -> None:
    assert load_config({"vip_nodename": "Node-A"}).node_name == "node-a"
    config = load_config({}, host_name="Worker-7")
    assert config.node_name == "worker-7"
    assert len([line for line in config.notices if "host name 'worker-7'" in line]) == 1
    with pytest.raises(ConfigError, match="node name missing"):
        load_config({})


def test_arp_without_an_election_switch_uses_the_global_services_lease() -> None:
    helm_default = {"vip_arp": "true", "svc_enable": "true", "vip_leaderelection": "false", "svc_election": "false",
                    "vip_interface": "eth0", "vip_nodename": "n"}
    config = load_config(helm_default)
    assert (config.mode, config.election, config.lease_name) == (Mode.ARP, ElectionMode.GLOBAL, "plndr-svcs-lock")
    assert len(config.infos) == 1 and "plndr-svcs-lock" in config.infos[0] and not config.notices
    assert load_config({**helm_default, "svc_leasename": "mine"}).lease_name == "mine"
    assert load_config({**helm_default, "svc_election": "true"}).election is ElectionMode.SERVICE


def test_enable_services_election_is_the_legacy_name_of_svc_election() -> None:
    assert agent(enableServicesElection="true").election is ElectionMode.SERVICE


def test_kube_vips_static_pod_env_runs_the_control_plane_alone() -> None:
    """kube-vip manifest pod --interface eth0 --address 192.168.0.40 --controlplane --arp --leaderElection."""
    config = load_config({"vip_arp": "true", "port": "6443", "vip_nodename": "cp-1", "vip_interface": "eth0",
                          "dns_mode": "first", "cp_enable": "true", "cp_namespace": "kube-system",
                          "vip_leaderelection": "true", "vip_leasename": "plndr-cp-lock", "vip_leaseduration": "5",
                          "vip_renewdeadline": "3", "vip_retryperiod": "1", "address": "192.168.0.40",
                          "prometheus_server": ":2112"})
    assert (config.cp_enable, config.svc_enable, config.cp_election) == (True, False, True)
    assert str(config.cp_lease) == "kube-system/plndr-cp-lock" and config.cp_port == 6443
    assert config.election is ElectionMode.NONE  # no Services, so no plndr-svcs-lock contention
    assert not config.notices and not config.infos


def test_the_hybrid_daemonset_runs_both_on_separate_leases() -> None:
    config = agent(vip_arp="true", cp_enable="true", svc_enable="true", address="192.168.0.40",
                   vip_leaderelection="true", svc_leasename="plndr-svcs-lock")
    assert (config.svc_enable, config.cp_election, config.election) == (True, True, ElectionMode.GLOBAL)
    assert config.cp_lease is not None and config.cp_lease.name != config.lease_name


def test_which_modes_elect_the_control_plane_vip() -> None:
    assert agent(vip_routingtable="true", **CONTROL_PLANE).cp_election is False  # anycast, as kube-vip
    assert agent(bgp_enable="true", bgp_peers="10.0.0.1:65001", **CONTROL_PLANE).cp_election is False
    assert agent(bgp_enable="true", bgp_peers="10.0.0.1:65001", vip_leaderelection="true",
                 **CONTROL_PLANE).cp_election is True
    arp = agent(vip_arp="true", vip_leaderelection="false", **CONTROL_PLANE)
    assert arp.cp_election is True and ["still elected" in line for line in warned(arp, "vip_leaderelection")] == [True]
    table = agent(vip_routingtable="true", vip_leaderelection="true", **CONTROL_PLANE)
    assert table.cp_election is True and ["every node" in line for line in warned(table, "vip_leaderelection")] == [True]


def test_control_plane_settings_are_read_with_kube_vips_defaults() -> None:
    config = agent(**CONTROL_PLANE)
    assert (config.cp_port, config.dns_mode, config.cp_lease_name, config.namespace) == (
        6443, "first", "plndr-cp-lock", "kube-system")
    health = config.cp_health
    assert (health.url, health.period, health.timeout, health.rule.fall) == (
        "https://127.0.0.1:6443/livez", 5.0, 3.0, 3)
    tuned = agent(**CONTROL_PLANE, port="8443", dns_mode="IPv6", control_plane_health_check_period_seconds="1",
                  control_plane_health_check_failure_threshold="2", control_plane_health_check_timeout_seconds="1")
    assert (tuned.cp_health.url, tuned.dns_mode, tuned.cp_health.period, tuned.cp_health.rule.fall) == (
        "https://127.0.0.1:8443/livez", "ipv6", 1.0, 2)


@pytest.mark.parametrize(("env", "needle"), [
    ({"cp_enable": "true"}, "cp_enable=true needs address"),
    ({"svc_enable": "false"}, "no feature is enabled"),
    ({**CONTROL_PLANE, "address": "not a name"}, "address: "),
    ({**CONTROL_PLANE, "port": "70000"}, "port: "),
    ({**CONTROL_PLANE, "dns_mode": "all"}, "dns_mode: "),
    ({**CONTROL_PLANE, "vip_leasename": "Bad_Name"}, "vip_leasename: "),
    ({**CONTROL_PLANE, "control_plane_health_check_failure_threshold": "0"}, "failure_threshold: "),
])
def test_each_bad_control_plane_setting_is_one_line(env: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config({"vip_nodename": "n", **env})
    lines = str(raised.value).splitlines()
    assert len(lines) == 1 and needle in lines[0], lines
    assert agent(cp_enable="false").mode is Mode.TABLE and agent(cp_enable="false").svc_enable


def test_svc_namespace_and_the_switches_kube_vip_reads_reach_the_config() -> None:
    config = agent(svc_namespace="tenant-a", vip_preserve_on_leadership_loss="true", vip_loseleadership="true",
                   per_service_election_on_demand="true", disable_service_updates="true")
    assert config.svc_namespace == "tenant-a"
    assert (config.preserve_on_leadership_loss, config.lose_leadership, config.per_service_election_on_demand,
            config.disable_service_updates) == (True, True, True, True)
    assert not [line for line in config.notices if line.startswith(("svc_namespace", "per_service", "disable"))]


@pytest.mark.parametrize(("env", "needle"), [
    ({"vip_subnet": "32,128"}, None), ({"vip_subnet": "32"}, None), ({"vip_subnet": "24"}, "vip_subnet=24,128"),
    ({"vip_subnet": "auto"}, "vip_subnet=auto"), ({"vip_cidr": "32"}, "vip_cidr is deprecated"),
])
def test_vip_subnet_is_accepted_and_a_non_host_prefix_warns(env: dict[str, str], needle: str | None) -> None:
    notices = agent(**env).notices
    assert (not notices) if needle is None else (len(notices) == 1 and needle in notices[0]), notices


def test_a_bad_vip_subnet_is_refused() -> None:
    with pytest.raises(ConfigError, match="vip_subnet"):
        agent(vip_subnet="33")


@pytest.mark.parametrize(("name", "value"), [("vip_ddns", "true"), ("lb_enable", "true"),
                                             ("enable_node_labeling", "true"), ("vip_leaseannotations", '{"a":"b"}'),
                                             ("iptables_backend", "nft"), ("dhcp_mode", "ipv6")])
def test_unsupported_kube_vip_features_warn_once_and_are_quiet_when_off(name: str, value: str) -> None:
    lines = warned(agent(**{name: value}), name)
    assert len(lines) == 1 and "not supported" in lines[0]
    if value == "true":
        assert not agent(**{name: "false"}).notices


def test_wireguard_is_refused_rather_than_run_as_another_mode() -> None:
    with pytest.raises(ConfigError, match="vip_wireguard"):
        agent(vip_wireguard="true")


def test_a_misspelt_variable_warns_naming_the_closest_known_one() -> None:
    config = agent(vip_routingtabel="true")
    assert config.notices == ("vip_routingtabel: unknown variable, ignored; did you mean vip_routingtable?",)
    assert not agent(HOME="/root", KUBERNETES_SERVICE_HOST="10.96.0.1").notices


def test_every_documented_difference_names_a_real_kube_vip_test() -> None:
    text = DOC.read_text()
    for name in ("TestParseEnvironmentSkipDAD", "TestValidate_HealthCheckAddress", "TestValidate_InstanceName",
                 "TestCheckSubnetExists", "TestLoadConfigFromFile", "TestParseBGPPeerConfig"):
        assert f"`{name}`" in text
