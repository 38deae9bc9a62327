"""The endpoint table covers the seed and agrees with the stand-in's independent copy of it."""

from __future__ import annotations

import re

import pytest

from agent.api.endpoints import ENDPOINTS, Base, check_type, seed_endpoints
from tests.fakes.comet_routes import ROUTES
from tests.helpers import SHARED

SEED = SHARED / "seed" / "write-endpoints.txt"


def _seed_titles() -> list[str]:
    if not SEED.exists():
        pytest.skip(f"{SEED} is missing; the shared folder sits beside the checkout")
    text = SEED.read_text(encoding="utf-8")
    return [m.group(1).strip() for m in re.finditer(r"^(.+)¶$", text, re.MULTILINE)]


def test_every_seed_endpoint_has_a_row_in_seed_order() -> None:
    """All 56 titles of the seed page appear, in the page's order, and nothing else is 'seed'."""
    titles = _seed_titles()
    assert len(titles) == 56
    assert [e.title for e in seed_endpoints()] == titles


def _full_path(name: str) -> str:
    ep = ENDPOINTS[name]
    assert ep.path is not None
    if ep.base is Base.CLIENTLIB:
        return "/clientlib/" + ep.path
    return ep.base.value + ep.path


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.name)
def test_known_endpoints_match_the_stand_in(route: object) -> None:
    """Method and path of every endpoint with a known path equal the stand-in's (wire §2)."""
    ep = ENDPOINTS[route.name]  # type: ignore[attr-defined]
    assert ep.method == route.method  # type: ignore[attr-defined]
    assert _full_path(ep.name).replace("{experimentKey}", "{K}") == route.path  # type: ignore[attr-defined]


def test_unknown_paths_are_exactly_those_spec_marks_unknown() -> None:
    """wire §2 marks nine seed rows' paths unknown; the table guesses none of them."""
    unknown = {e.name for e in ENDPOINTS.values() if not e.known}
    assert unknown == {
        "upload-text-sample",
        "save-store",
        "add-asset-tag",
        "delete-asset-tag",
        "upload-panel",
        "remote-procedure-call",
        "update-webhook-config",
        "override-webhook-config",
    }
    known = {e.name for e in ENDPOINTS.values() if e.known}
    assert known == {r.name for r in ROUTES}


@pytest.mark.parametrize("ep", list(ENDPOINTS.values()), ids=lambda e: e.name)
def test_examples_fit_their_own_field_types(ep: object) -> None:
    """Each row's example body has every required field, each of the declared type."""
    example = ep.example  # type: ignore[attr-defined]
    fields = ep.fields()  # type: ignore[attr-defined]
    for name in ep.required:  # type: ignore[attr-defined]
        assert name in example
    for name, value in example.items():
        assert name in fields, name
        assert check_type(value, fields[name]), (name, value)


@pytest.mark.parametrize(
    ("value", "type_name", "ok"),
    [
        (1, "int", True),
        (True, "int", False),
        (1.5, "number", True),
        ("1", "number", False),
        (None, "int?", True),
        (None, "int", False),
        (["a"], "list[str]", True),
        (["a", 1], "list[str]", False),
        ({"a": 1}, "object", True),
        ([1, 2.5], "list[number]", True),
        ("x", "scalar", True),
        ([1], "scalar", False),
    ],
)
def test_check_type(value: object, type_name: str, ok: bool) -> None:
    """The field-type vocabulary accepts and refuses what it says."""
    assert check_type(value, type_name) is ok
