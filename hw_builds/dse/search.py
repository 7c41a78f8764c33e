"""The search: one option per layer, fastest first, then fewest LUT, then fewest BRAM_18K.

A dataflow pipeline runs at the pace of its slowest layer (FINN: throughput = clock / max cycles),
and its cost is the sum of its layers' costs. So for a cycle budget T each layer may take any
option with cycles <= T, and the cheapest selection under the fabric budget is a multiple-choice
knapsack over few layers with few non-dominated options each: solved exactly by dynamic
programming over Pareto sets of (LUT, BRAM_18K, URAM, DSP). Feasibility grows with T, so the
fastest feasible T is found by bisection over the cycle counts that occur.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from hw_builds.dse.space import COST_RESOURCES, LayerOption

INF = float("inf")


@dataclass(frozen=True)
class Selection:
    """One option per layer and the summed cost."""

    choice: dict  # layer name -> LayerOption
    cost: tuple[float, float, float, float]  # LUT, BRAM_18K, URAM, DSP

    @property
    def max_cycles(self) -> int:
        return max(o.cycles for o in self.choice.values())

    def folding(self) -> dict[str, dict]:
        """FINN's folding-config format (usable as finn.folding_configs)."""
        return {"Defaults": {}, **{name: dict(o.attrs) for name, o in self.choice.items()}}

    def resources(self) -> dict[str, float]:
        return dict(zip(COST_RESOURCES, self.cost))


def _pareto(states: list[tuple]) -> list[tuple]:
    """States (cost tuple, choices) not dominated in every resource; sorted by cost."""
    states.sort(key=lambda s: s[0])
    kept: list[tuple] = []
    for cost, choice in states:
        if any(all(k <= c for k, c in zip(kc, cost)) for kc, _ in kept):
            continue
        kept.append((cost, choice))
    return kept


def _cheapest_options(opts: list[LayerOption]) -> list[LayerOption]:
    """Within a cycle budget only cost matters: the options no other one beats in every resource."""
    return [c for _, c in _pareto([(o.cost, o) for o in opts])]


def cheapest(options: Mapping[str, list[LayerOption]], max_cycles: float,
             budget: Mapping[str, float] | None = None) -> Selection | None:
    """The fewest-LUT (then BRAM, URAM, DSP) selection whose every layer takes <= max_cycles and whose
    summed cost stays within ``budget`` (LUT, BRAM_18K, URAM, DSP; missing = unbounded); None if none.
    """
    limit = tuple(float((budget or {}).get(r, INF)) for r in COST_RESOURCES)
    states: list[tuple] = [((0.0, 0.0, 0.0, 0.0), ())]
    for name, opts in options.items():
        usable = _cheapest_options([o for o in opts if o.cycles <= max_cycles])
        if not usable:
            return None
        grown = []
        for cost, choice in states:
            for o in usable:
                new = tuple(a + b for a, b in zip(cost, o.cost))
                if all(n <= lim for n, lim in zip(new, limit)):
                    grown.append((new, choice + ((name, o),)))
        if not grown:
            return None
        states = _pareto(grown)
    cost, choice = min(states, key=lambda s: s[0])
    return Selection(dict(choice), cost)


def cycle_candidates(options: Mapping[str, list[LayerOption]], floor: float = 0) -> list[int]:
    """The cycle budgets worth trying: every option's cycle count at or above ``floor``, plus ceil(floor)."""
    values = {o.cycles for opts in options.values() for o in opts if o.cycles >= floor}
    if floor > 0:
        values.add(math.ceil(floor))
    return sorted(values)


def fastest(options: Mapping[str, list[LayerOption]], budget: Mapping[str, float],
            floor_cycles: float = 0) -> tuple[Selection | None, int | None]:
    """The fastest selection within ``budget`` whose cycle budget is not below ``floor_cycles`` (the
    I/O bound: faster than the DMA gains nothing), fewest LUT then BRAM at that speed.

    Returns (selection, cycle budget T), or (None, None) when no selection fits at any speed.
    """
    cands = cycle_candidates(options, floor_cycles)
    if not cands or cheapest(options, cands[-1], budget) is None:
        return None, None
    lo, hi = 0, len(cands) - 1  # cands[hi] feasible; find the smallest feasible index
    while lo < hi:
        mid = (lo + hi) // 2
        if cheapest(options, cands[mid], budget) is not None:
            hi = mid
        else:
            lo = mid + 1
    return cheapest(options, cands[lo], budget), cands[lo]


def binding_bound(options: Mapping[str, list[LayerOption]], budget: Mapping[str, float], t: int,
                  floor_cycles: float) -> dict:
    """Why the search could not go faster than cycle budget ``t``: the I/O bound, a layer that is
    fully unfolded (parallelism), or the fabric resources whose relaxation alone would allow it."""
    if floor_cycles > 0 and t <= math.ceil(floor_cycles):
        return {"bound": "io"}
    faster = [c for c in cycle_candidates(options) if c < t]
    if not faster:
        return {"bound": "parallelism", "layers": sorted(n for n, o in options.items() if min(x.cycles for x in o) >= t)}
    t_next = faster[-1]
    stuck = sorted(n for n, o in options.items() if min(x.cycles for x in o) > t_next)
    if stuck:
        return {"bound": "parallelism", "layers": stuck}
    alone = [r for r in COST_RESOURCES if cheapest(options, t_next, {**budget, r: INF}) is not None]
    return {"bound": "fabric", "resources": alone or [r for r in COST_RESOURCES if budget.get(r, INF) < INF]}


def unconstrained_minimum(options: Mapping[str, list[LayerOption]]) -> Selection:
    """The smallest design at any speed (every layer's cheapest option), to report a board too small."""
    return cheapest(options, max(o.cycles for opts in options.values() for o in opts))
