"""Training throughput on the CPU: where one iteration of a training config spends its time.

Each config (a bundled name or a YAML path; its ``data.train`` must exist, e.g. ``make-shapes --out
data/shapes``) is built as ``cornernet-saccade train`` builds it: the same sampler, network, loss and
Adam optimizer. Every iteration is run phase by phase, one after the other in this process: sample
building (``batch_size`` samples from the config's images, then collation), forward, loss, backward
and the optimizer step. ``train`` overlaps sample building with the step in its worker processes
(``workers``), so its crops/s lie between the ``crops/s`` column (all phases in series) and the
``step crops/s`` one (the step alone).

Variants (``--variants``) change how the step runs, never what it computes:

=================  =========================================================================
``baseline``       the step in float32 (``amp: none``; NCHW)
``bf16``           the forward (and so the backward) under bf16 autocast (``amp: bf16``); the
                   loss in float32, as ``train`` runs it
``auto``           what ``train`` runs by default (``amp: auto``: bf16 on a CPU with AMX, else
                   float32; the row says which)
``channels_last``  float32, the network and its input in channels-last memory layout
``compile``        float32, the training forward through ``torch.compile`` (compiles in its warm-up)
``bf16_compile``   ``bf16`` with the forward through ``torch.compile``
=================  =========================================================================

The header gives the CPU model and its flags (AVX-512, AVX512_BF16, AMX): a ratio between rows holds
for this machine only.

``--threads`` takes several counts (e.g. ``--threads 1 2``): each config and variant is measured
with each, in this one run, so the thread layout of a 2-core machine can be compared side by side.

The table gives, per config, variant and thread count, the median seconds of each phase over ``--iterations``
timed iterations after ``--warmup`` untimed ones, the median and spread (min-max) of the whole
iteration, and crops per second.

    python benchmarks/train_throughput.py
    python benchmarks/train_throughput.py --configs shapes_squeeze --variants baseline channels_last --iterations 5
    python benchmarks/train_throughput.py --configs shapes_default --variants baseline --threads 1 2
"""
from __future__ import annotations

import contextlib
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from common import argument_parser, begin, markdown_table
from torch import Tensor, nn

from cornernet_saccade.backends.distributed import DistContext
from cornernet_saccade.backends.hardware import choose_amp, detect_capability
from cornernet_saccade.data.samples import collate
from cornernet_saccade.engine.loss import LossOutput, loss_normalizers
from cornernet_saccade.engine.train_config import load_train_config
from cornernet_saccade.engine.trainer import Trainer, autocast_context, outputs_to_float32

PHASES = ("samples", "forward", "loss", "backward", "optimizer")
VARIANTS = ("baseline", "bf16", "auto", "channels_last", "compile", "bf16_compile")
DEFAULT_CONFIGS = ("shapes_default", "shapes_squeeze")


@dataclass
class Measurement:
    """Seconds of every phase of every timed iteration of one config and variant."""

    config: str
    variant: str
    threads: int
    batch_size: int
    seconds: dict[str, list[float]]

    def median(self, phase: str) -> float:
        return statistics.median(self.seconds[phase])

    def totals(self) -> list[float]:
        return [sum(parts) for parts in zip(*(self.seconds[p] for p in PHASES))]

    def row(self) -> list[str]:
        totals = self.totals()
        step = statistics.median([t - s for t, s in zip(totals, self.seconds["samples"])])
        return [self.config, self.variant, str(self.threads), *(f"{self.median(p):.3f}" for p in PHASES),
                f"{statistics.median(totals):.3f}", f"{min(totals):.3f}-{max(totals):.3f}",
                f"{self.batch_size / statistics.median(totals):.2f}", f"{self.batch_size / step:.2f}"]


def timed(fn: Callable[[], object]) -> tuple[object, float]:
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def prepared_network(model: nn.Module, variant: str) -> nn.Module:
    """The module the variant's forward runs (``model``'s parameters either way)."""
    if variant == "channels_last":
        return model.to(memory_format=torch.channels_last)
    if variant in ("compile", "bf16_compile"):
        return torch.compile(model)  # type: ignore[return-value]
    return model


def variant_amp(variant: str) -> str:
    """The autocast dtype (``amp`` setting) of ``variant``."""
    if variant == "auto":
        return choose_amp(detect_capability("cpu"))[0]
    return "bf16" if variant.startswith("bf16") else "none"


def measure(name: str, variant: str, threads: int, iterations: int, warmup: int) -> Measurement:
    """Build config ``name``'s training as ``train`` does and time ``iterations`` of its iterations
    with ``threads`` torch CPU threads."""
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as out_dir:
        config = load_train_config(name, [f"out_dir={out_dir}", "workers=0"])
        trainer = Trainer(config, DistContext(0, 1, torch.device("cpu")))
    network = prepared_network(trainer.model, variant)
    autocast = autocast_context(variant_amp(variant), torch.device("cpu"))
    memory = torch.channels_last if variant == "channels_last" else torch.contiguous_format
    seconds: dict[str, list[float]] = {phase: [] for phase in PHASES}
    batch_size = config.batch_size
    for iteration in range(warmup + iterations):
        start = iteration * batch_size
        count = len(trainer.train_samples)
        batch, t_samples = timed(lambda: collate([trainer.train_samples[(start + i) % count] for i in range(batch_size)]))
        batch = {k: v.contiguous(memory_format=memory) if k == "image" else v for k, v in batch.items()}
        trainer.optimizer.zero_grad(set_to_none=True)
        outputs, t_forward = timed(lambda: forward(network, batch["image"], autocast))
        result, t_loss = timed(lambda: trainer.loss_fn(outputs_to_float32(outputs), batch, loss_normalizers(batch)))
        _, t_backward = timed(lambda: _backward(result))
        _, t_step = timed(trainer.optimizer.step)
        if iteration >= warmup:
            for phase, value in zip(PHASES, (t_samples, t_forward, t_loss, t_backward, t_step)):
                seconds[phase].append(value)
    label = f"auto ({variant_amp(variant)})" if variant == "auto" else variant
    return Measurement(name, label, threads, batch_size, seconds)


def forward(network: nn.Module, images: Tensor, autocast: contextlib.AbstractContextManager) -> object:
    with autocast:
        return network(images)


def _backward(result: LossOutput) -> None:
    total: Tensor = result.total
    total.backward()


def print_table(measurements: Sequence[Measurement]) -> None:
    header = ["config", "variant", "threads", *(f"{p} s" for p in PHASES), "iteration s", "spread s", "crops/s", "step crops/s"]
    print(markdown_table(header, [measurement.row() for measurement in measurements]), flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argument_parser(__doc__)
    parser.add_argument("--configs", nargs="+", default=list(DEFAULT_CONFIGS),
                        help=f"training configs: bundled names or YAML paths (default: {' '.join(DEFAULT_CONFIGS)})")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=["baseline", "bf16", "auto"],
                        help="how the step runs (default: baseline bf16 auto; compile takes minutes)")
    parser.add_argument("--iterations", type=int, default=10, help="timed iterations per row (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed iterations first (default 2)")
    parser.add_argument("--threads", type=int, nargs="+", default=[2],
                        help="torch CPU threads; several counts give a row each (default 2)")
    args = parser.parse_args(argv)
    begin(max(args.threads), "training configs " + ", ".join(args.configs), args.iterations, args.warmup)
    measurements = []
    for name in args.configs:
        for variant in args.variants:
            for threads in args.threads:
                torch.manual_seed(0)
                measurements.append(measure(name, variant, threads, args.iterations, args.warmup))
    print_table(measurements)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
