"""Rise/fall: when a series of health-check results flips a target between healthy and unhealthy.

Pure: the checker (`kvip.kube.apiserver_health`) feeds each result in and reads the verdict out.
A single lost probe must not move a control-plane VIP, and a single lucky one must not bring an
API server that is still starting back into rotation, so a verdict flips only after `fall`
consecutive failures (healthy → unhealthy) or `rise` consecutive successes (unhealthy → healthy).
A target starts unhealthy: nothing is advertised for an API server nobody has seen answer.
"""

from __future__ import annotations

from dataclasses import dataclass


class HealthConfigError(ValueError):
    """Thresholds or timings a health check cannot work with."""


@dataclass(frozen=True)
class RiseFall:
    """kube-vip's control_plane_health_check_failure_threshold is `fall`; kube-vip announces again on
    the first success, which is `rise=1`."""

    rise: int = 1
    fall: int = 3

    def __post_init__(self) -> None:
        if self.rise < 1 or self.fall < 1:
            raise HealthConfigError(f"rise ({self.rise}) and fall ({self.fall}) must be at least 1")


@dataclass(frozen=True)
class HealthState:
    """The verdict and the run of results that disagree with it (the streak that may flip it)."""

    healthy: bool = False
    streak: int = 0  # consecutive results against the verdict so far
    checks: int = 0  # results seen, for status and tests

    def observe(self, ok: bool, rule: RiseFall) -> HealthState:
        """The state after one more result."""
        if ok == self.healthy:
            return HealthState(self.healthy, 0, self.checks + 1)
        streak = self.streak + 1
        if streak >= (rule.rise if ok else rule.fall):
            return HealthState(ok, 0, self.checks + 1)
        return HealthState(self.healthy, streak, self.checks + 1)


@dataclass(frozen=True)
class HealthCheckSettings:
    """One HTTP(S) health check: what to GET, how often, how long to wait, when to flip, which CA.

    `server_name` is the TLS name the certificate must carry when it differs from the URL's host
    (kube-apiserver certificates always name `kubernetes`, but rarely 127.0.0.1)."""

    url: str
    period: float = 5.0
    timeout: float = 3.0
    rule: RiseFall = RiseFall()
    ca_path: str | None = None
    server_name: str | None = None

    def __post_init__(self) -> None:
        if not (self.period > 0 and self.timeout > 0):
            raise HealthConfigError(f"health check period ({self.period}) and timeout ({self.timeout}) must be > 0")


# Every kube-apiserver serving certificate (kubeadm, k3s, RKE2) names the in-cluster service
# `kubernetes`; the loopback address it is reached on here is often not among its names.
APISERVER_TLS_NAME = "kubernetes"


def apiserver_check(address: str, *, port: int, period: float = 5.0, timeout: float = 3.0, failure_threshold: int = 3,
                    ca_path: str | None = None, rise: int = 1) -> HealthCheckSettings:
    """The check of this node's own kube-apiserver: kube-vip's control_plane_health_check_address
    when set (verified as that URL names its host), else https://127.0.0.1:<port>/livez verified as
    `kubernetes`."""
    if address:
        return HealthCheckSettings(address, period, timeout, RiseFall(rise, failure_threshold), ca_path or None)
    return HealthCheckSettings(f"https://127.0.0.1:{port}/livez", period, timeout, RiseFall(rise, failure_threshold),
                               ca_path or None, APISERVER_TLS_NAME)
