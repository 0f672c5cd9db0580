"""The local API-server health check against a real HTTPS server with a cluster CA of our own making.

Issue #18 (kube-vip #1145, #1284, #1786): a node whose own kube-apiserver is down, hung or serving
errors must withdraw its control-plane VIP; one lost probe must not. The rise/fall rule is pure
(`kvip.core.health`) and tested with plain values; the checker is tested over TLS.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from kvip.core.health import (
    APISERVER_TLS_NAME,
    HealthConfigError,
    HealthState,
    RiseFall,
    apiserver_check,
)
from kvip.kube.apiserver_health import ApiServerHealth, cluster_ca_context

# -- the pure rule ------------------------------------------------------------------------------


def run_rule(results: list[bool], rule: RiseFall, start: HealthState | None = None) -> list[bool]:
    state, verdicts = start or HealthState(), []
    for ok in results:
        state = state.observe(ok, rule)
        verdicts.append(state.healthy)
    return verdicts


def test_a_healthy_target_falls_on_the_fall_th_failure_in_a_row_not_before() -> None:
    rule = RiseFall(rise=2, fall=3)
    up = HealthState(healthy=True)
    assert run_rule([False, False, True, False, False], rule, up) == [True] * 5  # a success resets the run
    assert run_rule([False, False, False], rule, up) == [True, True, False]


def test_an_unhealthy_target_rises_on_the_rise_th_success_in_a_row() -> None:
    assert run_rule([True, False, True, True], RiseFall(rise=2, fall=3)) == [False, False, False, True]


def test_a_target_starts_unhealthy_and_kube_vips_default_announces_on_the_first_success() -> None:
    assert HealthState().healthy is False
    assert run_rule([True], RiseFall()) == [True]


def test_thresholds_below_one_are_refused() -> None:
    with pytest.raises(HealthConfigError):
        RiseFall(rise=0)
    with pytest.raises(HealthConfigError):
        RiseFall(fall=0)


@given(st.lists(st.booleans(), max_size=60), st.integers(1, 6), st.integers(1, 6), st.booleans())
def test_the_verdict_only_flips_after_a_full_run_of_disagreeing_results(
        results: list[bool], rise: int, fall: int, start_healthy: bool) -> None:
    rule = RiseFall(rise, fall)
    before = start_healthy
    verdicts = run_rule(results, rule, HealthState(healthy=start_healthy))
    for i, now in enumerate(verdicts):
        if now != before:
            needed = rule.rise if now else rule.fall
            run = results[max(0, i + 1 - needed):i + 1]
            assert len(run) == needed and all(ok == now for ok in run)
        before = now


@given(st.lists(st.booleans(), max_size=60), st.integers(1, 6), st.integers(1, 6))
def test_a_run_of_agreeing_results_always_settles_the_verdict(results: list[bool], rise: int, fall: int) -> None:
    rule = RiseFall(rise, fall)
    for tail in (True, False):
        assert run_rule(results + [tail] * max(rise, fall), rule)[-1] is tail


def test_the_default_check_is_the_local_livez_verified_as_kubernetes_and_an_address_is_taken_as_given() -> None:
    default = apiserver_check("", port=6443)
    assert (default.url, default.server_name, default.rule.fall) == ("https://127.0.0.1:6443/livez",
                                                                     APISERVER_TLS_NAME, 3)
    given_url = apiserver_check("https://10.0.0.5:6443/readyz", port=6443, failure_threshold=5)
    assert (given_url.url, given_url.server_name, given_url.rule.fall) == ("https://10.0.0.5:6443/readyz", None, 5)


# -- a real HTTPS API server ------------------------------------------------------------------


@dataclass
class Pki:
    ca: Path
    other_ca: Path
    cert: Path
    key: Path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _ca(cn: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn)).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A cluster CA and a kube-apiserver certificate named like kubeadm's: `kubernetes`, not 127.0.0.1."""
    d = tmp_path_factory.mktemp("pki")
    ca_key, ca = _ca("kubernetes-ca")
    _, other = _ca("someone-else")
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(_name("kube-apiserver")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("kubernetes"),
                                                        x509.DNSName("kubernetes.default.svc")]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pki = Pki(d / "ca.crt", d / "other-ca.crt", d / "apiserver.crt", d / "apiserver.key")
    pki.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    pki.other_ca.write_bytes(other.public_bytes(serialization.Encoding.PEM))
    pki.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pki.key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return pki


class FakeApiServer:
    """/livez over TLS that answers `status`, or never answers while `hang` is set."""

    def __init__(self) -> None:
        self.status = 200
        self.hang = False
        self.port = 0

    async def livez(self, _: web.Request) -> web.Response:
        if self.hang:
            await asyncio.sleep(3600)
        return web.Response(status=self.status, text="ok" if self.status == 200 else "etcd failed")


@pytest.fixture
async def apiserver(pki: Pki) -> AsyncIterator[FakeApiServer]:
    server = FakeApiServer()
    app = web.Application()
    app.router.add_get("/livez", server.livez)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(pki.cert, pki.key)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
    await site.start()
    server.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield server
    finally:
        await runner.cleanup()


def checker(server: FakeApiServer, ca: Path, *, rise: int = 2, fall: int = 3, timeout: float = 0.3,
            changes: list[bool] | None = None) -> ApiServerHealth:
    settings = apiserver_check("", port=server.port, timeout=timeout, period=0.05, failure_threshold=fall,
                               rise=rise, ca_path=str(ca))
    health: ApiServerHealth

    def note() -> None:
        if changes is not None:
            changes.append(health.healthy)

    health = ApiServerHealth(settings, tls=cluster_ca_context(settings.ca_path, None), on_change=note)
    return health


async def checks(health: ApiServerHealth, n: int) -> list[bool]:
    results = [await health.check_once() for _ in range(n)]
    return results


async def test_a_server_signed_by_the_cluster_ca_is_healthy_after_rise_successes(
        apiserver: FakeApiServer, pki: Pki) -> None:
    changes: list[bool] = []
    health = checker(apiserver, pki.ca, rise=2, changes=changes)
    try:
        assert await health.check_once() is True and health.healthy is False  # one success is not rise=2
        assert await health.check_once() is True and health.healthy is True
        assert changes == [True]
    finally:
        await health.close()


async def test_a_certificate_from_another_ca_is_never_healthy(apiserver: FakeApiServer, pki: Pki) -> None:
    health = checker(apiserver, pki.other_ca, rise=1)
    try:
        assert await checks(health, 3) == [False] * 3
        assert not health.healthy and "CERTIFICATE_VERIFY_FAILED" in health.last_error
    finally:
        await health.close()


async def test_a_500_makes_it_unhealthy_only_on_the_fall_th_probe(apiserver: FakeApiServer, pki: Pki) -> None:
    changes: list[bool] = []
    health = checker(apiserver, pki.ca, rise=1, fall=3, changes=changes)
    try:
        await health.check_once()
        apiserver.status = 500
        await checks(health, 2)
        assert health.healthy, "two failures must not flip a fall=3 check"
        await health.check_once()
        assert not health.healthy and health.last_error == "HTTP 500"
        assert changes == [True, False]
    finally:
        await health.close()


async def test_a_hung_server_counts_as_a_failure_after_the_timeout(apiserver: FakeApiServer, pki: Pki) -> None:
    health = checker(apiserver, pki.ca, rise=1, fall=2, timeout=0.3)
    try:
        await health.check_once()
        apiserver.hang = True
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await checks(health, 2) == [False, False]
        took = loop.time() - started
        assert not health.healthy
        assert 0.5 <= took < 1.5, f"two probes of a hung server took {took:.2f}s, expected ~2 x 0.3s"
    finally:
        await health.close()


async def test_it_recovers_after_rise_successes_once_the_server_answers_again(
        apiserver: FakeApiServer, pki: Pki) -> None:
    changes: list[bool] = []
    health = checker(apiserver, pki.ca, rise=3, fall=1, changes=changes)
    try:
        apiserver.status = 503
        await health.check_once()
        apiserver.status = 200
        await checks(health, 2)
        assert not health.healthy
        await health.check_once()
        assert health.healthy and changes == [True]
    finally:
        await health.close()


async def test_run_probes_on_its_own_task_and_a_hung_server_never_blocks_the_caller(
        apiserver: FakeApiServer, pki: Pki) -> None:
    """The agent reads `healthy` from the reconcile loop: that read must not wait for a probe."""
    changes: list[bool] = []
    health = checker(apiserver, pki.ca, rise=1, fall=2, timeout=0.2, changes=changes)
    task = asyncio.create_task(health.run())
    try:
        await _until(lambda: health.healthy)
        apiserver.hang = True
        loop = asyncio.get_running_loop()
        ticks, started = 0, loop.time()
        while health.healthy and loop.time() - started < 3:
            await asyncio.sleep(0.01)  # the "reconcile loop" keeps turning meanwhile
            ticks += 1
        assert not health.healthy and ticks > 20
        apiserver.hang = False
        await _until(lambda: health.healthy)
        assert changes == [True, False, True]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_the_ca_comes_from_the_kubeconfig_when_no_ca_path_is_given(pki: Pki, tmp_path: Path) -> None:
    kubeconfig = tmp_path / "admin.conf"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters: [{{name: c, cluster: {{server: 'https://127.0.0.1:6443', certificate-authority: {pki.ca}}}}}]\n"
        "users: [{name: u, user: {token: t}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\n")
    tls = cluster_ca_context(None, str(kubeconfig))
    subjects = [c["subject"] for c in tls.get_ca_certs()]
    assert subjects == [((("commonName", "kubernetes-ca"),),)]


async def _until(predicate: object, timeout: float = 3.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():  # type: ignore[operator]
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)
