"""{{name}} templates (gateway/core/template.py): batch texts per recipient, connector bodies."""

from __future__ import annotations

import pytest

from gateway.core.template import Template, render


@pytest.mark.parametrize(
    ("text", "values", "expected"),
    [
        ("no placeholders", {"x": "1"}, "no placeholders"),
        ("Hi {{name}}!", {"name": "Ann"}, "Hi Ann!"),
        ("{{ name }}", {"name": "Ann"}, "Ann"),
        ("code {{code}}", {"code": 42}, "code 42"),
        ("{{a}}-{{b.c}}-{{a}}", {"a": "x", "b.c": 1.5}, "x-1.5-x"),
        ("{{a}}{{b}}", {"a": "", "b": "y"}, "y"),
    ],
)
def test_render(text: str, values: dict[str, object], expected: str) -> None:
    assert Template(text).render(values) == expected


@pytest.mark.parametrize("text", ["Hi {{name}}", "{{a}} and {{name}}"])
def test_a_missing_variable_names_itself(text: str) -> None:
    with pytest.raises(KeyError) as exc:
        Template(text).render({"a": "1"})
    assert exc.value.args[0] == "name"


def test_an_http_connector_body_fills_every_string_and_keeps_unknown_names() -> None:
    body = {"to": "{{to}}", "msg": ["{{ text }} ({{parts}})", 3], "x": "{{nope}}"}
    assert render(body, {"to": "+8613800138000", "text": "hi", "parts": "1"}) == {
        "to": "+8613800138000", "msg": ["hi (1)", 3], "x": "{{nope}}",
    }
