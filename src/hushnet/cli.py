"""The ``hushnet`` command: argument parsing only; the work is done by the package's modules."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

MODEL_HELP = "model directory, or the name of a shipped model (default: the package default)"


def _add_runtime_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: the engine's choice, all cores)")


def _needs_extra(command: str, modules: tuple[str, ...] = ("torch",)) -> bool:
    """Print one line naming the extra to install when a module of ``command``'s extra is missing."""
    from hushnet.inference.engines import _installed

    missing = [m for m in modules if not _installed(m)]
    if missing:
        print(f'error: hushnet {command} needs {", ".join(missing)}: pip install "hushnet[train]"', file=sys.stderr)
    return bool(missing)


def _configure_runtime(args: argparse.Namespace) -> None:
    import torch

    if args.threads is not None:
        if args.threads < 1:
            raise SystemExit("error: --threads must be at least 1")
        torch.set_num_threads(args.threads)
    if args.device and args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda asked for, but no CUDA GPU is available")


def _denoise(args: argparse.Namespace) -> int:
    # No torch here: with the onnx engine, denoising runs on onnxruntime alone.
    from hushnet.audio import AudioError
    from hushnet.commands import denoise_files
    from hushnet.denoiser import Denoiser
    from hushnet.model_files import ModelError

    if args.threads is not None and args.threads < 1:
        raise SystemExit("error: --threads must be at least 1")
    if args.device and args.device.startswith("cuda"):
        _configure_runtime(args)
    try:
        denoiser = Denoiser.from_pretrained(args.model, device=args.device, engine=args.engine, threads=args.threads,
                                            memory_budget_mb=args.memory_budget_mb, dry=args.dry, level_db=args.level_db,
                                            level_scope=args.level_scope)
    except (ModelError, AudioError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return denoise_files(denoiser, args.inputs, args.output, progress=not args.quiet, float_output=args.float)


def _export_onnx(args: argparse.Namespace) -> int:
    if _needs_extra("export-onnx", ("torch", "safetensors", "onnx")):
        return 2
    from hushnet.inference.networks import export_model
    from hushnet.model_files import ModelError

    try:
        path, error = export_model(args.model, args.output)
    except (ModelError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{path} (onnxruntime vs torch on 3 s of noise: max abs difference {error:.1e})" if error is not None else str(path))
    return 0


def _import_reference(args: argparse.Namespace) -> int:
    if _needs_extra("import-reference"):
        return 2
    from hushnet.checkpoint import import_reference
    from hushnet.tf_checkpoint import CheckpointError

    try:
        written = import_reference(args.source, args.output, args.lossnet_output)
    except (CheckpointError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for kind, path in written.items():
        print(f"{'enhancement network' if kind == 'can' else 'loss network'}: {path}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    if _needs_extra("evaluate", ("torch", "pesq", "pystoi", "scipy")):
        return 2
    from hushnet.commands import evaluate_command
    from hushnet.evaluate import default_jobs

    if args.jobs is None:
        args.jobs = default_jobs()

    _configure_runtime(args)
    return evaluate_command(args.clean, args.noisy, args.enhanced, args.manifest, args.model, args.output, args.jobs,
                            progress=not args.quiet, device=args.device, with_dnsmos=args.dnsmos)


# Training flags and the TrainConfig field each one sets (dotted: nested dataclasses).
TRAIN_OPTIONS = {
    "data": "data", "valentini": "valentini", "clean": "clean", "noisy": "noisy", "init": "init",
    "norm": "model.norm", "channels": "model.channels", "input_rms_db": "model.input_rms_db",
    "freeze_norm_statistics": "freeze_norm_statistics", "segment_seconds": "mixing.segment_seconds",
    "feature_weight": "loss.feature", "l1_weight": "loss.l1", "l2_weight": "loss.l2", "lossnet": "loss.lossnet",
    "calibration_steps": "loss.calibration_steps", "batch_size": "batch_size", "learning_rate": "learning_rate",
    "warmup_steps": "warmup_steps", "max_steps": "max_steps", "time_budget_minutes": "time_budget_minutes", "validate_every": "validate_every",
    "validation_items": "validation_items", "checkpoint_every": "checkpoint_every", "seed": "seed",
    "device": "device", "threads": "threads", "autocast": "autocast", "workers": "workers",
}


def _train(args: argparse.Namespace) -> int:
    if _needs_extra("train", ("torch", "safetensors", "scipy", "auraloss")):
        return 2
    from hushnet.commands import train_command

    _configure_runtime(args)
    overrides = {field: getattr(args, flag) for flag, field in TRAIN_OPTIONS.items() if getattr(args, flag) is not None}
    return train_command(args.config, args.output, overrides, resume=args.resume, progress=not args.quiet)


def _train_lossnet(args: argparse.Namespace) -> int:
    if _needs_extra("train-lossnet", ("torch", "safetensors")):
        return 2
    from hushnet.commands import train_lossnet_command

    _configure_runtime(args)
    overrides = {key: getattr(args, key) for key in ("data", "dcase_scenes", "dcase_fold", "chime_home", "chime_fold", "tasks", "batch_size",
                                                     "learning_rate", "max_steps", "evaluate_every", "checkpoint_every", "seed", "device", "threads")
                 if getattr(args, key) is not None}
    return train_lossnet_command(args.output, overrides, resume=args.resume, progress=not args.quiet)


def _make_testset(args: argparse.Namespace) -> int:
    from hushnet.commands import make_testset_command

    return make_testset_command(args.data, args.output, args.count, args.seed)


def _level_db(value: str) -> float | str:
    if value == "off":
        return value
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected dBFS (e.g. -23) or off, got {value!r}") from None


def _add_denoise_options(parser: argparse.ArgumentParser) -> None:
    """The runtime's own options (engine, dry/wet, level): additive, ported as they are."""
    parser.add_argument("--engine", choices=["auto", "onnx", "torch"], default="auto",
                        help="inference engine (default auto: onnxruntime when installed and the model has model.onnx, else torch)")
    parser.add_argument("--dry", type=float, default=None,
                        help="fraction of the noisy input mixed back into the output: 0 = fully denoised, 1 = input unchanged "
                             "(default: the model's own, 0 for the shipped models)")
    parser.add_argument("--level-db", type=_level_db, default=None,
                        help="bring each channel to this RMS level (dBFS) before the network and back after; off = as is "
                             "(default: the model's own: -23 for hushnet-dfl, off for authors-dfl)")
    parser.add_argument("--level-scope", choices=["recording", "segment"], default="recording",
                        help="level gain per channel for the whole recording (default) or per segment")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hushnet", description="Speech denoising with deep feature losses.")
    commands = parser.add_subparsers(dest="command", required=True)

    denoise = commands.add_parser("denoise", help="denoise audio files, folders or globs")
    denoise.add_argument("inputs", nargs="+", help="audio files, folders (searched recursively) or glob patterns")
    denoise.add_argument("-o", "--output", help="output file (one input) or folder (default: NAME_denoised.EXT beside each input)")
    denoise.add_argument("--model", default=None, help=MODEL_HELP)
    denoise.add_argument("--memory-budget-mb", type=float, default=512, help="activation memory for whole-file processing (default 512)")
    denoise.add_argument("--float", action="store_true", help="write 32-bit float WAV instead of the input's format")
    denoise.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _add_runtime_options(denoise)
    _add_denoise_options(denoise)
    denoise.set_defaults(run=_denoise)

    exporter = commands.add_parser("export-onnx", help="write a denoising model as one self-contained ONNX file")
    exporter.add_argument("model", help="model directory, or the name of a shipped model")
    exporter.add_argument("-o", "--output", required=True, help="the .onnx file to write (MODEL_DIR/model.onnx for the runtime)")
    exporter.set_defaults(run=_export_onnx)

    evaluate = commands.add_parser("evaluate", help="score enhanced speech against clean references (PESQ, STOI, CSIG/CBAK/COVL, SI-SDR, ...)")
    evaluate.add_argument("--clean", help="folder of clean references")
    evaluate.add_argument("--noisy", help="folder of noisy inputs (matched by file name); scored as the baseline")
    evaluate.add_argument("--enhanced", help="folder of already enhanced files (matched by file name)")
    evaluate.add_argument("--manifest", help="CSV with columns clean and noisy and/or enhanced (paths relative to it)")
    evaluate.add_argument("--model", default=None, help="denoise --noisy with this model first (" + MODEL_HELP + ")")
    evaluate.add_argument("-o", "--output", default="evaluation", help="folder for per_file.csv, summary.json, the plot (and enhanced/)")
    evaluate.add_argument("--dnsmos", action="store_true", help="also DNSMOS SIG/BAK/OVRL (no reference needed; extra hushnet[dnsmos]; slow)")
    evaluate.add_argument("--jobs", type=int, default=None, help="parallel scoring processes (default: up to 4)")
    evaluate.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _add_runtime_options(evaluate)
    evaluate.set_defaults(run=_evaluate)

    trainer = commands.add_parser("train", help="train a denoiser (deep feature loss and/or waveform losses)")
    trainer.add_argument("-o", "--output", default="runs/hushnet", help="run folder: checkpoints, logs, best/ (default runs/hushnet)")
    trainer.add_argument("--config", help="a train_config.json to start from (flags override it)")
    trainer.add_argument("--resume", action="store_true", help="continue the run in --output from its last checkpoint")
    data = trainer.add_argument_group("data (one source)")
    data.add_argument("--data", help="folder with speech/, noise/ [, rir/] to mix on the fly (default ../shared/data)")
    data.add_argument("--valentini", help="Valentini noisy-VCTK folder (clean_trainset_28spk_wav/, noisy_trainset_28spk_wav/, ...)")
    data.add_argument("--clean", help="folder of clean files (with --noisy: pairs matched by name)")
    data.add_argument("--noisy", help="folder of noisy files")
    data.add_argument("--segment-seconds", type=float, help="training crop length (default 3)")
    model = trainer.add_argument_group("model")
    model.add_argument("--init", help="identity (default), default, or a model directory/name to fine-tune")
    model.add_argument("--norm", choices=["per-input", "batch"], help="normalisation mode (default per-input)")
    model.add_argument("--channels", type=int, help="feature maps (default 64)")
    model.add_argument("--input-rms-db", type=float, help="level the input is normalised to (default -23 dBFS)")
    model.add_argument("--freeze-norm-statistics", action="store_true", default=None, help="batch mode: keep running statistics fixed")
    losses = trainer.add_argument_group("loss")
    losses.add_argument("--feature-weight", type=float, help="weight of the deep feature loss (default 1; 0 turns it off)")
    losses.add_argument("--l1-weight", type=float, help="weight of the waveform L1 loss (default 0)")
    losses.add_argument("--l2-weight", type=float, help="weight of the waveform L2 loss (default 0)")
    losses.add_argument("--lossnet", help="loss network: model directory or shipped name (default authors-lossnet)")
    losses.add_argument("--calibration-steps", type=int, help="steps whose mean layer distances set the layer weights (default 100)")
    optimisation = trainer.add_argument_group("optimisation")
    optimisation.add_argument("--batch-size", type=int, help="crops per step and process (default 8)")
    optimisation.add_argument("--learning-rate", type=float, help="peak AdamW learning rate (default 3e-4)")
    optimisation.add_argument("--warmup-steps", type=int, help="linear warm-up steps (default 100)")
    optimisation.add_argument("--max-steps", type=int, help="total steps (default 10000)")
    optimisation.add_argument("--time-budget-minutes", type=float,
                              help="stop with a checkpoint once this much wall-clock time is spent (--resume continues)")
    optimisation.add_argument("--autocast", action="store_true", default=None, help="bf16 autocast")
    optimisation.add_argument("--seed", type=int, help="seed of initialisation and data (default 0)")
    bookkeeping = trainer.add_argument_group("bookkeeping")
    bookkeeping.add_argument("--validate-every", type=int, help="steps between validations (default 500)")
    bookkeeping.add_argument("--validation-items", type=int, help="validation mixtures (default 16)")
    bookkeeping.add_argument("--checkpoint-every", type=int, help="steps between checkpoints (default 100)")
    bookkeeping.add_argument("--workers", type=int, help="data-loading processes (default 0)")
    trainer.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _add_runtime_options(trainer)
    trainer.set_defaults(run=_train, device=None)

    lossnet = commands.add_parser("train-lossnet", help="train a loss network on scene classification and sound tagging")
    lossnet.add_argument("-o", "--output", default="runs/lossnet", help="run folder; the result goes to OUTPUT/lossnet")
    lossnet.add_argument("--resume", action="store_true", help="continue the run in --output from its last checkpoint")
    lossnet.add_argument("--data", help="folder with speech/ and noise/ for our own scene and tag tasks (default ../shared/data)")
    lossnet.add_argument("--dcase-scenes", help="TUT Acoustic Scenes 2016 development folder (meta.txt, audio/, evaluation_setup/)")
    lossnet.add_argument("--dcase-fold", type=int, help="its cross-validation fold (default 1)")
    lossnet.add_argument("--chime-home", help="CHiME-Home folder (chunks/, development_chunks_refined_crossval_dcase2016.csv)")
    lossnet.add_argument("--chime-fold", type=int, help="its cross-validation fold (default 0)")
    lossnet.add_argument("--tasks", choices=["sum", "alternate"], help="sum both task losses each step, or alternate (default sum)")
    lossnet.add_argument("--batch-size", type=int, help="clips per task and step (default 16)")
    lossnet.add_argument("--learning-rate", type=float, help="peak AdamW learning rate (default 1e-3)")
    lossnet.add_argument("--max-steps", type=int, help="total steps (default 3000)")
    lossnet.add_argument("--evaluate-every", type=int, help="steps between held-out evaluations (default 500)")
    lossnet.add_argument("--checkpoint-every", type=int, help="steps between checkpoints (default 100)")
    lossnet.add_argument("--seed", type=int, help="seed (default 0)")
    lossnet.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _add_runtime_options(lossnet)
    lossnet.set_defaults(run=_train_lossnet, device=None)

    testset = commands.add_parser("make-testset", help="build the reproducible synthetic test set from held-out speakers and noise")
    testset.add_argument("--data", default="../shared/data", help="folder with speech/ and noise/ (default ../shared/data)")
    testset.add_argument("-o", "--output", default="testsets/synthetic", help="folder to write clean/, noisy/, manifest.csv")
    testset.add_argument("--count", type=int, default=96, help="number of files (default 96)")
    testset.add_argument("--seed", type=int, default=2026, help="seed (default 2026: the published set)")
    testset.set_defaults(run=_make_testset)

    importer = commands.add_parser("import-reference", help="import the authors' released model (TF checkpoint or .npz)")
    importer.add_argument("source", help="folder with se_model.ckpt.* / loss_model.ckpt.* (or .npz), or one checkpoint")
    importer.add_argument("-o", "--output", required=True, help="model directory to write")
    importer.add_argument("--lossnet-output", default=None, help="where the loss network goes (default: OUTPUT/lossnet)")
    importer.set_defaults(run=_import_reference)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
