"""Network forward latency per backend at 1x3x255x255 and 1x3x511x511, beside the original's figures.

Two paths, as the original was timed (docs/reference.md §B9):

* test path: backbone + the last stack's corner heads + the attention heads (what detection runs),
  under ``torch.inference_mode``, for every backend;
* train path: ``model.train()`` forward of all three stacks' heads + attention (BatchNorm on batch
  statistics), without backward, under ``torch.no_grad`` (eager model only).

Each case runs ``--warmup`` times untimed, then ``--repeats`` times; the median is shown. GFLOP
counts the convolutions' multiply-accumulates (x2) with forward hooks; the achieved rate is set
against the best rate of a 2048x2048 ``torch.mm`` in the backend's dtype on the same threads (the
CPU's practical peak). The count is that of direct convolution for every backend, so for ``fast``
(Winograd F(4x4, 3x3): 4x fewer multiplications in the 3x3 convolutions) the rate is an effective
one and may exceed 100 % of the matrix-multiply peak.

    python benchmarks/forward.py --repeats 5
    python benchmarks/forward.py --sizes 255 --backends eager fast fast-nchw --repeats 3
"""
from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Sequence

import torch
from common import (
    BACKEND_DTYPES,
    BACKENDS,
    DEFAULT_BACKENDS,
    MATMUL_SIZE,
    add_backends_argument,
    add_common_arguments,
    argument_parser,
    begin,
    build_backend,
    conv_gflop,
    matmul_gflops,
    median_seconds,
    model_label,
    official_model,
)

from cornernet_saccade.backends import resolve_backend
from cornernet_saccade.model.cornernet_saccade import CornerNetSaccade
from cornernet_saccade.tables import format_table

#: The original's medians in seconds (docs/reference.md §B9, fp32, 2 threads): (C++ pools, pure-torch pools).
ORIGINAL_SECONDS = {
    ("test", 255): (0.464, 0.487),
    ("test", 511): (1.871, 1.957),
    ("train", 255): (0.741, 0.753),
    ("train", 511): (2.958, 3.135),
}
HEADER = ("input", "path", "backend", "median s", "original s (other CPU: §B9)", "GFLOP", "GFLOP/s", "% of mm")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argument_parser(__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[255, 511], help="input sizes (default 255 511)")
    add_backends_argument(parser, BACKENDS, DEFAULT_BACKENDS, "test-path backends")
    parser.add_argument("--no-train-path", action="store_true", help="skip the train-path timing")
    add_common_arguments(parser, repeats=5)
    return parser.parse_args(argv)


def original(path: str, size: int) -> str:
    low, high = ORIGINAL_SECONDS.get((path, size), (None, None))
    return "-" if low is None else f"{low:.3f}-{high:.3f}"


def row(size: int, path: str, backend: str, seconds: float, gflop: float, peak: float) -> tuple[str, ...]:
    rate = gflop / seconds
    return (f"1x3x{size}x{size}", path, backend, f"{seconds:.3f}", original(path, size), f"{gflop:.1f}",
            f"{rate:.0f}", f"{100 * rate / peak:.0f}%")


def time_test_path(model: CornerNetSaccade, size: int, args: argparse.Namespace, peaks: dict) -> list:
    """Rows of the test path at ``size`` for every backend."""
    images = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        gflop = conv_gflop(model, lambda: model(images))
    rows = []
    for name in args.backends:
        network = build_backend(name, model, size)
        with torch.inference_mode():
            seconds = median_seconds(lambda: network(images, with_attention=True), args.repeats, args.warmup)  # noqa: F821 (bound above)
        del network
        rows.append(row(size, "test", name, seconds, gflop, peaks[BACKEND_DTYPES[resolve_backend(name, "cpu")[0]]]))
        print(" ", *rows[-1], file=sys.stderr)
    return rows


def time_train_path(model: CornerNetSaccade, size: int, args: argparse.Namespace, peaks: dict) -> tuple[str, ...]:
    """Row of the train path at ``size`` (a copy of the model in training mode, no backward)."""
    images = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    training = copy.deepcopy(model).train()  # BatchNorm updates its running statistics
    with torch.no_grad():
        gflop = conv_gflop(training, lambda: training(images))
        seconds = median_seconds(lambda: training(images), args.repeats, args.warmup)
    result = row(size, "train", "eager", seconds, gflop, peaks[torch.float32])
    print(" ", *result, file=sys.stderr)
    return result


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    begin(args.threads, model_label(args.init, args.weights), args.repeats, args.warmup)
    peaks = {dtype: matmul_gflops(dtype) for dtype in (torch.float32, torch.bfloat16, torch.float16)}
    model = official_model(args.init, args.weights)
    rows = []
    for size in args.sizes:
        rows += time_test_path(model, size, args, peaks)
        if not args.no_train_path:
            rows.append(time_train_path(model, size, args, peaks))
    print(f"torch.mm {MATMUL_SIZE}x{MATMUL_SIZE} (best of 5): fp32 {peaks[torch.float32]:.0f} GFLOP/s, bf16 {peaks[torch.bfloat16]:.0f} GFLOP/s "
          "(the '% of mm' column uses the backend's dtype)")
    print(format_table(HEADER, rows, (False, False, False, True, True, True, True, True)))
    print("original: docs/reference.md §B9 medians (C++ pools - pure-torch pools), princeton-vl/CornerNet-Lite, fp32, 2 threads")


if __name__ == "__main__":
    main()
