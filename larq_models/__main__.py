"""Command line of the Larq world (run with the Larq environment's interpreter, e.g. by Snakemake):

    python -m larq_models train  --model tfc_w1a1_larq --dataset resources/mnist.npz --out-dir DIR --recipe JSON
    python -m larq_models import --model tfc_w1a1_larq --model-file user.h5 --dataset ... --out-dir DIR --recipe JSON
    python -m larq_models export --model-file DIR/model.h5 --dataset ... --out-dir DIR [--golden-samples N --seed S]
    python -m larq_models bench-lce-serve --nets tfc.npz cnv.npz --batch-sizes 1 1000   (JSON lines on stdin / stdout)

``--train-subset`` / ``--test-subset`` take N or ``null``. Exit status 0 done, 2 refused input (an unknown
name, a bad recipe, a corrupt or unconvertible model file: the message names the file / layer and why;
nothing is written), 1 anything else.
"""

from __future__ import annotations

import argparse
import json
import sys

import larq_models  # noqa: F401 - sets TF_USE_LEGACY_KERAS before TensorFlow loads


def _subset(text: str) -> int | None:
    return None if text in ("null", "None", "") else int(text)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m larq_models", description="bnnflow's Larq world")
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("train", "import", "export"):
        s = sub.add_parser(name)
        s.add_argument("--dataset", required=True, help="prepared data set .npz (resources/<dataset>.npz)")
        s.add_argument("--out-dir", required=True)
        s.add_argument("--test-subset", type=_subset, default=None)
        if name != "export":
            s.add_argument("--model", required=True, help="model name, <family>_w1a1_larq")
            s.add_argument("--recipe", required=True, help="the config's train: section as JSON")
            s.add_argument("--train-subset", type=_subset, default=None)
        if name != "train":
            s.add_argument("--model-file", required=True, help="a saved Keras / Larq model (.h5 or .keras)")
        if name == "export":
            s.add_argument("--golden-samples", type=int, default=100)
            s.add_argument("--seed", type=int, default=0)
    v = sub.add_parser("bench-lce-serve", help="convert + check bench nets, then time one (net, batch) per request "
                       "line on stdin, replies on stdout (larq_models.bench_lce.serve)")
    v.add_argument("--nets", nargs="+", required=True, help="bench net .npz files (hw_builds/xnor_bench.py)")
    v.add_argument("--batch-sizes", nargs="+", type=int, required=True)
    args = p.parse_args(argv)
    if args.command == "bench-lce-serve":
        import os

        from larq_models.bench_lce import BenchNetError, BenchRequestError, LceBench, serve

        # the replies get the real stdout to themselves; anything else printing there (TFLite's C++ "INFO:" lines,
        # tqdm) goes to stderr, the rule's log
        replies = os.fdopen(os.dup(sys.stdout.fileno()), "w")
        sys.stdout.flush()
        os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
        try:
            serve(LceBench(args.nets, args.batch_sizes), sys.stdin, replies)
        except (BenchNetError, BenchRequestError) as err:
            print(f"larq_models bench-lce-serve: {err}", file=sys.stderr)
            return 2
        return 0

    from larq_models.convert import ConversionError, ModelFileError
    from larq_models.data import DataError

    try:
        if args.command == "train":
            from larq_models.train import train_larq

            train_larq(args.model, args.dataset, args.out_dir, json.loads(args.recipe), args.train_subset,
                       args.test_subset, progress=False)
        elif args.command == "import":
            from larq_models.train import import_larq

            import_larq(args.model_file, args.model, args.dataset, args.out_dir, json.loads(args.recipe),
                        args.train_subset, args.test_subset)
        else:
            from larq_models.export import export_larq

            export_larq(args.model_file, args.dataset, args.out_dir, args.golden_samples, args.seed, args.test_subset)
    except (ConversionError, ModelFileError, DataError, ValueError) as err:  # refused input: one line, exit 2
        print(f"larq_models {args.command}: refused: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
