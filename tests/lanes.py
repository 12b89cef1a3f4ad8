"""The test lanes. A test's markers come from what it costs: `integration` when it starts a real server (Triton,
Prometheus, PostgreSQL), `slow` when it trains or exports a model, `fast` otherwise (conftest marks it).

Fixtures declare their cost once with @costs(...), and every test that uses them, directly or through other
fixtures, is marked; a test whose own body trains or starts a server says so with pytest.mark.slow or
pytest.mark.integration. A fast-lane test that starts an embedded Triton anyway fails, naming the rule.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable[..., object])

LANES = ("integration", "slow")


def costs(*markers: str) -> Callable[[F], F]:
    """Mark a fixture function with what using it costs; put it under @pytest.fixture."""
    unknown = set(markers) - set(LANES)
    assert not unknown, f"unknown lane {unknown}: use {LANES}"

    def mark(function: F) -> F:
        function.tuneship_costs = markers  # type: ignore[attr-defined]
        return function

    return mark
