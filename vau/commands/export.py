"""`vau export`: standalone artefacts from a run — merged LoRA model, or a consolidated ZeRO checkpoint."""

from __future__ import annotations

import argparse

HELP = ("--merge-lora: a run's export with LoRA folded into a plain HF model; "
        "--consolidate: a DeepSpeed ZeRO-2/3 checkpoint folder as one fp32 checkpoint file")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="run directory or export folder (--merge-lora); ZeRO checkpoint folder (--consolidate)")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--merge-lora", action="store_true", help="merge the LoRA adapter into the LLM")
    mode.add_argument("--consolidate", action="store_true", help="gather a sharded ZeRO checkpoint into one fp32 file")
    p.add_argument("--out", required=True, help="folder (--merge-lora) or file (--consolidate) to write, atomically")


def run(args: argparse.Namespace) -> int:
    from vau.export import consolidate, merge_lora

    if args.consolidate:
        out = consolidate(args.source, args.out)
        print(f"consolidated fp32 checkpoint written to {out} (torch.load(..., weights_only=True))")
    else:
        out = merge_lora(args.source, args.out)
        print(f"merged model written to {out} (llm/ loads with AutoModelForCausalLM.from_pretrained)")
    return 0
