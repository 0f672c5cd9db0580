"""The kept grouping of EndpointSlices under their Service (`kvip.kube.cache.EndpointIndex`) always equals
the grouping from scratch, whatever the history of slices added, edited, moved to another Service or deleted."""

from __future__ import annotations

from itertools import chain

from hypothesis import given, settings
from hypothesis import strategies as st

from kvip.core.model import EndpointView, ServiceKey
from kvip.kube.cache import EndpointIndex
from kvip.kube.convert import SliceEntry, SliceKey

SERVICES = [ServiceKey("default", name) for name in ("web", "api", "db")]
SLICES = [("default", f"slice-{n}") for n in range(5)]
ENDPOINTS = [(), (EndpointView(("10.244.0.1",), "node-a"),), (EndpointView(("10.244.0.2",), "node-b"),)]

edits = st.lists(st.tuples(st.sampled_from(SLICES), st.none() | st.tuples(st.sampled_from(SERVICES),
                                                                            st.sampled_from(ENDPOINTS))),
                 max_size=30)


def from_scratch(store: dict[SliceKey, SliceEntry]) -> dict[ServiceKey, tuple[EndpointView, ...]]:
    names: dict[ServiceKey, list[SliceKey]] = {}
    for key, (service, _) in store.items():
        names.setdefault(service, []).append(key)
    return {service: tuple(chain.from_iterable(store[key][1] for key in sorted(keys)))
            for service, keys in names.items()}


@settings(max_examples=300, deadline=None)
@given(edits, st.integers(1, 4), st.booleans())
def test_the_kept_grouping_equals_the_grouping_from_scratch(history: list, every: int, journal: bool) -> None:
    """`journal`: told what changed as the slices reflector tells it (each changed slice's entry before, the
    first update told nothing); else given only the store each time."""
    index, store = EndpointIndex(), {}
    changes: dict | None = None

    def update() -> dict:
        nonlocal changes
        told, changes = changes, {}
        grouped = index.update(store, told if journal else None)
        assert grouped == from_scratch(store)
        return grouped

    for step, (key, entry) in enumerate(history):
        if changes is not None and store.get(key) != entry:
            changes.setdefault(key, store.get(key))
        if entry is None:
            store.pop(key, None)
        else:
            store[key] = entry
        if step % every == 0:  # several edits between two snapshots, as in a burst of events
            before = update()
    after = update()
    if history:  # a Service whose endpoints are equal keeps its tuple, the very object
        assert all(after[service] is endpoints for service, endpoints in before.items()
                   if after.get(service) == endpoints)


def test_a_slice_relabelled_to_another_service_moves_in_one_update() -> None:
    web, api = SERVICES[0], SERVICES[1]
    index, store = EndpointIndex(), {SLICES[0]: (web, ENDPOINTS[1]), SLICES[1]: (web, ENDPOINTS[2])}
    index.update(store)
    store[SLICES[0]] = (api, ENDPOINTS[1])
    assert index.update(store) == {web: ENDPOINTS[2], api: ENDPOINTS[1]}
