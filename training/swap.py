"""Swapping trained models back in: registry refs in the config become loaded adapters and
scorers, after checking they were trained on the base model in use."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf

from agents.models.loading import EMBEDDED_NAME
from core.errors import UsageError
from training.registry import ModelRegistry, RegisteredModel

ROLE_KEYS = ("seeker", "supporter", "peer")


@dataclass(frozen=True)
class AdapterPlan:
    """Which adapters to load and who speaks with which: ``default`` for every character,
    ``roles`` per conversation role, ``cohort`` for a share of the characters (A/B)."""

    folders: dict[str, str] = field(default_factory=dict)
    default: str = ""
    roles: dict[str, str] = field(default_factory=dict)
    cohort: str = ""
    cohort_share: float = 0.0


def registry_of(cfg: DictConfig) -> ModelRegistry:
    return ModelRegistry(Path(to_absolute_path(cfg.paths.registry_root)))


def base_name(model_cfg: DictConfig) -> str:
    """The name of the base model a config loads, without loading it."""
    path = OmegaConf.select(model_cfg, "path")
    return Path(path).expanduser().name if path else EMBEDDED_NAME


def resolve(registry: ModelRegistry, ref: str, kind: str, base: str, key: str) -> RegisteredModel:
    """A registered model of ``kind`` trained on ``base``, or one line saying what is wrong."""
    found = registry.resolve(ref)
    if found.kind != kind:
        raise UsageError(f"{key}={ref}: {found.ref} is a {found.kind}, not a {kind}")
    trained_on = str(found.card.get("base_model", ""))
    if trained_on != base:
        raise UsageError(f"{key}={ref}: {found.ref} was trained on {trained_on!r}, but the base model "
                         f"here is {base!r}; train it on this base or choose another model")
    return found


def adapter_plan(cfg: DictConfig) -> AdapterPlan:
    wanted = {"model.adapter": OmegaConf.select(cfg, "model.adapter")}
    wanted |= {f"agents.roles.{r}.adapter": OmegaConf.select(cfg, f"agents.roles.{r}.adapter")
               for r in ROLE_KEYS}
    wanted["agents.cohort.adapter"] = OmegaConf.select(cfg, "agents.cohort.adapter")
    wanted = {k: str(v) for k, v in wanted.items() if v}
    if not wanted:
        return AdapterPlan()
    if "LocalChatModel" not in str(OmegaConf.select(cfg, "model._target_")):
        raise UsageError("adapters need the local model (model=local); an OpenAI-compatible server "
                         "serves its adapters under their own model names (model.model=...)")
    registry, base = registry_of(cfg), base_name(cfg.model)
    refs = {k: resolve(registry, v, "adapter", base, k) for k, v in wanted.items()}
    return AdapterPlan(
        folders={m.ref: str(m.path) for m in refs.values()},
        default=refs["model.adapter"].ref if "model.adapter" in refs else "",
        roles={r: refs[f"agents.roles.{r}.adapter"].ref for r in ROLE_KEYS
               if f"agents.roles.{r}.adapter" in refs},
        cohort=refs["agents.cohort.adapter"].ref if "agents.cohort.adapter" in refs else "",
        cohort_share=float(OmegaConf.select(cfg, "agents.cohort.share") or 0.0))
