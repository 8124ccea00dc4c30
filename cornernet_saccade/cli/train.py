"""``cornernet-saccade train --config C [--resume [PATH]] [--out DIR] [--set key=value ...]``.

Run under ``torchrun --nproc_per_node=N -m cornernet_saccade train ...`` for multi-GPU training.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``train`` parser to ``subparsers``; its help lists the bundled configs."""
    from cornernet_saccade.config import bundled_config_names

    parser = subparsers.add_parser(
        "train",
        help="train a model (single process, or one process per GPU under torchrun)",
        description="Train CornerNet-Saccade from a YAML config (a path, or a bundled config name: "
                    f"{', '.join(bundled_config_names())}). Checkpoints, metrics.jsonl and the progress go to "
                    "the run folder (out_dir).",
    )
    parser.add_argument("--config", help="YAML training config (path or bundled name); optional with --resume")
    parser.add_argument("--resume", nargs="?", const="", metavar="PATH",
                        help="continue a run from PATH (a checkpoint or a run folder; default: OUT/last.pt)")
    parser.add_argument("--out", help="run folder (overrides out_dir; default with --resume: the checkpoint's folder)")
    parser.add_argument("--threads", type=int, metavar="N",
                        help="CPU threads per process (sets the config's threads; 0: the cores other work leaves free)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set optim.lr=1e-4 --set batch_size=8 (repeatable)")
    parser.set_defaults(func=run, parser=parser)


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _changed_keys(config: Any, stored: dict[str, Any]) -> list[str]:
    from cornernet_saccade.config import config_to_dict

    current, before = _flatten(config_to_dict(config)), _flatten(stored)
    return sorted(key for key in current if current[key] != before.get(key))


def _say_main(message: str) -> None:
    """Print ``message`` in the main process only (rank 0 under torchrun)."""
    if int(os.environ.get("RANK", "0")) == 0:
        print(message)


def run(args: argparse.Namespace) -> int:
    """Resolve the config (file and/or checkpoint, overrides), train, print where it ended."""
    from cornernet_saccade.engine.run_checkpoints import check_training_state, resolve_resume_path
    from cornernet_saccade.engine.train_config import (
        DEFAULT_OUT_DIR,
        load_train_config,
        train_config_from_dict,
    )
    from cornernet_saccade.engine.trainer import run_training
    from cornernet_saccade.model.checkpoint import read_checkpoint

    parser: argparse.ArgumentParser = args.parser
    if not args.config and args.resume is None:
        parser.error("--config is required unless --resume is given")
    if args.threads is not None:
        args.set = [*args.set, f"threads={args.threads}"]
    config = load_train_config(args.config, args.set) if args.config else None
    stored = None
    if args.resume is not None:
        default_dir = args.out or (config.out_dir if config else DEFAULT_OUT_DIR)
        path = resolve_resume_path(args.resume or None, default_dir)
        stored = read_checkpoint(path)
        check_training_state(stored)
        saved = stored.training_state.get("config")
        if config is None:
            if saved is None:
                parser.error(f"{path} holds no training config; pass --config")
            config = train_config_from_dict(saved, f"{path} (stored config)", args.set)
        changed = _changed_keys(config, saved or {})
        config = dataclasses.replace(config, out_dir=args.out or str(path.resolve().parent))
        if changed:
            print(f"resuming with settings changed from the checkpoint's: {', '.join(changed)}", file=sys.stderr)
    elif args.out:
        assert config is not None, "without --resume, --config was given (checked above)"
        config = dataclasses.replace(config, out_dir=args.out)
    assert config is not None, "without --resume, --config was given (checked above)"
    result = run_training(config, stored)
    if not result.loss and result.iteration >= config.optim.max_iter:
        _say_main(f"nothing to train: the run is at iteration {result.iteration} and optim.max_iter is "
                  f"{config.optim.max_iter}; to train further, raise it (--set optim.max_iter=N)")
        return 0
    if int(os.environ.get("RANK", "0")) == 0:
        summary = ", ".join(f"{k} {v:.4f}" for k, v in result.loss.items())
        print(f"finished at iteration {result.iteration}" + (f" ({summary})" if summary else ""))
        print(f"checkpoint: {result.checkpoint}")
        if result.skipped_samples or result.skipped_steps:
            print(f"replaced unreadable samples: {result.skipped_samples}, skipped non-finite steps: "
                  f"{result.skipped_steps} (see {Path(config.out_dir) / 'metrics.jsonl'})")
    return 0
