"""kvip_check_period and what kvip_resync_period means since there is no periodic relist (kvip issue #21)."""

from __future__ import annotations

from kvip.config.agent import load_config

NODE = {"vip_nodename": "node-a"}


def test_by_default_the_check_runs_every_ten_minutes_and_the_dataplane_is_reread_every_30s() -> None:
    config = load_config(NODE)
    assert (config.check_period, config.resync_period) == (600.0, 30.0)


def test_a_resync_period_set_on_its_own_keeps_bounding_how_long_a_lost_event_goes_uncorrected() -> None:
    config = load_config({**NODE, "kvip_resync_period": "5"})
    assert (config.check_period, config.resync_period) == (5.0, 5.0)
    assert any("kvip_resync_period=5" in line and "no periodic relist" in line for line in config.infos)


def test_the_check_period_wins_over_the_resync_period() -> None:
    config = load_config({**NODE, "kvip_resync_period": "5", "kvip_check_period": "600"})
    assert (config.check_period, config.resync_period) == (600.0, 5.0)
    assert load_config({**NODE, "kvip_check_period": "600"}, {"check_period": "60"}).check_period == 60.0
    assert load_config(NODE, {"resync_period": "7"}).check_period == 7.0
