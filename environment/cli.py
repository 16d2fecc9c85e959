"""Command-line checks around Hydra: bad input is one line and exit code 2, no traceback."""

from __future__ import annotations

import contextlib
import importlib
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

from omegaconf import DictConfig, OmegaConf

from core.errors import SalonError, UsageError

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
HYDRA_FLAGS = {"-m", "--multirun", "--cfg", "-c", "--info", "--help", "-h", "--hydra-help",
               "--resolve", "--package", "-p", "--config-dir", "-cd", "--config-name", "-cn"}


@contextlib.contextmanager
def reports_user_errors() -> Iterator[None]:
    """Turn a SalonError into one line on stderr and its exit code."""
    try:
        yield
    except SalonError as error:
        print(f"salon: error: {error}", file=sys.stderr)
        sys.exit(error.exit_code)


def check_arguments(arguments: list[str]) -> None:
    """Catch unknown config-group options (`matching=nope`) and unknown keys before Hydra does,
    so the user gets one line naming the key and what is allowed."""
    overrides = [a for a in arguments if "=" in a and not a.startswith("-")]
    parsed = _parse(overrides)
    if not {"-m", "--multirun"} & set(arguments):
        _refuse_accidental_sweeps(parsed)
    for override in parsed:
        key = override.get_key_element().lstrip("+~")
        group = CONF_DIR / key
        # hydra/* groups (conf/hydra/launcher/slurm.yaml) also take their plugins' own options
        if group.is_dir() and "." not in key and not key.startswith("hydra/"):
            options = sorted(p.stem for p in group.glob("*.yaml"))
            for choice in _values(override):
                if choice not in options and choice != "null":
                    raise UsageError(f"{key}={choice} is not a known option; allowed: {', '.join(options)}")
    if any(o.startswith("resume=") and o != "resume=null" for o in overrides):
        _check_resume_overrides(overrides)
    check_config(_compose_first(parsed))


def _refuse_accidental_sweeps(parsed: list) -> None:
    """A comma outside brackets makes Hydra read free text as a sweep (`seeker=I lost my job,
    and I feel lost`); without -m that is a quoting mistake, so say how to quote."""
    for override in parsed:
        if override.is_sweep_override() and override.is_discrete_sweep():
            key = override.get_key_element()
            raise UsageError(f"{key}= holds a comma, which Hydra reads as a sweep: to pass text, quote the "
                             f"value inside the argument, e.g. '{key}=\"I lost my job, and I feel lost\"' "
                             "(the outer quotes for the shell); to sweep, add -m")


QUOTING = ("""to pass text with a comma or a quote, quote the value inside the argument, as in """
           """'seeker="I lost my job, and I feel lost"' or "seeker=\\"I'm lost\\"" (the outer quotes """
           """for the shell); a list of paths: 'training.runs=["a","b"]'""")


def _parse(overrides: list[str]) -> list:
    """Hydra's own override grammar (sweeps, lists, quoting), one argument at a time, so that a
    value it cannot read is one usage error naming that argument and how to quote it."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser, parsed = OverridesParser.create(), []
    for argument in overrides:
        try:
            parsed += parser.parse_overrides([argument])
        except HydraException as error:
            key, detail = argument.partition("=")[0], str(error).splitlines()[0]
            raise UsageError(f"{key}: Hydra cannot read `{argument}` ({detail}); {QUOTING}") from None
    return parsed


def _values(override) -> list[str]:
    """The option names an override picks: every value of a simple sweep, else its one value."""
    if override.is_sweep_override():
        return [] if override.is_discrete_sweep() is False else list(override.sweep_string_iterator())
    value = override.value()
    return [str(value)] if isinstance(value, str) else []


RESUME_OVERRIDES = ("simulation.rounds", "simulation.progress", "simulation.budget.tokens",
                    "simulation.budget.usd", "simulation.budget.prices")


def _check_resume_overrides(overrides: list[str]) -> None:
    """A resumed run keeps its saved config; only the number of rounds, the progress bars and
    the budget may change (e.g. to extend a finished run, or continue past a spent budget)."""
    for override in overrides:
        key = override.partition("=")[0].lstrip("+~")
        if key != "resume" and not key.startswith("hydra.") and key not in RESUME_OVERRIDES:
            raise UsageError(f"{key} cannot change when resuming: a resumed run keeps its saved "
                             f"config; allowed with resume: {', '.join(RESUME_OVERRIDES)}")


def check_config(cfg: DictConfig) -> None:
    """The task's own checks (`check` beside its `run`), before Hydra makes a run folder and
    before any model loads, so a bad value leaves no half-made run behind."""
    if cfg.resume:
        check_resume_folder(cfg.resume)
        return  # a resumed run uses its saved, already checked config
    task_module(cfg).check(cfg)


def task_module(cfg: DictConfig) -> ModuleType:
    """The module of `task._target_` (`environment.tasks.simulate.run` -> its module)."""
    return importlib.import_module(str(cfg.task._target_).rpartition(".")[0])


def _compose_first(parsed: list) -> DictConfig:
    """Compose the config with the first value of every sweep to surface unknown keys."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    first = [_first_value(o) for o in parsed if not o.get_key_element().lstrip("+~").startswith("hydra.")]
    try:
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            return compose("config", overrides=first)
    except (HydraException, OmegaConfBaseException) as error:
        message = str(error).splitlines()[0]
        unknown = re.match(r"Could not override '([^']+)'", message)
        if unknown:
            raise UsageError(_unknown_key(unknown.group(1), first)) from None
        raise UsageError(f"{message} (see `python run.py --help` for the config groups)") from None


def _unknown_key(key: str, first: list[str]) -> str:
    """`society.sizee` is not in the config: the keys its nearest existing parent does have
    (with the config-group options the command line chose)."""
    from hydra import compose, initialize_config_dir

    groups = [o for o in first if _is_group(o.partition("=")[0].lstrip("+~"))]
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=groups)
    parent = key.rpartition(".")[0]
    while parent and not isinstance(OmegaConf.select(cfg, parent), DictConfig):
        parent = parent.rpartition(".")[0]
    node = OmegaConf.select(cfg, parent) if parent else cfg
    known = sorted(k for k in node if not str(k).startswith("_"))
    where = f"keys of {parent}" if parent else "top-level keys"
    return (f"{key} is not a known key; the {where}: {', '.join(map(str, known))} "
            f"(see `python run.py --help`; +{key}=... adds a new key)")


def _is_group(key: str) -> bool:
    return "." not in key and (CONF_DIR / key).is_dir()


def _first_value(override) -> str:
    if not override.is_sweep_override():
        return override.input_line
    values = list(override.sweep_string_iterator()) if override.is_discrete_sweep() else []
    prefix = override.get_key_element()
    return f"{prefix}={values[0]}" if values else override.input_line.split("=", 1)[0] + "=null"


def with_resume_dir(argv: list[str]) -> list[str]:
    """`resume=<folder>` continues in that folder: Hydra writes there too, without
    overwriting the original run's saved config."""
    for argument in argv[1:]:
        if argument.startswith("resume=") and argument != "resume=null":
            folder = argument.partition("=")[2]
            return [*argv, f"hydra.run.dir={folder}", "hydra.output_subdir=null"]
    return argv


def saved_config(resume: str) -> Path:
    """The config.yaml of the run folder ``resume``; a UsageError if there is none."""
    saved = Path(resume).expanduser() / "config.yaml"
    if not saved.is_file():
        raise UsageError(f"resume={resume}: no Salon run there (missing {saved.name}); "
                         "give the folder of an earlier run")
    return saved


def check_resume_folder(resume: str) -> None:
    """The folder of `resume=` holds a Salon run: a saved config that names its task, and an
    episodes.sqlite (where there is one) that SQLite can read, checked without writing to it."""
    saved = saved_config(resume)
    if not _saved_task(saved):
        raise UsageError(f"resume={resume}: {saved.name} is not a Salon run's config (it names no task); "
                         "give the folder of an earlier run")
    database = saved.parent / "episodes.sqlite"
    if database.is_file():
        problem = _sqlite_problem(database)
        if problem:
            raise UsageError(f"resume={resume}: {database.name} is damaged ({problem}); it is not "
                             "changed: restore it from a copy, or start a new run")


def _saved_task(saved: Path) -> str:
    """The `task._target_` a saved config names; '' if the file is no YAML mapping or names none."""
    import yaml
    from omegaconf.errors import OmegaConfBaseException

    try:
        loaded = OmegaConf.load(saved)
    except (OSError, UnicodeDecodeError, yaml.YAMLError, OmegaConfBaseException):
        return ""
    return str(OmegaConf.select(loaded, "task._target_") or "") if isinstance(loaded, DictConfig) else ""


def _sqlite_problem(path: Path) -> str:
    """What SQLite's quick_check finds wrong with the file ('' if nothing). `immutable=1`
    opens it without a lock, a journal or WAL files, so the check writes nothing beside it."""
    import sqlite3
    from urllib.parse import quote

    try:
        connection = sqlite3.connect(f"file:{quote(str(path.resolve()))}?immutable=1", uri=True)
        try:
            rows = connection.execute("PRAGMA quick_check").fetchall()
        finally:
            connection.close()
    except sqlite3.DatabaseError as error:
        return str(error)
    return "" if rows == [("ok",)] else str(rows[0][0])


def resumed_config(cfg: DictConfig) -> DictConfig:
    """The saved config of the run being resumed, with the allowed overrides applied."""
    folder = Path(cfg.resume).expanduser()
    resumed = OmegaConf.load(saved_config(cfg.resume))
    resumed.resume = str(folder)
    resumed.paths.run_dir = str(folder)
    from hydra.core.hydra_config import HydraConfig

    given = {o.partition("=")[0].lstrip("+~") for o in HydraConfig.get().overrides.task}
    for key in RESUME_OVERRIDES:
        if key in given:
            OmegaConf.update(resumed, key, OmegaConf.select(cfg, key))
    return resumed
