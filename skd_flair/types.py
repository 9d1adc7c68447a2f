"""Value types with ranges for configuration signatures: ``registry.check_values`` enforces them (pydantic, strict)
before anything is built, so ``check`` rejects ``temperature: -1`` as it rejects ``hidden_size: "sixty-four"``."""
from __future__ import annotations

from typing import Annotated

from annotated_types import Ge, Gt, Interval, Lt

Positive = Annotated[float, Gt(0)]
Count = Annotated[int, Ge(1)]
NonNegative = Annotated[int, Ge(0)]
Probability = Annotated[float, Interval(ge=0, le=1)]
Dropout = Annotated[float, Interval(ge=0), Lt(1)]

__all__ = ["Positive", "Count", "NonNegative", "Probability", "Dropout", "Ge", "Gt"]
