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

import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from hushnet.model_files import CARD_FILE, CONFIG_FILE, ENSEMBLE_KIND, ONNX_FILE, WEIGHTS_FILE, ModelError, read_config, resolve_model_dir
from hushnet.models.can import CAN
from hushnet.models.config import CANConfig
from hushnet.options import option

# Weights must sum to 1 within this (so that an ensemble of one model repeated is that model).
WEIGHT_SUM_TOLERANCE = 1e-6


class WeightedSum(nn.Module):
    """Each branch on the same [batch, samples] input, then ``sum_i weight_i * branch_i(x)``."""

    def __init__(self, branches: list[nn.Module], weights: list[float]) -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)
        self.weights = [float(w) for w in weights]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.weights[0] * self.branches[0](x)
        for weight, branch in zip(self.weights[1:], self.branches[1:]):
            out = out + weight * branch(x)
        return out


class CANEnsemble(WeightedSum):
    """CAN members averaged with fixed weights; ``config`` is the plan's view (:func:`plan_config`)."""

    def __init__(self, members: list[CAN], weights: list[float], config: CANConfig, sources: list[str] | None = None) -> None:
        check_weights(weights, len(members))
        super().__init__(members, weights)
        self.config = config
        self.sources = sources or [f"member {i}" for i in range(len(members))]

    @property
    def members(self) -> list[CAN]:
        return list(self.branches)

    def inference_network(self, exportable: bool = True) -> WeightedSum:
        """The members in their inference forms, one weighted sum. ``exportable``: per-input members
        as ``PerInputCAN`` (the ONNX form); otherwise their own forward (what the torch engine runs)."""
        from hushnet.inference.networks import FoldedCAN, PerInputCAN

        def form(member: CAN) -> nn.Module:
            if member.config.norm == "batch":
                return FoldedCAN(member)
            return PerInputCAN(member) if exportable else member

        return WeightedSum([form(m) for m in self.members], self.weights).eval()


def check_weights(weights: list[float], members: int) -> list[float]:
    """The weights as floats, or a one-line ModelError: one per member, each > 0, summing to 1."""
    if members < 2:
        raise ModelError(f"an ensemble needs at least 2 members, got {members}")
    if len(weights) != members:
        raise ModelError(f"{len(weights)} weights for {members} members: give one weight per member")
    values = [float(w) for w in weights]
    if any(not math.isfinite(w) or w <= 0 for w in values):
        raise ModelError(f"ensemble weights must be positive numbers, got {values}")
    if abs(sum(values) - 1.0) > WEIGHT_SUM_TOLERANCE:
        raise ModelError(f"ensemble weights must sum to 1, got {values} (sum {sum(values):g})")
    return values


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
    values.update(norm="per-input" if per_input else "batch", input_rms_db=level_db, dry=0.0,
                  segment_seconds=members[per_input[0]].segment_seconds if per_input else None)
    return CANConfig.from_dict(values)


def build_ensemble(models: list[str], weights: list[float] | None = None, level_db: float | None | str = "auto") -> CANEnsemble:
    """An ensemble of the CAN model directories (or shipped names) ``models``; equal weights by default."""
    from hushnet.model_dir import load_model

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
    rows = [f"| {i} | `{source}` | {weight:g} | {member.config.norm} | "
            f"{'as is' if member.config.input_rms_db is None else f'{member.config.input_rms_db:g} dBFS'} |"
            for i, (source, weight, member) in enumerate(zip(ensemble.sources, ensemble.weights, ensemble.members))]
    plan = (f"crossfaded segments of {config.segment_seconds:g} s" if config.norm == "per-input" and config.segment_seconds
            else "per-input statistics over the whole input" if config.norm == "per-input" else "exact chunks (fixed statistics)")
    return "\n".join([
        "# hushnet CAN ensemble", "",
        "The output is the weighted average of these CANs' outputs on the same input:", "",
        "| member | model | weight | normalisation | its own level |", "|---|---|---|---|---|", *rows, "",
        f"- Input level for every member: {level} (one level normalisation for the ensemble; a member's own level is not used).",
        f"- Plan: {plan}.",
        f"- `{ONNX_FILE}`: one graph, every member in its inference form, one weighted sum.",
        f"- Cost: about the sum of the members' (each runs on every sample).", ""])


def save_ensemble(ensemble: CANEnsemble, directory: str | os.PathLike, onnx: bool = True) -> Path:
    """Write ``ensemble`` as a model directory (weights, config, card and, with ``onnx``, its one-graph ONNX file)."""
    from safetensors.torch import save_file

    from hushnet.inference.networks import export_onnx
    from hushnet.model_dir import atomic_write

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {name: t.detach().cpu().contiguous() for name, t in ensemble.state_dict().items()}
    members = [{"model": source, "weight": weight, "prefix": f"branches.{i}.", "config": member.config.to_dict()}
               for i, (source, weight, member) in enumerate(zip(ensemble.sources, ensemble.weights, ensemble.members))]
    config = {"kind": ENSEMBLE_KIND, "config": ensemble.config.to_dict(), "members": members}
    (directory / ONNX_FILE).unlink(missing_ok=True)  # never leave the graph of other weights beside these
    atomic_write(directory / WEIGHTS_FILE, lambda p: save_file(tensors, str(p), metadata={"kind": ENSEMBLE_KIND}))
    atomic_write(directory / CONFIG_FILE, lambda p: p.write_text(json.dumps(config, indent=2) + "\n"))
    atomic_write(directory / CARD_FILE, lambda p: p.write_text(_card(ensemble)))
    if onnx:
        export_onnx(ensemble, directory / ONNX_FILE)
    return directory


def load_ensemble(directory: str | os.PathLike) -> CANEnsemble:
    """Rebuild a ``can-ensemble`` model directory, in eval mode."""
    from safetensors.torch import load_file

    directory = resolve_model_dir(directory)
    config = read_config(directory)
    try:
        specs = config["members"]
        members = [CAN(CANConfig.from_dict(spec["config"])) for spec in specs]
        ensemble = CANEnsemble(members, [spec["weight"] for spec in specs], CANConfig.from_dict(config["config"]),
                               sources=[spec.get("model", f"member {i}") for i, spec in enumerate(specs)])
        ensemble.load_state_dict(load_file(str(directory / WEIGHTS_FILE)))
    except (KeyError, TypeError) as error:
        raise ModelError(f"{directory / CONFIG_FILE}: not a valid ensemble config ({error})") from None
    except (OSError, RuntimeError, ValueError) as error:
        raise ModelError(f"cannot load ensemble from {directory}: {error}") from None
    return ensemble.eval()


# --- the `hushnet ensemble` job --------------------------------------------------------------------


@dataclass
class EnsembleConfig:
    """One ``hushnet ensemble`` job."""

    output: str = option(short="-o", help="the ensemble's model directory to write")
    models: list[str] = option(default_factory=list, positional=True, help="the member models (directories or shipped names), at least 2")
    weights: list[float] | None = option(None, help="one weight per member, positive, summing to 1 (default: equal)", show_default=False)
    level_db: str = option("auto", help="input level for every member, dBFS (e.g. -23), off = as is, or auto: the members' own "
                                        "where they agree, else the heaviest member's that has one")
    onnx: bool = option(True, flag="--no-onnx", help="do not write model.onnx (the one-graph file the onnxruntime engine runs)")


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
