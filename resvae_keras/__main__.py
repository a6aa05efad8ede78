"""Command line: ``resvae <command> ...`` or ``python -m resvae_keras <command> ...``."""

from __future__ import annotations

import argparse
import errno
import json
import os
import signal
import sys

from resvae_keras import __version__
from resvae_keras.config import CLI_OPTIONS, PROFILES, get_profile, option_name


class _Parser(argparse.ArgumentParser):
    """Errors take two lines (the error, where the options are listed), not the usage block."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n(run {self.prog} --help for the options)\n")


class Terminated(KeyboardInterrupt):
    """SIGTERM raised like Ctrl-C, so ``finally`` blocks clean up before the exit 143."""


def _raise_terminated(signum, frame):
    raise Terminated()


def _overrides(args) -> dict:
    """Config overrides given on the command line (only those set)."""
    values = {n: getattr(args, n) for n in CLI_OPTIONS if getattr(args, n, None) is not None}
    if values.get("mixed_precision") == "float32":
        values["mixed_precision"] = None
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


DESCRIPTION = """\
A residual Variational Autoencoder (ResVAE) for 64x64 CelebA faces: data, training,
evaluation, sampling and the report. Without CELEBA_DIR every command uses the demo
profile: synthetic faces, minutes on a CPU."""
EPILOG = """\
Each command has its own help with every option and its default, e.g. resvae train --help.
Settings not given on the command line come from the profile (--profile, else
RESVAE_PROFILE)."""
PRECISIONS = ["mixed_float16", "mixed_bfloat16", "float32"]
# The options of ``train``, field: (type, or the choices, and help); a help without "(default"
# gets the profiles'. A flag (type None) sets its field: --plain residual=False, --flip flip=True.
TRAIN_OPTIONS = {
    "profile": (list(PROFILES), "named settings every other option overrides (default: "
                "RESVAE_PROFILE, else celeba (GPU) or celeba-subset (CPU) when CELEBA_DIR is "
                "set, else demo)"),
    "run_dir": (str, "output folder (default: runs/<profile>)"),
    "data_dir": (str, "CelebA root folder or zip (default: CELEBA_DIR, else data/celeba; demo: "
                 "data/demo)"),
    "cache_dir": (str, "preprocessed cache folder (default: data/cache/<profile>)"),
    "epochs": (int, "passes over the training split"),
    "batch_size": (int, "images per step on each worker"),
    "learning_rate": (float, "learning rate"),
    "beta": (float, "weight of the KL term"),
    "kl_warmup_steps": (int, "steps of the linear beta warm-up"),
    "sigma_min": (float, "floor on the learned decoder sigma"),
    "latent_dim": (int, "size of z"),
    "widths": (_widths, "encoder channels per stage, e.g. 32,64,128"),
    "blocks_per_stage": (int, "residual blocks per stage"),
    "image_size": (int, "image side, pixels"),
    "likelihood": (["gaussian_learned", "gaussian", "bernoulli"],
                   "the decoder's pixel distribution"),
    "norm": (["group", "batch", "none"], "normalization in the residual blocks"),
    "kind": (["vae", "ae"], "ae: the deterministic autoencoder baseline"),
    "residual": (None, "drop the residual shortcuts (default: shortcuts on)"),
    "architecture": (["resnet", "conv"], "conv: the shallow textbook VAE"),
    "seed": (int, "data order, weights and noise"),
    "max_images": (int, "use the first N images only"),
    "strategy": (["none", "mirrored", "auto"],
                 "auto: several workers with TF_CONFIG, else every GPU"),
    "mixed_precision": (PRECISIONS, "compute precision"),
    "two_stage_epochs": (int, "epochs of the second-stage VAE (0: skip)"),
    "flip": (None, "mirror training images left-right at random (default: off)"),
    "lr_schedule": (["constant", "cosine"], "cosine: warm-up, then cosine decay to 0"),
    "lr_warmup_steps": (int, "steps of the cosine warm-up"),
    "optimizer": (["adam", "adamw"], "adamw: decoupled weight decay"),
    "weight_decay": (float, "weight decay of adamw"),
}


class _HelpFormatter(argparse.HelpFormatter):
    """Adds "(default: X)" to an option's help unless it says it already; a wider first column."""

    def __init__(self, prog, max_help_position=30, **kwargs):
        super().__init__(prog, max_help_position=max_help_position, **kwargs)

    def _get_help_string(self, action):
        text, default = action.help or "", action.default
        if "default" in text or default is None or default is False or default is argparse.SUPPRESS:
            return text
        return f"{text} (default: %(default)s)"

    def add_argument(self, action):
        super().add_argument(action)
        # argparse measures a command's name one indent shallower than it prints it, so a
        # long name (demo-data) would push its help onto the next line
        for command in getattr(action, "_get_subactions", list)():
            width = self._current_indent + 2 * self._indent_increment + len(command.dest)
            self._action_max_length = max(self._action_max_length, width)


def _by_profile(field: str) -> str:
    """``(default: 64)``, or ``(default: demo 5, celeba-subset 10, celeba 40)`` when the
    profiles differ; tuples as the command line writes them (``32,64,128``)."""
    shown = {}
    for name in PROFILES:
        value = getattr(get_profile(name), field)
        if value is None:  # of the fields whose help has no default of its own
            value = "float32" if field == "mixed_precision" else "all"
        shown[name] = ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
    if len(set(shown.values())) == 1:
        return f"(default: {shown[PROFILES[0]]})"
    return "(default: " + ", ".join(f"{name} {value}" for name, value in shown.items()) + ")"


def _add_train_options(p: argparse.ArgumentParser) -> None:
    for field, (kind, text) in TRAIN_OPTIONS.items():
        text = text if "(default" in text else f"{text} {_by_profile(field)}"
        if kind is None:
            p.add_argument(option_name(field), dest=field, action="store_const",
                           const=field != "residual", help=text)
        elif isinstance(kind, list):
            p.add_argument(option_name(field), choices=kind, help=text)
        else:
            p.add_argument(option_name(field), type=kind, help=text)


def cmd_demo_data(args):
    from resvae_keras import data

    out = data.write_demo_dataset(args.out, n=args.n, seed=args.seed)
    print(f"demo faces written to {out} ({args.n} images, seed {args.seed})")


def cmd_prepare(args):
    from resvae_keras import data

    print(data.prepare(data_dir=args.data_dir, size=args.size, cache_dir=args.cache_dir,
                       max_images=args.max_images).summary())


def _profile(args) -> str:
    """``--profile``, else ``RESVAE_PROFILE`` or a guess (``config.profile_from_env``)."""
    from resvae_keras.config import profile_from_env

    return args.profile or profile_from_env()


def cmd_train(args):
    from resvae_keras.distribute import describe_tf_config
    from resvae_keras.train import TrainingDivergedError, train

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
          f"{monitor} {best:.2f} nats/image), last.keras, history.csv ({len(history)} epochs), "
          "grids/")


def cmd_evaluate(args):
    from resvae_keras import evaluate, record

    if args.data_dir:
        path = evaluate.evaluate_folder(args.run_dir, args.data_dir)
        print(f"wrote {path}")
        return
    metrics = evaluate.evaluate_run(args.run_dir, n_samples=args.n_samples,
                                    allow_download=args.allow_download, sampler=args.sampler)
    print(f"wrote {os.path.join(args.run_dir, 'metrics.json')}")
    print(json.dumps(record.run_record(metrics), indent=2))
    rows = [*metrics["samples"].values(), *metrics.get("sample_references", {}).values()]
    columns = ["face_rate", "swd_16", "swd_32", "swd_64", "swd_mean", "ms_ssim_between_samples"]
    table = evaluate.sample_table(rows)
    print("\nsamples and references (face rate in [0, 1], SWD x1e3 per level, pairwise MS-SSIM):")
    print(table[[c for c in columns if c in table.columns]].round(3).to_string())


def cmd_sample(args):
    from resvae_keras import evaluate

    paths = evaluate.write_samples(args.run_dir, n=args.n, out_dir=args.out,
                                   temperature=args.temperature, sampler=args.sampler,
                                   seed=args.seed)
    print(f"wrote {len(paths)} PNG files to {args.out}")


def cmd_bench(args):
    from resvae_keras import bench

    if args.what == "data":
        result = bench.data_speed()
    elif args.what == "train":
        result = bench.training_speed(get_profile(args.profile, **_overrides(args)),
                                      batch_size=args.batch_size)
    else:
        result = bench.evaluation_speed()
    if args.json:
        print(json.dumps(result))
        return
    width = max(len(k) for k in result)
    print(f"bench {args.what}")
    for key, value in result.items():
        shown = f"{value:,.3f}" if isinstance(value, float) else str(value)
        print(f"  {key:<{width}}  {shown}")


def cmd_study(args):
    from resvae_keras import plan

    if args.status:
        print(plan.status_text(profile=args.profile))
    elif args.benchmark:
        from resvae_keras import bench

        spec = plan.load_plan()
        result = bench.study_step_times(profile=args.profile,
                                        runs=plan.runs_table(spec, args.profile),
                                        root=plan.results_root(spec, args.profile))
        for arm, row in result["arms"].items():
            print(f"{arm}: {row['seconds_per_step']:.3f} s/step (IQR {row['q25']:.3f}-"
                  f"{row['q75']:.3f}), {row['train_gflops_per_image']:.2f} training GFLOP/image")
        print(plan.status_text(spec, profile=args.profile))
    else:
        plan.run_plan(only=args.only, profile=args.profile, max_runs=args.max_runs)


def cmd_levers(args):
    from resvae_keras import levers

    print(levers.run_levers(only=args.only).round(3).to_string(index=False))


def cmd_report(args):
    from resvae_keras import report, study

    if args.collect:
        for path in study.collect_run(args.collect, report.Results().main_dir):
            print(f"copied {path.relative_to(report.project_root())}")
    for path in report.build_report():
        print(f"updated {path}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="resvae", description=DESCRIPTION, epilog=EPILOG,
                     formatter_class=_HelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, title="commands",
                                metavar="<command>")
    common = _Parser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show the full traceback of any error")

    def command(name, help, description):
        """The parser of ``resvae <name>``, which runs ``cmd_<name>``."""
        p = sub.add_parser(name, parents=[common], help=help, description=description,
                           formatter_class=_HelpFormatter)
        p.set_defaults(func=globals()["cmd_" + name.replace("-", "_")])
        return p

    _add_data_and_run_commands(command)
    _add_study_commands(command)
    return parser


def _add_data_and_run_commands(command):
    p = command("demo-data", "write the synthetic demo faces",
                "Write synthetic demo faces in the official CelebA layout.")
    p.add_argument("--out", required=True, help="folder to write, e.g. data/demo")
    p.add_argument("--n", type=int, default=3000, help="number of faces")
    p.add_argument("--seed", type=int, default=0, help="random seed of the faces")

    p = command("prepare", "build the preprocessed cache",
                "Crop and resize a CelebA folder or zip once into the uint8 cache.")
    p.add_argument("--data-dir",
                   help="CelebA root folder or zip (default: CELEBA_DIR, else data/celeba)")
    p.add_argument("--size", type=int, default=64, help="side of the cached images, pixels")
    p.add_argument("--cache-dir", default="data/cache", help="parent folder of the cache")
    p.add_argument("--max-images", type=int,
                   help="the first N images by file name only (default: all)")

    p = command("train", "train a profile",
                "Train a profile into its run folder; an interrupted run resumes.")
    _add_train_options(p)
    p.add_argument("--verbose", default="auto", choices=["auto", "0", "1", "2"],
                   help="0 silent, 1 progress bar, 2 one line per epoch")

    run_dir = dict(required=True, help="the trained run's folder (holds model.keras)")
    p = command("evaluate", "evaluate a run into metrics.json",
                "Measure a trained run into <run-dir>/metrics.json.")
    p.add_argument("--run-dir", **run_dir)
    p.add_argument("--n-samples", type=int,
                   help="samples per sampler (default: the test split's size, at most 10000)")
    p.add_argument("--sampler", choices=["prior", "two_stage", "gmm"], default=None,
                   help="one sampler (default: all)")
    p.add_argument("--data-dir",
                   help="only reconstruction metrics on this CelebA-layout folder "
                   "(default: the run's test split, all metrics)")
    p.add_argument("--allow-download", action="store_true",
                   help="fetch the InceptionV3 weights for FID/KID (default: skip them)")

    p = command("sample", "write sampled faces as PNGs",
                "Decode random latent codes of a trained run into PNG files.")
    p.add_argument("--run-dir", **run_dir)
    p.add_argument("--n", type=int, default=64, help="number of faces")
    p.add_argument("--out", required=True, help="folder for the PNG files (created)")
    p.add_argument("--temperature", type=float, default=1.0,
                   help="scales the codes' standard deviation")
    p.add_argument("--sampler", choices=["two_stage", "prior", "gmm"], default="two_stage",
                   help="where the codes come from; prior: z ~ N(0, I)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the codes")


def _add_study_commands(command):
    p = command("bench", "measure speed",
                "Images per second of the data pipeline, a training step or the evaluation.")
    p.add_argument("what", choices=["data", "train", "eval"], help="what to time")
    p.add_argument("--json", action="store_true", help="print one JSON object (default: a table)")
    p.add_argument("--profile", default="celeba-subset", help="architecture to time (bench train)")
    p.add_argument("--batch-size", type=int, default=64, help="images per step (bench train)")
    p.add_argument("--mixed-precision", choices=PRECISIONS,
                   help="compute precision (bench train; default: the profile's)")

    p = command("study", "the pre-registered study (report/results/study/plan.toml)",
                "Train, evaluate and collect every unfinished run of the residual / plain / "
                "conv study.")
    p.add_argument("--only", nargs="+", metavar="RUN",
                   help="run names (default: every unfinished run)")
    p.add_argument("--max-runs", type=int, help="stop after this many runs (default: no limit)")
    p.add_argument("--benchmark", action="store_true",
                   help="time every arm in one controlled run into benchmark.json")
    p.add_argument("--status", action="store_true", help="print what is done and what is next")
    p.add_argument("--profile", default="celeba-subset", choices=["celeba-subset", "demo"],
                   help="demo: the same study, minute-sized, into runs/demo/")

    p = command("levers", "the lever sweep that chose the default (validation split)",
                "Train and score each lever of levers.LEVERS not yet in levers.csv.")
    p.add_argument("--only", nargs="+", help="lever names (default: every row not yet run)")

    p = command("report", "fill the report tables from report/results",
                "Rewrite the generated regions of report/laporan.md and README.md.")
    p.add_argument("--collect", metavar="RUN_DIR",
                   help="first copy an evaluated run into report/results (default: none)")


def _exit_status(err: BaseException) -> str | int:
    """The exit status of an error: a short message with what to do next (exit 1), or after
    Ctrl-C (130) or SIGTERM (143) the status itself."""
    if isinstance(err, KeyboardInterrupt):
        what = "terminated (SIGTERM)" if isinstance(err, Terminated) else "interrupted"
        print(f"\n{what}; nothing half-written was kept. Run the same command again to "
              "continue (a training run resumes from its last completed epoch)",
              file=sys.stderr, flush=True)
        return 143 if isinstance(err, Terminated) else 130
    tf_errors = getattr(sys.modules.get("tensorflow"), "errors", None)  # None: never imported
    if tf_errors and isinstance(err, tf_errors.ResourceExhaustedError):
        return "error: out of memory; lower --batch-size (or the model size) and run again"
    if tf_errors and isinstance(err, tf_errors.UnavailableError):  # a lost cluster worker
        return ("error: a worker of the cluster stopped or cannot be reached (UnavailableError; "
                "--debug shows TensorFlow's message)\nStart every worker again with the same "
                "command: the run resumes from its last completed epoch.")
    if not isinstance(err, (OSError, ValueError)):
        return (f"error: unexpected {type(err).__name__}: {err}\nThis is probably a bug; run "
                "the command again with --debug to see the traceback.")
    if not isinstance(err, OSError):
        return f"error: {err}"
    if err.__class__.__module__.startswith("resvae_keras"):  # our messages say it all
        return f"error: {err.strerror or err}"
    from resvae_keras.data._io import display_path

    text = str(err)
    if err.strerror:
        text = err.strerror + (f": {display_path(err.filename)}" if err.filename else "")
    folders = "(--run-dir, --cache-dir, --out)"
    permissions = f"check the folder's permissions, or choose another folder {folders}"
    in_the_way = "a file is in the way of a folder; remove it or choose another name"
    hints = {
        errno.ENOSPC: "free some space (df -h shows where) and run the same command again; "
        "a training run continues from its last completed epoch",
        errno.EACCES: permissions,
        errno.EPERM: permissions,
        errno.EROFS: f"that file system is read-only; choose another folder {folders}",
        errno.EEXIST: in_the_way,
        errno.ENOTDIR: in_the_way,
        errno.ELOOP: "symbolic links there point at each other in a loop; remove them or point "
        "them at real files",
    }
    hint = hints.get(err.errno)
    return f"error: {text}" + (f"\n{hint}" if hint else "")


def main(argv=None):
    """Run one command; expected errors exit 1 with a short message (Ctrl-C 130, SIGTERM 143)."""
    args = build_parser().parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        args.func(args)
    except (KeyboardInterrupt, Exception) as err:
        if args.debug:
            raise
        sys.exit(_exit_status(err))
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    main()
