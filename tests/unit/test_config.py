"""kube-vip's environment variables work as drop-in configuration; every mistake is named at once."""

from __future__ import annotations

import argparse

import pytest

from kvip.config.agent import (
    AgentConfig,
    ConfigError,
    Mode,
    add_agent_arguments,
    config_from_args,
    load_config,
)
from kvip.config.controller import load_controller_config
from kvip.config.settings import ArpSettings, ProbeSettings, RouteTableSettings
from kvip.core.election_rules import LeaseTiming
from kvip.core.model import ElectionMode

BGP = {"vip_nodename": "n", "bgp_enable": "true", "bgp_as": "65101", "bgp_peers": "10.0.0.1:65000"}


def test_a_kube_vip_routing_table_daemonset_env_configures_kvip() -> None:
    config = load_config({
        "vip_nodename": "node-a", "vip_routingtable": "true", "vip_cleanroutingtable": "true",
        "vip_routingtableid": "199", "vip_routingprotocol": "250", "vip_interface": "eth1",
        "lb_class_only": "TRUE", "lb_class_name": "acme/lb", "svc_enable": "true", "prometheus_server": ":9100",
        "vip_loglevel": "-4", "vip_some_future_flag": "whatever",
    })
    assert (config.node_name, config.mode, config.routing_table_id, config.routing_protocol) == ("node-a", Mode.TABLE, 199, 250)
    assert (config.interface, config.lb_class_only, config.lb_class_name) == ("eth1", True, "acme/lb")
    assert (config.clean_routing_table, config.metrics_address, config.log_level) == (True, ":9100", "debug")


def test_brief_names_routing_table_id_and_routing_protocol_are_accepted() -> None:
    config = load_config({"NODE_NAME": "n", "routing_table_id": "200", "routing_protocol": "249"})
    assert (config.routing_table_id, config.routing_protocol) == (200, 249)


def test_defaults_match_kube_vip() -> None:
    config = load_config({"vip_nodename": "n"})
    assert (config.routing_table_id, config.routing_protocol, config.lease_name) == (198, 248, "plndr-svcs-lock")
    assert (config.lease_duration, config.renew_deadline, config.retry_period) == (15, 10, 2)
    assert config.lb_class_name == "kube-vip.io/kube-vip-class" and config.resync_period == 30


def test_election_switches() -> None:
    assert load_config({"vip_nodename": "n", "svc_election": "true"}).election is ElectionMode.SERVICE
    assert load_config({"vip_nodename": "n", "vip_leaderelection": "true"}).election is ElectionMode.GLOBAL
    assert load_config({"vip_nodename": "n", "vip_leaderelection": "false"}).election is ElectionMode.NONE


def test_every_problem_is_reported_together_naming_the_variable() -> None:
    with pytest.raises(ConfigError) as raised:
        load_config({"vip_arp": "true", "vip_routingtable": "true", "lb_class_only": "yes",
                     "routing_table_id": "x", "vip_routingprotocol": "300", "svc_enable": "false",
                     "vip_retryperiod": "20", "kvip_on_api_loss": "panic"})
    lines = str(raised.value).splitlines()
    for expected in ("conflicting modes", "lb_class_only", "routing_table_id", "vip_routingprotocol",
                     "svc_enable", "vip_retryperiod", "kvip_on_api_loss"):
        assert any(expected in line for line in lines), expected


def test_flags_override_env_and_boolean_flags_work_as_switches() -> None:
    parser = argparse.ArgumentParser()
    add_agent_arguments(parser)
    args = parser.parse_args(["--node-name", "flagged", "--routing-table-id", "210", "--keep-routes-on-exit",
                              "--on-api-loss", "withdraw-after=2m"])
    config = config_from_args(args, {"vip_nodename": "env", "routing_table_id": "199"})
    assert (config.node_name, config.routing_table_id, config.keep_routes_on_exit) == ("flagged", 210, True)
    assert config.withdraw_after == 120.0


def test_decide_config_carries_the_service_selection_knobs() -> None:
    config = AgentConfig(node_name="n", lb_class_only=True, serving_terminating=True)
    decide = config.decide_config()
    assert (decide.node_name, decide.lb_class_only, decide.serving_terminating) == ("n", True, True)


def test_the_first_variable_set_wins_and_empty_counts_as_unset() -> None:
    assert load_config({"vip_nodename": "", "NODE_NAME": "from-downward-api"}).node_name == "from-downward-api"
    assert load_config({"vip_nodename": "n", "vip_servicesinterface": "eth2", "vip_interface": "eth1"}).interface == "eth2"


def test_the_agent_gets_its_sub_configs_built() -> None:
    config = load_config({"vip_nodename": "n", "vip_routingtableid": "199", "vip_routingtabletype": "rtn_local",
                          "vip_leaseduration": "20s", "kvip_probes": "http:/healthz", "kvip_probe_rise": "3"})
    assert config.route_table == RouteTableSettings(table=199, protocol=248, interface="lo", route_type="local")
    assert config.lease_timing == LeaseTiming(lease_duration=20, renew_deadline=10, retry_period=2)
    assert config.probe_settings == ProbeSettings(interval=1.0, timeout=0.5, rise=3, fall=2,
                                                  default_kind="http:/healthz")
    assert load_config({"vip_nodename": "n"}).probe_settings is None


def test_arp_mode_takes_the_default_route_interface_unless_one_is_named() -> None:
    env = {"vip_nodename": "n", "vip_arp": "true", "vip_leaderelection": "true", "vip_arpRate": "500"}
    assert load_config(env).arp == ArpSettings(interface=None, protocol=248, rate=0.5)
    assert load_config({**env, "vip_interface": "eth1"}).arp.interface == "eth1"


def test_bgp_drain_time_takes_a_duration_like_every_other_time() -> None:
    config = load_config({**BGP, "kvip_bgp_drain_time": "500ms"})
    assert config.bgp is not None and config.drain_time == config.bgp.drain_time == 0.5
    assert load_config({"vip_nodename": "n", "kvip_bgp_drain_time": "9"}).drain_time == 0.0  # not BGP mode


def test_bgp_flags_override_bgp_variables() -> None:
    parser = argparse.ArgumentParser()
    add_agent_arguments(parser)
    args = parser.parse_args(["--bgp-as", "65200", "--bgp-peers", "[fd00::1]:65001", "--bgp-bfd"])
    config = config_from_args(args, BGP)
    assert config.bgp is not None and (config.bgp.asn, config.bgp.bfd) == (65200, True)
    assert [str(p) for p in config.bgp.peers] == ["[fd00::1]:65001"]


def test_a_mode_flag_overrides_the_kube_vip_switches() -> None:
    parser = argparse.ArgumentParser()
    add_agent_arguments(parser)
    config = config_from_args(parser.parse_args(["--mode", "bgp"]), {**BGP, "bgp_enable": "false"})
    assert config.mode is Mode.BGP and config.bgp is not None


def test_the_controller_reads_the_same_names_through_the_same_parsers() -> None:
    config = load_controller_config({"cp_namespace": "lb", "POD_NAME": "ctl-0", "vip_leaseduration": "30s",
                                     "vip_renewdeadline": "20", "vip_nodename": "ignored"})
    assert (config.namespace, config.identity, config.configmap) == ("lb", "ctl-0", "kubevip")
    assert config.lease_timing == LeaseTiming(30, 20, 2)
    with pytest.raises(ConfigError, match="lease timing must satisfy"):
        load_controller_config({"vip_retryperiod": "12"})
