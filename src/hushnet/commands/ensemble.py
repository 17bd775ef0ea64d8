"""``hushnet ensemble``: build a model directory whose network is a weighted output average of several CANs."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from hushnet.ensemble import build_ensemble, save_ensemble
from hushnet.model_dir import CONFIG_FILE, ENSEMBLE_KIND, ModelError, read_config, resolve_model_dir
from hushnet.options import option


@dataclass
class EnsembleConfig:
    """One ``hushnet ensemble`` job."""

    output: str = option(short="-o", help="the ensemble's model directory to write")
    models: list[str] = option(
        default_factory=list, positional=True, help="the member models (directories or shipped names), at least 2"
    )
    weights: list[float] | None = option(
        None, help="one weight per member, positive, summing to 1 (default: equal)", show_default=False
    )
    level_db: str = option(
        "auto",
        help="input level for every member, dBFS (e.g. -23), off = as is, or auto: the members' own "
        "where they agree, else the heaviest member's that has one",
    )
    onnx: bool = option(
        True, flag="--no-onnx", help="do not write model.onnx (the one-graph file the onnxruntime engine runs)"
    )


def run(config: EnsembleConfig) -> int:
    """Build, save and describe the ensemble; 2 (one line) for members or weights that cannot make one."""
    level: float | str | None = config.level_db
    try:
        if level == "off":
            level = None
        elif level != "auto":
            try:
                level = float(level)
            except ValueError:
                raise ModelError(f"--level-db: expected dBFS (e.g. -23), off or auto; got {level!r}") from None
        if Path(config.output).resolve() in {resolve_model_dir(m).resolve() for m in config.models}:
            raise ModelError(f"the output {config.output} is one of the members; refusing to overwrite it")
        if (Path(config.output) / CONFIG_FILE).is_file() and read_config(config.output)["kind"] != ENSEMBLE_KIND:
            raise ModelError(f"{config.output} holds another model; refusing to overwrite it (choose a new folder)")
        ensemble = build_ensemble(config.models, config.weights, level)
        directory = save_ensemble(ensemble, config.output, onnx=config.onnx)
    except (ModelError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    members = ", ".join(f"{w:g} x {s}" for s, w in zip(ensemble.sources, ensemble.weights))
    level_text = "as is" if ensemble.config.input_rms_db is None else f"{ensemble.config.input_rms_db:g} dBFS"
    print(f"{directory}: {members}; {ensemble.config.norm} plan, input level {level_text}")
    return 0
