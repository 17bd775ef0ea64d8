"""``hushnet import-reference``: the authors' released model (TF checkpoint or .npz) as model directories."""

from __future__ import annotations

import sys
from dataclasses import dataclass

from hushnet.options import option
from hushnet.reference.authors import import_reference
from hushnet.reference.tf_checkpoint import CheckpointError


@dataclass
class ImportConfig:
    """One ``hushnet import-reference`` job."""

    source: str = option(
        positional=True, help="folder with se_model.ckpt.* / loss_model.ckpt.* (or .npz), or one checkpoint"
    )
    output: str = option(short="-o", help="model directory to write")
    lossnet_output: str | None = option(
        None, help="where the loss network goes (default: OUTPUT/lossnet)", show_default=False
    )


def run(config: ImportConfig) -> int:
    """Import, and say where each network went; returns the exit status."""
    try:
        written = import_reference(config.source, config.output, config.lossnet_output)
    except (CheckpointError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for kind, path in written.items():
        print(f"{'enhancement network' if kind == 'can' else 'loss network'}: {path}")
    return 0
