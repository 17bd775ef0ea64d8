"""Copy trained models into the package (``src/hushnet/pretrained/``) with their model cards.

    python tools/ship_models.py denoiser runs/hushnet-dfl/best hushnet-dfl
    python tools/ship_models.py lossnet runs/lossnet/lossnet hushnet-lossnet
    python tools/ship_models.py candidate benchmarks/work/long_run/long-vctk/step_N hushnet-vctk runs/long-vctk
    hushnet ensemble authors-dfl hushnet-vctk -o src/hushnet/pretrained/hushnet-vctk-ensemble
    python tools/ship_models.py ensemble-card src/hushnet/pretrained/hushnet-vctk-ensemble benchmarks/results/candidates_long.md

The cards are built from what the runs and benchmarks recorded: the run's summary, the peer,
ablation and long-file tables (``benchmarks/results/``) and the data licences of ``../shared/data``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from hushnet.data.attribution import licence_table
from hushnet.model_dir import PRETRAINED_DIR, load_model, read_config, save_model
from hushnet.reference.authors import authors_license

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def _section(path: Path) -> str:
    return path.read_text().strip() + "\n" if path.is_file() else f"(not measured: {path.name} missing)\n"


def denoiser_card(source: Path, run: Path) -> str:
    config = read_config(source)
    step = config.get("training", {}).get("step")
    summary = (run / "summary.md").read_text() if (run / "summary.md").is_file() else ""
    results = ROOT / "benchmarks" / "results"
    peers, ablation, long_file = results / "peers.md", results / "ablation.md", results / "long_file.md"
    return f"""# hushnet-dfl: the default hushnet denoiser

**Architecture.** Context aggregation network (CAN) of Germain, Chen & Koltun (2018): 16 kHz waveform
in and out, 64 channels, a 3-tap conv, 12 dilated 3-tap convs (dilation 2..4096), one more 3-tap conv,
each with adaptive normalisation `w0*x + w1*BN(x)` and LeakyReLU(0.2), then a 1x1 conv; receptive
field 16,385 samples (about 1 s). 160,925 parameters.

**Normalisation.** Fixed statistics (`norm: batch`, frozen during training): the network is a fixed
filter, so any length is processed in one streaming pass in bounded memory, and a chunk's output
equals the whole file's. The input is scaled to -23 dBFS RMS and the output scaled back, so the
result does not depend on the recording level.

**Route.** Fine-tuned on a 2-core CPU from the authors' released weights (MIT licence below),
converted to fixed statistics measured on 16 training mixtures, with the deep feature loss through the
authors' loss network (6 layers, weights calibrated over the first 25 steps), AdamW (peak learning
rate 1e-4, cosine decay), batches of 4 crops x 3 s of on-the-fly mixtures of `../shared/data` (train
split: SNR -5..20 dB, 10 % babble, 20 % reverberant with the dry target). This is step {step},
selected by PESQ on the validation split (held-out speakers and noise). No GPU was used. Training
record: `runs/hushnet-dfl/` in the repository.

{summary}
## Evaluation

Synthetic test set: 96 mixtures of 27 held-out speakers with held-out noise at 2.5-17.5 dB SNR
(`hushnet make-testset`), never used for training or model selection. `valentini_dev`: 7 real
noisy-VCTK pairs from Valentini *training* speakers, which the authors' model was trained on.
Reproduce: `python benchmarks/peers.py`.

{_section(peers)}
### Ablation (`python benchmarks/ablation.py`)

{_section(ablation)}
### Long files (`python benchmarks/long_file.py`)

{_section(long_file)}
## Known limits

- Trained on about an hour of mixtures (CPU budget): far less than the authors' model saw; speech
  other than read English, music, and very low SNRs are the least covered.
- On the held-out synthetic test set it is ahead of the authors' release, but behind RNNoise and well
  behind DeepFilterNet3 (tables above), both trained on far larger corpora. On `valentini_dev` the
  authors' model is ahead: those are its own training speakers and noise conditions.
- Reverberation: trained with 20 % reverberant mixtures from 7 real rooms (mostly halls and churches);
  it does not dereverberate much.
- 16 kHz model: higher-rate input is resampled down and back, so content above 8 kHz is removed.

## Data and licences

Trained on mixtures of the following sets (train split only; credits as the sets ask):

{licence_table(DATA)}
The starting weights are the authors' release:

```
{authors_license()}```
Cite: F. G. Germain, Q. Chen, V. Koltun, *Speech Denoising with Deep Feature Losses*, Interspeech 2019 (arXiv:1806.10522).
"""


def lossnet_card(source: Path, run: Path) -> str:
    base = (source / "README.md").read_text()
    lossnet_table = ROOT / "benchmarks" / "results" / "lossnet.md"
    return f"""{base}
Training record: `runs/lossnet/` in the repository (`evaluation.jsonl`, `confusion.png`, `log.csv`).
Chance levels: scene = share of the most frequent held-out class; tagging mAP = mean tag prior.

## Feature distances against SNR (`python benchmarks/lossnet_snr.py`)

{_section(lossnet_table)}
## Data and licences

{licence_table(DATA, ("speech", "noise"))}"""


def candidate_card(source: Path, run: Path, name: str) -> str:
    """The card of a shipped non-default model: what it is, its dev-set numbers and why it is not the default."""
    step = read_config(source).get("training", {}).get("step")
    results = ROOT / "benchmarks" / "results"
    extra = ROOT / "data" / "extra_speech" / "README.md"
    curve = "".join(
        line + "\n" for line in _section(results / "long_run.md").splitlines() if not line.startswith(("# ", "!["))
    )
    extra_credits = extra.read_text().split("Attribution:", 1)[-1].split("|", 1)[0].strip() if extra.is_file() else ""
    return f"""# {name}: a shipped candidate, not the default

The authors' CAN (`authors-dfl`, per-input normalisation, input at -23 dBFS) fine-tuned with the deep
feature loss (the authors' loss network) on VCTK-chain speech only (`hushnet build-data --sets vctk
--extra-speech data/extra_speech`: the shared set's VCTK files and 199 staged VCTK recordings of 66
speakers, never p232/p257/p226/p287) mixed with our noise set, Valentini-like SNRs (0-15 dB), batches
of 4 x 2 s, learning rate 5e-5. This is step {step} of `{run.relative_to(ROOT)}`
(`train_config.json` there; the run continues with `--resume`).

Why this data: fine-tunes on any other speech of `../shared/data` lose 0.05-0.23 PESQ-WB on the
Valentini test speakers against `authors-dfl`; VCTK-chain speech does not
(`benchmarks/results/data.md`).

## Dev-set numbers (`python benchmarks/long_run.py report`)

{curve}
## Why it is not the default

The ship rule asks for a PESQ-WB gain over `authors-dfl` on `valentini_test_dev` with the interval
above 0, no STOI loss outside its interval, and DNSMOS OVRL and SIG above `hushnet-dfl` on
`real_noisy_dev`. The table above says where this step stands alone; the default stays
`hushnet-dfl`; `hushnet-vctk-ensemble`, averages it with `authors-dfl` and comes closer to the rule (its card).
Use it alone with `--model {name}`.

## Data and licences

Trained on mixtures of the VCTK speech of these sets and the noise and rooms below (train split only):

{licence_table(DATA)}
Staged extra speech (`tools/stage_extra_speech.py`): {extra_credits}

The starting weights are the authors' release:

```
{authors_license()}```
Cite: F. G. Germain, Q. Chen, V. Koltun, *Speech Denoising with Deep Feature Losses*, Interspeech 2019 (arXiv:1806.10522).
"""


def _table_rows(markdown: str, heading: str, systems: tuple[str, ...]) -> str:
    """The header and the rows of ``systems`` of the first table under ``heading`` in ``markdown``."""
    lines = markdown.split(heading, 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    table = lines[start:end]
    kept = [line for line in table[2:] if line.split("|")[1].strip() in systems]
    return "\n".join(table[:2] + kept) + "\n"


def _members(card: str) -> str:
    """The member table and its notes, as ``hushnet ensemble`` wrote them, from a raw or a finished card."""
    members = card[card.index("| member |") :]
    return members.split("\n## ", 1)[0].rstrip("\n") + "\n"


def ensemble_card(directory: Path, candidates: Path) -> str:
    """The ensemble's card: its dev-set scores (rows of ``candidates``, a candidates.py report that
    scored it under its directory name), what it costs, why it is not the default, and every licence
    (the fine-tuned member's card holds its data's). Rerunning it on a finished card gives the same card."""
    name = directory.name
    members = _members((directory / "README.md").read_text())
    report = candidates.read_text()
    shown = ("authors-dfl", "hushnet-dfl", "hushnet-vctk", name)
    member_card = (PRETRAINED_DIR / "hushnet-vctk" / "README.md").read_text()
    licences = member_card.split("## Data and licences\n", 1)[1].lstrip("\n")
    return f"""# {name}: the best shipped quality, not the default

The equal-weight output average of two context aggregation networks (Germain, Chen & Koltun, 2018),
each on raw 16 kHz audio with per-input normalisation, at an input level of -23 dBFS:
- `authors-dfl`, the authors' release;
- `hushnet-vctk`, the authors' network fine-tuned with the deep feature loss for 10 h of audio on
  VCTK-chain speech mixed with our noise set (`runs/long-vctk`; its own card says how).

{members}
## Dev-set numbers (`python benchmarks/candidates.py`, {candidates.relative_to(ROOT)})

Means on `valentini_test_dev` (25 real Valentini test pairs, speakers p232/p257) and DNSMOS P.835 on
`real_noisy_dev` (16 real recordings):

{_table_rows(report, "## Means", shown)}
Paired differences (to `authors-dfl` for PESQ-WB and STOI, to `hushnet-dfl` for DNSMOS), bootstrap 95 %
intervals; bold: the interval excludes 0:

{_table_rows(report, "## Paired differences", shown)}
## Why it is not the default

The ship rule: on `valentini_test_dev` a PESQ-WB gain over `authors-dfl` with its interval above 0
and no STOI loss outside its interval; on `real_noisy_dev` DNSMOS OVRL and SIG above `hushnet-dfl`,
each difference outside its interval. The table above says where it stands: PESQ-WB, STOI and
DNSMOS SIG pass; the DNSMOS OVRL gain's interval reaches just below 0, so the default stays
`hushnet-dfl`. Its weights are `hushnet ensemble`'s default (equal) and its dry/wet is 0: neither
was tuned on these sets. Use it with `--model {name}`.

## What it costs

Two per-input networks run on every sample, in float32 (bf16 is kept for models with frozen
statistics): 0.386 CPU s per audio s against 0.109 for `hushnet-dfl` (onnxruntime, 1 thread,
`real_noisy_dev`, `python benchmarks/ensemble_cost.py`, AMD EPYC Zen 4, load 2-3.5), so about 3.5x;
`--model hushnet-dfl` is the faster shipped model.

## Data and licences

`hushnet-vctk` was trained on these data; both members start from the authors' release, whose licence
closes this section.

{licences}"""


def main() -> None:
    if sys.argv[1] == "ensemble-card":
        directory, candidates = Path(sys.argv[2]).resolve(), Path(sys.argv[3]).resolve()
        card = ensemble_card(directory, candidates)
        pending = directory / ".README.md.new"
        pending.write_text(card)
        pending.replace(directory / "README.md")  # the card is not part of the fingerprint
        print(f"wrote {directory / 'README.md'}")
        return
    kind, source, name = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    if kind == "candidate":
        model = load_model(source)
        card = candidate_card(source, Path(sys.argv[4]).resolve(), name)
        extra = {k: v for k, v in read_config(source).items() if k not in ("kind", "config")}
        target = save_model(model, PRETRAINED_DIR / name, card, extra)
        print(f"shipped {source} as {target}; now: hushnet export-onnx {target} -o {target}/model.onnx")
        return
    model = load_model(source)
    if kind == "denoiser":
        card = denoiser_card(source, source.parent)
    elif kind == "lossnet":
        card = lossnet_card(source, source.parent)
    else:
        raise SystemExit("kind must be denoiser or lossnet")
    extra = {k: v for k, v in read_config(source).items() if k not in ("kind", "config")}
    target = save_model(model, PRETRAINED_DIR / name, card, extra)
    print(f"shipped {source} as {target}")


if __name__ == "__main__":
    main()
