"""The consistency check's pure parts: which keys differ, and what a selection asks the server for."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from kvip.kube.consistency import Selection, differences

versions = st.dictionaries(st.sampled_from("abcdefgh"), st.sampled_from(["1", "2", "3"]), max_size=8)


@given(listed=versions, held=versions)
def test_fetching_every_difference_makes_the_cache_equal_the_listing(listed: dict[str, str],
                                                                     held: dict[str, str]) -> None:
    found = differences(listed, held)
    repaired = dict(held)
    for key in found.changed:
        repaired[key] = listed[key]  # the GET answers what the list said
    for key in found.gone:
        del repaired[key]  # the GET answers 404
    assert repaired == listed


@given(listed=versions, held=versions)
def test_only_differing_keys_are_fetched(listed: dict[str, str], held: dict[str, str]) -> None:
    found = differences(listed, held)
    same = {k for k in listed if held.get(k) == listed[k]}
    assert not (found.changed | found.gone) & same
    assert len(found) == len(found.changed | found.gone)


def test_an_unchanged_cache_has_no_differences() -> None:
    assert not differences({"a": "7", "b": "9"}, {"a": "7", "b": "9"})


def test_a_selection_renders_its_selectors_and_can_drop_a_field() -> None:
    selection = Selection("default", {"spec.type": "LoadBalancer"}, ("kubernetes.io/service-name",))
    assert selection.params() == {"fieldSelector": "spec.type=LoadBalancer",
                                  "labelSelector": "kubernetes.io/service-name"}
    assert selection.without_fields({"spec.type": "LoadBalancer"}).params() == {
        "labelSelector": "kubernetes.io/service-name"}
