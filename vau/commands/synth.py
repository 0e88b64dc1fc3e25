"""`vau synth [--out DIR] [--seed S] [--videos N] [--images N] [--val-fraction F] [--overwrite]`"""

from __future__ import annotations

import argparse

HELP = "write the deterministic synthetic data set (videos, images, manifests, shards) under <out>/synth"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", help="data root to write <out>/synth under (default: $VAU_DATA or ./data)")
    p.add_argument("--seed", type=int, default=0, help="seed of the whole set (default: 0)")
    p.add_argument("--videos", type=int, default=32, help="number of videos (default: 32)")
    p.add_argument("--images", type=int, default=32, help="number of images (default: 32)")
    p.add_argument("--val-fraction", type=float, default=0.25, help="share of each set for validation (default: 0.25)")
    p.add_argument("--maxcount", type=int, default=8,
                   help="samples per shard at most; sets are split into >= 2 shards when possible (default: 8)")
    p.add_argument("--overwrite", action="store_true", help="replace existing synthetic shards")


def run(args: argparse.Namespace) -> int:
    from vau.config.schema import default_data_root
    from vau.data.synth import generate

    # Resolved at run time (not as an argparse default), so $VAU_DATA set after import counts.
    out = args.out if args.out is not None else default_data_root()
    s = generate(out, seed=args.seed, videos=args.videos, images=args.images, val_fraction=args.val_fraction,
                 maxcount=args.maxcount, overwrite=args.overwrite)
    if s.up_to_date:
        print(f"up to date: {s.shard_dir} already holds this data (seed {args.seed}); --overwrite remakes it")
    for name, count in s.counts.items():
        print(f"{name:<13} {count:4d} samples in {len(s.shards[name])} shard(s)")
    print(f"shards: {s.shard_dir} (seed {args.seed}, {s.seconds:.1f} s)")
    return 0
