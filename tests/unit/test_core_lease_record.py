"""The per-Lease bookkeeping the elector writes from: what one read of a Lease leaves in the record (the
resourceVersion an optimistic-concurrency PUT must carry, the spec a release or renewal starts from),
what a deletion forgets, and the snapshot status and metrics are built from."""

from __future__ import annotations

from kvip.core.election_rules import (
    LeaseRecord,
    LeaseState,
    LeaseTiming,
    expires_after,
    fence_ends_at,
)

LEASE = {"metadata": {"name": "kubevip-web", "namespace": "shop", "resourceVersion": "41"},
         "spec": {"holderIdentity": "node-b", "renewTime": "2026-11-30T10:00:00.000000Z",
                  "leaseDurationSeconds": 15, "leaseTransitions": 3}}


def test_a_read_lease_leaves_its_resource_version_and_a_copy_of_its_spec_for_the_next_write() -> None:
    record = LeaseRecord(changed_at=0.0)
    record.observe(LEASE, 5.0)
    assert record.resource_version == "41"
    assert record.spec == LEASE["spec"] and record.spec is not LEASE["spec"]
    assert (record.holder, record.lease_seconds, record.changed_at) == ("node-b", 15, 5.0)


def test_a_lease_read_without_metadata_has_no_resource_version_to_send() -> None:
    record = LeaseRecord(changed_at=0.0)
    record.observe(LEASE, 1.0)
    record.observe({"spec": LEASE["spec"]}, 2.0)
    assert record.resource_version is None


def test_a_lease_deleted_under_us_forgets_its_version_spec_and_our_renewal() -> None:
    record = LeaseRecord(changed_at=0.0, renewed_at=4.0)
    record.observe(LEASE, 5.0)
    record.observe(None, 6.0)
    assert (record.exists, record.holder, record.resource_version, record.spec, record.renewed_at) == (
        False, None, None, {}, None)
    assert record.changed_at == 6.0


def test_a_lease_without_a_declared_duration_falls_back_to_ours() -> None:
    record = LeaseRecord(changed_at=0.0)
    record.observe({"spec": {"holderIdentity": "node-b", "renewTime": "t"}}, 1.0)
    assert record.lease_seconds is None


def test_a_lease_we_never_renewed_has_no_fence_end() -> None:
    assert fence_ends_at(LeaseRecord(changed_at=0.0), LeaseTiming()) is None


def test_the_snapshot_reports_holder_fence_renewal_last_change_and_transitions() -> None:
    record = LeaseRecord(changed_at=0.0, renewed_at=7.5, transitions=2)
    record.observe(LEASE, 5.0)
    assert record.snapshot(held=True) == LeaseState(holder="node-b", held=True, renewed_at=7.5,
                                                    observed_change_at=5.0, transitions=2)
    assert record.snapshot(held=False).held is False


def test_a_sub_second_lease_of_a_peer_declaring_no_duration_expires_after_ours() -> None:
    record = LeaseRecord(changed_at=0.0)
    record.observe({"spec": {"holderIdentity": "node-b", "renewTime": "t"}}, 1.0)
    assert expires_after(record, LeaseTiming(lease_duration=0.9, renew_deadline=0.5, retry_period=0.1)) == 0.9
