"""BLEURT, MoverScore and UniEval from tiny random checkpoints saved in the released layouts,
each checked against an independent computation (the source model's own forward, an LP solver,
UniEval's labels-based forward)."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from vau.errors import BadInputError, ConfigError, NotFoundError
from vau.metrics.learned import (
    BleurtScorer,
    MoverScorer,
    UniEvalScorer,
    earth_movers,
    idf_weights,
    split_sentences,
)

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = ["a", "man", "breaks", "the", "shop", "window", "with", "rock", "and", "runs", "away", "two", "car",
         "crash", "at", "crossing", "dog", "barks", "fire", "in", "kitchen", "people", "fight", "street"]
VOCAB = [*SPECIAL, ".", ",", "!", *WORDS, "##s", "##ed"]
PAIRS = [("a man breaks the shop window with a rock .", "a man breaks the window and runs away ."),
         ("two cars crash at the crossing", "a car crash at the crossing !"),
         ("a dog barks", "people fight in the street"),
         ("fire in the kitchen", "fire in the kitchen")]


def _ids(text: str) -> list[int]:
    """WordPiece ids of a text whose words are all in VOCAB, or a VOCAB word + ##s (hand-tokenised)."""
    out = []
    for w in text.split():
        if w in VOCAB:
            out.append(VOCAB.index(w))
        else:
            assert w.endswith("s") and w[:-1] in VOCAB, w
            out += [VOCAB.index(w[:-1]), VOCAB.index("##s")]
    return out


def _pair_ids(ref: str, cand: str, cls: int, sep: int, encode) -> tuple[list[int], list[int]]:
    a, b = encode(ref), encode(cand)
    return [cls, *a, sep, *b, sep], [0] * (len(a) + 2) + [1] * (len(b) + 1)


def _bleurt_config(c, embedding_size=None) -> dict:
    # the keys bleurt-pytorch's BleurtConfig writes (model_type "bleurt")
    return {"architectures": ["BleurtForSequenceClassification"], "model_type": "bleurt", "vocab_size": c.vocab_size,
            "embedding_size": embedding_size, "hidden_size": c.hidden_size, "num_hidden_layers": c.num_hidden_layers,
            "num_attention_heads": c.num_attention_heads, "intermediate_size": c.intermediate_size,
            "hidden_act": c.hidden_act, "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
            "max_position_embeddings": c.max_position_embeddings, "type_vocab_size": c.type_vocab_size,
            "initializer_range": 0.02, "layer_norm_eps": c.layer_norm_eps, "pad_token_id": 0,
            "classifier_dropout": None, "tie_word_embeddings": False, "position_embedding_type": "absolute"}


def _bleurt_state(model, prefix: str) -> dict[str, torch.Tensor]:
    """The model's tensors under bleurt-pytorch's names (+ the position_ids buffer it saves)."""
    state = {}
    for k, v in model.state_dict().items():
        k = "bleurt" + k[len(prefix):] if k.startswith(prefix + ".") else k
        state[k.replace("encoder.embedding_hidden_mapping_in", "encoder.embedding_projection")] = v.clone()
    n = model.config.max_position_embeddings
    state["bleurt.embeddings.position_ids"] = torch.arange(n).unsqueeze(0).contiguous()
    return state


@pytest.fixture(scope="module")
def bleurt_base(tmp_path_factory):
    """A tiny random BERT regression model saved as bleurt-pytorch saves bleurt-base-128: (folder, model)."""
    from safetensors.torch import save_file
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    # a large init spread: scores differ by whole units, so a wrong input layout cannot pass
    config = BertConfig(vocab_size=len(VOCAB), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64, num_labels=1, initializer_range=0.5)
    source = BertForSequenceClassification(config).eval()
    folder = tmp_path_factory.mktemp("bleurt-tiny")
    (folder / "config.json").write_text(json.dumps(_bleurt_config(config)))
    save_file(_bleurt_state(source, "bert"), str(folder / "model.safetensors"))
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "BleurtTokenizerFast",
                                                              "do_lower_case": True}))
    return folder, source


def _bleurt_by_hand(source, refs: list[str], cands: list[str]) -> list[float]:
    """The source model's regression output on hand-built [CLS] ref [SEP] cand [SEP] inputs."""
    want = []
    for r, c in zip(refs, cands):
        ids, types = _pair_ids(r, c, VOCAB.index("[CLS]"), VOCAB.index("[SEP]"), _ids)
        with torch.no_grad():
            want.append(float(source(input_ids=torch.tensor([ids]), token_type_ids=torch.tensor([types])).logits[0, 0]))
    return want


def test_bleurt_base_layout_equals_the_regression_head(bleurt_base):
    folder, source = bleurt_base
    refs, cands = [p[0] for p in PAIRS], [p[1] for p in PAIRS]
    got = BleurtScorer(folder, batch_size=3).score(references=refs, candidates=cands)  # 2 batches, padded
    assert got == pytest.approx(_bleurt_by_hand(source, refs, cands), abs=1e-5)
    assert min(abs(x - y) for i, x in enumerate(got) for y in got[i + 1:]) > 0.01  # the pairs really differ
    # BLEURT is not symmetric: swapping reference and candidate changes the score
    swapped = BleurtScorer(folder).score(references=cands[:1], candidates=refs[:1])
    assert abs(swapped[0] - got[0]) > 0.01


def test_bleurt20_layout_sentencepiece_and_embedding_projection(tmp_path):
    import sentencepiece as spm
    from transformers import RemBertConfig, RemBertForSequenceClassification

    text = tmp_path / "corpus.txt"
    text.write_text("\n".join(a + "\n" + b for a, b in PAIRS) * 5 + "\n")
    folder = tmp_path / "BLEURT-20-tiny"
    folder.mkdir()
    spm.SentencePieceTrainer.train(input=str(text), model_prefix=str(folder / "spm"), vocab_size=40, model_type="unigram",
                                   pad_id=0, unk_id=1, bos_id=-1, eos_id=-1, pad_piece="[PAD]", unk_piece="[UNK]",
                                   user_defined_symbols=["[CLS]", "[SEP]", "[MASK]"], minloglevel=2)
    (folder / "spm.vocab").unlink()
    sp = spm.SentencePieceProcessor(model_file=str(folder / "spm.model"))
    torch.manual_seed(1)
    config = RemBertConfig(vocab_size=sp.get_piece_size(), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=32, input_embedding_size=8, output_embedding_size=8,
                           max_position_embeddings=64, num_labels=1, initializer_range=0.5)
    source = RemBertForSequenceClassification(config).eval()
    (folder / "config.json").write_text(json.dumps(_bleurt_config(config, embedding_size=8)))
    torch.save(_bleurt_state(source, "rembert"), folder / "pytorch_model.bin")  # read back with weights_only
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "BleurtSPTokenizer",
                                                              "do_lower_case": False}))

    refs, cands = [p[0] for p in PAIRS], [p[1] for p in PAIRS]
    got = BleurtScorer(folder).score(references=refs, candidates=cands)
    want = []
    for r, c in zip(refs, cands):
        ids, types = _pair_ids(r, c, sp.piece_to_id("[CLS]"), sp.piece_to_id("[SEP]"), sp.encode)
        with torch.no_grad():
            want.append(float(source(input_ids=torch.tensor([ids]), token_type_ids=torch.tensor([types])).logits[0, 0]))
    assert got == pytest.approx(want, abs=1e-5)


def test_bleurt_bad_folders_are_one_line_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"^metrics.bleurt is null: set it to a local BLEURT checkpoint folder"):
        BleurtScorer(None)
    with pytest.raises(NotFoundError, match=r"^metrics.bleurt=/nope/BLEURT-20: not a directory"):
        BleurtScorer("/nope/BLEURT-20")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ConfigError, match="model_type='bert', expected 'bleurt'"):
        BleurtScorer(tmp_path).score(["a"], ["a"])
    from safetensors.torch import save_file

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bleurt", "vocab_size": 10, "hidden_size": 4,
                                                      "num_hidden_layers": 1, "num_attention_heads": 1,
                                                      "intermediate_size": 4}))
    save_file({"bleurt.pooler.dense.weight": torch.zeros(4, 4)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(BadInputError, match="the weights do not fit the BLEURT layout"):
        BleurtScorer(tmp_path).score(["a"], ["a"])


@pytest.fixture(scope="module")
def distilbert(tmp_path_factory) -> Path:
    """A tiny random DistilBERT and its WordPiece vocabulary, saved as distilbert-base-uncased is."""
    from transformers import DistilBertConfig, DistilBertModel

    folder = tmp_path_factory.mktemp("distilbert-tiny")
    torch.manual_seed(2)
    DistilBertModel(DistilBertConfig(vocab_size=len(VOCAB), dim=16, n_layers=2, n_heads=2, hidden_dim=32,
                                     max_position_embeddings=64, initializer_range=0.5)).save_pretrained(folder)
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "DistilBertTokenizer",
                                                              "do_lower_case": True, "model_max_length": 64}))
    return folder


def _lp_emd(a: np.ndarray, b: np.ndarray, cost: np.ndarray) -> float:
    """The transport problem as a plain LP (scipy's HiGHS), a solver other than POT's."""
    from scipy.optimize import linprog

    n, m = cost.shape
    rows = [np.kron(np.eye(n)[i], np.ones(m)) for i in range(n)] + [np.kron(np.ones(n), np.eye(m)[j]) for j in range(m)]
    res = linprog(cost.ravel(), A_eq=np.array(rows), b_eq=np.concatenate([a, b]), bounds=(0, None), method="highs")
    assert res.status == 0
    return float(res.fun)


def _moverscore_by_hand(folder: Path, refs: list[str], hyps: list[str]) -> list[float]:
    """moverscore_v2 recomputed: hand tokens, IDF by counting, per-text forward, LP transport."""
    from transformers import DistilBertModel

    model = DistilBertModel.from_pretrained(folder).eval()
    cls, sep = VOCAB.index("[CLS]"), VOCAB.index("[SEP]")
    ref_ids = [[cls, *_ids(t), sep] for t in refs]
    hyp_ids = [[cls, *_ids(t), sep] for t in hyps]

    def idf(docs):
        df = Counter(i for d in docs for i in set(d))
        return lambda i: math.log((len(docs) + 1) / (df[i] + 1))

    def side(ids, weight):
        with torch.no_grad():
            emb = model(input_ids=torch.tensor([ids])).last_hidden_state[0].double().numpy()
        w = np.array([0.0 if VOCAB[i].startswith("##") or VOCAB[i] in ".,!" else weight(i) for i in ids])
        keep = w > 0
        e = emb[keep] / np.linalg.norm(emb[keep], axis=1, keepdims=True)
        return e, w[keep] / w[keep].sum()

    out = []
    for r, h in zip(ref_ids, hyp_ids):
        (x, a), (y, b) = side(r, idf(ref_ids)), side(h, idf(hyp_ids))
        cost = np.linalg.norm(x[:, None] - y[None], axis=-1)
        out.append(1 - _lp_emd(a, b, cost))
    return out


def test_moverscore_equals_the_computation_by_hand(distilbert):
    refs, hyps = [p[1] for p in PAIRS], [p[0] for p in PAIRS]
    scorer = MoverScorer(distilbert, batch_size=3)
    assert scorer.tokens("a man breaks windows.") == ["[CLS]", "a", "man", "breaks", "window", "##s", ".", "[SEP]"]
    got = scorer.score(references=refs, hypotheses=hyps)
    assert got == pytest.approx(_moverscore_by_hand(distilbert, refs, hyps), abs=1e-6)
    assert all(0 < s < 1 for s in got[:3])


def test_moverscore_identical_texts_score_at_the_top(distilbert):
    texts = [p[0] for p in PAIRS]
    assert MoverScorer(distilbert).score(texts, texts) == pytest.approx([1.0] * 4, abs=1e-6)
    uniform = MoverScorer(distilbert, idf=False).score([PAIRS[0][0]] * 2, [PAIRS[0][0], PAIRS[2][0]])
    assert uniform[0] == pytest.approx(1.0, abs=1e-6) and uniform[1] < uniform[0] - 0.01
    # an answer with nothing weighted (only punctuation) scores 0, not 1 - 0
    assert MoverScorer(distilbert).score(["a man", "the dog"], ["!", "the dog"])[0] == 0.0


def test_idf_and_emd_closed_form():
    idf, unseen = idf_weights([[1, 2, 2], [2, 3]])
    assert idf == pytest.approx({1: math.log(3 / 2), 2: math.log(3 / 3), 3: math.log(3 / 2)}) and unseen == math.log(3)
    # moving mass 1/2 by distance 1 and 1/2 by 0 costs 1/2
    assert earth_movers(np.array([0.5, 0.5]), np.array([1.0]), np.array([[1.0], [0.0]])) == pytest.approx(0.5)
    with pytest.raises(NotFoundError, match=r"^metrics.moverscore=/nope: not a directory"):
        MoverScorer("/nope")


@pytest.fixture(scope="module")
def unieval(tmp_path_factory) -> Path:
    """A tiny random T5 and a word-level tokenizer ("</s>" special, appended at the end, as T5's)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, T5Config, T5ForConditionalGeneration

    words = ["<pad>", "</s>", "<unk>", "Yes", "No", "question", ":", "?", ".", "!", "Is", "this", "claim", "consistent",
             "with", "document", "fluent", "paragraph", "coherent", "summary", "to", "relevant", "reference", *WORDS]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    folder = tmp_path_factory.mktemp("unieval-tiny")
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", pad_token="<pad>",
                            unk_token="<unk>").save_pretrained(folder)
    torch.manual_seed(3)
    T5ForConditionalGeneration(T5Config(vocab_size=len(words), d_model=16, d_kv=8, d_ff=32, num_layers=2,
                                        num_decoder_layers=2, num_heads=2, decoder_start_token_id=0, pad_token_id=0,
                                        eos_token_id=1, initializer_factor=1.0)).save_pretrained(folder)
    return folder


def _unieval_by_hand(folder: Path, question: str) -> float:
    """UniEval's UniEvaluator.score for one input: labels = first token of "No", softmax at step 0."""
    from transformers import AutoTokenizer, T5ForConditionalGeneration

    tok = AutoTokenizer.from_pretrained(folder)
    model = T5ForConditionalGeneration.from_pretrained(folder).eval()
    labels = tok(["No"], return_tensors="pt")["input_ids"][:, 0].unsqueeze(-1)
    enc = tok([question], return_tensors="pt")
    with torch.no_grad():
        logits = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], labels=labels).logits
    probs = torch.softmax(logits.view(-1, model.config.vocab_size), dim=1)[0]
    yes, no = probs[tok("Yes")["input_ids"][0]], probs[tok("No")["input_ids"][0]]
    return float(yes / (yes + no))


def test_unieval_yes_probability_and_sentence_average(unieval):
    answer = "a man breaks the window. two cars crash at the crossing!"
    reference = "a man breaks the shop window with a rock and runs away."
    assert split_sentences(answer) == ["a man breaks the window.", "two cars crash at the crossing!"]
    scorer = UniEvalScorer(unieval, batch_size=2)
    got = scorer.score(outputs=[answer, "fire in the kitchen"], sources=[reference, "people fight"],
                       dimensions=["consistency", "coherence", "fluency", "relevance"])

    def q(claim, doc):
        return f"question: Is this claim consistent with the document? </s> claim: {claim} </s> document: {doc}"

    want_consistency = [(_unieval_by_hand(unieval, q("a man breaks the window.", reference))
                         + _unieval_by_hand(unieval, q("two cars crash at the crossing!", reference))) / 2,
                        _unieval_by_hand(unieval, q("fire in the kitchen", "people fight"))]
    assert got["consistency"] == pytest.approx(want_consistency, abs=1e-5)
    coherence = ("question: Is this a coherent summary to the document? </s> summary: fire in the kitchen "
                 "</s> document: people fight")
    assert got["coherence"][1] == pytest.approx(_unieval_by_hand(unieval, coherence), abs=1e-5)
    relevance = "question: Is this summary relevant to the reference? </s> summary: fire in the kitchen </s> reference: people fight"
    assert got["relevance"][1] == pytest.approx(_unieval_by_hand(unieval, relevance), abs=1e-5)
    assert got["fluency"][1] == pytest.approx(
        _unieval_by_hand(unieval, "question: Is this a fluent paragraph? </s> paragraph: fire in the kitchen"), abs=1e-5)
    assert all(0 < s < 1 for scores in got.values() for s in scores)
    with pytest.raises(ConfigError, match="^metrics.unieval_dimensions: unknown 'naturalness'"):
        scorer.score(["a"], ["a"], dimensions=["naturalness"])
    with pytest.raises(ConfigError, match="^metrics.unieval is null"):
        UniEvalScorer(None)


def test_vau_eval_fills_the_paper_columns(tmp_path, monkeypatch, bleurt_base, distilbert, unieval):
    from eval_fakes import JUDGE_KEY_ENV, JudgeServer, write_predictions

    import vau.families.anomshield.evaluate as ecva
    from vau.config import compose_tool
    from vau.eval.evaluate import evaluate, markdown_table
    from vau.families.anomshield.tools import AnomShieldEvalConfig
    from vau.metrics.ecva_text import ecva_bleu_rouge

    # pycocoevalcap (a JVM per call, ~20 s here) is checked in test_evaluate; its extras are not under test here
    monkeypatch.setattr(ecva, "caption_scores", lambda preds, refs: {})
    monkeypatch.setenv(JUDGE_KEY_ENV, "k")
    rows = [{"id": f"v{i}#0", "task": "description", "prompt": f"What happens in video {i}?", "answer": answer,
             "reference": reference} for i, (answer, reference) in enumerate(PAIRS)]
    write_predictions(tmp_path / "m", rows, broken=False)
    scores = {"v0": "{'score': 4}", "v1": "{'score': 2}", "v2": "not a score", "v3": "{'score': 5}"}

    def judge(prompt: str) -> str:
        assert "evaluating the factual accuracy" in prompt
        return scores["v" + prompt.split("What happens in video ", 1)[1][0]]  # the question names the video

    with JudgeServer(judge) as server:
        cfg = compose_tool(AnomShieldEvalConfig, "eval", "http", [
            f"predictions=[{tmp_path / 'm'}]", f"out={tmp_path / 'out'}", "wandb=disabled", "progress=false",
            "caption_tasks=[description]", "anomeval.enabled=false", f"anomeval.judge.base_url={server.url}",
            "anomeval.judge.model=fake", f"anomeval.judge.api_key_env={JUDGE_KEY_ENV}",
            f"metrics.bleurt={bleurt_base[0]}", f"metrics.moverscore={distilbert}", f"metrics.unieval={unieval}",
            "metrics.gpt_score=true"])
        results = evaluate(cfg)
    got = results["models"]["m"]["tasks"]["description"]
    answers, references = [a for a, _ in PAIRS], [r for _, r in PAIRS]
    ecva_text = ecva_bleu_rouge({r["id"]: r["answer"] for r in rows}, {r["id"]: [r["reference"]] for r in rows})
    assert {k: got[f"ECVA-{k}"] for k in ecva_text} == pytest.approx(ecva_text)
    # eval_BLEURT.py's order: the human answer is the candidate, the model's answer the reference
    assert got["BLEURT"] == pytest.approx(np.mean(_bleurt_by_hand(bleurt_base[1], answers, references)), abs=1e-5)
    assert got["MoverScore"] == pytest.approx(np.mean(_moverscore_by_hand(distilbert, references, answers)), abs=1e-6)
    consistency = UniEvalScorer(unieval).score(answers, references)["consistency"]
    assert got["UniEval"] == got["UniEval-consistency"] == pytest.approx(np.mean(consistency), abs=1e-6)
    assert got["GPT"] == pytest.approx((4 + 2 + 5) / 3) and got["GPT-unparseable"] == 1 and got["GPT-n_scored"] == 3
    assert results["judge_calls"] == len(server.requests) == 4
    items = (tmp_path / "out" / "gpt_items.jsonl").read_text().splitlines()
    assert [json.loads(line)["score"] for line in items] == [4, 2, None, 5]
    table = markdown_table(results).split("\n\n")
    assert table[0].splitlines()[0] == ("| Model | description BLEU | description ROUGE-2 | description ROUGE-L | "
                                        "description BLEURT | description MoverScore | description UniEval | "
                                        "description GPT |")
    assert table[0].splitlines()[2] == "| m | " + " | ".join(
        [f"{got[k] * 100:.2f}" for k in ("ECVA-BLEU", "ECVA-ROUGE-2", "ECVA-ROUGE-L", "BLEURT", "MoverScore", "UniEval")]
        + [f"{got['GPT']:.2f}"]) + " |"
    assert table[1] == "Not computed: AnomEval (anomeval.enabled=false)."


def test_vau_eval_stops_in_one_line_naming_the_bad_metrics_key(tmp_path, capsys):
    from eval_fakes import write_predictions

    from vau.cli import main

    write_predictions(tmp_path / "m", [{"id": "v0#0", "task": "description", "answer": "a", "reference": "a"}])
    base = ["eval", f"predictions=[{tmp_path / 'm'}]", f"out={tmp_path / 'out'}", "anomeval.enabled=false",
            "wandb=disabled"]
    cases = [(["metrics.bleurt=/nope/BLEURT-20"],
              "metrics.bleurt=/nope/BLEURT-20: not a directory (expected a local BLEURT checkpoint folder "
              "(bleurt-pytorch layout, e.g. BLEURT-20))"),
             ([f"metrics.unieval={tmp_path}", "metrics.unieval_dimensions=[naturalness]"],
              "metrics.unieval_dimensions=['naturalness']: expected some of consistency, fluency, coherence, relevance"),
             (["metrics.gpt_score=true", "metrics.gpt_aspects=[style]"],
              "metrics.gpt_aspects: unknown aspect 'style'; expected some of correctness, detail, context, temporal"),
             (["metrics.gpt_score=true"],  # the GPT score asks the anomeval judge, unset in conf/eval/ecva.yaml
              "anomeval.judge.model is null: set it to a local HF model folder (anomeval.judge.kind=hf)")]
    for overrides, message in cases:
        assert main([*base, *overrides]) == 2
        err = capsys.readouterr().err.strip()
        assert err.endswith(message) and len(err.splitlines()) == 1, err
