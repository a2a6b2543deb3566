"""The ``dpcnn`` command line (DESIGN §1): one small function per sub-command.

Every error a user can fix (a bad config, missing or malformed data, a run folder that would be
overwritten, a permission problem, a full disk) is printed as one line — ``dpcnn <command>:
error: …`` — with exit status 2, never a traceback. ``--help`` imports no TensorFlow.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import dpcnn

log = logging.getLogger("dpcnn.cli")

PRESETS_HELP = ("a preset (tiny, demo, demo-full, emoji, flickr30k, flickr30k-karpathy, coco, cuhk-pedes, "
                "or a paper preset's tiny variant such as coco:tiny) or a config .json file")


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default="demo", help=PRESETS_HELP)
    p.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="SECTION.KEY=VALUE",
                   help="override config values (repeatable; `dpcnn config --keys` lists them)")


def _model_args(p: argparse.ArgumentParser) -> None:
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", help="a run folder of `dpcnn train`")
    source.add_argument("--model", help="an export folder of `dpcnn export`")
    p.add_argument("--stage", type=int, choices=(1, 2), default=None, help="with --run: default the last finished stage")


def _resolve(args):
    from dpcnn.presets import resolve

    return resolve(args.config, args.overrides)


# --------------------------------------------------------------------------------------------


def cmd_config(args) -> int:
    from dpcnn.config import valid_keys

    print("\n".join(valid_keys()) if args.keys else _resolve(args).to_json())
    return 0


def cmd_prepare(args) -> int:
    from dpcnn.data.prepare import prepare, summarize

    print(summarize(prepare(_resolve(args))))
    return 0


def cmd_train(args) -> int:
    from dpcnn.training.trainer import train

    train(_resolve(args), args.run, stage=args.stage, overwrite=args.overwrite, verbose=1 if sys.stdout.isatty() else 2)
    print(f"training finished: {args.run}")
    return 0


def cmd_eval(args) -> int:
    from dpcnn.commands.evaluate import evaluate_run

    print(evaluate_run(Path(args.run), split=args.split, protocols=args.protocol, stage=args.stage))
    return 0


def cmd_search(args) -> int:
    from dpcnn.commands.search import search_command

    print(search_command(args.run or args.model, text=args.text, image=args.image, gallery=args.gallery,
                         captions=args.captions, k=args.k, out=args.out, as_json=args.json, stage=args.stage,
                         is_run=args.run is not None))
    return 0


def cmd_alt_text(args) -> int:
    from dpcnn.commands.alt_text import alt_text_command

    print(alt_text_command(args.run or args.model, images=args.images, out=args.out, captions=args.captions, k=args.k,
                           write_page_report=args.html, stage=args.stage, page=args.page, urls=args.urls,
                           url_column=args.url_column, page_column=args.page_column, write_html_out=args.write_html,
                           timeout=args.timeout, max_bytes=args.max_bytes))
    return 0


def cmd_export(args) -> int:
    from dpcnn.commands.export import export_run

    print(export_run(Path(args.run), Path(args.out), stage=args.stage, fmt=args.format))
    return 0


def cmd_demo(args) -> int:
    from dpcnn.commands.demo import run_demo

    print(run_demo(Path(args.run), overwrite=args.overwrite, overrides=args.overrides))
    return 0


def cmd_download(args) -> int:
    from dpcnn.data import download
    from dpcnn.errors import ConfigError

    available = download.available()
    if args.name not in available:
        raise ConfigError(f"unknown download '{args.name}'. Available: {', '.join(sorted(available))}")
    if args.source is not None:
        if args.delete_archives:
            raise ConfigError("--delete-archives has no effect with --from: nothing is downloaded")
        for path in download.download_from(args.name, Path(args.source), Path(args.root)):
            print(path)
        return 0
    if download.is_manual(args.name):
        print(download.manual_instructions(args.name, root=args.root))
        return 0
    for path in download.download(args.name, Path(args.root), delete_archives=args.delete_archives):
        print(path)
    return 0


# --------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dpcnn", description="Dual-Path CNN image-text embedding (arXiv 1711.05535)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"%(prog)s {dpcnn.__version__}",
                        help="print the installed dpcnn's version (its package metadata) and exit")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="the main job on the embedded synthetic data, end to end")
    p.add_argument("--run", default="runs/demo")
    p.add_argument("--overwrite", action="store_true", help="replace a finished demo run")
    p.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="SECTION.KEY=VALUE")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("download", help="fetch public data with checksums (or print the manual steps)")
    p.add_argument("name", help="coco | karpathy-splits | flickr30k-splits | word2vec | emoji | flickr30k | cuhk-pedes")
    p.add_argument("--root", default="data")
    p.add_argument("--from", dest="source", metavar="PATH",
                   help="emoji only: make the data from a local OpenMoji copy instead of downloading it: the "
                        "npm tarball (`npm pack openmoji@17.0.0` → openmoji-17.0.0.tgz) or its extracted folder")
    p.add_argument("--delete-archives", action="store_true",
                   help="delete each archive (zip, tar) once it is verified and extracted; a later run skips it "
                        "while the extracted files are there (COCO: 20.4 GB of zips not kept)")
    p.set_defaults(func=cmd_download)

    p = sub.add_parser("config", help="print the resolved configuration (or every key with --keys)")
    _config_args(p)
    p.add_argument("--keys", action="store_true", help="list every section.key that --set accepts")
    p.set_defaults(func=cmd_config)

    p = sub.add_parser("prepare", help="validate images and captions, build the vocabulary and embedding matrix")
    _config_args(p)
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("train", help="train stage I, II or both; re-running resumes an unfinished run")
    _config_args(p)
    p.add_argument("--run", required=True, help="run folder")
    p.add_argument("--stage", choices=("1", "2", "all"), default="all")
    p.add_argument("--overwrite", action="store_true", help="replace a finished run or one with another config")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="write DIR/metrics.json and DIR/metrics.md (needs the split's images and captions)")
    p.add_argument("--run", required=True)
    p.add_argument("--split", default="test", choices=("test", "val"))
    p.add_argument("--protocol", nargs="+", choices=("full", "1k", "5k", "reid", "class"), default=None,
                   help="default: the config's eval.protocols that the split can support")
    p.add_argument("--stage", type=int, choices=(1, 2), default=None, help="default: the last finished stage")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("search", help="text → images of a gallery, or image → captions")
    _model_args(p)
    q = p.add_mutually_exclusive_group(required=True)
    q.add_argument("--text", help="a caption to search images with")
    q.add_argument("--image", help="an image to search captions with")
    p.add_argument("--gallery", help="a folder of images (recursive) for --text; with --run the default is its test split")
    p.add_argument("--captions", help="captions for --image: one a line, or a COCO-format .json (default: the model's training captions)")
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--out", help="write a picture of the results (PNG)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("alt-text", help="suggest alt text for images: the nearest EXISTING captions (retrieval, not generation)",
                       description="For each image, the k captions of a corpus (default: the model's training captions) "
                                   "nearest to it in the joint embedding, with their cosine scores. This retrieves "
                                   "existing captions; it does not generate new sentences.")
    _model_args(p)
    q = p.add_mutually_exclusive_group(required=True)
    q.add_argument("--images", help="a folder of images (recursive) or a CSV with a 'path' column")
    q.add_argument("--page", metavar="FILE|URL",
                   help="an HTML file or an http(s) page: its <img> whose alt is missing or empty")
    q.add_argument("--urls", metavar="FILE.csv", help="a CSV of image URLs (a crawl export); see --url-column")
    p.add_argument("--url-column", metavar="NAME", help="with --urls: the column of image URLs")
    p.add_argument("--page-column", metavar="NAME",
                   help="with --urls: the column of page URLs (default: one named page_url, page or source, if any)")
    p.add_argument("--out", required=True,
                   help="the CSV to write: path, rank, caption, score, error (web images: page_url, image_url first)")
    p.add_argument("--captions", help="the caption corpus: one a line, or a COCO-format .json")
    p.add_argument("--k", type=int, default=3)
    p.add_argument("--html", action="store_true", help="also write OUT.html: thumbnails beside their suggestions")
    p.add_argument("--write-html", metavar="OUT", help="with --page: write a copy of the page with the top suggestion "
                                                      "in each empty alt")
    p.add_argument("--timeout", type=float, default=None,
                   help="web images and pages: seconds for one fetch, from connecting to the last byte (default 10)")
    p.add_argument("--max-bytes", type=int, default=None,
                   help="web images and pages: the size limit of one fetch in bytes (default 20000000); web images "
                        "are cached in .dpcnn-web-cache/ beside --out")
    p.set_defaults(func=cmd_alt_text)

    p = sub.add_parser("export", help="the two feature models, the vocabulary and a model card: .keras files for "
                                      "dpcnn.load, or a SavedModel that needs TensorFlow alone")
    p.add_argument("--run", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--stage", type=int, choices=(1, 2), default=None)
    p.add_argument("--format", choices=("keras", "savedmodel"), default="keras",
                   help="keras (default): .keras files that dpcnn.load, search --model and alt-text --model open; "
                        "savedmodel: a TensorFlow SavedModel (TF Serving, tf.saved_model.load) whose text side "
                        "takes raw strings, no dpcnn needed")
    p.set_defaults(func=cmd_export)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    from dpcnn.errors import is_user_error
    from dpcnn.utils import setup_logging

    setup_logging(logging.DEBUG if args.verbose else logging.INFO)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print(f"dpcnn {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if not is_user_error(e):
            raise
        message = " ".join(str(e).split()) if not isinstance(e, OSError) or e.filename is None else f"{e.strerror}: {e.filename}"
        print(f"dpcnn {args.command}: error: {message}", file=sys.stderr)
        return 2
