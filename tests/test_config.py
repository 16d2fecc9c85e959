"""Config groups mirror constructors: every option of every group composes, and every node that
builds an object instantiates (cheaply: models, embedders and stores load on first use). Task
options name a module with `check` and `run`, named after the option."""

from __future__ import annotations

import importlib
import shutil
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig

from agents.chat import ChatSettings
from agents.critic import Critic
from agents.models.servers import llama_server_path
from core.seams import ChatModel
from environment.engine import ConversationEngine
from environment.serve.state import ServeSettings
from environment.society import SocietySettings
from training.lora import LoraTrainingConfig
from training.scorers import CrossEncoderConfig

pytestmark = pytest.mark.fast
CONF = Path(__file__).resolve().parents[1] / "conf"
GROUPS = sorted(p.name for p in CONF.iterdir() if p.is_dir())
OPTIONS = [(group, option.stem) for group in GROUPS for option in sorted((CONF / group).glob("*.yaml"))]
SETTINGS_ONLY = {"bank", "eval", "interview", "loop", "experiment"}  # read by tasks, build nothing


SERVED = {"model=vllm": ("model.path=/models/any",), "model=llamacpp": ()}


def served_here(option: str) -> bool:
    """Whether this machine has the server a served model option starts."""
    return shutil.which("vllm") is not None if option == "vllm" else llama_server_path().is_file()


def composed(*overrides: str) -> DictConfig:
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def built(cfg: DictConfig, group: str, tmp_path: Path) -> list[object]:
    """The objects a group's nodes build (what `environment/build.py` builds from them)."""
    if group == "memory":
        return [instantiate(cfg.memory.store, embedder=instantiate(cfg.embedder), path=str(tmp_path))]
    if group == "matching":
        return [instantiate(cfg.matching, **({"embedder": None} if "embedder" in cfg.matching else {}))]
    if group == "critic":
        return [instantiate(cfg.critic)(embedder=instantiate(cfg.embedder), model=instantiate(cfg.model))]
    if group == "training":
        return [instantiate(cfg.training.lora), instantiate(cfg.training.scorer)(output=str(tmp_path))]
    if group == "conversation":
        from environment.build import build_engine

        return [build_engine(cfg)]  # `schedule: auto` is resolved there, by the model it serves
    return [instantiate(cfg[group])]


@pytest.mark.parametrize("group, option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_option_of_every_group_composes_and_builds(group: str, option: str, tmp_path: Path) -> None:
    cfg = composed(f"{group}={option}", *SERVED.get(f"{group}={option}", ()))
    if f"{group}={option}" in SERVED and not served_here(option):
        with pytest.raises(Exception, match=r"no llama-server at|vLLM is not installed"):
            built(cfg, group, tmp_path)  # one line naming how to get the server
        return
    if group in SETTINGS_ONLY:
        assert cfg[group] is not None if group != "experiment" else cfg.society.size >= 2
        return
    objects = built(cfg, group, tmp_path)
    assert objects and all(o is not None for o in objects)
    expected = {"chat": ChatSettings, "conversation": ConversationEngine, "critic": Critic,
                "serve": ServeSettings, "society": SocietySettings}
    if group in expected:
        assert isinstance(objects[0], expected[group])
    if group == "model":
        assert isinstance(objects[0], ChatModel)
    if group == "training":
        assert isinstance(objects[0], LoraTrainingConfig) and isinstance(objects[1], CrossEncoderConfig)
    if group == "matching":
        assert callable(objects[0]) and callable(objects[0].observe)
    if group == "task":
        assert callable(objects[0])


@pytest.mark.parametrize("option", sorted(p.stem for p in (CONF / "task").glob("*.yaml")))
def test_each_task_module_is_named_after_its_option_and_has_check_and_run(option: str) -> None:
    target = str(composed(f"task={option}").task._target_)
    module_name, _, function = target.rpartition(".")
    assert module_name.split(".")[-1] == option and function == "run"
    module = importlib.import_module(module_name)
    assert callable(module.check) and callable(module.run)
