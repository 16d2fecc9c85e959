"""Checks of the pairing tasks that need no model, for `environment.cli.check_config` (before Hydra
makes a run folder), and building the configured policy with its UsageErrors left intact."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from environment.errors import SalonError

SIMULATING_TASKS = ("environment.simulation.simulate_task", "training.loop.loop_task")


def build_policy(cfg: DictConfig, embedder: Any = None) -> Any:
    """``instantiate(cfg.matching)``; Hydra wraps a constructor's error in an
    InstantiationException, so a SalonError (a bad ``matching.*`` value, a scorer trained on
    another base) is re-raised as itself: one line and its exit code, no traceback."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        shared = {"embedder": embedder} if embedder is not None and "embedder" in cfg.matching else {}
        return instantiate(cfg.matching, **shared)  # one MiniLM for the whole run
    except InstantiationException as error:
        if isinstance(error.__cause__, SalonError):
            raise error.__cause__ from None
        raise


def check_pairing(cfg: DictConfig) -> None:
    """task=match: seeker, k, turns, scorer; task=compare: the sweep holds runs; task=graph: the
    run folder and filters; simulating tasks: the policy builds (its settings, its scorer)."""
    target = str(OmegaConf.select(cfg, "task._target_") or "")
    if target == "matching.match_task.match_task":
        from matching.match_task import check_match

        check_match(cfg)
    elif target == "environment.compare.compare_task":
        from environment.compare import sweep_folder

        sweep_folder(cfg.runs)
    elif target == "environment.graph_view.graph_task":
        from environment.graph_view import check_graph

        check_graph(cfg)
    elif target in SIMULATING_TASKS:
        build_policy(cfg)
