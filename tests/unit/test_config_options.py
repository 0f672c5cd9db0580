"""The option table: every option's bad value, as env or as flag, is one line naming it and exit 2 —
never a traceback; the parsers fail only with ValueError, whatever the text; `--help` shows the table."""

from __future__ import annotations

import math

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from kvip.cli.main import build_parser, main
from kvip.config.agent import config_from_args
from kvip.config.controller import controller_config_from_args
from kvip.config.options import OPTIONS, Option
from kvip.config.values import int_range, parse_duration, parse_int, positive_seconds

# Texts tried in turn until the option's parser refuses one; options that take any text have none.
CANDIDATE_BAD_VALUES = ("x", "²", "nan", "-1", "1" * 5000, 'bad"value')


def bad_value(option: Option) -> str | None:
    for candidate in CANDIDATE_BAD_VALUES:
        try:
            option.parse(candidate)
        except ValueError:
            return candidate
    return None


CHECKED = [(command, option) for option in OPTIONS if bad_value(option) is not None
           for command in sorted(option.commands)]
FREE_TEXT = {option.field for option in OPTIONS if bad_value(option) is None}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No option's variable from the machine running the tests (KUBECONFIG, NODE_NAME, ...)."""
    for option in OPTIONS:
        for name in option.env:
            monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_only_free_text_options_have_no_bad_value() -> None:
    assert FREE_TEXT == {"kubeconfig", "namespace", "node_name", "interface", "lb_class_name", "lease_name",
                         "metrics_address", "bgp_run_dir", "bird_path", "identity", "configmap", "svc_namespace",
                         "bgp_annotations", "status_socket", "cp_health_ca_path"}


@pytest.mark.parametrize(("command", "option"), [(c, o) for c, o in CHECKED if o.env],
                         ids=lambda v: v.env[0] if isinstance(v, Option) else v)
def test_a_bad_environment_value_is_one_line_naming_the_variable(
        command: str, option: Option, clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    clean_env.setenv("vip_nodename", "node-a")
    clean_env.setenv(option.env[0], bad_value(option) or "")
    assert main([command]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"kvip {command}: {option.env[0]}: "), lines


@pytest.mark.parametrize(("command", "option"), [(c, o) for c, o in CHECKED if o.flag],
                         ids=lambda v: v.flag if isinstance(v, Option) else v)
def test_a_bad_flag_value_is_one_line_naming_the_flag(
        command: str, option: Option, clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    node = ["--node-name", "node-a"] if command == "agent" else []
    assert main([command, *node, f"{option.flag}={bad_value(option)}"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"kvip {command}: {option.flag}: "), lines


def test_a_lease_duration_in_seconds_units_reaches_both_commands(clean_env: pytest.MonkeyPatch) -> None:
    # The parser used to read vip_leaseduration with float() while being built, for every command.
    clean_env.setenv("vip_leaseduration", "15s")
    clean_env.setenv("vip_renewdeadline", "10000ms")
    agent = config_from_args(build_parser().parse_args(["agent", "--node-name", "n"]), {
        "vip_leaseduration": "15s", "vip_renewdeadline": "10000ms"})
    controller = controller_config_from_args(build_parser().parse_args(["controller"]), {
        "vip_leaseduration": "15s", "vip_renewdeadline": "10000ms"})
    assert agent.lease_timing.lease_duration == controller.lease_timing.lease_duration == 15.0
    assert agent.lease_timing.renew_deadline == controller.lease_timing.renew_deadline == 10.0


@pytest.mark.parametrize("argv", [["agent", "--node-name", "n"], ["controller"]])
def test_with_a_unit_in_vip_leaseduration_the_command_gets_past_its_configuration(
        argv: list[str], clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    clean_env.setenv("vip_leaseduration", "15s")
    clean_env.setenv("KUBECONFIG", "/nonexistent/kubeconfig")  # the next step, which fails here
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "cannot load Kubernetes credentials from /nonexistent/kubeconfig" in err
    assert "Traceback" not in err and "vip_leaseduration" not in err


@pytest.mark.parametrize("command", ["agent", "controller"])
def test_help_shows_every_flag_with_its_variables_and_default(
        command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for option in OPTIONS:
        if command in option.commands and option.flag:
            assert option.flag in text
    assert "[env vip_leaseduration; default 15.0]" in text
    if command == "agent":
        assert "[env vip_routingtableid / routing_table_id; default 198]" in text


@pytest.mark.parametrize("option", OPTIONS, ids=lambda o: o.field)
@given(value=st.text())
@example(value="²")  # str.isdigit() is True, int() refuses it
@example(value="٣")  # an Arabic-Indic digit: int() and float() take it, kube-vip would not
@example(value="1" * 5000)  # int() refuses more than 4300 digits
@example(value="nan")
@example(value="inf")
@example(value="1e400")
@example(value="9" * 400)
@example(value="[::1]:1:p:true:99999,x")
def test_every_parser_returns_or_raises_value_error_for_any_text(option: Option, value: str) -> None:
    try:
        option.parse(value)
    except ValueError:
        pass


@given(value=st.text(alphabet="0123456789.emsh+-naif ²٣", max_size=30))
@example(value="nan")
@example(value="inf")
@example(value="9" * 400)
@example(value="9" * 15 + "h")
def test_a_duration_is_finite_or_refused(value: str) -> None:
    try:
        seconds = parse_duration(value)
    except ValueError:
        return
    assert math.isfinite(seconds) and 0 <= seconds <= 1e9


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e400", "0", "0ms", "-1"])
def test_durations_that_mean_no_time_or_no_number_are_refused_for_timers(value: str) -> None:
    with pytest.raises(ValueError):
        positive_seconds(value)


@pytest.mark.parametrize("value", ["²", "٣", "1_000", "0x10", "1" * 5000, "1.0", ""])
def test_integers_are_ascii_decimal_digits(value: str) -> None:
    with pytest.raises(ValueError):
        parse_int(value)


def test_integers_accept_blanks_and_bounds_as_before() -> None:
    assert parse_int(" 199 ") == 199
    assert int_range(1, 255)("255") == 255
    with pytest.raises(ValueError, match="outside 1..255"):
        int_range(1, 255)("256")
