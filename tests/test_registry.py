"""The model registry: versions, resolving, cards, safetensors only, atomic registration."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from core.errors import UsageError
from training.registry import ModelRegistry

pytestmark = pytest.mark.fast

CARD = {"base_model": "SmolLM2-135M-Instruct", "metrics": {"eval_loss": 2.5},
        "dataset": {"kind": "chat", "counts": {"train": 7, "eval": 1}, "runs": [{"name": "run-a"}]}}


def adapter_folder(path: Path, scale: float = 1.0) -> Path:
    path.mkdir(parents=True)
    save_file({"lora_A": np.full((2, 4), scale, dtype=np.float32)}, str(path / "adapter_model.safetensors"))
    (path / "adapter_config.json").write_text(json.dumps({"r": 8, "peft_type": "LORA"}))
    (path / "tokenizer").mkdir()
    (path / "tokenizer" / "tokenizer.json").write_text("{}")
    (path / "README.md").write_text("PEFT's own card, replaced by the registry's\n")
    return path


def leftovers(registry: ModelRegistry) -> list[Path]:
    return list(registry.models.glob("*/*"))  # versions and temp folders


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "registry")


def test_register_copies_files_and_writes_the_card(registry: ModelRegistry, tmp_path: Path) -> None:
    model = registry.register("supporter", "adapter", adapter_folder(tmp_path / "out"), CARD)
    assert (model.name, model.version, model.ref, model.kind) == ("supporter", 1, "supporter:1", "adapter")
    assert model.path == registry.root / "models" / "supporter" / "1"
    weights = load_file(str(model.path / "adapter_model.safetensors"))
    assert weights["lora_A"].shape == (2, 4)
    assert (model.path / "tokenizer" / "tokenizer.json").is_file()
    card = json.loads((model.path / "card.json").read_text())
    assert card["base_model"] == "SmolLM2-135M-Instruct" and card["metrics"] == {"eval_loss": 2.5}
    assert card["dataset"]["kind"] == "chat" and card["kind"] == "adapter" and card["registered"]
    assert {f["path"] for f in card["files"]} == {"adapter_model.safetensors", "adapter_config.json",
                                                  "tokenizer/tokenizer.json"}
    readme = (model.path / "README.md").read_text()
    assert readme.startswith("# supporter:1") and "eval_loss" in readme and "SmolLM2" in readme


def test_versions_count_up_and_resolve_finds_latest_or_pinned(registry: ModelRegistry,
                                                               tmp_path: Path) -> None:
    for scale in (1.0, 2.0, 3.0):
        registry.register("supporter", "adapter", adapter_folder(tmp_path / f"out{scale}", scale), CARD)
    registry.register("selector", "scorer", adapter_folder(tmp_path / "scorer"), CARD)
    assert registry.versions("supporter") == [1, 2, 3]
    latest = registry.resolve("supporter")
    assert latest.version == 3
    assert load_file(str(latest.path / "adapter_model.safetensors"))["lora_A"][0, 0] == 3.0
    assert registry.resolve("supporter:1").version == 1
    assert [m.ref for m in registry.list()] == ["selector:1", "supporter:1", "supporter:2", "supporter:3"]
    assert registry.resolve("selector").kind == "scorer"


def test_unknown_names_and_versions_list_what_exists(registry: ModelRegistry, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="registered: none yet"):
        registry.resolve("supporter")
    registry.register("supporter", "adapter", adapter_folder(tmp_path / "a"), CARD)
    registry.register("supporter", "adapter", adapter_folder(tmp_path / "b"), CARD)
    with pytest.raises(UsageError) as caught:
        registry.resolve("seeker")
    message = str(caught.value)
    assert "no model 'seeker'" in message and "supporter (versions 1, 2)" in message and "\n" not in message
    with pytest.raises(UsageError, match="has no version 5; versions: 1, 2"):
        registry.resolve("supporter:5")
    with pytest.raises(UsageError, match="'name:version'"):
        registry.resolve("supporter:latest")


@pytest.mark.parametrize("pickled", ["pytorch_model.bin", "training_args.bin", "optimizer.pt",
                                     "weights.pth", "state.pkl", "last.ckpt"])
def test_files_that_need_pickle_are_refused(registry: ModelRegistry, tmp_path: Path, pickled: str) -> None:
    folder = adapter_folder(tmp_path / "out")
    (folder / pickled).write_bytes(b"\x80\x04not really")
    with pytest.raises(UsageError, match=f"need pickle to load: {pickled}; only safetensors"):
        registry.register("supporter", "adapter", folder, CARD)
    assert registry.versions("supporter") == [] and not leftovers(registry)


def test_a_folder_without_safetensors_or_card_fields_is_refused(registry: ModelRegistry,
                                                                tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text("{}")
    with pytest.raises(UsageError, match=r"no \*\.safetensors"):
        registry.register("scorer", "scorer", empty, CARD)
    with pytest.raises(UsageError, match="needs 'base_model'"):
        registry.register("scorer", "scorer", adapter_folder(tmp_path / "ok"), {"metrics": {}})
    with pytest.raises(UsageError, match="kind 'lora' is invalid"):
        registry.register("scorer", "lora", tmp_path / "ok", CARD)
    with pytest.raises(UsageError, match="name 'a/b' is invalid"):
        registry.register("a/b", "adapter", tmp_path / "ok", CARD)
    with pytest.raises(UsageError, match="not found"):
        registry.register("scorer", "scorer", tmp_path / "missing", CARD)


def test_a_failed_copy_leaves_no_version_behind(registry: ModelRegistry, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import training.registry as module

    def broken(*_args: object) -> None:
        raise OSError("disk full")

    folder = adapter_folder(tmp_path / "out")
    monkeypatch.setattr(module.shutil, "copyfile", broken)
    with pytest.raises(OSError, match="disk full"):
        registry.register("supporter", "adapter", folder, CARD)
    assert registry.versions("supporter") == [] and registry.list() == []
    assert not leftovers(registry)  # the temp folder is gone


@pytest.mark.parametrize("tamper", ["drop a pickle in", "change the weights", "remove a file"])
def test_a_folder_that_no_longer_matches_its_card_is_not_loaded(registry: ModelRegistry, tmp_path: Path,
                                                               tamper: str) -> None:
    from agents.models.registry import resolve_model

    model = registry.register("supporter", "adapter", adapter_folder(tmp_path / "out"), CARD)
    assert resolve_model(registry, "supporter", "adapter", CARD["base_model"], "model.adapter") == model
    if tamper == "drop a pickle in":
        (model.path / "adapter_model.bin").write_bytes(b"\x80\x04K\x01.")
        expected = "files not registered: adapter_model.bin"
    elif tamper == "change the weights":
        weights = {"lora_A": np.zeros((2, 4), dtype=np.float32)}
        save_file(weights, str(model.path / "adapter_model.safetensors"))
        expected = "changed since registered: adapter_model.safetensors"
    else:
        (model.path / "adapter_config.json").unlink()
        expected = "missing: adapter_config.json"
    with pytest.raises(UsageError, match=expected) as raised:
        resolve_model(registry, "supporter", "adapter", CARD["base_model"], "model.adapter")
    assert "\n" not in str(raised.value) and "it is not loaded" in str(raised.value)
