"""`vau demo`: the AnomShield curriculum end to end on CPU (README command 1)."""

from __future__ import annotations

import argparse
import time

HELP = "AnomShield demo: synthetic data, tiny LLM pretraining + stages 1->2->3 on CPU, answers beside the truth"

STAGES = ("tiny/anomshield_llm", "tiny/anomshield_stage1", "tiny/anomshield_stage2", "tiny/anomshield_stage3")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", help="data root for `vau synth` (default: $VAU_DATA or ./data)")
    p.add_argument("--samples", type=int, default=3, help="held-out videos to answer (default 3)")
    p.add_argument("overrides", nargs="*", help="key=value overrides applied to every stage")


def run(args: argparse.Namespace) -> int:
    from vau.config import compose
    from vau.config.schema import default_data_root
    from vau.data.synth import generate
    from vau.families.anomshield.predict import answers_for_shards
    from vau.signals import STOP
    from vau.train import train

    STOP.install()  # a stop in any stage ends the demo (RunStopped), the later stages unstarted
    t0 = time.perf_counter()
    data = args.data if args.data is not None else default_data_root()
    synth = generate(data)  # "up to date" (no work) when the same data is already there
    run_dir = None
    for name in STAGES:
        print(f"== vau train experiment={name}", flush=True)
        # A progress line every 50 steps (not every logged step): the demo's log stays readable.
        run_dir = train(compose([f"experiment={name}", f"data.root={data}", "trainer.progress_every_n_steps=50",
                                 *args.overrides]))
    print(f"\n== answers of {run_dir} on held-out synthetic videos")
    for r in answers_for_shards(run_dir, str(synth.shard_dir / "videos-val-*.tar"), limit=args.samples):
        print(f"\n[{r['key']}] Q: {r['question'].replace(chr(10), ' ')}\n  truth:  {r['truth']}\n  model:  {r['answer']}")
    print(f"\ndemo finished in {time.perf_counter() - t0:.0f} s")
    return 0
