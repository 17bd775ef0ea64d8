"""Command-line flags generated from a job's config dataclass: one place states a flag's name, help and default.

A field becomes a flag when it is declared with :func:`option` (``--field-name`` unless ``flag`` says
otherwise). A nested config the parent cannot annotate (``TrainConfig.model`` is a ``CANConfig``)
names the sub-fields it exposes with :func:`nested`. Help texts end with the default read from the
dataclass itself, so a default is stated once. Adding a flag to a command is adding one field.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import types
import typing
from dataclasses import MISSING, dataclass
from typing import Any, Callable

log = logging.getLogger(__name__)
DEVICE_HELP = "cpu or cuda"
THREADS_HELP = "CPU threads (default: the engine's choice, all cores)"
MODEL_HELP = "model directory, or the name of a shipped model"
# Spelled here (not imported from the engines) so that building the parser imports no engine.
ENGINES = ("auto", "openvino", "onnx", "torch")
from hushnet.precision import PRECISIONS  # noqa: E402,F401 - one list of precisions

ENGINE_HELP = "inference engine (auto: OpenVINO where installed and loadable, else onnxruntime, else torch)"
PRECISION_HELP = (
    "arithmetic of the network (auto: bf16 where the CPU has native bf16 units and the engine runs it, "
    "else float32; onnxruntime runs float32 only)"
)


def option(
    default: Any = MISSING,
    *,
    help: str,
    flag: str | None = None,
    short: str | None = None,
    choices: list[str] | None = None,
    positional: bool = False,
    default_factory: Callable[[], Any] | Any = MISSING,
    show_default: bool = True,
    value_optional: Any = MISSING,
    metavar: str | None = None,
) -> Any:
    """A dataclass field that is also a command-line flag.

    ``value_optional``: the flag may be given without a value, and then means this (``--ray`` alone).
    """
    metadata = {
        "help": help,
        "flag": flag,
        "short": short,
        "choices": choices,
        "positional": positional,
        "show_default": show_default,
        "value_optional": value_optional,
        "metavar": metavar,
    }
    if default_factory is not MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclass(frozen=True)
class Sub:
    """One flag for a field of a nested config: ``Sub("--norm", "normalisation mode")``."""

    flag: str
    help: str
    choices: tuple[str, ...] | None = None


def nested(default_factory: Callable[[], Any], flags: dict[str, Sub]) -> Any:
    """A nested config field whose listed sub-fields are flags (dest ``parent.child``)."""
    return dataclasses.field(default_factory=default_factory, metadata={"nested": flags})


@dataclass
class RuntimeOptions:
    """Where a job runs; shared by every command that runs a network."""

    device: str = option("cpu", help=DEVICE_HELP)
    threads: int | None = option(None, help=THREADS_HELP, show_default=False)


ENGINE_CHOICES = list(ENGINES)


@dataclass
class DenoiserOptions(RuntimeOptions):
    """How a :class:`~hushnet.denoiser.Denoiser` is built; shared by ``denoise`` and ``serve``."""

    model: str | None = option(None, help=MODEL_HELP + " (default: the package default)", show_default=False)
    engine: str = option("auto", choices=ENGINE_CHOICES, help=ENGINE_HELP)
    precision: str = option("auto", choices=list(PRECISIONS), help=PRECISION_HELP)
    dry: float | None = option(
        None,
        help="fraction of the noisy input mixed back into the output: 0 = fully denoised, 1 = input unchanged "
        "(default: the model's own)",
        show_default=False,
    )
    level: str | None = option(
        None,
        flag="--level-db",
        help="bring each channel to this RMS level (dBFS, e.g. -23) before the network and back after; "
        "off = as is (default: the model's own)",
        show_default=False,
    )
    level_scope: str = option(
        "recording",
        choices=["recording", "segment"],
        help="level gain per channel for the whole recording or per segment",
    )
    memory_budget_mb: float = option(512.0, help="activation memory for whole-file processing, MB")

    def denoiser_options(self) -> dict:
        """The keyword arguments of ``Denoiser.from_pretrained`` (``level`` parsed as dBFS or "off"); ValueError in one line."""
        level: float | str | None = self.level
        if level is not None and level != "off":
            try:
                level = float(level)
            except ValueError:
                raise ValueError(f"--level-db: expected dBFS (e.g. -23) or off, got {level!r}") from None
        return {
            "device": self.device,
            "engine": self.engine,
            "precision": self.precision,
            "threads": self.threads,
            "memory_budget_mb": self.memory_budget_mb,
            "dry": self.dry,
            "level_db": level,
            "level_scope": self.level_scope,
        }


@dataclass
class JobOptions:
    """What ``hushnet train`` and ``train-lossnet`` take besides the fields of the job's config (not saved with it)."""

    config: str | None = option(None, help="a train_config.json to start from (flags override it)", show_default=False)
    resume: bool = option(
        False, help="continue the run in --output from its last checkpoint (its own train_config.json, plus flags)"
    )
    quiet: bool = option(False, short="-q", help="no progress bar")


def _value_type(annotation: Any) -> Any:
    """``int`` for ``int | None`` and the like; the element type for ``list[str]``."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        kinds = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _value_type(kinds[0])
    if origin in (list, tuple):
        return _value_type(typing.get_args(annotation)[0])
    return annotation


def _is_list(annotation: Any) -> bool:
    """Whether a field takes several values (``list[float]``, ``list[str] | None``)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return any(_is_list(a) for a in typing.get_args(annotation))
    return typing.get_origin(annotation) is list


def _default(item: dataclasses.Field) -> Any:
    if item.default is not MISSING:
        return item.default
    if item.default_factory is not MISSING:
        return item.default_factory()
    return MISSING  # a required field: a required flag (or positional)


def _add(
    group: argparse._ActionsContainer,
    dest: str,
    flag: str,
    short: str | None,
    help: str,
    annotation: Any,
    default: Any,
    choices: Any,
    positional: bool,
    overrides: bool,
    show_default: bool,
    value_optional: Any = MISSING,
    metavar: str | None = None,
) -> None:
    kind = _value_type(annotation)
    shown = f" (default {default})" if show_default and default not in (None, MISSING) and kind is not bool else ""
    if positional:
        many = typing.get_origin(annotation) is list
        group.add_argument(dest, nargs="+" if many else None, help=help)
        return
    names = [short, flag] if short else [flag]
    extra: dict[str, Any] = {"required": True} if default is MISSING else {}
    if _is_list(annotation):
        extra["nargs"] = "+"
    # Overrides (train): None means "keep what the base config says", so no flag carries a default.
    if kind is bool:
        # A field that is on by default gets an off switch (``--no-compile``), any other an on switch.
        action = "store_false" if default is True else "store_true"
        group.add_argument(*names, dest=dest, action=action, default=None if overrides else default, help=help)
    else:
        default = None if overrides or default is MISSING else default
        metavar = None if choices else metavar or flag.lstrip("-").upper().replace("-", "_")
        if value_optional is not MISSING:
            extra.update(nargs="?", const=value_optional)
        group.add_argument(
            *names, dest=dest, type=kind, choices=choices, default=default, metavar=metavar, help=help + shown, **extra
        )


def add_options(parser: argparse.ArgumentParser, config_class: type, overrides: bool = False) -> None:
    """Flags for every :func:`option`/:func:`nested` field of ``config_class`` (and of its bases)."""
    hints = typing.get_type_hints(config_class)
    for item in dataclasses.fields(config_class):
        if "nested" in item.metadata:
            child = _default(item)
            child_hints = typing.get_type_hints(type(child))
            group = parser.add_argument_group(item.name)
            for name, sub in item.metadata["nested"].items():
                _add(
                    group,
                    f"{item.name}.{name}",
                    sub.flag,
                    None,
                    sub.help,
                    child_hints[name],
                    getattr(child, name),
                    sub.choices,
                    False,
                    overrides,
                    True,
                )
        elif "help" in item.metadata:
            meta = item.metadata
            flag = meta["flag"] or "--" + item.name.replace("_", "-")
            _add(
                parser,
                item.name,
                flag,
                meta["short"],
                meta["help"],
                hints[item.name],
                _default(item),
                meta["choices"],
                meta["positional"],
                overrides,
                meta["show_default"],
                meta.get("value_optional", MISSING),
                meta.get("metavar"),
            )


def option_names(config_class: type) -> list[str]:
    """The (dotted) field names :func:`add_options` makes flags for."""
    names = []
    for item in dataclasses.fields(config_class):
        if "nested" in item.metadata:
            names += [f"{item.name}.{name}" for name in item.metadata["nested"]]
        elif "help" in item.metadata:
            names.append(item.name)
    return names


def config_from_args(config_class: type, args: argparse.Namespace) -> Any:
    """An instance of a flat config class from parsed flags."""
    return config_class(**{name: getattr(args, name) for name in option_names(config_class)})


def overrides_from_args(config_class: type, args: argparse.Namespace) -> dict[str, Any]:
    """``{dotted field: value}`` for each flag that was given (override mode)."""
    return {name: getattr(args, name) for name in option_names(config_class) if getattr(args, name) is not None}


def with_overrides(config: Any, overrides: dict[str, Any]) -> Any:
    """``config`` with dotted-key overrides applied, e.g. ``{"model.norm": "batch", "max_steps": 50}``."""
    values = config.to_dict()
    for key, value in overrides.items():
        target = values
        *parents, name = key.split(".")
        for parent in parents:
            target = target[parent]
        if name not in target:
            raise ValueError(f"unknown option {key!r}")
        target[name] = value
    return type(config).from_dict(values)


def check_runtime(config: RuntimeOptions) -> None:
    """The one check of runtime options for a command (:mod:`hushnet.runtime_options`): threads, device
    and memory budget refused in one line, threads above the cores capped with one ``note:`` line
    logged (the CLI shows it on stderr), a CUDA device refused where there is none; before any work.
    Imports torch only for a CUDA device, so that the onnxruntime path stays torch-free."""
    from hushnet.runtime_options import usable_threads, validate_runtime_options

    validate_runtime_options(
        threads=config.threads,
        device=config.device,
        memory_budget_mb=getattr(config, "memory_budget_mb", None),
        flags=True,
    )
    config.threads = usable_threads(config.threads, note=lambda message: log.warning("note: %s", message))
    if config.device and config.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ValueError("--device cuda asked for, but no CUDA GPU is available")
