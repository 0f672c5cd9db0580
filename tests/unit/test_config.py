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
from kvip.core.model import ElectionMode


def test_a_kube_vip_routing_table_daemonset_env_configures_kvip() -> None:
    config = load_config({
        "vip_nodename": "node-a", "vip_routingtable": "true", "vip_cleanroutingtable": "true",
        "vip_routingtableid": "199", "vip_routingprotocol": "250", "vip_interface": "eth1",
        "lb_class_only": "TRUE", "lb_class_name": "acme/lb", "svc_enable": "true", "prometheus_server": ":9100",
        "vip_loglevel": "5", "vip_some_future_flag": "whatever",
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
                     "svc_enable", "node name missing", "vip_retryperiod", "kvip_on_api_loss"):
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
