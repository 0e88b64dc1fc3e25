"""Caption metrics as the captioning benchmarks report them, computed by pycocoevalcap."""

from __future__ import annotations

import contextlib
import functools
import io
from vau.errors import BadInputError


@functools.cache
def _meteor():
    """One METEOR scorer per process: each instance starts a JVM that loads paraphrase tables (~13 s)."""
    from pycocoevalcap.meteor.meteor import Meteor

    return Meteor()


def caption_scores(predictions: dict[str, str], references: dict[str, list[str]]) -> dict[str, float]:
    """BLEU-1..4, METEOR, ROUGE-L and CIDEr of predicted captions against references.

    Texts are tokenised with pycocoevalcap's PTBTokenizer (Stanford's, via Java) and scored by
    its scorers, exactly as COCO-style caption benchmarks do. SPICE is not included: it
    downloads Stanford CoreNLP at first use, which an offline cluster cannot.

    Args:
        predictions: Sample id -> predicted text.
        references: Sample id -> reference texts (one or more); must hold every predicted id.

    Returns:
        ``{"BLEU-1": ..., "BLEU-4": ..., "METEOR": ..., "ROUGE-L": ..., "CIDEr": ...}`` (corpus level,
        on the 0-1 scale; CIDEr on its own 0-10 scale).

    Raises:
        ValueError: No predictions, a prediction without references, or an empty reference list.
    """
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    if not predictions:
        raise BadInputError("caption_scores: no predictions")
    missing = [k for k in predictions if not references.get(k)]
    if missing:
        raise BadInputError(f"caption_scores: no references for {len(missing)} prediction(s), e.g. {missing[0]!r}")
    # pycocoevalcap prints progress to stdout; keep evaluation output clean.
    with contextlib.redirect_stdout(io.StringIO()):
        tok = PTBTokenizer()
        res = tok.tokenize({k: [{"caption": v}] for k, v in predictions.items()})
        gts = tok.tokenize({k: [{"caption": r} for r in references[k]] for k in predictions})
        bleu, _ = Bleu(4).compute_score(gts, res)
        meteor, _ = _meteor().compute_score(gts, res)
        rouge, _ = Rouge().compute_score(gts, res)
        cider, _ = Cider().compute_score(gts, res)
    out = {f"BLEU-{i + 1}": float(b) for i, b in enumerate(bleu)}
    out.update({"METEOR": float(meteor), "ROUGE-L": float(rouge), "CIDEr": float(cider)})
    return out
