"""The network of a CAN ensemble: its members' outputs on the same input, weighted and summed.

Directories, the ``hushnet ensemble`` job and the plan's config are :mod:`hushnet.ensemble`'s; this
module is what loading a ``can-ensemble`` model directory needs (:func:`hushnet.model_dir.load_model`),
and imports nothing of the package that reads model directories.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from hushnet.models.can import CAN
from hushnet.models.config import CANConfig

# Weights must sum to 1 within this (so that an ensemble of one model repeated is that model).
WEIGHT_SUM_TOLERANCE = 1e-6


def weights_problem(weights: list[float], members: int) -> str | None:
    """What is wrong with ``weights`` for ``members`` members, in one line, or None: one per member,
    each > 0, summing to 1, at least 2 members."""
    if members < 2:
        return f"an ensemble needs at least 2 members, got {members}"
    if len(weights) != members:
        return f"{len(weights)} weights for {members} members: give one weight per member"
    values = [float(w) for w in weights]
    if any(not math.isfinite(w) or w <= 0 for w in values):
        return f"ensemble weights must be positive numbers, got {values}"
    if abs(sum(values) - 1.0) > WEIGHT_SUM_TOLERANCE:
        return f"ensemble weights must sum to 1, got {values} (sum {sum(values):g})"
    return None


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
    """CAN members averaged with fixed weights; ``config`` is the plan's view (``hushnet.ensemble.plan_config``)."""

    def __init__(
        self, members: list[CAN], weights: list[float], config: CANConfig, sources: list[str] | None = None
    ) -> None:
        problem = weights_problem(weights, len(members))
        if problem:
            raise ValueError(problem)
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


def ensemble_from_config(config: dict) -> CANEnsemble:
    """The (untrained) ensemble a ``can-ensemble`` config.json describes; KeyError, TypeError or
    ValueError for one that describes none."""
    specs = config["members"]
    members = [CAN(CANConfig.from_dict(spec["config"])) for spec in specs]
    return CANEnsemble(
        members,
        [spec["weight"] for spec in specs],
        CANConfig.from_dict(config["config"]),
        sources=[spec.get("model", f"member {i}") for i, spec in enumerate(specs)],
    )
