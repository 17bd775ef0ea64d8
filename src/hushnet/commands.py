"""What the CLI commands do, with their terminal output: progress, one line per failure, a summary."""

from __future__ import annotations

import sys
import time

import soundfile as sf
from tqdm import tqdm

from hushnet.audio import AudioError, one_line, output_extension
from hushnet.denoiser import Denoiser
from hushnet.files import find_inputs, plan_outputs


def denoise_files(denoiser: Denoiser, arguments: list[str], output: str | None, progress: bool = True, float_output: bool = False) -> int:
    """Denoise every input; returns the exit status (0 when every file succeeded, 1 otherwise).

    ``float_output`` writes 32-bit float WAV (no quantization noise: what scoring should see).
    """
    inputs, missing = find_inputs(arguments)
    for message in missing:
        print(f"error: {message}", file=sys.stderr)
    try:
        jobs = plan_outputs(inputs, output, (lambda path: ".wav") if float_output else output_extension)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    done, failed = 0, len(missing)
    started = time.perf_counter()
    audio_seconds = 0.0
    for job in jobs:
        if job.error:
            print(f"error: {job.input}: {job.error}", file=sys.stderr)
            failed += 1
            continue
        bar = tqdm(total=0, unit="sample", unit_scale=True, desc=job.input.name[:30], leave=False, disable=not (progress and sys.stderr.isatty()), file=sys.stderr)
        try:
            job.output.parent.mkdir(parents=True, exist_ok=True)
            result = denoiser.denoise_file(job.input, job.output, progress=bar.update, on_start=lambda total: setattr(bar, "total", total) or bar.refresh(),
                                            subtype="FLOAT" if float_output else None)
        except (AudioError, OSError, sf.LibsndfileError, RuntimeError) as error:
            bar.close()
            print(f"error: {job.input}: {one_line(error)}", file=sys.stderr)
            failed += 1
            continue
        bar.close()
        done += 1
        audio_seconds += result.seconds
        notes = f" ({'; '.join(result.notes)})" if result.notes else ""
        print(f"{job.input} -> {job.output}{notes}")
    elapsed = time.perf_counter() - started
    speed = f", {audio_seconds / elapsed:.1f}x real time" if done and elapsed > 0 else ""
    print(f"{done} file{'s' if done != 1 else ''} denoised, {failed} failed ({audio_seconds:.1f} s of audio in {elapsed:.1f} s{speed})", file=sys.stderr)
    return 1 if failed or not done else 0


def evaluate_command(clean: str | None, noisy: str | None, enhanced: str | None, manifest: str | None, model: str | None,
                     output: str, jobs: int, progress: bool = True, device: str = "cpu", with_dnsmos: bool = False) -> int:
    """``hushnet evaluate``: optionally denoise, then score, print a table and write the reports."""
    from pathlib import Path

    from hushnet.checkpoint import ModelError
    from hushnet.evaluate import format_table, match_folders, read_manifest, score_pairs, summarize, unreferenced, write_reports

    out = Path(output)
    try:
        if manifest:
            matching = read_manifest(Path(manifest))
        else:
            if not (noisy or enhanced) or (not clean and not with_dnsmos):
                print("error: give --clean with --noisy and/or --enhanced, or --manifest (without --clean: --dnsmos)", file=sys.stderr)
                return 2
            if model:
                if not noisy:
                    print("error: --model needs --noisy (the files to denoise)", file=sys.stderr)
                    return 2
                denoiser = Denoiser.from_pretrained(model, device=device)
                enhanced = str(out / "enhanced")
                print(f"denoising {noisy} into {enhanced}", file=sys.stderr)
                # Float output: 16-bit quantization alone moves LLR-based scores (CSIG +0.2 measured on p226_001).
                if denoise_files(denoiser, [noisy], enhanced, progress=progress, float_output=True) != 0:
                    print("warning: some files could not be denoised; they are listed as missing", file=sys.stderr)
            if clean:
                matching = match_folders(Path(clean), Path(noisy) if noisy else None, Path(enhanced) if enhanced else None)
            else:
                matching = unreferenced(Path(enhanced), "enhanced") if enhanced else unreferenced(Path(noisy), "noisy")
    except (FileNotFoundError, ValueError, ModelError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for message in matching.missing:
        print(f"missing partner: {message}", file=sys.stderr)
    if not matching.pairs:
        print("error: no file pairs to score", file=sys.stderr)
        return 1
    bar = tqdm(total=len(matching.pairs), unit="file", desc="scoring", disable=not (progress and sys.stderr.isatty()), file=sys.stderr)
    rows = score_pairs(matching.pairs, jobs=jobs, progress=lambda: bar.update(1), with_dnsmos=with_dnsmos)
    bar.close()
    summary = summarize(rows)
    print(format_table(rows, summary))
    title = f"{model or enhanced or 'noisy input'} on {clean or manifest}"
    for path in write_reports(rows, summary, out, title):
        print(f"wrote {path}", file=sys.stderr)
    failed = [r for r in rows if "error" in r]
    for row in failed:
        print(f"error: {row['name']}: {row['error']}", file=sys.stderr)
    return 1 if failed or matching.missing else 0


def train_command(config_file: str | None, output: str, overrides: dict, resume: bool = False, progress: bool = True) -> int:
    """``hushnet train``: build the job's configuration (run folder, file, flags) and run it."""
    import json
    from pathlib import Path

    from hushnet.checkpoint import ModelError
    from hushnet.train import TrainConfig, config_with, load_run_config, train

    try:
        base = load_run_config(output) if resume else None
        if base is None:
            base = TrainConfig.from_dict(json.loads(Path(config_file).read_text())) if config_file else TrainConfig()
        config = config_with(base, {**overrides, "output": output})
        run = train(config, resume=resume, progress=progress)
    except (FileNotFoundError, FileExistsError, ValueError, ModelError, AudioError, json.JSONDecodeError) as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        return 2
    print(f"run folder: {run} (best model: {run / 'best'})")
    return 0


def make_testset_command(data: str, output: str, count: int, seed: int) -> int:
    """``hushnet make-testset``: write the synthetic test set and say what it holds."""
    from hushnet.data.testset import build_test_set, reserved_summary

    try:
        folder = build_test_set(data, output, count, seed)
        summary = reserved_summary(data)
    except (FileNotFoundError, ValueError, AudioError) as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        return 2
    print(f"{count} noisy/clean pairs in {folder} from {len(summary['speakers'])} held-out speakers "
          f"({summary['speech_minutes']} min) and {len(summary['noise_recordings'])} held-out noise sources ({summary['noise_minutes']} min)")
    return 0


def train_lossnet_command(output: str, overrides: dict, resume: bool = False, progress: bool = True) -> int:
    """``hushnet train-lossnet``: configuration from the run folder (on resume) or defaults, plus flags."""
    import json
    from pathlib import Path

    from hushnet.train_lossnet import LossNetTrainConfig, train_lossnet

    try:
        saved = Path(output) / "train_config.json"
        values = json.loads(saved.read_text()) if resume and saved.is_file() else LossNetTrainConfig().to_dict()
        config = LossNetTrainConfig.from_dict({**values, **overrides, "output": output})
        run = train_lossnet(config, resume=resume, progress=progress)
    except (FileNotFoundError, FileExistsError, ValueError, AudioError, json.JSONDecodeError) as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        return 2
    print(f"loss network: {run / 'lossnet'}")
    return 0
