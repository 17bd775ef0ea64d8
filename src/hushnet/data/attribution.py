"""Licences and attribution of training data, for model cards and docs.

Every manifest row of ``../shared/data`` carries its own ``license`` text (with the credit line for
CC BY items); a model trained on a set must carry those credits. This gathers them per set.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

# Credit lines the speech sets ask for (from shared/data/README.md), beyond the per-row licence text.
SPEECH_CREDITS = {
    "librispeech": "LibriSpeech ASR corpus (c) 2014 by Vassil Panayotov, Guoguo Chen, Daniel Povey, Sanjeev Khudanpur, CC BY 4.0 (openslr.org/12); audio from LibriVox.",
    "vctk": "CSTR VCTK Corpus, Centre for Speech Technology Research, University of Edinburgh (Christophe Veaux, Junichi Yamagishi, Kirsten MacDonald), CC BY 4.0.",
    "asterisk": "Asterisk core sound prompts (c) Digium, Inc.; recorded by Allison Smith and June Wallack (CC BY-SA 3.0), Carlo Flora and Maxim Topal (CC BY 3.0). asterisk.org",
    "vcc2016": "Voice Conversion Challenge 2016 database, Tomoki Toda et al., University of Edinburgh DataShare (ODC-By 1.0).",
    "cmu_arctic": "CMU ARCTIC databases, Language Technologies Institute, Carnegie Mellon University (John Kominek, Alan W Black); (c) Carnegie Mellon University, used under its free licence.",
    "dc_tts_recordings": "Recordings by Philipp Matthes, from github.com/PhilippMatthes/dc_tts, Apache License 2.0.",
    "openair": "Impulse responses from the OpenAIR library (www.openairlib.net), Audiolab, University of York.",
}
CHANGES = "Changes made: resampled to 16 kHz mono, cut into segments (noise), converted to FLAC."


def licence_table(data: str | os.PathLike, folders: tuple[str, ...] = ("speech", "noise", "rir")) -> str:
    """Markdown: for each set of each folder, its licences and credit lines, as the manifests state them."""
    data = Path(data)
    lines = []
    for folder in folders:
        manifest = data / folder / "manifest.csv"
        if not manifest.is_file():
            continue
        by_set: dict[str, set[str]] = {}
        with open(manifest, newline="") as handle:
            for row in csv.DictReader(handle):
                by_set.setdefault(row.get("set", ""), set()).add(row.get("license", "").strip())
        lines.append(f"**{folder}/**")
        for name in sorted(by_set):
            credit = f" {SPEECH_CREDITS[name]}" if name in SPEECH_CREDITS else ""
            lines.append(
                f"- `{name}`:{credit} Licences: "
                + "; ".join(sorted(licence for licence in by_set[name] if licence))
                + "."
            )
        lines.append("")
    lines.append(CHANGES)
    return "\n".join(lines) + "\n"
