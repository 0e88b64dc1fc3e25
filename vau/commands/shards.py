"""`vau shards write|inspect|convert`: build, check and convert WebDataset tar shard sets."""

from __future__ import annotations

import argparse
import json
import time

from vau.config.data import SHORT_VIDEO, DecodeConfig

HELP = "write shards from a manifest, inspect a shard set, or convert annotations to a manifest"


def _size(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    t = text.strip().lower().rstrip("b")
    try:
        return int(float(t[:-1]) * units[t[-1]]) if t and t[-1] in units else int(t)
    except (ValueError, IndexError):
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 3000000, 500M, 3G)") from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    w = sub.add_parser("write", help="validate a JSONL manifest and write tar shards")
    w.add_argument("--manifest", required=True, help="JSONL manifest (one sample per line)")
    w.add_argument("--out", required=True, help="shard pattern with one %%d field, e.g. 'dir/train-%%06d.tar'")
    w.add_argument("--maxcount", type=int, default=1000, help="samples per shard at most (default 1000)")
    w.add_argument("--maxsize", type=_size, default=3 << 30, help="bytes per shard at most (default 3G)")
    w.add_argument("--root", help="folder relative media paths are resolved against (default: the manifest's)")
    w.add_argument("--no-check", action="store_true", help="skip the decode check of media files")
    w.add_argument("--overwrite", action="store_true", help="replace an existing shard set with this pattern")
    i = sub.add_parser("inspect", help="count samples and member types, decode a few, count bad samples")
    i.add_argument("pattern", help="shard spec: brace pattern, glob, folder or URLs (README, Shard URLs)")
    i.add_argument("--decode", type=int, default=3, help="samples to decode in full (default 3)")
    i.add_argument("--target", choices=("conversations", "caption", "long_caption"),
                   help="check as AnomShield training with this data.target does: its text and a video/image "
                        "member required (default: the annotation schema only)")
    i.add_argument("--frames", type=int, default=DecodeConfig.frames,
                   help=f"data.decode.frames: shorter videos are short (default {DecodeConfig.frames})")
    i.add_argument("--short-video", choices=SHORT_VIDEO, default=DecodeConfig.short_video,
                   help=f"data.decode.short_video: count short videos bad (reject) or good (pad) "
                        f"(default {DecodeConfig.short_video})")
    i.add_argument("--allow-pipe", action="store_true", help="run pipe:<command> shard URLs (data.allow_pipe)")
    i.add_argument("--json", action="store_true", help="print the report as JSON")
    c = sub.add_parser("convert", help="convert a public annotation format into a manifest")
    c.add_argument("format", help="source format (llava, ecva, cuva, ucf_crime, xd_violence)")
    c.add_argument("src", help="annotation file")
    c.add_argument("--out", required=True, help="manifest to write (.jsonl)")
    c.add_argument("--media-root", help="folder holding the videos/images the annotations name")
    c.add_argument("--fps", type=float, help="frame rate for formats with frame-number spans (UCF-Crime, XD-Violence)")


def _write(args: argparse.Namespace) -> int:
    from vau.data.shards.writer import rejects_file, write_shards

    t0 = time.perf_counter()
    s = write_shards(args.manifest, args.out, maxcount=args.maxcount, maxsize=args.maxsize, root=args.root,
                     check_media=not args.no_check, overwrite=args.overwrite)
    print(f"wrote {s.samples} sample(s) in {len(s.shards)} shard(s), {s.nbytes / 1e6:.1f} MB, "
          f"{time.perf_counter() - t0:.1f} s; rejected {s.rejected}"
          + (f" (see {rejects_file(args.out)})" if s.rejected else ""))
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from vau.data.shards.inspect import format_report, inspect_shards

    report = inspect_shards(args.pattern, decode=args.decode, target=args.target, frames=args.frames,
                            short_video=args.short_video, allow_pipe=args.allow_pipe)
    print(json.dumps(report.as_dict(), indent=1) if args.json else format_report(args.pattern, report))
    return 0 if report.bad == 0 else 1


def _convert(args: argparse.Namespace) -> int:
    from vau.data.convert import convert

    options = {"fps": args.fps} if args.fps is not None else {}
    s = convert(args.format, args.src, media_root=args.media_root, out=args.out, **options)
    print(f"wrote {s.entries} manifest line(s) to {args.out}; skipped {s.skipped}")
    return 0


ACTIONS = {"write": _write, "inspect": _inspect, "convert": _convert}


def run(args: argparse.Namespace) -> int:
    return ACTIONS[args.action](args)
