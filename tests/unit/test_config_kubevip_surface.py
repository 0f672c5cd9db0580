"""kube-vip's surface beyond its variables: `kvip manifest` takes kube-vip's flags, kvip exports kube-vip's
metric names where it has the same quantity, and svc_namespace confines the Service and EndpointSlice watches."""

from __future__ import annotations

import argparse

import pytest
import yaml

from kvip.agent.metrics import AgentMetrics
from kvip.core.model import DesiredState, ServiceDecision, ServiceKey
from kvip.deploy.manifests import add_manifest_arguments, run_manifest
from kvip.kube.cache import ClusterCache
from kvip.reconcile import ReconcileResult


def manifest(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    parser = argparse.ArgumentParser()
    add_manifest_arguments(parser)
    code = run_manifest(parser.parse_args(argv))
    return code, capsys.readouterr().out


def test_kube_vip_s_manifest_command_line_works_unchanged(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = manifest(["daemonset", "--interface", "eth0", "--services", "--arp", "--leaderElection",
                          "--inCluster", "--taint"], capsys)
    assert code == 0
    objects = list(yaml.safe_load_all(out))
    daemonset = next(o for o in objects if o["kind"] == "DaemonSet")
    spec = daemonset["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
    assert (env["vip_arp"], env["vip_interface"], env["vip_leaderelection"]) == ("true", "eth0", "true")
    terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"} in terms[0]["matchExpressions"]


def test_arp_without_an_election_flag_gets_the_global_lease_and_its_rbac(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = manifest(["daemonset", "--arp", "--services"], capsys)
    assert code == 0 and "vip_leaderelection" in out and "leases" in out


@pytest.mark.parametrize("flag", [["--controlplane"], ["--address", "10.0.0.5"]])
def test_half_a_control_plane_vip_is_refused_in_one_line(flag: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out = manifest(["daemonset", "--services", *flag], capsys)  # --controlplane needs --address and back
    assert code == 2 and out.count("\n") == 1 and "control-plane VIP" in out


def test_kube_vip_metric_names_are_exported_beside_kvip_s() -> None:
    metrics = AgentMetrics("node-a", lambda: ())
    decisions = {ServiceKey(ns, name): ServiceDecision(ServiceKey(ns, name), (), True, True, "ok")
                 for ns, name in (("default", "a"), ("default", "b"), ("shop", "c"))}
    metrics.observe(ReconcileResult(DesiredState(advertisements={}, decisions=decisions), (), {}, 0.0, 0.01))
    metrics.observe_leases(["plndr-svcs-lock"])
    metrics.observe_leases([])
    metrics.observe_leases(["plndr-svcs-lock"])
    text = metrics.render().decode()
    assert 'kube_vip_active_services{namespace="default"} 2.0' in text
    assert 'kube_vip_active_services{namespace="shop"} 1.0' in text
    assert 'kube_vip_is_leader{lease_name="plndr-svcs-lock",node="node-a"} 1.0' in text
    assert 'kube_vip_leader_election_transitions_total{lease_name="plndr-svcs-lock"} 2.0' in text
    assert 'kube_vip_build_info{build="kvip",node="node-a",version="kvip-' in text
    assert "kvip_leases_held 1.0" in text


def test_svc_namespace_confines_the_service_and_slice_watches_but_not_the_node_s() -> None:
    cache = ClusterCache(object(), node_name="n", on_change=lambda _: None, namespace="tenant-a")  # type: ignore[arg-type]
    assert (cache.services._namespace, cache.slices._namespace, cache.node._namespace) == ("tenant-a", "tenant-a", None)
    everywhere = ClusterCache(object(), node_name="n", on_change=lambda _: None)  # type: ignore[arg-type]
    assert everywhere.services._namespace is None
