"""Reading a vendor's JSON object into draft values: JSON types checked, every problem kept."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class Fields:
    """One JSON object, read attribute by attribute under the vendor's names for them.

    A value of the wrong JSON type reads as absent and leaves a problem, kept with the draft
    attribute it concerns (for a nested object, the attribute holding it). The domain's rules then
    skip that attribute: one message per field, and every problem of a request in one answer.
    ``null`` reads as absent, as JavaScript clients send it for an unset field.
    """

    def __init__(
        self,
        body: Mapping[str, Any],
        names: Mapping[str, str] | None = None,
        *,
        problems: list[tuple[str, str]] | None = None,
        owner: str | None = None,
        label: str = "",
    ) -> None:
        self._body = body
        self._names = names or {}
        self._owner = owner
        self._label = label
        self.problems: list[tuple[str, str]] = [] if problems is None else problems

    def text(self, attribute: str, *, max_length: int | None = None) -> str | None:
        value = self._body.get(self._key(attribute))
        if value is None:
            return None
        if not isinstance(value, str):
            self._reject(attribute, "must be a string")
            return None
        if max_length is not None and len(value) > max_length:
            self._reject(attribute, f"must be at most {max_length} characters")
        return value

    def required_text(self, attribute: str) -> str | None:
        """A string the wire format's object cannot do without (an object's own parts)."""
        if self._body.get(self._key(attribute)) is None:
            self._reject(attribute, "is required")
            return None
        return self.text(attribute)

    def integer(self, attribute: str) -> int | None:
        value = self._body.get(self._key(attribute))
        if value is None:
            return None
        # JSON's true and false are not numbers, though Python's bool is an int.
        if isinstance(value, bool) or not isinstance(value, int):
            self._reject(attribute, "must be an integer")
            return None
        return value

    def object(self, attribute: str) -> Fields | None:
        value = self._body.get(self._key(attribute))
        if value is None:
            return None
        if not isinstance(value, dict):
            self._reject(attribute, "must be an object")
            return None
        return self._nested(attribute, value, f"{self._name(attribute)}.")

    def objects(self, attribute: str) -> list[Fields]:
        value = self._body.get(self._key(attribute))
        if value is None:
            return []
        if not isinstance(value, list):
            self._reject(attribute, "must be an array")
            return []
        items: list[Fields] = []
        for index, item in enumerate(value):
            label = f"{self._name(attribute)}[{index}]"
            if isinstance(item, dict):
                items.append(self._nested(attribute, item, f"{label}."))
            else:
                self.problems.append((self._owner or attribute, f"{label} must be an object"))
        return items

    def _nested(self, attribute: str, body: Mapping[str, Any], label: str) -> Fields:
        return Fields(body, problems=self.problems, owner=self._owner or attribute, label=label)

    def _key(self, attribute: str) -> str:
        return self._names.get(attribute, attribute)

    def _name(self, attribute: str) -> str:
        return self._label + self._key(attribute)

    def _reject(self, attribute: str, problem: str) -> None:
        self.problems.append((self._owner or attribute, f"{self._name(attribute)} {problem}"))
