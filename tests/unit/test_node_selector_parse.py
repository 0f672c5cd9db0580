"""Node selectors in kubectl's `-l` syntax (kvip issue #20): the parser and matcher alone.

The examples are Kubernetes' own parser cases (k8s.io/apimachinery labels: which texts it accepts, what
they match); hypothesis then writes random selectors in every spelling kubectl accepts and checks that
each matches exactly the label sets the documented meaning says it should."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvip.core.model import NodeView
from kvip.core.node_selector import (
    MAX_SELECTOR_CHARS,
    InvalidSelector,
    node_selected,
    parse_selector,
)


def matches(selector: str, **labels: str) -> bool:
    return parse_selector(selector).matches(labels)


KUBERNETES_ACCEPTS = [
    "", "x=a,y=b,z=c", "x!=a,y=b", "x=", "x= ", "x=,z= ", "!x", "x>1", "x>1,z<5", "\rx", "a ",
    "this-is-a-dns.domain.com/key-with-dash", "this-is-another-dns.domain.com/key-with-dash in (so,what)",
    "0.1.2.domain/99 notin (10.10.100.1, tick.tack.clock)", "foo  in\t (abc)", "x notin\n (abc)",
    "x in (abc,)", "x in ()", "x notin (abc,def),bar,z in (),w", "x,y in (a)", "x notin ( )", "x notin (, a)",
    "a in (x,y,notin, z,in)", "notin=in", "in in (in)", "a in (a,,b)", "a in (a,,,)",
]
KUBERNETES_REFUSES = [
    "x=a||y=b", "x==a==b", "!x=a", "x<a", "x,,y", ",x,y", "x nott in (y)", "a in (xyz),", "a in (xyz)b notin ()",
    "a in (xyz abc)", "a notin(", "a (", "(", "a in (a,,)", "a in (,,)", "x!", "x in", "=a", "x>-1", "x>1.5",
    "x>99999999999999999999", "a/b/c", "/a", "a/", "Example.com/a", "-a", "a-", "a" * 64, f"a={'v' * 64}",
    f"{'d' * 254}/a", "a=b c", "a=(b)", "a in b", "é=1",
]


@pytest.mark.parametrize("text", KUBERNETES_ACCEPTS)
def test_kubectl_accepts_it_so_kvip_does(text: str) -> None:
    parse_selector(text)


@pytest.mark.parametrize("text", KUBERNETES_REFUSES)
def test_kubectl_refuses_it_so_kvip_does(text: str) -> None:
    with pytest.raises(InvalidSelector):
        parse_selector(text)


def test_equality_and_inequality_as_kubernetes_defines_them() -> None:
    assert matches("", x="y")
    assert matches("x=y", x="y") and matches("x==y", x="y")
    assert not matches("x=y", x="z") and not matches("x=z")
    assert matches("x=y,z=w", x="y", z="w") and not matches("x=y,z=w", x="w", z="w")
    assert matches("x!=y,z!=w", x="z", z="a") and not matches("x!=y,z!=w", x="z", z="w")
    assert matches("x!=y"), "a node without the label is not equal to anything"
    assert matches("notin=in", notin="in"), "keywords are plain names outside the operator's place"


def test_set_based_requirements_and_their_corners() -> None:
    assert matches("zone in (a, b)", zone="b") and not matches("zone in (a,b)", zone="c")
    assert not matches("zone in (a,b)"), "in: the label must exist"
    assert matches("zone notin (a)") and matches("zone notin (a)", zone="b") and not matches("zone notin (a)", zone="a")
    assert matches("x in ()", x="") and not matches("x in ()", x="a"), "an empty place is the value ''"
    assert matches("x in (a,)", x="") and matches("x=", x="") and not matches("x=")
    assert matches("x", x="") and not matches("x", y="x")
    assert matches("!x", y="z") and not matches("!x", x="")


def test_integer_comparisons_need_an_integer_label() -> None:
    assert matches("x>1", x="2") and not matches("x>1", x="1") and not matches("x>1", x="v2")
    assert matches("x<10", x="9") and matches("x<10", x="007") and not matches("x<1")
    assert not matches("x>1", x="١٢"), "Go's ParseInt reads ASCII digits only"
    assert not matches("x<1", x=str(-(2**63) - 1)), "out of int64 range: not an integer"


def test_limits_and_the_nul_character() -> None:
    long = "a in (" + ",".join(["v"] * (MAX_SELECTOR_CHARS // 2)) + ")"
    with pytest.raises(InvalidSelector, match="limit of 4096"):
        parse_selector(long)
    with pytest.raises(InvalidSelector, match="NUL"):
        parse_selector("a=b\0")  # Go would stop reading at the NUL and accept `a=b`; kvip refuses it
    with pytest.raises(InvalidSelector) as refused:
        parse_selector("a=" + "\x1b[2J" * 10)
    assert "\x1b" not in str(refused.value), "the message shows the text escaped"


def test_a_node_the_agent_has_not_seen_is_outside_every_selector() -> None:
    anything = parse_selector("!never-set")
    assert node_selected(None, None) and node_selected(None, NodeView("n"))
    assert not node_selected(anything, None)
    assert node_selected(anything, NodeView("n")) and not node_selected(anything, NodeView("n", labels={"never-set": ""}))


# -- hypothesis: every spelling kubectl accepts, against the documented meaning -------------------------
KEYS = ["a", "zone", "in", "notin", "kvip.io/edge", "x_1.y-2"]
VALUES = ["", "1", "2", "10", "a", "in", "b.c"]
NUMBERS = ["0", "1", "2", "9", "10", "007"]
OPERATORS = ["exists", "!", "=", "==", "!=", "in", "notin", ">", "<"]

requirement = st.tuples(st.sampled_from(OPERATORS), st.sampled_from(KEYS),
                        st.lists(st.sampled_from(VALUES), min_size=1, max_size=4), st.sampled_from(NUMBERS))
blank = st.sampled_from(["", " ", "\t", "\n", "  ", "\r"])
some_blank = st.sampled_from([" ", "\t", "\n", " \t "])
labels = st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES + NUMBERS), max_size=len(KEYS))


def written(draw: st.DrawFn, op: str, key: str, values: list[str], number: str) -> str:
    """One requirement as a person could type it, blanks wherever the syntax allows them."""
    def b() -> str:
        return draw(blank)

    if op == "exists":
        return key
    if op == "!":
        return f"!{b()}{key}"
    if op in ("=", "==", "!="):
        return f"{key}{b()}{op}{b()}{values[0]}"
    if op in (">", "<"):
        return f"{key}{b()}{op}{b()}{number}"
    # '' written as a leading empty place: `(,a)`, or `()` alone (`(a,,)` is refused by Kubernetes)
    named = [v for v in values if v]
    places = ([""] if "" in values else []) + named
    inside = f"{b()},{b()}".join(places) if named else b()
    return f"{key}{draw(some_blank)}{op}{b()}({b()}{inside}{b()})"


def meant(op: str, key: str, values: list[str], number: str, have: dict[str, str]) -> bool:
    """What Kubernetes documents each requirement to mean, written without the parser's help."""
    present, value = key in have, have.get(key, "")
    if op in ("exists", "!"):
        return present == (op == "exists")
    chosen = values[:1] if op in ("=", "==", "!=") else values
    if op in ("=", "==", "in"):
        return present and value in chosen
    if op in ("!=", "notin"):
        return not present or value not in chosen
    if not (present and value.isascii() and value.isdigit()):
        return False
    return int(value) > int(number) if op == ">" else int(value) < int(number)


@st.composite
def selectors(draw: st.DrawFn) -> tuple[str, list[tuple[str, str, list[str], str]]]:
    parts = draw(st.lists(requirement, max_size=4))
    text = f"{draw(blank)},{draw(blank)}".join(written(draw, *p) for p in parts)
    return draw(blank) + text + draw(blank), parts


@settings(max_examples=400, deadline=None)
@given(selectors(), labels)
def test_a_selector_matches_exactly_the_label_sets_kubernetes_says(selector, have) -> None:  # type: ignore[no-untyped-def]
    text, parts = selector
    assert parse_selector(text).matches(have) == all(meant(*p, have) for p in parts), text


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("az=!(),<> \t\n/.-_0\0é")), max_size=40))
def test_any_text_is_a_selector_or_one_invalid_selector_error(text: str) -> None:
    try:
        parse_selector(text)
    except InvalidSelector:
        pass
