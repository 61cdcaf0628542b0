"""`{{name}}` templates: batch texts and HTTP connectors' JSON bodies.

A placeholder is ``{{name}}`` (letters, digits, ``_``, ``.``, ``-``; spaces
inside the braces are ignored). The text is split once, so rendering it for
each of 10,000 recipients is joins, not searches.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_.\-]+)\s*\}\}")


@dataclass(slots=True)
class Template:
    text: str
    pieces: list[str] = field(default_factory=list)  # literal, name, literal, name, ..., literal

    def __post_init__(self) -> None:
        self.pieces = PLACEHOLDER.split(self.text)

    @property
    def constant(self) -> bool:
        return len(self.pieces) == 1

    def render(self, values: dict[str, Any]) -> str:
        """The text for one recipient; KeyError names a missing variable."""
        pieces = self.pieces
        if len(pieces) == 1:
            return pieces[0]
        if len(pieces) == 3:  # one placeholder, the usual case
            value = values[pieces[1]]
            return pieces[0] + (value if isinstance(value, str) else str(value)) + pieces[2]
        out = pieces[:]
        for i in range(1, len(pieces), 2):
            value = values[pieces[i]]
            out[i] = value if isinstance(value, str) else str(value)
        return "".join(out)


def render(document: Any, values: dict[str, str]) -> Any:
    """Fill the placeholders in every string of a JSON document (an HTTP
    connector's body); a name without a value stays as it was written."""
    if isinstance(document, str):
        return PLACEHOLDER.sub(lambda m: values.get(m[1], m[0]), document)
    if isinstance(document, dict):
        return {k: render(v, values) for k, v in document.items()}
    if isinstance(document, list):
        return [render(v, values) for v in document]
    return document
