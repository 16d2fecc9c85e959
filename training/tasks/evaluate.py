"""`task=evaluate eval=personachat eval.split=dev`: PersonaGPT's Persona-Chat table (perplexity
and F1) for the base model and registered adapters."""

from __future__ import annotations

from pathlib import Path

from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf

from agents.importers import read_personachat
from agents.models.registry import resolve_model
from core.errors import UsageError, is_whole
from environment import build
from environment.build import AdapterPlan, base_model_name, registry_of
from environment.validation import Check, check_values, whole
from training.evaluate import evaluate_model, personachat_examples, write_results

EVAL_CHECKS: list[Check] = [
    ("eval.split", lambda split: split in ("dev", "test"), "dev or test"),
    ("eval.dialogues", lambda count: count is None or is_whole(count, 1),
     "a whole number >= 1, or null for all"),
    ("eval.max_per_dialogue", whole(1), "a whole number >= 1"),
    ("eval.max_new_tokens", whole(1), "a whole number >= 1"),
]


def check(cfg: DictConfig) -> None:
    """The evaluation set exists and every adapter to compare resolves on this base model."""
    if cfg.eval.name != "personachat":
        raise UsageError(f"eval={cfg.eval.name!r} is unknown: allowed is personachat")
    check_values(cfg, EVAL_CHECKS)
    read_personachat(Path(to_absolute_path(cfg.eval.path)), cfg.eval.split)
    build.scoring_model_config(cfg)  # a server that returns no log-likelihoods stops here
    registry, base = registry_of(cfg), base_model_name(cfg.model)
    for ref in adapters_to_evaluate(cfg):
        resolve_model(registry, ref, "adapter", base, "eval.adapters")


def adapters_to_evaluate(cfg: DictConfig) -> list[str]:
    registry = registry_of(cfg)
    if cfg.eval.adapters is not None:
        return list(cfg.eval.adapters)
    base = base_model_name(cfg.model)
    return [m.ref for m in registry.list() if m.kind == "adapter" and m.card.get("base_model") == base
            and m.version == registry.versions(m.name)[-1]]


def run(cfg: DictConfig) -> None:
    path = Path(to_absolute_path(cfg.eval.path))
    dialogues = read_personachat(path, cfg.eval.split)[: cfg.eval.dialogues or None]
    examples = personachat_examples(dialogues, build.build_prompts(cfg), cfg.eval.max_per_dialogue)
    registry, base = registry_of(cfg), base_model_name(cfg.model)
    found = [resolve_model(registry, r, "adapter", base, "eval.adapters") for r in adapters_to_evaluate(cfg)]
    plan_cfg = OmegaConf.merge(build.scoring_model_config(cfg), {"model": {"adapter": None}})
    base_model = build.build_model(plan_cfg, AdapterPlan())
    results = [evaluate_model(base_model, examples, "", cfg.eval.max_new_tokens)]
    failures = []
    for model in found:  # one at a time: an adapter that does not load is reported, not fatal
        try:
            loaded = build.build_model(plan_cfg, AdapterPlan(folders={model.ref: str(model.path)}))
            results.append(evaluate_model(loaded, examples, model.ref, cfg.eval.max_new_tokens))
        except (OSError, ValueError, RuntimeError, KeyError) as error:
            failures.append(f"{model.ref}: failed to load ({str(error).splitlines()[0][:200]})")
    title = f"Persona-Chat {cfg.eval.split}: {len(dialogues)} dialogues, {len(examples)} replies"
    print(write_results(build.run_dir(cfg), results, title, failures))
