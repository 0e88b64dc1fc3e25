"""Learned text metrics of ECVA's Tabs. III-V, from local checkpoints in their released formats.

* :class:`BleurtScorer`: BLEURT (Sellam et al., 2020) from a folder in the layout of
  lucadiliello/bleurt-pytorch (``lucadiliello/BLEURT-20``, ``BLEURT-20-D12``, ``bleurt-base-128``, ...).
* :class:`MoverScorer`: MoverScore (Zhao et al., 2019) as ``moverscore_v2`` computes it, on a
  local BERT-family folder (the package's default is ``distilbert-base-uncased``).
* :class:`UniEvalScorer`: UniEval (Zhong et al., 2022) from a released T5 checkpoint
  (``MingZhong/unieval-fact`` as ECVA uses it, or ``MingZhong/unieval-sum``).

Each scorer checks its folder when built (a one-line error naming the config key) and loads
the model on first use. Weights are read as safetensors or with ``torch.load(weights_only=True)``;
no remote code runs.
"""

from __future__ import annotations

import functools
import json
import math
import string
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from vau.errors import BadInputError, ConfigError, NotFoundError


def _folder(path: str | Path | None, key: str, what: str) -> Path:
    """``path`` as a folder, else a one-line error naming ``key``."""
    if not path:
        raise ConfigError(f"{key} is null: set it to {what}")
    p = Path(path)
    if not p.is_dir():
        raise NotFoundError(f"{key}={path}: not a directory (expected {what})")
    return p


def _local_model(auto_model: Any, path: Path, device: str) -> tuple[Any, Any]:
    """Tokenizer and model (eval mode, on ``device``) of a local folder: no hub, no remote code."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)
    model = auto_model.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)
    return tok, model.to(device).eval()


def _batches(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), max(1, size)):
        yield items[i:i + max(1, size)]


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


# --------------------------------------------------------------------------------------- BLEURT

def _state_dict(path: Path, key: str) -> dict[str, Any]:
    """The tensors of a checkpoint folder: model.safetensors (or its shards), else pytorch_model.bin."""
    import torch
    from safetensors.torch import load_file

    if (path / "model.safetensors").is_file():
        return load_file(str(path / "model.safetensors"))
    index = path / "model.safetensors.index.json"
    if index.is_file():
        state: dict[str, Any] = {}
        for shard in sorted(set(json.loads(index.read_text())["weight_map"].values())):
            state.update(load_file(str(path / shard)))
        return state
    if (path / "pytorch_model.bin").is_file():
        # weights_only: a pickle that holds anything but tensors is refused, never executed
        return torch.load(path / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise NotFoundError(f"{key}={path}: no model.safetensors or pytorch_model.bin in the folder")


class BleurtScorer:
    """BLEURT scores from a checkpoint in bleurt-pytorch's layout.

    The ``bleurt-pytorch`` package (PyPI 0.0.1) does not import with transformers 5 (it needs
    ``find_pruneable_heads_and_indices``, which transformers removed), so its model is rebuilt
    here from transformers' own classes, which have the same layers: the checkpoints without
    ``embedding_size`` (bleurt-base/large/tiny) are a BERT with a one-output regression head
    on the pooled [CLS] state (``BertForSequenceClassification``); BLEURT-20* (RemBERT) add a
    projection from the ``embedding_size`` embeddings to the hidden size, which is RemBERT's
    ``embedding_hidden_mapping_in`` (``RemBertForSequenceClassification``). Tensor names are
    renamed ``bleurt.*`` -> ``bert.*`` / ``rembert.*`` and loaded strictly. Tokeniser as
    bleurt-pytorch's: SentencePiece ``spm.model`` (BLEURT-20*) through DeBERTa-v2's tokeniser
    (its ``BleurtSPTokenizer`` is that class), else the WordPiece ``vocab.txt`` / ``tokenizer.json``
    through BERT's. Input ``[CLS] reference [SEP] candidate [SEP]``; the score is the
    regression output, as ``BleurtScorer.score(references=, candidates=)`` of Google's BLEURT.

    Args:
        path: The checkpoint folder (``metrics.bleurt``).
        key: Config key named in errors.
        device: Torch device of the model.
        batch_size: Pairs per forward pass.
    """

    def __init__(self, path: str | Path | None, key: str = "metrics.bleurt", device: str = "cpu",
                 batch_size: int = 16) -> None:
        self.path = _folder(path, key, "a local BLEURT checkpoint folder (bleurt-pytorch layout, e.g. BLEURT-20)")
        self.key, self.device, self.batch_size = key, device, batch_size
        self._model: Any = None
        self._tok: Any = None
        self.max_length = 512

    def _load(self) -> None:
        from transformers import BertConfig, BertForSequenceClassification, RemBertConfig, RemBertForSequenceClassification

        config_file = self.path / "config.json"
        if not config_file.is_file():
            raise NotFoundError(f"{self.key}={self.path}: no config.json in the folder")
        c = json.loads(config_file.read_text())
        if c.get("model_type") != "bleurt":
            raise ConfigError(f"{self.key}={self.path}: config.json has model_type={c.get('model_type')!r}, "
                              "expected 'bleurt' (a bleurt-pytorch checkpoint)")
        common = {k: c[k] for k in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                                    "intermediate_size", "hidden_act", "max_position_embeddings", "type_vocab_size",
                                    "layer_norm_eps", "pad_token_id") if k in c}
        common["num_labels"] = 1
        if c.get("embedding_size") is None:
            model, prefix = BertForSequenceClassification(BertConfig(**common)), "bert"
        else:
            config = RemBertConfig(input_embedding_size=c["embedding_size"], output_embedding_size=c["embedding_size"],
                                   **common)
            model, prefix = RemBertForSequenceClassification(config), "rembert"
        state = {}
        for name, tensor in _state_dict(self.path, self.key).items():
            if name.endswith((".position_ids", ".token_type_ids")):
                continue  # index buffers the port saves; the models rebuild them
            if name.startswith("bleurt."):
                name = prefix + name[len("bleurt"):]
            state[name.replace(".encoder.embedding_projection.", ".encoder.embedding_hidden_mapping_in.")] = tensor
        result = model.load_state_dict(state, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise BadInputError(f"{self.key}={self.path}: the weights do not fit the BLEURT layout of its config.json "
                                f"(missing {result.missing_keys[:3]}, unexpected {result.unexpected_keys[:3]})")
        self._model = model.to(self.device).eval()
        self.max_length = int(c.get("max_position_embeddings", 512))
        self._tok = self._tokenizer()

    def _tokenizer(self) -> Any:
        if (self.path / "spm.model").is_file():
            from transformers import DebertaV2Tokenizer

            return DebertaV2Tokenizer.from_pretrained(str(self.path), local_files_only=True)
        if (self.path / "vocab.txt").is_file() or (self.path / "tokenizer.json").is_file():
            from transformers import BertTokenizer

            return BertTokenizer.from_pretrained(str(self.path), local_files_only=True)
        raise NotFoundError(f"{self.key}={self.path}: no tokenizer (spm.model, vocab.txt or tokenizer.json) in the folder")

    def score(self, references: Sequence[str], candidates: Sequence[str]) -> list[float]:
        """BLEURT of each candidate against its reference (pairs in order)."""
        import torch

        if len(references) != len(candidates):
            raise BadInputError(f"BLEURT: {len(references)} reference(s) for {len(candidates)} candidate(s)")
        if self._model is None:
            self._load()
        out: list[float] = []
        pairs = list(zip(references, candidates))
        for batch in _batches(pairs, self.batch_size):
            enc = self._tok([r for r, _ in batch], [c for _, c in batch], padding="longest", truncation=True,
                            max_length=self.max_length, return_tensors="pt")
            with torch.no_grad():
                logits = self._model(**{k: v.to(self.device) for k, v in enc.items()}).logits
            out.extend(float(x) for x in logits[:, 0].cpu())
        return out


# ----------------------------------------------------------------------------------- MoverScore

def idf_weights(docs: Sequence[Sequence[int]]) -> tuple[dict[int, float], float]:
    """moverscore_v2's ``get_idf_dict``: idf(t) = log((N+1)/(df(t)+1)) over ``docs`` of token ids,
    and the weight of an id no doc holds, log(N+1)."""
    df = Counter(t for doc in docs for t in set(doc))
    n = len(docs)
    return {t: math.log((n + 1) / (c + 1)) for t, c in df.items()}, math.log(n + 1)


def earth_movers(a: Any, b: Any, cost: Any) -> float:
    """Exact optimal-transport cost between histograms ``a`` and ``b`` (each summing to 1), POT's ``ot.emd2``."""
    import ot

    return float(ot.emd2(a, b, cost))


class MoverScorer:
    """MoverScore as ``moverscore_v2.word_mover_score`` computes it, on a local BERT-family folder.

    The PyPI ``moverscore`` package loads ``distilbert-base-uncased`` from the Hub onto
    ``cuda:0`` when it is imported, so it cannot run offline or on a CPU; its computation is
    written out here. Per text: ``[CLS] + tokenize(text)[:max_len-2] + [SEP]``, embedded by the
    model's last layer; a token is dropped (weight 0) when it is a stop word, a subword
    (contains ``##``) or a punctuation character. Weights are IDF over the texts scored at once
    (references' IDF from the references, hypotheses' from the hypotheses, as its README
    shows; ``[CLS]``/``[SEP]``, in every text, get 0), normalised to sum 1; the cost between
    tokens is the Euclidean distance of the L2-normalised embeddings; score = 1 - EMD.
    Differences: the EMD is POT's exact solver (``ot.emd2``) instead of ``pyemd`` (the same
    optimum), distances are computed in float64 (the original's float32 ``baddbmm`` adds
    ~1e-4 of noise), and a text with no weighted token scores 0 (the original would give
    1 - 0 = 1 to, e.g., an empty answer).

    Args:
        path: Local folder of a BERT-family encoder and its tokenizer (``metrics.moverscore``).
        key: Config key named in errors.
        device: Torch device of the model.
        batch_size: Texts per forward pass.
        idf: IDF weights (True, as the paper's MoverScore) or uniform weights 1.
        stop_words: Tokens given weight 0 (moverscore_v2's default: none).
    """

    def __init__(self, path: str | Path | None, key: str = "metrics.moverscore", device: str = "cpu",
                 batch_size: int = 16, idf: bool = True, stop_words: Iterable[str] = ()) -> None:
        self.path = _folder(path, key, "a local BERT-family model folder (e.g. distilbert-base-uncased)")
        self.key, self.device, self.batch_size, self.idf = key, device, batch_size, idf
        self.stop_words = frozenset(stop_words)
        self._model: Any = None
        self._tok: Any = None

    def _load(self) -> None:
        from transformers import AutoModel

        self._tok, self._model = _local_model(AutoModel, self.path, self.device)
        limits = [self._tok.model_max_length, getattr(self._model.config, "max_position_embeddings", 512)]
        self.max_len = min(int(x) for x in limits if x and x < 10**6)

    def tokens(self, text: str) -> list[str]:
        """``[CLS] + tokenize(text) + [SEP]``, truncated to the model's length."""
        if self._tok is None:
            self._load()
        return [self._tok.cls_token, *self._tok.tokenize(text)[:self.max_len - 2], self._tok.sep_token]

    def _embed(self, token_lists: Sequence[Sequence[str]]) -> list[Any]:
        """Last-layer embeddings (float64 numpy, one row per token) of each token list."""
        import torch

        out = []
        for batch in _batches(token_lists, self.batch_size):
            ids = [self._tok.convert_tokens_to_ids(list(t)) for t in batch]
            width = max(map(len, ids))
            pad = self._tok.pad_token_id or 0
            input_ids = torch.tensor([i + [pad] * (width - len(i)) for i in ids], device=self.device)
            mask = torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i in ids], device=self.device)
            with torch.no_grad():
                hidden = self._model(input_ids=input_ids, attention_mask=mask).last_hidden_state
            out.extend(hidden[j, :len(i)].double().cpu().numpy() for j, i in enumerate(ids))
        return out

    def _weights(self, tokens: Sequence[Sequence[str]]) -> list[Any]:
        import numpy as np

        ids = [self._tok.convert_tokens_to_ids(list(t)) for t in tokens]
        idf, unseen = idf_weights(ids) if self.idf else ({}, 1.0)
        punctuation = set(string.punctuation)
        return [np.array([0.0 if (w in self.stop_words or "##" in w or w in punctuation) else idf.get(i, unseen)
                          for w, i in zip(t, row)]) for t, row in zip(tokens, ids)]

    def score(self, references: Sequence[str], hypotheses: Sequence[str]) -> list[float]:
        """MoverScore of each hypothesis against its reference (pairs in order; IDF over these lists)."""
        import numpy as np

        if len(references) != len(hypotheses):
            raise BadInputError(f"MoverScore: {len(references)} reference(s) for {len(hypotheses)} hypothesis(es)")
        ref_tok = [self.tokens(t) for t in references]
        hyp_tok = [self.tokens(t) for t in hypotheses]
        ref_w, hyp_w = self._weights(ref_tok), self._weights(hyp_tok)
        ref_e, hyp_e = self._embed(ref_tok), self._embed(hyp_tok)
        scores = []
        for rw, hw, re_, he in zip(ref_w, hyp_w, ref_e, hyp_e):
            keep_r, keep_h = rw > 0, hw > 0
            if not keep_r.any() or not keep_h.any():
                scores.append(0.0)
                continue
            x = re_[keep_r] / (np.linalg.norm(re_[keep_r], axis=-1, keepdims=True) + 1e-30)
            y = he[keep_h] / (np.linalg.norm(he[keep_h], axis=-1, keepdims=True) + 1e-30)
            cost = np.sqrt(np.maximum(((x[:, None, :] - y[None, :, :]) ** 2).sum(-1), 1e-30))
            a, b = rw[keep_r] / rw[keep_r].sum(), hw[keep_h] / hw[keep_h].sum()
            scores.append(1.0 - earth_movers(a, b, cost))
        return scores


# -------------------------------------------------------------------------------------- UniEval

UNIEVAL_PROMPTS: dict[str, tuple[str, bool]] = {
    "consistency": ("question: Is this claim consistent with the document? </s> claim: {output} </s> document: {source}",
                    True),
    "fluency": ("question: Is this a fluent paragraph? </s> paragraph: {output}", True),
    "coherence": ("question: Is this a coherent summary to the document? </s> summary: {output} </s> document: {source}",
                  False),
    "relevance": ("question: Is this summary relevant to the reference? </s> summary: {output} </s> reference: {source}",
                  False),
}
"""UniEval's boolean questions (its utils.add_question, summarization/fact tasks) per dimension, and
whether the dimension is scored per sentence of the output (then averaged) or on the whole text.
``{source}`` is the human answer: the document for consistency/coherence, the reference for relevance."""


@functools.cache
def _sentence_splitter() -> Any:
    from nltk.tokenize.punkt import PunktSentenceTokenizer

    # UniEval calls nltk.sent_tokenize, which needs the trained "punkt" data; NLTK data cannot be
    # downloaded offline, so the untrained Punkt splitter (sentence-final . ! ? with Punkt's
    # rules, no learned abbreviations) is used: same splits except after abbreviations like "Mr.".
    return PunktSentenceTokenizer()


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text`` for the per-sentence dimensions; an empty text is one empty sentence
    (UniEval would divide by zero sentences)."""
    return _sentence_splitter().tokenize(text) or [text]


class UniEvalScorer:
    """UniEval: P(Yes) / (P(Yes) + P(No)) of a T5 evaluator's first decoded token, per boolean question.

    As UniEval's ``UniEvaluator.score``: the question is encoded (truncated to ``max_length``),
    the decoder gets only its start token, and the softmax over the vocabulary at that step
    gives the probabilities of the first token of "Yes" and of "No". A per-sentence dimension
    (consistency, fluency) averages the scores of the output's sentences, as its evaluators do.
    ECVA's eval_unieval.py uses the ``fact`` evaluator (``MingZhong/unieval-fact``), dimension
    consistency, with the human answer as the document and the model's answer as the claim.

    Args:
        path: Local folder of the T5 checkpoint and its tokenizer (``metrics.unieval``).
        key: Config key named in errors.
        device: Torch device of the model.
        batch_size: Questions per forward pass (UniEval's default 8).
        max_length: Input tokens at most (UniEval's default 1024).
    """

    def __init__(self, path: str | Path | None, key: str = "metrics.unieval", device: str = "cpu",
                 batch_size: int = 8, max_length: int = 1024) -> None:
        self.path = _folder(path, key, "a local UniEval T5 folder (e.g. MingZhong/unieval-fact)")
        self.key, self.device, self.batch_size, self.max_length = key, device, batch_size, max_length
        self._model: Any = None
        self._tok: Any = None

    def _load(self) -> None:
        from transformers import AutoModelForSeq2SeqLM

        self._tok, self._model = _local_model(AutoModelForSeq2SeqLM, self.path, self.device)
        self.yes_id = self._tok("Yes")["input_ids"][0]
        self.no_id = self._tok("No")["input_ids"][0]

    def yes_probability(self, questions: Sequence[str]) -> list[float]:
        """P(Yes) / (P(Yes) + P(No)) of each question."""
        import torch

        if self._model is None:
            self._load()
        out: list[float] = []
        start = self._model.config.decoder_start_token_id
        for batch in _batches(list(questions), self.batch_size):
            enc = self._tok(list(batch), max_length=self.max_length, truncation=True, padding=True, return_tensors="pt")
            decoder = torch.full((len(batch), 1), start, dtype=torch.long, device=self.device)
            with torch.no_grad():
                logits = self._model(input_ids=enc["input_ids"].to(self.device),
                                     attention_mask=enc["attention_mask"].to(self.device),
                                     decoder_input_ids=decoder).logits[:, 0]
            probs = logits.float().softmax(-1)
            yes, no = probs[:, self.yes_id], probs[:, self.no_id]
            out.extend(float(x) for x in (yes / (yes + no)).cpu())
        return out

    def score(self, outputs: Sequence[str], sources: Sequence[str],
              dimensions: Sequence[str] = ("consistency",)) -> dict[str, list[float]]:
        """Per dimension, the score of each output given its source (the human answer).

        Raises:
            ConfigError: A dimension UniEval has no question for.
        """
        if len(outputs) != len(sources):
            raise BadInputError(f"UniEval: {len(outputs)} output(s) for {len(sources)} source(s)")
        unknown = [d for d in dimensions if d not in UNIEVAL_PROMPTS]
        if unknown:
            raise ConfigError(f"{self.key}_dimensions: unknown {unknown[0]!r}; expected some of "
                              f"{', '.join(UNIEVAL_PROMPTS)}")
        result: dict[str, list[float]] = {}
        for dim in dimensions:
            template, per_sentence = UNIEVAL_PROMPTS[dim]
            pieces = [split_sentences(o) if per_sentence else [o] for o in outputs]
            questions = [template.format(output=p, source=s) for ps, s in zip(pieces, sources) for p in ps]
            flat = self.yes_probability(questions)
            scores, i = [], 0
            for ps in pieces:
                scores.append(_mean(flat[i:i + len(ps)]))
                i += len(ps)
            result[dim] = scores
        return result
