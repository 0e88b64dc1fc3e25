"""Configs of `vau infer` (predictions of an exported model) and `vau eval` (metrics): the shared keys.

A family adds its own keys by subclassing :class:`InferConfig` / :class:`EvalConfig`
(``Family.infer_config`` / ``Family.eval_config``; AnomShield's ECVA settings are in
``vau.families.anomshield.tools``). Shared building blocks of those (decoding, judges) live here.

These are tool configs, not run configs: composed by :func:`vau.config.loader.compose_tool`
from the schema defaults -> ``conf/infer/*.yaml`` or ``conf/eval/*.yaml`` (and the files their
``defaults:`` name) -> ``key=value`` overrides.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Dict, List, Optional

@dataclass
class GenerationConfig:
    """Decoding settings of the answering model (``generate`` keyword arguments)."""

    max_new_tokens: int = 256
    """New tokens per answer at most."""
    do_sample: bool = False
    """Sample (true) or greedy/beam decoding (false)."""
    temperature: float = 1.0
    """Sampling temperature (do_sample only)."""
    top_p: float = 1.0
    """Nucleus sampling mass (do_sample only)."""
    num_beams: int = 1
    """Beam width (greedy when 1)."""
    repetition_penalty: float = 1.0
    """HF repetition penalty (1 = none)."""


@dataclass
class JudgeConfig:
    """An LLM judge: a local HF causal LM or an OpenAI-compatible HTTP endpoint."""

    kind: str = "hf"
    """Backend: a key of ``vau.eval.judge.JUDGES`` (hf, http); was ``judge.backend``."""
    model: Optional[str] = None
    """hf: local model folder (from_pretrained); http: the model name sent to the endpoint."""
    gguf_file: Optional[str] = None
    """hf: a GGUF file inside ``model`` to load (transformers' gguf support); null = safetensors."""
    trust_remote_code: bool = False
    """hf: allow model code from the folder (only for models you trust)."""
    dtype: str = "float32"
    """hf: weights dtype (float32, bfloat16, float16)."""
    device: str = "cpu"
    """hf: device of the judge model (cpu, cuda, cuda:1)."""
    base_url: Optional[str] = None
    """http: endpoint base URL, e.g. https://api.openai.com/v1 (``/chat/completions`` is appended)."""
    api_key_env: str = "OPENAI_API_KEY"
    """http: environment variable holding the API key (keys never live in files)."""
    max_new_tokens: int = 256
    """Tokens per judge answer at most."""
    temperature: float = 0.0
    """Judge sampling temperature; 0 = greedy (reproducible)."""
    timeout_s: float = 120.0
    """http: seconds per request before it counts as failed."""
    retries: int = 5
    """http: attempts after the first on errors (429, 5xx, network), with exponential backoff."""
    backoff_s: float = 2.0
    """http: first backoff in seconds (doubles per retry)."""
    cache_dir: Optional[str] = None
    """Folder of cached judge answers keyed by a hash of the call; null = ``<out>/judge_cache``."""


@dataclass
class PredictTrainerConfig:
    """The Lightning Trainer of `vau infer` (the keys `vau train` spells ``trainer.*``)."""

    accelerator: str = "auto"
    """Lightning accelerator (auto, cpu, gpu)."""
    devices: Any = 1
    """Devices per node: an int, a list of indices or 'auto'."""
    num_nodes: int = 1
    """Nodes (SLURM: one task per device)."""
    precision: str = "32-true"
    """Lightning precision of the model at inference (bf16-true on GPUs)."""


@dataclass
class InferConfig:
    """`vau infer`: predictions of an exported model; a family adds its own keys (``Family.infer_config``)."""

    model: str = "???"
    """Export folder (config.yaml + model.safetensors) or a run dir with export/."""
    shards: Optional[str] = None
    """Test shards (brace pattern, glob, folder)."""
    out: str = "???"
    """Output folder: predictions.jsonl (+ per-rank parts while running)."""
    batch_size: int = 4
    """Samples predicted together per device."""
    num_workers: int = 2
    """Decoding worker processes per device."""
    trainer: PredictTrainerConfig = field(default_factory=PredictTrainerConfig)
    """Devices and precision."""
    seed: int = 0
    """Seed of sampled decoding."""
    progress: Optional[bool] = None
    """Progress bar; null = when stderr is a terminal."""

    RENAMED: ClassVar[Dict[str, str]] = {k: f"trainer.{k}" for k in ("accelerator", "devices", "num_nodes", "precision")}
    """Old key -> its spelling now (``devices=2`` reads as ``trainer.devices=2``, as `vau train` spells it)."""


@dataclass
class EvalConfig:
    """`vau eval`: predictions -> results JSON, markdown table, wandb table; a family adds its keys."""

    predictions: List[str] = field(default_factory=list)
    """predictions.jsonl files (or folders holding one), one per model row."""
    names: List[str] = field(default_factory=list)
    """Row name per predictions file; empty = the file's folder name."""
    family: Optional[str] = None
    """Family whose predictions these are; null = the one ``infer.json`` beside them names (else anomshield)."""
    references: Optional[str] = None
    """JSONL of {"id", "reference", ...} overriding the references stored in the predictions."""
    out: str = "???"
    """Output folder: results.json, results.md (+ what the family's evaluator writes)."""
    wandb: str = "offline"
    """wandb mode for the results table: offline, online or disabled."""
    wandb_project: Optional[str] = None
    """wandb project; null = the evaluated models' training runs' (where their group is), else vau."""
    table_samples: int = 20
    """Sample predictions per model in the wandb table."""
    progress: Optional[bool] = None
    """Progress bar; null = when stderr is a terminal."""
