"""The consistency check's pure parts: which keys differ, and what a selection asks the server for."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from kvip.kube.consistency import Selection, differences, held_version, tally

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


pages = st.lists(st.integers(1, 3), min_size=1, max_size=8)  # page sizes, the last one repeated


def paged(listed: dict[str, str], sizes: list[int]) -> list[list[tuple[str, str]]]:
    items, out = list(listed.items()), []
    while items or not out:
        size = sizes[min(len(out), len(sizes) - 1)]
        out.append(items[:size])
        items = items[size:]
    return out


@given(listed=versions, held=versions, sizes=pages)
def test_comparing_page_by_page_finds_what_comparing_the_whole_listing_finds(
        listed: dict[str, str], held: dict[str, str], sizes: list[int]) -> None:
    whole = differences(listed, held)
    changed, gone = tally(paged(listed, sizes), held, exact=True)
    assert frozenset(changed) == whole.changed and gone == whole.gone
    assert all(changed[key] == listed[key] for key in changed)  # the listed version, to settle against
    counted, counted_gone = tally(paged(listed, sizes), held)  # by counting: exact, or "cannot tell"
    assert counted == changed and counted_gone in (whole.gone, None)
    assert (counted_gone is None) == bool(whole.gone)  # it cannot tell exactly when something went unlisted


texts = st.one_of(st.text(max_size=25), st.integers(0, 10**22).map(str), st.sampled_from(["0", "007", "1e3", "²", "٣"]))


@given(one=texts, other=texts)
def test_held_versions_are_equal_exactly_when_the_text_is(one: str, other: str) -> None:
    assert (held_version(one) == held_version(other)) == (one == other)
    assert held_version(one) == held_version(one) and str(held_version(one)) == one
