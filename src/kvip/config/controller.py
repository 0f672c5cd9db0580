"""`kvip controller`'s configuration, from the same option table and parsers as the agent's."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass, field

from kvip.config.options import (
    DEFAULTS,
    ConfigError,
    add_arguments,
    flags_given,
    lease_timing,
    read_options,
)
from kvip.core.election_rules import LeaseTiming


@dataclass(frozen=True)
class ControllerConfig:
    kubeconfig: str | None = DEFAULTS["kubeconfig"]
    namespace: str = DEFAULTS["namespace"]
    identity: str | None = DEFAULTS["identity"]  # None: the caller uses the host name (config does no I/O)
    configmap: str = DEFAULTS["configmap"]
    lease_timing: LeaseTiming = field(default_factory=LeaseTiming)


def load_controller_config(env: Mapping[str, str], flags: Mapping[str, str] | None = None) -> ControllerConfig:
    readout = read_options("controller", env, flags)
    values = readout.values
    errors = list(readout.problems.values())
    timing = lease_timing(values, errors)
    if errors:
        raise ConfigError("\n".join(errors))
    return ControllerConfig(kubeconfig=values["kubeconfig"], namespace=values["namespace"],
                            identity=values["identity"] or None, configmap=values["configmap"], lease_timing=timing)


def add_controller_arguments(parser: argparse.ArgumentParser) -> None:
    add_arguments(parser, "controller")


def controller_config_from_args(args: argparse.Namespace, env: Mapping[str, str]) -> ControllerConfig:
    """Flags override env; flag values are strings and go through the same parsers."""
    return load_controller_config(env, flags_given(args, "controller"))
