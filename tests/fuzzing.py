"""What the fuzz tests share: Hypothesis's settings, and a byte stream cut into deliveries."""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st


def fuzz_settings(examples: int | None, default: int) -> settings:
    """``default`` fixed examples (the same every run), or ``--fuzz-examples`` random ones."""
    return settings(
        max_examples=examples or default,
        deadline=None,
        derandomize=not examples,
        suppress_health_check=list(HealthCheck),
        database=None,
    )


@st.composite
def deliveries(
    draw: st.DrawFn,
    inputs: st.SearchStrategy[bytes],
    pauses: Sequence[float],
    max_cuts: int = 5,
) -> tuple[list[bytes], list[float], bool]:
    """An input cut into pieces, the (virtual) pause before each, and whether to FIN."""
    data = bytes(draw(inputs))
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=max_cuts)))
    pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    waits = [draw(st.sampled_from(pauses)) for _ in pieces]
    return pieces, waits, draw(st.booleans())
