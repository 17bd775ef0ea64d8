"""Ensembles of CANs: one network whose output is a weighted average of its members' outputs.

An ensemble is a model directory like any other, of kind ``can-ensemble``:

- ``model.safetensors`` holds every member's weights, member i's under the prefix ``branches.i.``;
- ``config.json`` lists the members (where each came from, its weight, its own CAN config) and, under
  ``config``, the CAN config the inference plan reads (see :func:`plan_config`);
- ``model.onnx`` is **one** graph: every member in its own inference form (``FoldedCAN`` for a
  fixed-statistics member, ``PerInputCAN`` for a per-input one) on the same input, then one weighted sum.

Every member is fed the same input, normalised once to the ensemble's level (``input_rms_db``): a
model has one level normalisation, so members that want different levels (the authors' model takes
audio as it comes, ours -23 dBFS) get the ensemble's. An ensemble with any per-input member is
planned as a per-input model (crossfaded segments, each with its own statistics), since that member's
output depends on the whole segment; fixed-statistics members run on the same segments.

    hushnet ensemble authors-dfl hushnet-dfl --weights 0.75 0.25 -o models/blend
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from hushnet.model_dir import (
    CARD_FILE,
    CONFIG_FILE,
    ENSEMBLE_KIND,
    ONNX_FILE,
    WEIGHTS_FILE,
    ModelError,
    load_model,
    read_config,
    resolve_model_dir,
)
from hushnet.models.config import CANConfig
from hushnet.models.ensemble import WEIGHT_SUM_TOLERANCE, CANEnsemble, WeightedSum, weights_problem  # noqa: F401 - this module's too


def check_weights(weights: list[float], members: int) -> list[float]:
    """The weights as floats, or a one-line ModelError: one per member, each > 0, summing to 1."""
    problem = weights_problem(weights, members)
    if problem:
        raise ModelError(problem)
    return [float(w) for w in weights]


def plan_config(members: list[CANConfig], weights: list[float], level_db: float | None | str = "auto") -> CANConfig:
    """The CAN config the inference plan reads for an ensemble of ``members``.

    Per-input if any member is (segments), with the segment length of the heaviest per-input member;
    the receptive field (chunk context) and channels of the member with the widest field; one input
    level: ``level_db`` (dBFS, or None for the input as is), by default the members' own level where
    they agree, else the heaviest member's that normalises its level at all; dry 0.
    """
    if len({c.sample_rate for c in members}) != 1:
        raise ModelError(f"ensemble members run at different sample rates: {sorted({c.sample_rate for c in members})}")
    by_weight = sorted(range(len(members)), key=lambda i: -weights[i])
    widest = max(range(len(members)), key=lambda i: members[i].receptive_radius)
    per_input = [i for i in by_weight if members[i].norm == "per-input"]
    if level_db == "auto":
        levels = {c.input_rms_db for c in members}
        named = [members[i].input_rms_db for i in by_weight if members[i].input_rms_db is not None]
        level_db = levels.pop() if len(levels) == 1 else named[0]
    values = members[widest].to_dict()
    values.update(
        norm="per-input" if per_input else "batch",
        input_rms_db=level_db,
        dry=0.0,
        segment_seconds=members[per_input[0]].segment_seconds if per_input else None,
    )
    try:
        return CANConfig.from_dict(values)
    except ValueError as error:  # an input level out of range (--level-db)
        raise ModelError(f"--level-db: {error}") from None


def build_ensemble(
    models: list[str], weights: list[float] | None = None, level_db: float | None | str = "auto"
) -> CANEnsemble:
    """An ensemble of the CAN model directories (or shipped names) ``models``; equal weights by default."""
    weights = check_weights(weights if weights is not None else [1.0 / len(models)] * len(models), len(models))
    members = []
    for model in models:
        if read_config(resolve_model_dir(model))["kind"] != "can":
            raise ModelError(f"ensemble members must be single CAN models; {model} is not")
        members.append(load_model(model, kind="can"))
    config = plan_config([m.config for m in members], weights, level_db)
    return CANEnsemble(members, weights, config, sources=[str(m) for m in models])


def _card(ensemble: CANEnsemble) -> str:
    config = ensemble.config
    level = "the input as is" if config.input_rms_db is None else f"{config.input_rms_db:g} dBFS"
    rows = [
        f"| {i} | `{source}` | {weight:g} | {member.config.norm} | "
        f"{'as is' if member.config.input_rms_db is None else f'{member.config.input_rms_db:g} dBFS'} |"
        for i, (source, weight, member) in enumerate(zip(ensemble.sources, ensemble.weights, ensemble.members))
    ]
    plan = (
        f"crossfaded segments of {config.segment_seconds:g} s"
        if config.norm == "per-input" and config.segment_seconds
        else "per-input statistics over the whole input"
        if config.norm == "per-input"
        else "exact chunks (fixed statistics)"
    )
    return "\n".join(
        [
            "# hushnet CAN ensemble",
            "",
            "The output is the weighted average of these CANs' outputs on the same input:",
            "",
            "| member | model | weight | normalisation | its own level |",
            "|---|---|---|---|---|",
            *rows,
            "",
            f"- Input level for every member: {level} (one level normalisation for the ensemble; a member's own level is not used).",
            f"- Plan: {plan}.",
            f"- `{ONNX_FILE}`: one graph, every member in its inference form, one weighted sum.",
            "- Cost: about the sum of the members' (each runs on every sample).",
            "",
        ]
    )


ENSEMBLE_FILES = {WEIGHTS_FILE, CONFIG_FILE, ONNX_FILE, CARD_FILE}


def ensemble_output_error(directory: str | os.PathLike) -> str | None:
    """Why ``directory`` must not receive an ensemble (one line), or None: a file, or a folder that is
    not empty and is not an ensemble this command made (whose files it would replace)."""
    directory = Path(directory)
    if not directory.exists() and not directory.is_symlink():
        return None
    if not directory.is_dir():
        return f"-o {directory} is a file, not a folder: name a new folder for the ensemble"
    try:
        entries = {path.name for path in directory.iterdir()}
    except OSError as error:
        return f"-o {directory}: cannot read the folder ({error.strerror or error})"
    if not entries:
        return None
    try:
        ours = entries <= ENSEMBLE_FILES and read_config(directory)["kind"] == ENSEMBLE_KIND
    except ModelError:
        ours = False
    if not ours:
        return (
            f"-o {directory} is not empty and is not an ensemble made by hushnet ensemble: "
            "refusing to replace its files (name a new or empty folder)"
        )
    return None


def save_ensemble(ensemble: CANEnsemble, directory: str | os.PathLike, onnx: bool = True) -> Path:
    """Write ``ensemble`` as a model directory (weights, config, card and, with ``onnx``, its one-graph
    ONNX file), built in a hidden folder beside it that replaces it only once complete; a folder that
    holds anything but an earlier ensemble is refused (ModelError), and a failure leaves nothing."""
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    from hushnet.audio import one_line
    from hushnet.inference.networks import export_onnx
    from hushnet.model_dir import atomic_write, fingerprint_metadata, write_text
    from hushnet.temporaries import PendingFolder, clean_stale_partials, nearest_existing

    directory = Path(directory)
    problem = ensemble_output_error(directory)
    if problem:
        raise ModelError(problem)
    existing = nearest_existing(directory.parent)
    clean_stale_partials(existing)
    tensors = {name: t.detach().cpu().contiguous() for name, t in ensemble.state_dict().items()}
    members = [
        {"model": source, "weight": weight, "prefix": f"branches.{i}.", "config": member.config.to_dict()}
        for i, (source, weight, member) in enumerate(zip(ensemble.sources, ensemble.weights, ensemble.members))
    ]
    config = {"kind": ENSEMBLE_KIND, "config": ensemble.config.to_dict(), "members": members}
    try:
        with PendingFolder(directory) as building:
            atomic_write(
                building / WEIGHTS_FILE, lambda name: save_file(tensors, name, metadata={"kind": ENSEMBLE_KIND})
            )
            write_text(building / CONFIG_FILE, json.dumps(config, indent=2) + "\n")
            write_text(building / CARD_FILE, _card(ensemble))
            if onnx:
                export_onnx(ensemble, building / ONNX_FILE, fingerprint_metadata(building))
    except (OSError, RuntimeError, SafetensorError) as error:
        # Folders made above the output for it go too: a failed command leaves nothing.
        for folder in [directory.parent, *directory.parent.parents]:
            if folder == existing or not folder.is_relative_to(existing):
                break
            with contextlib.suppress(OSError):
                folder.rmdir()
        reason = error.strerror if isinstance(error, OSError) and error.strerror else one_line(error)
        raise ModelError(f"cannot write the ensemble {directory}: {reason} (nothing was written)") from None
    return directory


def load_ensemble(directory: str | os.PathLike) -> CANEnsemble:
    """Rebuild a ``can-ensemble`` model directory, in eval mode (what :func:`hushnet.model_dir.load_model` does for one)."""
    directory = resolve_model_dir(directory)
    kind = read_config(directory)["kind"]
    if kind != ENSEMBLE_KIND:
        raise ModelError(f"{directory} holds a {kind} model, not a {ENSEMBLE_KIND}")
    return load_model(directory)
