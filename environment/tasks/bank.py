"""`task=bank`: write a character bank (template, LLM-rewritten, or imported)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf

from agents.bank import generate_template_bank, save_bank
from agents.bank_llm import rewrite_with_llm
from agents.importers import personachat_personas, read_personachat, read_profile
from agents.persona import Persona
from agents.reconstruction import Reconstructor, reconstruction_settings, summary
from core.errors import UsageError, is_whole, require
from environment.build import build_model

SOURCES = ("template", "personachat", "profile")


def check(cfg: DictConfig) -> None:
    """The source, generator, size and input file (a bad profile or Persona-Chat file fails here)."""
    settings = cfg.bank
    require(settings.source in SOURCES, "bank.source", f"one of {', '.join(SOURCES)}", settings.source)
    require(settings.generator in ("template", "llm"), "bank.generator", "template or llm",
            settings.generator)
    require(is_whole(settings.retries, 0), "bank.retries", "a whole number >= 0", settings.retries)
    require(settings.split in ("dev", "test"), "bank.split", "dev or test", settings.split)
    if settings.source == "template":
        require(isinstance(settings.per_type, int) and settings.per_type >= 1, "bank.per_type",
                "a whole number >= 1", settings.per_type)
        return
    if not settings.path:
        raise UsageError(f"bank.path is missing: bank.source={settings.source} reads a file")
    path = Path(to_absolute_path(settings.path))
    if settings.source == "personachat":
        read_personachat(path, settings.split)
    else:
        read_profile(path)
        reconstruction_settings(OmegaConf.to_container(cfg.reconstruction))


def run(cfg: DictConfig) -> None:
    settings = cfg.bank
    personas = _source_personas(cfg)
    if settings.generator == "llm" and settings.source == "template":
        personas, failed = rewrite_with_llm(personas, build_model(cfg), list(settings.llm_fields),
                                            settings.retries)
        print(f"salon: the chat model rewrote {len(personas) * len(settings.llm_fields) - failed} "
              f"fields; {failed} kept their template text (see extra.llm_failed_fields)")
    out = Path(to_absolute_path(settings.out)) if settings.out else Path(cfg.paths.run_dir) / "bank.jsonl"
    save_bank(personas, out)
    print(f"salon: wrote {len(personas)} characters to {out}")


def _source_personas(cfg: DictConfig) -> list[Persona]:
    settings = cfg.bank
    if settings.source == "template":
        # The generator is this task's only consumer of randomness, so it takes the seed as is:
        # seed 0 rewrites the shipped bank exactly (agents/bank.py).
        return generate_template_bank(settings.per_type, np.random.default_rng(cfg.seed))
    path = Path(to_absolute_path(settings.path))
    if settings.source == "personachat":
        return personachat_personas(read_personachat(path, settings.split))
    if not cfg.reconstruction.enabled:
        return [read_profile(path)]
    return [_reconstructed(cfg, path)]


def _reconstructed(cfg: DictConfig, path: Path) -> Persona:
    """Character-LLM's experience reconstruction with the configured chat model."""
    settings = reconstruction_settings(OmegaConf.to_container(cfg.reconstruction))
    persona = Reconstructor(build_model(cfg), settings).reconstruct(path)
    print(f"salon: {persona.name}: {summary(persona)}")
    return persona
