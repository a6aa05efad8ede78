"""Command line: ``python -m resvae_keras <command> ...`` (``--help`` on each command).

| command     | does                                                        |
| ----------- | ----------------------------------------------------------- |
| demo-data   | write the synthetic demo faces in the official CelebA layout |
| prepare     | preprocess a CelebA folder or zip into the uint8 cache       |
| train       | train a profile into ``runs/<name>``                         |
| evaluate    | write ``runs/<name>/metrics.json``                           |
| sample      | write sampled faces as PNG files                             |
| bench       | measure data, training or evaluation speed                   |
| study       | the residual/plain, likelihood and beta comparison           |
| report      | fill the report's tables from ``report/results``             |
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def _print_table(result: dict, title: str) -> None:
    width = max(len(k) for k in result)
    print(title)
    for key, value in result.items():
        shown = f"{value:,.3f}" if isinstance(value, float) else str(value)
        print(f"  {key:<{width}}  {shown}")


def _overrides(args) -> dict:
    """Config overrides given on the command line (only those set)."""
    names = (
        "epochs", "batch_size", "learning_rate", "beta", "latent_dim", "seed", "max_images",
        "kl_warmup_steps", "sigma_min", "likelihood", "kind", "strategy", "mixed_precision", "run_dir",
        "data_dir", "image_size", "blocks_per_stage", "architecture",
    )
    values = {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}
    if getattr(args, "widths", None):
        values["widths"] = tuple(int(w) for w in args.widths.split(","))
    if getattr(args, "plain", False):
        values["residual"] = False
    return values


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", default="demo", choices=["demo", "celeba-subset", "celeba"])
    p.add_argument("--run-dir", dest="run_dir", help="output folder (default runs/<profile>)")
    p.add_argument("--data-dir", dest="data_dir", help="CelebA root (default CELEBA_DIR)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", dest="batch_size", type=int)
    p.add_argument("--learning-rate", dest="learning_rate", type=float)
    p.add_argument("--beta", type=float)
    p.add_argument("--kl-warmup-steps", dest="kl_warmup_steps", type=int)
    p.add_argument("--sigma-min", dest="sigma_min", type=float,
                   help="floor on the learned decoder sigma (0: none)")
    p.add_argument("--latent-dim", dest="latent_dim", type=int)
    p.add_argument("--widths", help="channels per stage, e.g. 32,64,128")
    p.add_argument("--blocks-per-stage", dest="blocks_per_stage", type=int)
    p.add_argument("--image-size", dest="image_size", type=int)
    p.add_argument("--likelihood", choices=["gaussian_learned", "gaussian", "bernoulli"])
    p.add_argument("--kind", choices=["vae", "ae"])
    p.add_argument("--plain", action="store_true", help="drop the residual shortcuts")
    p.add_argument("--architecture", choices=["resnet", "conv"],
                   help="resnet: the ResVAE; conv: the shallow textbook convolutional VAE")
    p.add_argument("--seed", type=int)
    p.add_argument("--max-images", dest="max_images", type=int)
    p.add_argument("--strategy", choices=["none", "mirrored", "auto"])
    p.add_argument("--mixed-precision", dest="mixed_precision",
                   choices=["mixed_float16", "mixed_bfloat16"])


def cmd_demo_data(args):
    from resvae_keras import data

    out = data.write_demo_dataset(args.out, n=args.n, seed=args.seed)
    print(f"demo faces written to {out} ({args.n} images, seed {args.seed})")


def cmd_prepare(args):
    from resvae_keras import data

    kwargs = dict(data_dir=args.data_dir, size=args.size, max_images=args.max_images)
    if args.cache_dir:
        kwargs["cache_dir"] = args.cache_dir
    print(data.prepare(**kwargs).summary())


def cmd_train(args):
    from resvae_keras.config import get_profile
    from resvae_keras.train import TrainingDivergedError, train

    config = get_profile(args.profile, **_overrides(args))
    try:
        verbose = int(args.verbose) if args.verbose.isdigit() else args.verbose
        model, history = train(config, verbose=verbose)
    except TrainingDivergedError as err:
        sys.exit(str(err))
    last = history.iloc[-1].to_dict() if len(history) else {}
    print(f"run saved to {config.run_dir or 'runs/' + config.profile}: model.keras, "
          f"history.csv ({len(history)} epochs), grids/; last val_loss "
          f"{last.get('val_loss', float('nan')):.2f} nats/image")


def cmd_evaluate(args):
    from resvae_keras import evaluate

    if args.data_dir:
        path = evaluate.evaluate_folder(args.run_dir, args.data_dir)
        print(f"wrote {path}")
        return
    metrics = evaluate.evaluate_run(
        args.run_dir, n_samples=args.n_samples, allow_download=args.allow_download,
        sampler=args.sampler,
    )
    print(f"wrote {os.path.join(args.run_dir, 'metrics.json')}")
    print(json.dumps(metrics.get("summary", {}), indent=2))
    rows = [*metrics["samples"].values(), *metrics.get("sample_references", {}).values()]
    columns = ["face_rate", "swd_16_x1e3", "swd_32_x1e3", "swd_64_x1e3", "swd_mean_x1e3",
               "ms_ssim_between_samples"]
    table = evaluate.sample_table(rows)
    print("\nsamples and references (face rate in [0, 1], SWD x1e3 per level, pairwise MS-SSIM):")
    print(table[[c for c in columns if c in table.columns]].round(3).to_string())


def cmd_sample(args):
    from resvae_keras import evaluate

    paths = evaluate.write_samples(
        args.run_dir, n=args.n, out_dir=args.out, temperature=args.temperature,
        sampler=args.sampler, seed=args.seed,
    )
    print(f"wrote {len(paths)} PNG files to {args.out}")


def cmd_bench(args):
    from resvae_keras import bench
    from resvae_keras.config import get_profile

    if args.what == "data":
        result = bench.data_speed()
    elif args.what == "train":
        overrides = {"mixed_precision": args.mixed_precision} if args.mixed_precision else {}
        result = bench.training_speed(get_profile(args.profile, **overrides),
                                      batch_size=args.batch_size)
    else:
        result = bench.evaluation_speed()
    if args.json:
        print(json.dumps(result))
    else:
        _print_table(result, f"bench {args.what}")


def cmd_study(args):
    from resvae_keras import study

    study.run_study(only=args.only)


def cmd_report(args):
    from resvae_keras import report

    if args.collect:
        for path in report.collect_run(args.collect):
            print(f"copied {path.relative_to(report.project_root())}")
    for path in report.build_report():
        print(f"updated {path}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m resvae_keras", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo-data", help="write the synthetic demo faces")
    p.add_argument("--out", required=True)
    p.add_argument("--n", type=int, default=3000)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_demo_data)

    p = sub.add_parser("prepare", help="build the preprocessed cache")
    p.add_argument("--data-dir", dest="data_dir")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--cache-dir", dest="cache_dir")
    p.add_argument("--max-images", dest="max_images", type=int)
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("train", help="train a profile")
    _add_config_args(p)
    p.add_argument("--verbose", default="auto", help="Keras fit verbosity: auto, 0, 1 or 2")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="evaluate a run into metrics.json")
    p.add_argument("--run-dir", dest="run_dir", required=True)
    p.add_argument("--n-samples", dest="n_samples", type=int)
    p.add_argument("--sampler", choices=["prior", "two_stage", "gmm"], default=None,
                   help="one sampler (default: all)")
    p.add_argument("--data-dir", dest="data_dir",
                   help="only reconstruction metrics on every image of this CelebA-layout folder")
    p.add_argument("--allow-download", action="store_true",
                   help="fetch the InceptionV3 ImageNet weights when missing (for FID/KID)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("sample", help="write sampled faces as PNGs")
    p.add_argument("--run-dir", dest="run_dir", required=True)
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--out", required=True)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--sampler", choices=["prior", "two_stage", "gmm"], default="prior",
                   help="two_stage loads the run's two_stage.keras (fits it first if missing)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("bench", help="measure speed")
    p.add_argument("what", choices=["data", "train", "eval"])
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--profile", default="celeba-subset",
                   help="architecture to time (bench train; default: the 64x64 default)")
    p.add_argument("--batch-size", dest="batch_size", type=int, default=64)
    p.add_argument("--mixed-precision", dest="mixed_precision",
                   choices=["mixed_float16", "mixed_bfloat16"])
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("study", help="train and collect the residual/plain/beta study")
    p.add_argument("--only", nargs="+", help="run names (default: every unfinished run)")
    p.set_defaults(func=cmd_study)

    p = sub.add_parser("report", help="fill the report tables from report/results")
    p.add_argument("--collect", metavar="RUN_DIR",
                   help="first copy an evaluated run's results into report/results/celeba-subset")
    p.set_defaults(func=cmd_report)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (FileNotFoundError, ValueError) as err:
        # Bad input (a missing CelebA folder, a malformed annotation file, a bad
        # setting): the message says what to do; a traceback would bury it.
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
