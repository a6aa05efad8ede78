"""Command line: ``python -m resvae_keras <command> ...`` (``--help`` on each command).

| command     | does                                                        |
| ----------- | ----------------------------------------------------------- |
| demo-data   | write the synthetic demo faces in the official CelebA layout |
| prepare     | preprocess a CelebA folder or zip into the uint8 cache       |
| train       | train a profile into ``runs/<name>``                         |
| evaluate    | write ``runs/<name>/metrics.json``                           |
| sample      | write sampled faces as PNG files                             |
| bench       | measure data, training or evaluation speed                   |
| study       | the pre-registered residual / plain / conv study (plan.toml)      |
| report      | fill the report's tables from ``report/results``             |
"""

from __future__ import annotations

import argparse
import errno
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
    from resvae_keras.config import CLI_OPTIONS

    values = {n: getattr(args, n) for n in CLI_OPTIONS if getattr(args, n, None) is not None}
    if values.get("mixed_precision") == "float32":
        values["mixed_precision"] = None
    if getattr(args, "plain", False):
        values["residual"] = False
    return values


def _widths(text: str) -> tuple[int, ...]:
    """``--widths 32,64,128`` -> (32, 64, 128)."""
    try:
        widths = tuple(int(w) for w in text.split(","))
    except ValueError:
        widths = ()
    if not widths or min(widths) < 1:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected positive channel counts separated by commas, e.g. 32,64,128"
        )
    return widths


def _profile(args) -> str:
    """``--profile``, else the rule of ``config.profile_from_env`` (``RESVAE_PROFILE`` first)."""
    from resvae_keras.config import profile_from_env

    return args.profile or profile_from_env()


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", choices=["demo", "celeba-subset", "celeba"],
                   help="default: RESVAE_PROFILE, else celeba (GPU) or celeba-subset (CPU) "
                   "when CELEBA_DIR is set, else demo")
    p.add_argument("--run-dir", dest="run_dir", help="output folder (default runs/<profile>)")
    p.add_argument("--data-dir", dest="data_dir", help="CelebA root (default CELEBA_DIR)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", dest="batch_size", type=int,
                   help="images per step on each worker; with several workers (TF_CONFIG) "
                        "a step trains on batch size x workers images")
    p.add_argument("--learning-rate", dest="learning_rate", type=float)
    p.add_argument("--beta", type=float)
    p.add_argument("--kl-warmup-steps", dest="kl_warmup_steps", type=int)
    p.add_argument("--sigma-min", dest="sigma_min", type=float,
                   help="floor on the learned decoder sigma (0: none)")
    p.add_argument("--latent-dim", dest="latent_dim", type=int)
    p.add_argument("--widths", type=_widths, help="channels per stage, e.g. 32,64,128")
    p.add_argument("--blocks-per-stage", dest="blocks_per_stage", type=int)
    p.add_argument("--image-size", dest="image_size", type=int)
    p.add_argument("--likelihood", choices=["gaussian_learned", "gaussian", "bernoulli"])
    p.add_argument("--norm", choices=["group", "batch", "none"],
                   help="normalization in the residual blocks (default group)")
    p.add_argument("--kind", choices=["vae", "ae"])
    p.add_argument("--plain", action="store_true", help="drop the residual shortcuts")
    p.add_argument("--architecture", choices=["resnet", "conv"],
                   help="resnet: the ResVAE; conv: the shallow textbook convolutional VAE")
    p.add_argument("--seed", type=int)
    p.add_argument("--max-images", dest="max_images", type=int)
    p.add_argument("--strategy", choices=["none", "mirrored", "auto"],
                   help="auto: several workers when TF_CONFIG is set, every GPU when there "
                        "are several, else one device (it prints which and why)")
    p.add_argument("--mixed-precision", dest="mixed_precision",
                   choices=["mixed_float16", "mixed_bfloat16", "float32"])
    p.add_argument("--two-stage-epochs", dest="two_stage_epochs", type=int,
                   help="epochs of the second-stage VAE fitted after training (0: skip it)")


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
    from resvae_keras.train import TrainingDivergedError, describe_tf_config, train

    config = get_profile(_profile(args), **_overrides(args))
    try:
        verbose = int(args.verbose) if args.verbose.isdigit() else args.verbose
        # train makes the strategy itself, before any TensorFlow op runs
        model, history = train(config, verbose=verbose)
    except TrainingDivergedError as err:
        sys.exit(str(err))
    if config.strategy == "auto" and os.environ.get("TF_CONFIG"):
        role = describe_tf_config(os.environ["TF_CONFIG"])
        if not role["chief"]:
            print(f"{role['task_type']} {role['task_index']} done; the chief wrote the run dir")
            return
    monitor = "val_loss" if config.kind == "ae" else "val_neg_elbo"
    best = history[monitor].min() if monitor in history else float("nan")
    print(f"run saved to {config.run_dir or 'runs/' + config.profile}: model.keras (best "
          f"{monitor} {best:.2f} nats/image), last.keras, history.csv ({len(history)} epochs), grids/")


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
        if overrides.get("mixed_precision") == "float32":
            overrides["mixed_precision"] = None
        result = bench.training_speed(get_profile(args.profile, **overrides),
                                      batch_size=args.batch_size)
    else:
        result = bench.evaluation_speed()
    if args.json:
        print(json.dumps(result))
    else:
        _print_table(result, f"bench {args.what}")


def cmd_study(args):
    from resvae_keras import plan, study

    if args.status:
        print(plan.status_text(profile=args.profile))
    elif args.benchmark:
        from resvae_keras import bench

        spec = plan.load_plan()
        arms = plan.runs_table(spec, args.profile)
        result = bench.study_step_times(profile=args.profile, runs=arms[arms["group"] == "arms"],
                                        root=plan.results_root(spec, args.profile))
        for arm, row in result["arms"].items():
            print(f"{arm}: {row['seconds_per_step']:.3f} s/step (IQR {row['q25']:.3f}-"
                  f"{row['q75']:.3f}), {row['train_gflops_per_image']:.2f} training GFLOP/image")
        print(plan.status_text(spec, profile=args.profile))
    elif args.sweep:
        study.run_sweep(only=args.only)
    else:
        plan.run_plan(only=args.only, profile=args.profile, max_runs=args.max_runs)


def cmd_report(args):
    from resvae_keras import report, study

    if args.collect:
        for path in study.collect_run(args.collect, study.results_dir() / report.MAIN_RUN):
            print(f"copied {path.relative_to(report.project_root())}")
    for path in report.build_report():
        print(f"updated {path}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m resvae_keras", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true",
                        help="show the full traceback of any error")

    p = sub.add_parser("demo-data", parents=[common], help="write the synthetic demo faces")
    p.add_argument("--out", required=True)
    p.add_argument("--n", type=int, default=3000)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_demo_data)

    p = sub.add_parser("prepare", parents=[common], help="build the preprocessed cache")
    p.add_argument("--data-dir", dest="data_dir")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--cache-dir", dest="cache_dir")
    p.add_argument("--max-images", dest="max_images", type=int)
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("train", parents=[common], help="train a profile")
    _add_config_args(p)
    p.add_argument("--verbose", default="auto", choices=["auto", "0", "1", "2"],
                   help="Keras fit verbosity")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", parents=[common], help="evaluate a run into metrics.json")
    p.add_argument("--run-dir", dest="run_dir", required=True)
    p.add_argument("--n-samples", dest="n_samples", type=int)
    p.add_argument("--sampler", choices=["prior", "two_stage", "gmm"], default=None,
                   help="one sampler (default: all)")
    p.add_argument("--data-dir", dest="data_dir",
                   help="only reconstruction metrics on every image of this CelebA-layout folder")
    p.add_argument("--allow-download", action="store_true",
                   help="fetch the InceptionV3 ImageNet weights when missing (for FID/KID)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("sample", parents=[common], help="write sampled faces as PNGs")
    p.add_argument("--run-dir", dest="run_dir", required=True)
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--out", required=True)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--sampler", choices=["prior", "two_stage", "gmm"], default="prior",
                   help="two_stage loads the run's two_stage.keras (fits it first if missing)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("bench", parents=[common], help="measure speed")
    p.add_argument("what", choices=["data", "train", "eval"])
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--profile", default="celeba-subset",
                   help="architecture to time (bench train; default: the 64x64 default)")
    p.add_argument("--batch-size", dest="batch_size", type=int, default=64)
    p.add_argument("--mixed-precision", dest="mixed_precision",
                   choices=["mixed_float16", "mixed_bfloat16", "float32"])
    p.add_argument("--two-stage-epochs", dest="two_stage_epochs", type=int,
                   help="epochs of the second-stage VAE fitted after training (0: skip it)")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("study", parents=[common],
                       help="the pre-registered study (report/results/study/plan.toml): its "
                            "learning-rate runs, then its seeds, each skipped when finished")
    p.add_argument("--only", nargs="+", help="run names (default: every unfinished run)")
    p.add_argument("--max-runs", dest="max_runs", type=int,
                   help="stop after this many runs (commit their results, continue later)")
    p.add_argument("--benchmark", action="store_true",
                   help="time every arm in one controlled run into benchmark.json")
    p.add_argument("--status", action="store_true", help="print what is done and what is next")
    p.add_argument("--sweep", action="store_true",
                   help="the default-model sweep (decoder sigma floor, latent size) instead")
    p.add_argument("--profile", default="celeba-subset", choices=["celeba-subset", "demo"],
                   help="demo: the same study, minute-sized, into runs/demo/")
    p.set_defaults(func=cmd_study)

    p = sub.add_parser("report", parents=[common], help="fill the report tables from report/results")
    p.add_argument("--collect", metavar="RUN_DIR",
                   help="first copy an evaluated run's results into report/results/celeba-subset")
    p.set_defaults(func=cmd_report)
    return parser


def _error_line(err: BaseException) -> str:
    """A short message for an expected error, with what to do next."""
    if not isinstance(err, OSError):
        return f"error: {err}"
    if err.__class__.__module__.startswith("resvae_keras"):  # our messages say it all
        return f"error: {err.strerror or err}"
    from resvae_keras.data._io import display_path

    text = str(err)
    if err.strerror:
        text = err.strerror + (f": {display_path(err.filename)}" if err.filename else "")
    hints = {
        errno.ENOSPC: "free some space (df -h shows where) and run the same command again; "
        "a training run continues from its last completed epoch",
        errno.EACCES: "check the folder's permissions, or choose another folder "
        "(--run-dir, --cache-dir, --out)",
        errno.EPERM: "check the folder's permissions, or choose another folder "
        "(--run-dir, --cache-dir, --out)",
        errno.EROFS: "that file system is read-only; choose another folder "
        "(--run-dir, --cache-dir, --out)",
        errno.EEXIST: "a file is in the way of a folder; remove it or choose another name",
        errno.ENOTDIR: "a file is in the way of a folder; remove it or choose another name",
    }
    hint = hints.get(err.errno)
    return f"error: {text}" + (f"\n{hint}" if hint else "")


def _tf_error(err: BaseException, name: str) -> bool:
    """``err`` is TensorFlow's ``tf.errors.<name>`` (False when TensorFlow was never imported)."""
    tf = sys.modules.get("tensorflow")
    return tf is not None and isinstance(err, getattr(tf.errors, name))


def main(argv=None):
    """Run one command. Expected errors print a short message and exit 1 (Ctrl-C: 130);
    an unexpected one says it is a bug and shows its traceback with ``--debug``."""
    args = build_parser().parse_args(argv)
    if args.debug:
        return args.func(args)
    try:
        args.func(args)
    except KeyboardInterrupt:
        print("\ninterrupted; run the same command again to continue (a training run resumes "
              "from its last completed epoch)", file=sys.stderr)
        sys.exit(130)
    except (OSError, ValueError) as err:
        # Bad input (a missing CelebA folder, a malformed annotation file, a bad setting,
        # an unwritable folder, a full disk): the message says what to do.
        sys.exit(_error_line(err))
    except Exception as err:
        if _tf_error(err, "ResourceExhaustedError"):
            sys.exit("error: out of memory; lower --batch-size (or the model size) and run again")
        if _tf_error(err, "UnavailableError"):  # a collective op lost a worker of the cluster
            sys.exit("error: a worker of the cluster stopped or cannot be reached "
                     "(UnavailableError; --debug shows TensorFlow's message)\nStart every "
                     "worker again with the same command: the run resumes from its last "
                     "completed epoch.")
        sys.exit(f"error: unexpected {type(err).__name__}: {err}\n"
                 f"This is probably a bug; run the command again with --debug to see the traceback.")


if __name__ == "__main__":
    main()
