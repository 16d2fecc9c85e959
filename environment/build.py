"""The composition root: the run's parts from config with Hydra's `instantiate` (shared by every
task). Config groups mirror constructors, so most parts are one `instantiate` call; this is the
one place that knows where in the config a part came from, so it names the key of a bad value."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import hydra.utils
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf

from agents.bank import DEFAULT_BANK, load_bank, select_characters
from agents.character import Character
from agents.critic import Critic
from agents.models.loading import EMBEDDED_NAME
from agents.models.registry import RegisteredModel, RegistryReader, resolve_model
from agents.persona import Persona
from agents.prompting import PromptBuilder
from core.errors import InvalidValue, SalonError, UsageError
from core.rng import COHORT, PERSONAS, RngTree
from core.seams import ChatModel, Embedder, MemoryStore, PairingPolicy
from environment.engine import ConversationEngine
from environment.society import SocietySettings
from memory.crossencoder import MINILM_NAME

ROLE_KEYS = ("seeker", "supporter", "peer")
COHORT_KEY = "cohort"  # in a character's persona.extra (characters.jsonl): "adapter" or "base"
_FULL_KEY = re.compile(r"^full_key: (\S+)$", re.M)


def instantiate(node: DictConfig, key: str, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate(node)``, with a bad value anywhere in it reported as one line
    naming its full config key (``society.attributes.attitude='angry' is invalid: ...``) instead
    of Hydra's wrapped traceback. ``key`` is where ``node`` sits in the config."""
    try:
        return hydra.utils.instantiate(node, **kwargs)
    except InstantiationException as error:
        raise _one_line(error, key) from None


def complete(partial: Callable[..., Any], key: str, **kwargs: Any) -> Any:
    """Call a config group's partial (`_partial_: true`) with what only the caller has; a bad
    value it reports is named by its full config key, as `instantiate` does."""
    try:
        return partial(**kwargs)
    except InvalidValue as error:
        raise error.at(key) from None


def _one_line(error: InstantiationException, key: str) -> Exception:
    cause = error.__cause__
    found = _FULL_KEY.search(str(error))
    where = found.group(1) if found else key
    if isinstance(cause, InvalidValue):
        return cause.at(where)
    if isinstance(cause, SalonError):
        return cause
    if type(cause).__name__ == "ValidationError":  # pydantic (the chat-model backends)
        return UsageError(_pydantic_line(cause, where))
    if isinstance(cause, TypeError | ValueError):
        return UsageError(f"{where}: {str(cause).splitlines()[0]}")
    return error


def _pydantic_line(error: Any, where: str) -> str:
    first = error.errors()[0]
    key = ".".join([where, *(str(p) for p in first.get("loc", ()))])
    message = re.sub(r"^Input should be ", "", str(first.get("msg", "bad value")))
    return f"{key}={first.get('input')!r} is invalid: allowed is {message[0].lower()}{message[1:]}"


def run_dir(cfg: DictConfig) -> Path:
    path = Path(cfg.paths.run_dir)
    path.mkdir(parents=True, exist_ok=True)
    return path


def bank_path(cfg: DictConfig) -> Path:
    return Path(hydra.utils.to_absolute_path(cfg.society.bank)) if cfg.society.bank else DEFAULT_BANK


def society_settings(cfg: DictConfig) -> SocietySettings:
    return instantiate(cfg.society, "society")


def choose_personas(cfg: DictConfig, rng: RngTree) -> list[Persona]:
    """``society.size`` characters from the bank, with the run's MIRACLE attributes."""
    settings = society_settings(cfg)
    chosen = select_characters(load_bank(bank_path(cfg)), settings.size, rng.stream(PERSONAS))
    return [p.with_attributes(settings.attributes) for p in chosen]


def build_embedder(cfg: DictConfig) -> Embedder:
    return instantiate(cfg.embedder, "embedder")


ADAPTER_BACKENDS = ("LocalChatModel", "LlamaCppChat", "VllmChat")  # the backends that load registry adapters


def scoring_model_config(cfg: DictConfig) -> DictConfig:
    """``cfg`` with a model that returns the log-likelihood of given replies (for perplexity).
    llama-server's chat endpoint does not, so model=llamacpp is scored in process on the same
    weights (the embedded GGUF, dequantised); an OpenAI-compatible server cannot be scored."""
    target = str(OmegaConf.select(cfg, "model._target_"))
    if target.endswith("LocalChatModel"):
        return cfg
    if not target.endswith("LlamaCppChat") or OmegaConf.select(cfg, "model.path"):
        raise UsageError("perplexity needs the log-likelihood of given replies, which an OpenAI-compatible "
                         "server does not return: evaluate with model=local (or model=llamacpp on the "
                         "embedded model, scored in process)")
    local = OmegaConf.load(Path(__file__).parents[1] / "conf" / "model" / "local.yaml")
    local.cache_dir = cfg.paths.cache_dir
    local.max_new_tokens = cfg.model.max_new_tokens
    local.adapter = OmegaConf.select(cfg, "model.adapter")
    merged = OmegaConf.merge(cfg, {"model": None})
    merged.model = local
    return merged


def build_model(cfg: DictConfig, plan: AdapterPlan | None = None) -> ChatModel:
    """The chat model, with every adapter the plan names loaded onto it (peft multi-adapter)."""
    plan = plan if plan is not None else adapter_plan(cfg)
    if not plan.folders:
        return instantiate(cfg.model, "model", **({"adapter": None} if "adapter" in cfg.model else {}))
    return instantiate(cfg.model, "model", adapters=plan.folders, adapter=plan.default)


def build_memory(cfg: DictConfig, embedder: Embedder, folder: Path) -> MemoryStore:
    """The memory store; with `memory.selector=<registered scorer>` a trained selector
    re-ranks a larger candidate set."""
    store = instantiate(cfg.memory.store, "memory.store", embedder=embedder, path=str(folder / "memory"))
    if not cfg.memory.selector:
        return store
    from memory.selector import MemorySelector, SelectedMemory

    return SelectedMemory(store, MemorySelector(str(selector_model(cfg).path)), cfg.memory.selector_fetch)


def selector_model(cfg: DictConfig) -> RegisteredModel:
    return resolve_model(registry_of(cfg), cfg.memory.selector, "scorer", MINILM_NAME, "memory.selector")


def build_critic(cfg: DictConfig, embedder: Embedder, model: ChatModel | None) -> Critic:
    """The critic partial, completed with the run's embedder and chat model (shared by its experts)."""
    return complete(instantiate(cfg.critic, "critic"), "critic", embedder=embedder, model=model)


def build_prompts(cfg: DictConfig) -> PromptBuilder:
    return instantiate(cfg.conversation.prompts, "conversation.prompts")


def build_engine(cfg: DictConfig, embedder: Embedder | None = None, **overrides: Any) -> ConversationEngine:
    """The conversation engine of `conversation.*`, its turn scorer sharing the run's embedder;
    ``overrides`` replace some of its settings. The embedder goes in at the call, not through
    `instantiate`, which would turn a dataclass into a config node."""
    if cfg.conversation.get("schedule") == "auto" and "schedule" not in overrides:
        overrides = {**overrides, "schedule": auto_schedule(cfg)}
    engine = instantiate(cfg.conversation, "conversation", _partial_=True, **overrides)
    return complete(engine, "conversation", embedder=embedder)


def auto_schedule(cfg: DictConfig) -> str:
    """`conversation.schedule=auto`: lockstep for the in-process model (the same batches every
    run, so the run is reproduced bit for bit; measured as fast as independent there), and
    independent for a server, which batches across episodes itself."""
    return "lockstep" if str(cfg.model.get("_target_", "")).endswith("LocalChatModel") else "independent"


def build_policy(cfg: DictConfig, embedder: Embedder | None = None) -> PairingPolicy:
    """The pairing policy; the run's embedder is shared with it (one MiniLM per run)."""
    shared = {"embedder": embedder} if embedder is not None and "embedder" in cfg.matching else {}
    return instantiate(cfg.matching, "matching", **shared)


def build_characters(personas: list[Persona], memory: MemoryStore, model: ChatModel,
                     plan: AdapterPlan | None = None) -> list[Character]:
    """Characters speak with the plan's default adapter; those of the A/B cohort (marked in
    their persona, see ``draw_cohort``) with the cohort adapter instead; per-role adapters
    apply on top."""
    plan = plan or AdapterPlan()
    return [Character(p, memory, model, adapter=plan.cohort if in_cohort(p) else plan.default,
                      cohort="adapter" if in_cohort(p) else "base", role_adapters=dict(plan.roles))
            for p in personas]


def draw_cohort(personas: list[Persona], plan: AdapterPlan, rng: RngTree) -> list[Persona]:
    """Mark ``plan.cohort_share`` of the personas (drawn from the cohort stream) as the A/B
    cohort, in ``persona.extra``: a resumed run reads them back from characters.jsonl."""
    if not plan.cohort:
        return personas
    size = round(plan.cohort_share * len(personas))
    chosen = {int(i) for i in rng.stream(COHORT).choice(len(personas), size=size, replace=False)}
    return [_with_cohort(p, "adapter" if i in chosen else "base") for i, p in enumerate(personas)]


def _with_cohort(persona: Persona, cohort: str) -> Persona:
    return replace(persona, extra={**persona.extra, COHORT_KEY: cohort})


def in_cohort(persona: Persona) -> bool:
    return persona.extra.get(COHORT_KEY) == "adapter"


@dataclass(frozen=True)
class AdapterPlan:
    """Which adapters to load and who speaks with which: ``default`` for every character,
    ``roles`` per conversation role, ``cohort`` for a share of the characters (A/B)."""

    folders: dict[str, str] = field(default_factory=dict)
    default: str = ""
    roles: dict[str, str] = field(default_factory=dict)
    cohort: str = ""
    cohort_share: float = 0.0


def registry_of(cfg: DictConfig) -> RegistryReader:
    return RegistryReader(Path(hydra.utils.to_absolute_path(cfg.paths.registry_root)))


def base_model_name(model_cfg: DictConfig) -> str:
    """The name of the base model a config loads, without loading it."""
    path = OmegaConf.select(model_cfg, "path")
    return Path(path).expanduser().name if path else EMBEDDED_NAME


def adapter_plan(cfg: DictConfig) -> AdapterPlan:
    """Registry refs in the config (`model.adapter`, `agents.roles.*.adapter`,
    `agents.cohort.adapter`) as adapters checked against the base model in use."""
    wanted = {"model.adapter": OmegaConf.select(cfg, "model.adapter")}
    wanted |= {f"agents.roles.{r}.adapter": OmegaConf.select(cfg, f"agents.roles.{r}.adapter")
               for r in ROLE_KEYS}
    wanted["agents.cohort.adapter"] = OmegaConf.select(cfg, "agents.cohort.adapter")
    wanted = {k: str(v) for k, v in wanted.items() if v}
    if not wanted:
        return AdapterPlan()
    if not str(OmegaConf.select(cfg, "model._target_")).endswith(ADAPTER_BACKENDS):
        raise UsageError("adapters need model=local or model=llamacpp; an OpenAI-compatible server "
                         "serves its adapters under their own model names (model.model=...)")
    registry, base = registry_of(cfg), base_model_name(cfg.model)
    refs = {k: resolve_model(registry, v, "adapter", base, k) for k, v in wanted.items()}
    return AdapterPlan(
        folders={m.ref: str(m.path) for m in refs.values()},
        default=refs["model.adapter"].ref if "model.adapter" in refs else "",
        roles={r: refs[f"agents.roles.{r}.adapter"].ref for r in ROLE_KEYS
               if f"agents.roles.{r}.adapter" in refs},
        cohort=refs["agents.cohort.adapter"].ref if "agents.cohort.adapter" in refs else "",
        cohort_share=float(OmegaConf.select(cfg, "agents.cohort.share") or 0.0))
