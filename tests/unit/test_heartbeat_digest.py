"""The heartbeat's VIP-set digest kept from pass to pass (kvip issue #21): equal to the from-scratch one
after any history, and read alongside the v1 digest of an agent not yet upgraded."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvip.kube import heartbeat
from kvip.kube.heartbeat import (
    DIGEST_V2,
    NodeView,
    VipSetDigest,
    VipSetSum,
    resolve_advertised,
    view_from_annotations,
)

POOL = [f"10.96.{i // 256}.{i % 256}" for i in range(64)] + ["fd00::1", "fd00::2"]
steps = st.lists(st.tuples(st.frozensets(st.sampled_from(POOL), max_size=6),
                           st.frozensets(st.sampled_from(POOL), max_size=6)), max_size=30)


@settings(max_examples=200, deadline=None)
@given(start=st.frozensets(st.sampled_from(POOL)), history=steps)
def test_the_kept_digest_equals_the_from_scratch_one_after_every_add_and_remove(
        start: frozenset[str], history: list[tuple[frozenset[str], frozenset[str]]]) -> None:
    kept = VipSetSum()
    current = set(start)
    assert kept.update(set(current)) == VipSetDigest.of(current)
    for added, removed in history:
        current = (current | added) - removed
        assert kept.update(set(current)) == VipSetDigest.of(current)  # a new set each pass, as the agent's


def test_a_pass_that_changes_one_vip_of_ten_thousand_is_not_summed_from_scratch() -> None:
    vips = {f"10.{96 + i // 65536}.{(i // 256) % 256}.{i % 256}" for i in range(10_000)}
    kept = VipSetSum()
    kept.update(set(vips))
    vips.discard("10.96.0.7")
    assert kept.update(set(vips)) == VipSetDigest.of(vips)
    assert kept.recomputed == 1  # the first update only


def test_an_agents_kept_digest_keeps_no_hash_per_vip(monkeypatch: pytest.MonkeyPatch) -> None:
    """kvip issue #21: the module memo is the audit's (many nodes, the same VIPs); an agent sums its own
    set whole once, and kept 10,000 128-bit hashes for good. Same digest, memo untouched."""
    monkeypatch.setattr(heartbeat, "_HASHES", {})
    vips = {f"10.{96 + i // 65536}.{(i // 256) % 256}.{i % 256}" for i in range(10_000)}
    kept = VipSetSum()
    first = kept.update(set(vips))
    vips.discard("10.96.0.7")
    assert kept.update(set(vips)) != first and not heartbeat._HASHES
    assert kept.update(set(vips)) == VipSetDigest.of(vips) and len(heartbeat._HASHES) == len(vips)  # the audit's


def test_a_set_changed_behind_the_sums_back_is_repaired_by_the_periodic_check() -> None:
    held = {"10.96.0.1", "10.96.0.2"}
    kept = VipSetSum()
    kept.update(held)
    held.add("10.96.0.3")  # the same object handed over again: no difference can be seen
    assert kept.update(held) != VipSetDigest.of(held)
    assert kept.verify() is False
    assert kept.update(held) == VipSetDigest.of(held) and kept.verify() is True


def test_the_digest_does_not_depend_on_order_and_is_versioned() -> None:
    one = VipSetDigest.of(["10.96.0.2", "10.96.0.1", "10.96.0.1"])
    assert one == VipSetDigest.of(["10.96.0.1", "10.96.0.2"]) and one.count == 2
    assert one.digest.startswith(DIGEST_V2) and len(one.digest) == len(DIGEST_V2) + 32
    assert VipSetDigest.of([]) != one


def older_agents_lease(advertised: set[str], desired: set[str]) -> dict[str, str]:
    """What a kvip before the v2 digest wrote: sha256 of the sorted VIPs, no prefix."""
    annotations = NodeView.of(advertised, desired, mode="table").annotations()
    annotations["kvip.io/advertised-digest"] = VipSetDigest.v1(advertised).digest
    annotations["kvip.io/desired-digest"] = VipSetDigest.v1(desired).digest
    return annotations


def test_an_audit_resolves_the_digest_of_an_agent_of_either_version_during_a_rolling_upgrade() -> None:
    expected = {"10.96.0.1", "10.96.0.2", "10.96.0.3"}
    advertised = {"10.96.0.1", "10.96.0.2"}  # 10.96.0.3 is missing on the node
    old = view_from_annotations(older_agents_lease(advertised, expected))
    new = view_from_annotations(NodeView.of(advertised, expected, mode="table").annotations())
    assert not old.advertised.digest.startswith(DIGEST_V2) and new.advertised.digest.startswith(DIGEST_V2)
    assert resolve_advertised(old, expected) == resolve_advertised(new, expected) == frozenset(advertised)
    assert old.advertised.matches(advertised) and not old.advertised.matches(expected)
    assert new.advertised.matches(advertised) and not new.advertised.matches(expected)
