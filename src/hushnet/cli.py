"""The ``hushnet`` command: argument parsing only; the work is done by the package's modules."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

MODEL_HELP = "model directory, or the name of a shipped model (default: the package default)"


def _add_runtime_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")


def _configure_runtime(args: argparse.Namespace) -> None:
    import torch

    if args.threads is not None:
        if args.threads < 1:
            raise SystemExit("error: --threads must be at least 1")
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda asked for, but no CUDA GPU is available")


def _denoise(args: argparse.Namespace) -> int:
    from hushnet.checkpoint import ModelError
    from hushnet.denoiser import Denoiser
    from hushnet.commands import denoise_files

    _configure_runtime(args)
    try:
        denoiser = Denoiser.from_pretrained(args.model, device=args.device, memory_budget_mb=args.memory_budget_mb)
    except ModelError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return denoise_files(denoiser, args.inputs, args.output, progress=not args.quiet, float_output=args.float)


def _import_reference(args: argparse.Namespace) -> int:
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
    from hushnet.commands import evaluate_command

    _configure_runtime(args)
    return evaluate_command(args.clean, args.noisy, args.enhanced, args.manifest, args.model, args.output, args.jobs,
                            progress=not args.quiet, device=args.device)


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
    denoise.set_defaults(run=_denoise)

    evaluate = commands.add_parser("evaluate", help="score enhanced speech against clean references (PESQ, STOI, CSIG/CBAK/COVL, SI-SDR, ...)")
    evaluate.add_argument("--clean", help="folder of clean references")
    evaluate.add_argument("--noisy", help="folder of noisy inputs (matched by file name); scored as the baseline")
    evaluate.add_argument("--enhanced", help="folder of already enhanced files (matched by file name)")
    evaluate.add_argument("--manifest", help="CSV with columns clean and noisy and/or enhanced (paths relative to it)")
    evaluate.add_argument("--model", default=None, help="denoise --noisy with this model first (" + MODEL_HELP + ")")
    evaluate.add_argument("-o", "--output", default="evaluation", help="folder for per_file.csv, summary.json, the plot (and enhanced/)")
    evaluate.add_argument("--jobs", type=int, default=None, help="parallel scoring processes (default: up to 4)")
    evaluate.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _add_runtime_options(evaluate)
    evaluate.set_defaults(run=_evaluate)

    importer = commands.add_parser("import-reference", help="import the authors' released model (TF checkpoint or .npz)")
    importer.add_argument("source", help="folder with se_model.ckpt.* / loss_model.ckpt.* (or .npz), or one checkpoint")
    importer.add_argument("-o", "--output", required=True, help="model directory to write")
    importer.add_argument("--lossnet-output", default=None, help="where the loss network goes (default: OUTPUT/lossnet)")
    importer.set_defaults(run=_import_reference)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "jobs", 0) is None:
        from hushnet.evaluate import default_jobs

        args.jobs = default_jobs()
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
