"""Training configuration: :class:`TrainConfig`, read from YAML with every key validated.

A config file has the sections ``data``, ``model`` (the network's config: ``CornerNetSaccadeConfig``,
``SqueezeConfig`` or ``CornerNetConfig`` by the top-level ``architecture``: ``saccade``, ``squeeze``
or ``cornernet``), ``sampling`` (:class:`~cornernet_saccade.data.samples.SamplingConfig`, or
:class:`~cornernet_saccade.data.samples.CornerNetSamplingConfig` for ``squeeze`` / ``cornernet``) and
``optim``, plus the top-level run settings of :class:`TrainConfig`. Omitted keys take the official COCO
values (docs/reference.md §2), except that with ``init_weights`` the network (``architecture`` and the
``model`` keys) is the weights file's, under the keys the config gives.
``--set optim.lr=1e-4`` style overrides are applied to the raw mapping before validation, so they go
through the same checks. Unknown keys, wrong types and inconsistent values raise
:class:`~cornernet_saccade.errors.ConfigError` naming the file and the key.
"""
from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cornernet_saccade.bounds import check_bounds
from cornernet_saccade.config import (
    apply_overrides,
    bundled_config_dir,
    bundled_config_names,
    config_from_dict,
    read_yaml,
)
from cornernet_saccade.data.load import DatasetFormat
from cornernet_saccade.data.samples import CornerNetSamplingConfig, SamplingConfig
from cornernet_saccade.errors import ConfigError
from cornernet_saccade.model.base import CornerNetBase, HourglassConfig
from cornernet_saccade.model.checkpoint import (
    read_checkpoint,
    resolve_weights_path,
    stored_architecture,
    stored_model_config,
)
from cornernet_saccade.model.cornernet import CornerNet
from cornernet_saccade.model.cornernet_saccade import CornerNetSaccade, CornerNetSaccadeConfig
from cornernet_saccade.model.cornernet_squeeze import CornerNetSqueeze
from cornernet_saccade.model.geometry import attention_map_sizes, output_size
from cornernet_saccade.model.registry import MODEL_CLASSES

AmpMode = Literal["auto", "none", "bf16", "fp16"]
Architecture = Literal["saccade", "squeeze", "cornernet"]
#: The sampling settings class of each network.
SAMPLING_CLASSES: dict[str, type[SamplingConfig]] = {
    CornerNetSaccade.architecture: SamplingConfig,
    CornerNetSqueeze.architecture: CornerNetSamplingConfig,
    CornerNet.architecture: CornerNetSamplingConfig,
}
BatchNormMode = Literal["batch", "frozen", "sync"]
#: Run folder when the config names none.
DEFAULT_OUT_DIR = "runs/cornernet_saccade"
#: Bounds of the size-like run settings (:func:`~cornernet_saccade.bounds.check_bounds`; raised on
#: purpose with ``CORNERNET_SACCADE_LIMITS``): images per step (the official run: 48 over 4 GPUs),
#: loader processes, validation batches; ``threads`` is bounded where threads are set.
TRAIN_BOUNDS: dict[str, float] = {"batch_size": 1024, "grad_accum": 1024, "workers": 64, "val_batches": 10_000}
_DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


@dataclass(frozen=True)
class DataConfig:
    """Where the data is. ``train`` / ``val``: a COCO JSON file, a VOC folder or split file, or a CSV
    file; ``format`` is detected from the path when null. ``image_root`` / ``val_image_root``: folders
    the image file names are relative to (default: per format, e.g. the JSON file's folder). Relative
    paths are relative to the working directory."""

    train: str = ""
    val: str | None = None
    format: DatasetFormat | None = None
    image_root: str | None = None
    val_image_root: str | None = None

    def __post_init__(self) -> None:
        if not self.train:
            raise ValueError("train: the training annotation path is required")


@dataclass(frozen=True)
class OptimConfig:
    """Adam with step decay (the original: lr 2.5e-4, 500k iterations, /10 after 450k, no warm-up).

    ``schedule: step``: the learning rate of iteration ``i`` (1-based) is ``lr / decay_rate ** k``
    where ``k`` counts the ``decay_steps`` below ``i``. ``schedule: cosine``: ``lr`` times
    ``(1 + cos(pi * (i - 1) / max_iter)) / 2``, from ``lr`` down to near 0 at ``max_iter``
    (``decay_steps`` must then be ``[]``). Either is times ``i / warmup_iters`` during an optional linear
    warm-up. ``ema_decay``: the weights validated, evaluated and saved as the checkpoint's model are an
    exponential moving average of the trained ones (``ema = d * ema + (1 - d) * weights`` after every
    step, ``d = min(ema_decay, (1 + t) / (10 + t))`` at step ``t``, so early steps are not averaged
    with the random initialisation for long); 0 turns it off (the original has none).
    """

    lr: float = 2.5e-4
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    max_iter: int = 500_000
    decay_steps: tuple[int, ...] = (450_000,)
    decay_rate: float = 10.0
    warmup_iters: int = 0
    schedule: Literal["step", "cosine"] = "step"
    ema_decay: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must lie in [0, 1) (0: no moving average), got {self.ema_decay}")
        if self.schedule == "cosine" and self.decay_steps:
            raise ValueError(f"schedule cosine decays by itself: set decay_steps: [] (got {list(self.decay_steps)})")
        if self.lr <= 0 or self.eps <= 0 or self.weight_decay < 0 or self.decay_rate <= 0:
            raise ValueError("need lr > 0, eps > 0, weight_decay >= 0, decay_rate > 0")
        if not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must lie in [0, 1), got {self.betas}")
        if self.max_iter < 1 or self.warmup_iters < 0 or any(s < 1 for s in self.decay_steps):
            raise ValueError("need max_iter >= 1, warmup_iters >= 0 and decay_steps >= 1")
        if list(self.decay_steps) != sorted(self.decay_steps):
            raise ValueError(f"decay_steps must be increasing, got {list(self.decay_steps)}")
        self._check_schedule_fits()

    def _check_schedule_fits(self) -> None:
        """Warm-up and decay steps must lie within ``max_iter`` (beyond it they would never act)."""
        late = [step for step in self.decay_steps if step > self.max_iter]
        if late:
            raise ValueError(
                f"decay_steps {list(self.decay_steps)} lie beyond max_iter {self.max_iter} (the learning rate "
                f"would never decay at {late}); give steps up to max_iter, e.g. "
                f"[{max(1, self.max_iter * 9 // 10)}], or [] for no decay"
            )
        if self.warmup_iters > self.max_iter:
            raise ValueError(
                f"warmup_iters {self.warmup_iters} is beyond max_iter {self.max_iter} (the warm-up would never "
                f"finish); set it to at most max_iter, or 0 for none"
            )

    def lr_factor(self, completed: int) -> float:
        """Multiplier of ``lr`` for the iteration after ``completed`` finished ones."""
        warmup = min(1.0, (completed + 1) / self.warmup_iters) if self.warmup_iters else 1.0
        if self.schedule == "cosine":
            return warmup * (1 + math.cos(math.pi * min(completed, self.max_iter) / self.max_iter)) / 2
        decays = sum(completed >= step for step in self.decay_steps)
        return warmup / self.decay_rate ** decays


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs (defaults: the official COCO setup).

    ``batch_size`` is the global batch of one optimizer step; each process takes
    ``batch_size / (processes * grad_accum)`` images per forward pass. ``amp``: autocast dtype
    (``fp16`` needs CUDA and uses a gradient scaler; ``auto``: bf16 where the device multiplies bf16
    fast, a CPU with AMX or a GPU with bf16, else none: :func:`~cornernet_saccade.backends.hardware.choose_amp`;
    the loss is always computed in fp32). ``batchnorm``: ``batch`` (per-process batch
    statistics), ``frozen`` (running statistics, BN weights not trained), ``sync`` (SyncBatchNorm
    across processes, CUDA). Periods (``log_every``, ``val_every``, ``eval_every``,
    ``checkpoint_every``) are in iterations, 0 turns the action off. ``val_batches``: batches of the
    validation loss; ``eval_images``: images of the COCO evaluation (0: all). ``keep_last``: training
    checkpoints kept (0: all). ``init_weights``: weights to start from (official ``.pkl``, a project
    checkpoint or a bundled model name; the network is the file's unless ``architecture`` / ``model``
    say otherwise; a different class count re-initialises the heatmap heads).
    ``on_nonfinite``: ``stop`` raises on a NaN/Inf loss, ``skip`` drops that step. ``device``:
    ``auto``, ``cpu``, ``cuda`` or ``cuda:N``. ``threads``: CPU threads of each process (0: torch's
    default less the cores other work keeps busy, see
    :func:`~cornernet_saccade.backends.device.choose_threads`). ``architecture``: the network trained
    (``model`` holds its config).
    """

    data: DataConfig
    architecture: Architecture = "saccade"
    model: HourglassConfig = field(default_factory=CornerNetSaccadeConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    batch_size: int = 48
    grad_accum: int = 1
    amp: AmpMode = "auto"
    batchnorm: BatchNormMode = "batch"
    seed: int = 317
    workers: int = 4
    log_every: int = 5
    val_every: int = 100
    val_batches: int = 1
    eval_every: int = 0
    eval_images: int = 0
    eval_mode: Literal["saccade", "full"] = "saccade"
    checkpoint_every: int = 5000
    keep_last: int = 0
    out_dir: str = DEFAULT_OUT_DIR
    init_weights: str | None = None
    on_nonfinite: Literal["stop", "skip"] = "stop"
    device: str = "auto"
    threads: int = 0

    def __post_init__(self) -> None:
        check_bounds(vars(self), TRAIN_BOUNDS)
        counts = {"batch_size": self.batch_size, "grad_accum": self.grad_accum, "val_batches": self.val_batches}
        for name, value in counts.items():
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0 (0: the cores other work leaves free), got {self.threads}")
        periods = ("workers", "log_every", "val_every", "eval_every", "eval_images", "checkpoint_every", "keep_last")
        for name in periods:
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.batch_size % self.grad_accum:
            raise ValueError(f"batch_size {self.batch_size} is not divisible by grad_accum {self.grad_accum}")
        if self.eval_every and not self.data.val:
            raise ValueError("eval_every needs data.val (the evaluation set: COCO JSON, VOC or CSV)")
        if not _DEVICE_PATTERN.match(self.device):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        if not isinstance(self.model, self.model_class.config_class):
            raise ValueError(f"model: a {type(self.model).__name__}, but architecture {self.architecture!r} "
                             f"needs a {self.model_class.config_class.__name__}")
        if not isinstance(self.sampling, SAMPLING_CLASSES[self.architecture]):
            raise ValueError(f"sampling: a {type(self.sampling).__name__}, but architecture {self.architecture!r} "
                             f"needs a {SAMPLING_CLASSES[self.architecture].__name__}")
        self._check_shapes()

    @property
    def model_class(self) -> type[CornerNetBase]:
        """The network class of ``architecture``."""
        return MODEL_CLASSES[self.architecture]

    def _check_shapes(self) -> None:
        """The sampler's class count and map sizes must be the network's."""
        if self.sampling.num_classes != self.model.num_classes:
            raise ValueError(
                f"sampling.num_classes ({self.sampling.num_classes}) differs from model.num_classes "
                f"({self.model.num_classes})"
            )
        size = self.sampling.input_size
        output = network_output_size(self.architecture, size)
        if self.sampling.output_size != output or output % 8:
            raise ValueError(
                f"sampling.output_size must be the network's output size {output} for input_size {size}, "
                f"and divisible by 8 (got {self.sampling.output_size}; 255 -> 64 and 127 -> 32 work)"
            )
        if self.model_class.has_attention and attention_map_sizes(size) != [output // 4, output // 2, output]:
            raise ValueError(f"sampling.input_size {size} gives attention targets of another size than the network's")


def network_output_size(architecture: str, input_size: int) -> int:
    """Output-map side of the ``architecture`` network for a square input of ``input_size`` pixels."""
    return output_size(input_size, 1 + MODEL_CLASSES[architecture].stem_residuals)


def train_config_from_dict(data: dict[str, Any], source: str, overrides: Sequence[str] = ()) -> TrainConfig:
    """Validate ``data`` (plus ``overrides``) into a :class:`TrainConfig`; ``source`` names it in errors."""
    if overrides:
        data = apply_overrides(data, overrides)
        source = f"{source} (with --set overrides)"
    if "data" not in data:
        raise ConfigError(f"{source}: the 'data' section (data.train: the training annotations) is missing")
    return config_from_dict(TrainConfig, _with_derived_sampling(_with_weights_network(data), source), source)


def _with_weights_network(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` whose network is that of its ``init_weights`` file: the file's architecture unless the
    config names one, and, for that same architecture, the file's model config (the official
    defaults for an official ``.pkl``, which stores none) under the ``model`` keys the config gives
    (fine-tuning ``init_weights: shapes`` with ``model: {num_classes: 2}`` keeps the shapes network).
    The file is read only when the config leaves some of the network open (a resumed run's config
    gives all of it)."""
    weights, model = data.get("init_weights"), data.get("model") or {}
    architecture = data.get("architecture")
    if not isinstance(weights, str) or not isinstance(model, dict) or architecture not in (None, *SAMPLING_CLASSES):
        return data  # config_from_dict names the malformed value
    fields = MODEL_CLASSES[architecture or "saccade"].config_class.__dataclass_fields__
    if architecture is not None and set(model) >= set(fields):
        return data
    stored = read_checkpoint(resolve_weights_path(weights))
    held = stored_architecture(stored)
    if held != (architecture or held):
        return data  # another network than the file's: loading it names both
    file_model = stored_model_config(stored)
    return {**data, "architecture": held, "model": {**(file_model if isinstance(file_model, dict) else {}), **model}}


def _with_derived_sampling(data: dict[str, Any], source: str) -> dict[str, Any]:
    """``data`` with ``sampling.num_classes`` and ``sampling.output_size`` filled in from the model
    (its class count; the output size of the crop size), and ``model`` / ``sampling`` built as the
    classes of ``architecture``. Given values must equal the derived ones."""
    model = data.get("model") or {}
    sampling = data.get("sampling") or {}
    architecture = data.get("architecture", "saccade")
    if not (isinstance(model, dict) and isinstance(sampling, dict) and isinstance(architecture, str)
            and architecture in SAMPLING_CLASSES):
        return data  # config_from_dict names the malformed section or value
    model_class = MODEL_CLASSES[architecture]
    sampling_class = SAMPLING_CLASSES[architecture]
    input_size = sampling.get("input_size", sampling_class.input_size)
    derived = {"num_classes": model.get("num_classes", model_class.config_class.num_classes),
               "output_size": network_output_size(architecture, input_size) if isinstance(input_size, int) else None}
    for key, value in derived.items():
        if key in sampling and value is not None and sampling[key] != value:
            raise ConfigError(f"{source}: sampling.{key} is {sampling[key]!r}, but the model gives {value} "
                              f"(it is derived from model.num_classes and sampling.input_size: leave it out)")
    sampling = {**sampling, **{k: v for k, v in derived.items() if v is not None}}
    return {**data, "model": config_from_dict(model_class.config_class, model, f"{source}: model"),
            "sampling": config_from_dict(sampling_class, sampling, f"{source}: sampling")}


def bundled_config_path(name: str) -> Path:
    """Path of a config shipped with the package (``cornernet_saccade/configs/<name>.yaml``)."""
    path = bundled_config_dir() / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(
            f"no config file {name!r} and no bundled config of that name (bundled: {bundled_config_names()})"
        )
    return path


def load_train_config(path: str | Path, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read a YAML training config (a path, or the name of a bundled one such as ``shapes_small``)."""
    path = Path(path)
    if not path.exists() and path.suffix == "" and len(path.parts) == 1:
        path = bundled_config_path(path.name)
    return train_config_from_dict(read_yaml(path), str(path), overrides)
