"""The ``dpcnn`` command line (DESIGN §1): one small function per sub-command.

Errors a user can fix (bad config, missing data, a run folder that would be overwritten) are
printed as one clear message with exit status 2, not as a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from dpcnn.config import PRESET_NAMES, ConfigError

log = logging.getLogger("dpcnn.cli")


def _quiet_tensorflow() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default="demo", help=f"a preset ({', '.join(PRESET_NAMES)}) or a config .json file")
    p.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="SECTION.KEY=VALUE",
                   help="override config values (repeatable); unknown keys are listed")


def _resolve(args):
    from dpcnn.config import resolve

    return resolve(args.config, args.overrides)


# --------------------------------------------------------------------------------------------


def cmd_prepare(args) -> int:
    from dpcnn.prepare import prepare, summarize

    cfg = _resolve(args)
    report = prepare(cfg)
    print(summarize(report))
    return 0


def cmd_train(args) -> int:
    from dpcnn.training import train

    cfg = _resolve(args)
    train(cfg, args.run, stage=args.stage, overwrite=args.overwrite, verbose=1 if sys.stdout.isatty() else 2)
    print(f"training finished: {args.run}")
    return 0


def cmd_eval(args) -> int:
    from dpcnn.report import evaluate_run

    out = evaluate_run(Path(args.run), split=args.split, protocols=args.protocol, stage=args.stage)
    print(out)
    return 0


def cmd_search(args) -> int:
    from dpcnn.search import search_command

    print(search_command(args))
    return 0


def cmd_export(args) -> int:
    from dpcnn.export import export_run

    print(export_run(Path(args.run), Path(args.out), stage=args.stage))
    return 0


def cmd_demo(args) -> int:
    from dpcnn.demo import run_demo

    print(run_demo(Path(args.run), overwrite=args.overwrite, overrides=args.overrides))
    return 0


def cmd_download(args) -> int:
    from dpcnn.data import download

    available = download.available()
    if args.name not in available:
        raise ConfigError(f"unknown download '{args.name}'. Available: {', '.join(sorted(available))}")
    if download.is_manual(args.name):
        print(download.manual_instructions(args.name, root=args.root))
        return 0
    for path in download.download(args.name, Path(args.root)):
        print(path)
    return 0


# --------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dpcnn", description="Dual-Path CNN image-text embedding (arXiv 1711.05535)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="the main job on the embedded synthetic data, end to end")
    p.add_argument("--run", default="runs/demo")
    p.add_argument("--overwrite", action="store_true", help="replace a finished demo run")
    p.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="SECTION.KEY=VALUE")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("download", help="fetch public data with checksums (or print the manual steps)")
    p.add_argument("name", help="coco | karpathy-splits | flickr30k-splits | word2vec | flickr30k | cuhk-pedes")
    p.add_argument("--root", default="data")
    p.set_defaults(func=cmd_download)

    p = sub.add_parser("prepare", help="validate images and captions, build vocabulary and embedding cache")
    _config_args(p)
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("train", help="train stage I, II or both; re-running resumes an unfinished run")
    _config_args(p)
    p.add_argument("--run", required=True, help="run folder")
    p.add_argument("--stage", choices=("1", "2", "all"), default="all")
    p.add_argument("--overwrite", action="store_true", help="replace a finished run or one with another config")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="write DIR/metrics.json and DIR/metrics.md")
    p.add_argument("--run", required=True)
    p.add_argument("--split", default="test", choices=("test", "val"))
    p.add_argument("--protocol", nargs="+", choices=("full", "1k", "5k", "reid"), default=None,
                   help="default: the config's eval.protocols")
    p.add_argument("--stage", type=int, choices=(1, 2), default=None, help="default: the last finished stage")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("search", help="retrieval on the run's test gallery or a folder of images")
    p.add_argument("--run", required=True)
    q = p.add_mutually_exclusive_group(required=True)
    q.add_argument("--text", help="a caption to search images with")
    q.add_argument("--image", help="an image to search captions with")
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--gallery", default=None, help="a folder of your own images (text search)")
    p.add_argument("--out", default=None, help="write a picture of the results (PNG)")
    p.add_argument("--stage", type=int, choices=(1, 2), default=None)
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("export", help="the two encoders as .keras files plus the vocabulary")
    p.add_argument("--run", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--stage", type=int, choices=(1, 2), default=None)
    p.set_defaults(func=cmd_export)
    return parser


def main(argv: list[str] | None = None) -> int:
    _quiet_tensorflow()
    parser = build_parser()
    args = parser.parse_args(argv)
    from dpcnn.utils import setup_logging

    setup_logging(logging.DEBUG if args.verbose else logging.INFO)
    from dpcnn.errors import is_user_error

    try:
        return args.func(args)
    except Exception as e:
        if not is_user_error(e):
            raise
        print(f"dpcnn {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dpcnn {args.command}: interrupted", file=sys.stderr)
        return 130
