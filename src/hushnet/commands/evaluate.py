"""``hushnet evaluate``: optionally denoise a folder, then score it against clean references."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from hushnet.commands.denoise import ClusterOptions, check_cluster_options
from hushnet.corpus import ray_session, score_on_ray
from hushnet.errors import one_line
from hushnet.evaluate import (
    Matching,
    default_jobs,
    format_table,
    match_folders,
    read_manifest,
    score_pairs,
    summarize,
    unreferenced,
    write_reports,
)
from hushnet.options import MODEL_HELP, RuntimeOptions, check_runtime, option


@dataclass
class EvaluateConfig(RuntimeOptions, ClusterOptions):
    """One ``hushnet evaluate`` job: denoise ``noisy`` (unless ``enhanced`` is given), then score against ``clean``."""

    clean: str | None = option(None, help="folder of clean references")
    noisy: str | None = option(
        None, help="folder of noisy inputs (matched by file name): denoised with --model, and scored as the baseline"
    )
    enhanced: str | None = option(
        None, help="folder of already enhanced files (matched by file name): scored instead of denoising --noisy"
    )
    manifest: str | None = option(None, help="CSV with columns clean and noisy and/or enhanced (paths relative to it)")
    model: str | None = option(
        None,
        help=f"denoise --noisy with this model ({MODEL_HELP}; default: the package default model)",
        show_default=False,
    )
    output: str = option(
        "evaluation", short="-o", help="folder for per_file.csv, summary.json, the plot (and enhanced/)"
    )
    dnsmos: bool = option(False, help="also DNSMOS SIG/BAK/OVRL (no reference needed; extra hushnet[dnsmos]; slow)")
    jobs: int | None = option(None, help="parallel scoring processes (default: up to 4)", show_default=False)
    quiet: bool = option(False, short="-q", help="no progress bar")


def _matching(config: EvaluateConfig) -> tuple[Matching, str]:
    """What to score, and a line saying what it is; denoises ``noisy`` first where that is the job."""
    from hushnet.commands.denoise import DenoiseConfig
    from hushnet.commands.denoise import run as denoise
    from hushnet.model_dir import DEFAULT_MODEL, resolve_model_dir

    if config.manifest:
        return read_manifest(Path(config.manifest)), f"the files listed in {config.manifest}"
    if not (config.noisy or config.enhanced) or (not config.clean and not config.dnsmos):
        raise ValueError("give --clean with --noisy and/or --enhanced, or --manifest (without --clean: --dnsmos)")
    if config.model and not config.noisy:
        raise ValueError("--model needs --noisy (the files to denoise)")
    enhanced, what = config.enhanced, f"the enhanced files in {config.enhanced}" if config.enhanced else ""
    if config.noisy and (config.model or not config.enhanced):
        model = config.model or DEFAULT_MODEL
        resolve_model_dir(model)  # a wrong name fails here, in one line, before anything is written
        enhanced = str(Path(config.output) / "enhanced")
        print(f"denoising {config.noisy} into {enhanced} with {model}", file=sys.stderr)
        # Float output: 16-bit quantization alone moves the LLR-based scores (CSIG) visibly.
        denoising = DenoiseConfig(
            inputs=[config.noisy],
            output=enhanced,
            model=model,
            float_output=True,
            quiet=config.quiet,
            device=config.device,
            threads=config.threads,
            ray=config.ray,
            actors=config.actors,
        )
        if denoise(denoising) != 0:
            print("warning: some files could not be denoised; they are listed as missing", file=sys.stderr)
        what = f"{model}'s output for {config.noisy}"
    if config.noisy and config.clean:
        what += f", with {config.noisy} as the noisy baseline"
    if config.clean:
        matching = match_folders(
            Path(config.clean), Path(config.noisy) if config.noisy else None, Path(enhanced) if enhanced else None
        )
        return matching, f"{what}, against {config.clean}"
    return unreferenced(Path(enhanced), "enhanced"), f"{what} (DNSMOS, no reference)"


def output_folder_error(folder: Path) -> str | None:
    """Why the reports cannot be written into ``folder`` (one line), or None; creates nothing."""
    from hushnet.temporaries import check_folder_writable

    if folder.exists() and not folder.is_dir():
        return f"-o {folder} is a file; give a folder for the reports"
    try:
        check_folder_writable(folder)
    except OSError as error:
        return f"-o {folder}: cannot write there ({error.strerror or error})"
    return None


def run(config: EvaluateConfig) -> int:
    """Optionally denoise, then score, print a table and write the reports; returns the exit status.
    With ``--ray`` both steps run on one Ray connection."""
    refusal = output_folder_error(Path(config.output))
    if config.jobs is not None and config.jobs < 1:
        refusal = f"--jobs must be at least 1, got {config.jobs}"
    if refusal is not None:  # before any file is denoised or scored
        print(f"error: {refusal}", file=sys.stderr)
        return 2
    try:
        check_runtime(config)
    except ValueError as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        return 2
    if config.ray is None:
        return _run(config)
    try:
        check_cluster_options(config)
        with ray_session(config.ray) as ray:
            return _run(config, ray)
    except (RuntimeError, ValueError) as error:  # Ray missing, the cluster unreachable, or no actors
        print(f"error: {one_line(error)}", file=sys.stderr)
        return 2


def _run(config: EvaluateConfig, ray=None) -> int:
    from tqdm import tqdm

    try:
        matching, what = _matching(config)
    except (FileNotFoundError, ValueError) as error:  # ModelError is a ValueError
        print(f"error: {one_line(error)}", file=sys.stderr)
        return 2
    for message in matching.missing:
        print(f"missing partner: {message}", file=sys.stderr)
    if not matching.pairs:
        print("error: no file pairs to score", file=sys.stderr)
        return 1
    print(f"scoring {len(matching.pairs)} file{'s' if len(matching.pairs) != 1 else ''}: {what}", file=sys.stderr)
    bar = tqdm(
        total=len(matching.pairs),
        unit="file",
        desc="scoring",
        disable=not (not config.quiet and sys.stderr.isatty()),
        file=sys.stderr,
    )
    if ray is not None:
        rows = score_on_ray(
            ray, matching.pairs, with_dnsmos=config.dnsmos, tasks=config.actors, progress=lambda: bar.update(1)
        )
    else:
        rows = score_pairs(
            matching.pairs,
            jobs=config.jobs or default_jobs(),
            progress=lambda: bar.update(1),
            with_dnsmos=config.dnsmos,
        )
    bar.close()
    summary = summarize(rows)
    print(format_table(rows, summary))
    for path in write_reports(rows, summary, Path(config.output), what):
        print(f"wrote {path}", file=sys.stderr)
    failed = [r for r in rows if "error" in r]
    for row in failed:
        print(f"error: {row['name']}: {row['error']}", file=sys.stderr)
    return 1 if failed or matching.missing else 0
