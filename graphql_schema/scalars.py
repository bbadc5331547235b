"""Custom scalars, registered on the schema through ``StrawberryConfig.scalar_map``."""

from __future__ import annotations

from typing import NewType

import strawberry
from strawberry.types.scalar import ScalarDefinition

Long = NewType("Long", int)

SCALARS: dict[object, ScalarDefinition] = {
    Long: strawberry.scalar(
        name="Long",
        description="A 64-bit integer, such as epoch milliseconds (beyond GraphQL's 32-bit Int).",
        serialize=int,
        parse_value=int,
    ),
}
