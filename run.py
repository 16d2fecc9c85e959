#!/usr/bin/env python
"""Salon's one entry point: `python run.py task=<name> key=value ...` (Hydra)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Idle OpenMP threads sleep instead of spinning: on a shared 2-core machine spinning made
# torch steps 2-15x slower (measured); on an idle machine it costs nothing measurable.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

import sys

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig

from environment.cli import check_arguments, reports_user_errors, resumed_config, with_resume_dir
from environment.runtime import quiet_libraries


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    quiet_libraries()
    with reports_user_errors():
        if cfg.resume:
            cfg = resumed_config(cfg)
        task = instantiate(cfg.task)
        task(cfg)


if __name__ == "__main__":
    with reports_user_errors():
        check_arguments(sys.argv[1:])
    sys.argv = with_resume_dir(sys.argv)
    main()
