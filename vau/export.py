"""Exports: rebuild a run's model from its export (any family), merge LoRA, consolidate ZeRO checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from vau.io import atomic_dir
from vau.errors import ConfigError, NotFoundError


def find_export(source: str | Path) -> Path:
    """The export folder of ``source``: a run dir with ``export/`` or an export folder itself.

    Raises:
        NotFoundError: No ``config.yaml`` + ``model.safetensors`` there.
    """
    src = Path(source)
    export = src / "export" if (src / "export" / "config.yaml").is_file() else src
    if not (export / "config.yaml").is_file() or not (export / "model.safetensors").is_file():
        raise NotFoundError(f"{source}: no export here (expected config.yaml and model.safetensors, "
                            "or a run dir with export/)")
    return export


def load_export(source: str | Path) -> tuple[Any, Any, torch.nn.Module]:
    """Rebuilds a run's model from its export: ``(resolved config, task, model in eval mode)``.

    The model is built by the family's task from the export's ``config.yaml`` with the run's
    seed (the construction order of ``vau train``, so a random-init base matches) and the
    exported weights are loaded on top. No Lightning is involved.
    """
    from lightning.fabric.utilities.seed import seed_everything

    from vau.config import compose
    from vau.families import get_family
    from vau.lit.checkpoint import load_weights

    export = find_export(source)
    cfg = compose([], config_file=export / "config.yaml")
    seed_everything(cfg.run.seed, verbose=False)
    task = get_family(cfg.model.family).build_task(cfg)
    model = task.build_model()
    load_weights(model, export)
    return cfg, task, model.eval()


def merge_lora(source: str | Path, out: str | Path) -> Path:
    """Merges an export's LoRA adapter into its LLM and writes a standalone model folder.

    The model is rebuilt from the export's resolved config (``config.yaml``) with the run's
    seed — so a random-init base (tiny demo models) is the same one the run trained on; a
    pretrained base is read from ``model.llm.pretrained`` — then the exported weights are
    loaded and PEFT's ``merge_and_unload`` folds the adapter into the base linears.

    Args:
        source: A run directory (its ``export/`` is used) or an export folder.
        out: Folder to write: ``llm/`` (HF ``save_pretrained`` + tokenizer), ``visual.safetensors``
            (the non-LLM trained parts, if any) and ``config.yaml``.

    Raises:
        FileNotFoundError: No export (``config.yaml`` + ``model.safetensors``) at ``source``.
        ValueError: The exported model has no LoRA adapter.
    """
    from vau.config import to_yaml
    from vau.data.text.tokenizer import build_tokenizer

    cfg, task, model = load_export(source)
    llm = task.llm(model)
    if llm is None:
        raise ConfigError(f"{source}: the {cfg.model.family} model has no LLM to merge a LoRA adapter into")
    if not hasattr(llm, "merge_and_unload"):
        raise ConfigError(f"{source}: the model has no LoRA adapter to merge (model.llm.lora.enabled is false)")
    merged = llm.merge_and_unload()
    rest = {n: p.detach().contiguous() for n, p in model.named_parameters() if not n.startswith("llm.")}
    with atomic_dir(out) as tmp:
        merged.save_pretrained(str(tmp / "llm"))
        build_tokenizer(cfg.model.llm).save(tmp / "llm")
        if rest and llm is not model:
            save_file(rest, str(tmp / "visual.safetensors"))
        (tmp / "config.yaml").write_text(to_yaml(cfg))
    return Path(out)


def consolidate(checkpoint: str | Path, out: str | Path) -> Path:
    """Gathers a DeepSpeed ZeRO-2/3 checkpoint folder into one fp32 Lightning checkpoint file.

    Uses Lightning's ``convert_zero_checkpoint_to_fp32_state_dict`` (which reads the
    per-rank optimizer shards); the file is written under a temp name and renamed.

    Raises:
        FileNotFoundError: ``checkpoint`` is not a DeepSpeed checkpoint folder (no ``latest``).
    """
    from lightning.pytorch.utilities.deepspeed import convert_zero_checkpoint_to_fp32_state_dict

    from vau.io import atomic_path

    src = Path(checkpoint)
    if not (src / "latest").is_file():
        raise NotFoundError(f"{checkpoint}: not a complete DeepSpeed checkpoint folder (no 'latest' file)")
    with atomic_path(out) as tmp:
        convert_zero_checkpoint_to_fp32_state_dict(str(src), str(tmp))
    return Path(out)
