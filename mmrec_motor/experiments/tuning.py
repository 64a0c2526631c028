"""The tuned protocol: ID and MOTOR each get the same number of combinations, chosen on validation.

Budget N (``--budget``). The backbone's grid (its yaml's ``hyper_parameters`` but ``seed``, as
MMRec's itertools.product order lists them, P combinations) is reduced to N evenly spaced points of
that list, b_k = grid[round(k (P - 1) / (N - 1))], k = 0..N-1 (all P when P <= N), so each grid key
keeps its range (BPR's seven reg weights 2.0 .. 1e-5 become 2.0, 0.1, 1e-3, 1e-5).

* ID side: b_0 .. b_{N-1}.
* MOTOR side: the same backbone points, the k-th paired with the (k mod Q)-th of MOTOR's own Q
  combinations (``motor_tuning_grid`` in configs/model/MOTOR.yaml, or a backbone yaml: a mapping
  key -> list of values, expanded as a product in the order written, or a list of combinations
  written out), so both sides train the same backbone settings and MOTOR's settings replace nothing
  the ID side gets.

MOTOR's search (``--motor-search``), with Q > 1 own combinations c_0 .. c_{Q-1} and the ID side's
N' = min(N, P) points:

* ``paired``: the k-th backbone point with c_{k mod Q}, as above. One stage, but a
  combination of MOTOR's that pays off only with a good backbone point may meet a weak one (BM3 on
  lfm2k: random init without fine cells, level with ID at the backbone's first point, met BM3's
  weak last point and lost 13%; docs/motor-design.md section 8).
* ``staged`` (the default): the backbone first. Stage 1 trains N' - Q + 1 evenly spaced backbone
  points with c_0 (MOTOR's defaults); stage 2 trains the stage-1 point with the best validation score with each of
  c_1 .. c_{Q-1}. N' runs in all, as the ID side. With the same count, stage 1 has Q - 1 backbone points
  fewer than the ID side (docs/benchmarks.md section 26). A side with fewer points than MOTOR has own
  combinations (N' < Q: LGMRec's one-point grid) trains b_0 with c_0 .. c_{N'-1}: stage 1 is b_0 with c_0,
  stage 2 the first N' - 1 of the others.

Each side reports, per seed, the test metrics of its combination with the best validation score
(``valid_metric``); the number of combinations each side had is part of every report.
"""
from __future__ import annotations

import itertools
from typing import Any, Dict, List, Mapping, Optional

from mmrec_motor.config import Config, ConfigError

SIDES = ("id", "motor")
SEARCHES = ("paired", "staged")


def backbone_points(config: Config, budget: int) -> List[Dict[str, Any]]:
    """N evenly spaced combinations of the backbone grid (all of them when there are at most N)."""
    if int(budget) < 1:
        raise ConfigError(f"the tuning budget must be >= 1 combination, got {budget}")
    names = [k for k in config.grid_keys() if k != "seed"]
    options = [config[k] if isinstance(config[k], list) else [config[k]] for k in names]
    product = [dict(zip(names, combo)) for combo in itertools.product(*options)]
    if len(product) <= budget:
        return product
    if budget == 1:
        return [product[0]]
    last = len(product) - 1
    return [product[round(k * last / (budget - 1))] for k in range(budget)]


def motor_points(config: Config) -> List[Dict[str, Any]]:
    """MOTOR's own combinations from ``motor_tuning_grid`` ({} -> one empty combination).

    Two forms: a mapping key -> list of values, expanded as a product in the order written
    ({motor_fine_items_per_cell: [4, 2]} -> 2 combinations), or a list of mappings, each one
    combination as written ([{motor_fine_items_per_cell: 2}, {motor_content: none}] -> those 2), for
    settings that pay off together on one dataset and apart on another."""
    spec = config["motor_tuning_grid"] or {}
    if isinstance(spec, list):
        if not all(isinstance(combo, Mapping) for combo in spec):
            raise ConfigError(f"config key 'motor_tuning_grid': a list must hold mappings of motor_* keys "
                              f"to values (one combination each), got {spec!r}")
        combos = [dict(combo) for combo in spec]
    elif isinstance(spec, Mapping):
        names = list(spec)
        options = [spec[k] if isinstance(spec[k], list) else [spec[k]] for k in names]
        combos = [dict(zip(names, combo)) for combo in itertools.product(*options)]
    else:
        raise ConfigError(f"config key 'motor_tuning_grid' must map motor_* keys to lists of values, "
                          f"or list combinations (mappings), got {spec!r}")
    for combo in combos:
        for name in combo:
            if not str(name).startswith("motor_"):
                raise ConfigError(f"motor_tuning_grid: key {name!r} is not a motor_* key")
    return combos


def tuning_plan(model: str, dataset: str, side: str, budget: int,
                overrides: Mapping[str, Any], search: str = "staged") -> List[Dict[str, Any]]:
    """The combinations one side trains: a list of override dicts (grid keys pinned, MOTOR keys and
    ``motor`` set), each a single-combination run. ``overrides`` are the run's other settings. With
    ``search='staged'`` the MOTOR side's list is its stage 1 (:func:`second_stage` gives the rest)."""
    if side not in SIDES:
        raise ConfigError(f"side must be one of {', '.join(SIDES)}, got {side!r}")
    if search not in SEARCHES:
        raise ConfigError(f"the MOTOR search must be one of {', '.join(SEARCHES)}, got {search!r}")
    config = Config(model, dataset, dict(overrides))
    points = backbone_points(config, budget)
    if side == "id":
        return [{**p, "motor": False} for p in points]
    own = motor_points(config)
    if search == "paired" or len(own) == 1:
        return [{**p, **own[k % len(own)], "motor": True} for k, p in enumerate(points)]
    first = max(1, len(points) - (len(own) - 1))
    return [{**p, **own[0], "motor": True} for p in backbone_points(config, first)]


def is_staged(model: str, dataset: str, overrides: Mapping[str, Any], search: str) -> bool:
    """Whether the MOTOR side of ``model`` on ``dataset`` has a stage 2 (staged search, Q > 1)."""
    return search == "staged" and len(motor_points(Config(model, dataset, dict(overrides)))) > 1


def second_stage(model: str, dataset: str, overrides: Mapping[str, Any],
                 stage_one: List[Dict[str, Any]], scores: List[float],
                 total: Optional[int] = None) -> List[Dict[str, Any]]:
    """The staged search's stage 2: the backbone keys of the stage-1 combination with the best
    validation score (``scores``, one per ``stage_one`` entry; ties: the earlier one) with each of
    MOTOR's own combinations but the first; with ``total`` (the side's whole count, the ID side's),
    only the first ``total - len(stage_one)`` of them."""
    if len(stage_one) != len(scores) or not stage_one:
        raise ValueError(f"second_stage: {len(stage_one)} stage-1 combinations and {len(scores)} scores")
    config = Config(model, dataset, dict(overrides))
    own = motor_points(config)
    best = max(range(len(scores)), key=lambda k: (scores[k], -k))
    backbone = {k: v for k, v in stage_one[best].items() if k != "motor" and k not in own[0]}
    others = own[1:] if total is None else own[1:1 + max(0, int(total) - len(stage_one))]
    return [{**backbone, **combo, "motor": True} for combo in others]
