"""`vau export RUN --merge-lora --out DIR`: a merged, standalone HF model from a run's export."""

from __future__ import annotations

import argparse

HELP = "write a standalone model from a run's export (--merge-lora folds the LoRA adapter into the LLM)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="run directory (uses its export/) or an export folder")
    p.add_argument("--merge-lora", action="store_true", required=True,
                   help="merge the LoRA adapter into the LLM (the only export kind so far)")
    p.add_argument("--out", required=True, help="folder to write (replaced atomically)")


def run(args: argparse.Namespace) -> int:
    from vau.export import merge_lora

    out = merge_lora(args.source, args.out)
    print(f"merged model written to {out} (llm/ loads with AutoModelForCausalLM.from_pretrained)")
    return 0
