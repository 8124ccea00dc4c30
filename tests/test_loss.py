"""CornerNetSaccadeLoss against the original loss value (golden_loss) and hand-computed cases."""
from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from cornernet_saccade.engine.loss import (
    CornerNetSaccadeLoss,
    embedding_loss,
    focal_loss,
    loss_normalizers,
    offset_loss,
)
from cornernet_saccade.engine.trainer import outputs_to_float32
from cornernet_saccade.model.heads import HeadOutputs

torch.set_num_threads(2)
GOLDEN = Path(__file__).parent / "data" / "loss_golden.npz"
TARGET_KEYS = {"tl_heat": "gt_tl_heat", "br_heat": "gt_br_heat", "tl_valid": "gt_tl_valid", "br_valid": "gt_br_valid",
               "tag_mask": "gt_tag_mask", "tl_ind": "gt_tl_ind", "br_ind": "gt_br_ind", "tl_off": "gt_tl_off",
               "br_off": "gt_br_off", "att_coarse": "gt_att/scale0", "att_middle": "gt_att/scale1",
               "att_fine": "gt_att/scale2"}


HEAD_FIELDS = ("tl_heats", "br_heats", "tl_tags", "br_tags", "tl_offs", "br_offs")


def all_tensors(outputs: HeadOutputs) -> list[torch.Tensor]:
    """Every tensor of ``outputs``, in a fixed order."""
    return [*(t for name in HEAD_FIELDS for t in getattr(outputs, name)),
            *(a for stack in outputs.attentions for a in stack)]


def map_outputs(outputs: HeadOutputs, fn: Callable[[torch.Tensor], torch.Tensor]) -> HeadOutputs:
    """``outputs`` with ``fn`` applied to every tensor."""
    return HeadOutputs(*[[fn(t) for t in getattr(outputs, name)] for name in HEAD_FIELDS],
                       attentions=[[fn(a) for a in stack] for stack in outputs.attentions])


def golden_outputs() -> tuple[HeadOutputs, str]:
    """The golden network outputs, regenerated from ``default_rng(2024)`` in the generator's order
    (per stack: tl/br heat N(-2,1) [2,80,64,64], tl/br tag N(0,1) [2,1,64,64], tl/br off N(0.5,0.5^2)
    [2,2,64,64], attention N(-2,1) 16^2, 32^2, 64^2), and the sha256 of their float32 bytes."""
    rng = np.random.default_rng(2024)
    digest = hashlib.sha256()

    def draw(mean: float, std: float, *shape: int) -> torch.Tensor:
        values = (mean + std * rng.standard_normal(shape)).astype(np.float32)
        digest.update(values.tobytes())
        return torch.from_numpy(values)

    out = HeadOutputs()
    for _ in range(3):
        out.tl_heats.append(draw(-2, 1, 2, 80, 64, 64))
        out.br_heats.append(draw(-2, 1, 2, 80, 64, 64))
        out.tl_tags.append(draw(0, 1, 2, 1, 64, 64))
        out.br_tags.append(draw(0, 1, 2, 1, 64, 64))
        out.tl_offs.append(draw(0.5, 0.5, 2, 2, 64, 64))
        out.br_offs.append(draw(0.5, 0.5, 2, 2, 64, 64))
        out.attentions.append([draw(-2, 1, 2, 1, size, size) for size in (16, 32, 64)])
    return out, digest.hexdigest()


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    return dict(np.load(GOLDEN))


@pytest.fixture(scope="module")
def golden_case(golden: dict[str, np.ndarray]) -> tuple[HeadOutputs, dict[str, torch.Tensor]]:
    outputs, sha = golden_outputs()
    assert sha == str(golden["outputs_sha256"]), "regenerated outputs differ from the golden ones"
    targets = {key: torch.from_numpy(golden[f"sample/{name}"]) for key, name in TARGET_KEYS.items()}
    return outputs, targets


@pytest.mark.parametrize("threads", [1, 2])
def test_golden_total_and_components(golden: dict[str, np.ndarray], golden_case, threads: int) -> None:
    """The golden holds at one thread and at two (the bundled recipes' layouts on a 2-core machine)."""
    outputs, targets = golden_case
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        result = CornerNetSaccadeLoss()(outputs, targets)
    finally:
        torch.set_num_threads(previous)
    meta = {k[len("meta/"):]: golden[k] for k in golden if k.startswith("meta/")}
    expected = {
        "focal": (meta["focal_tl_sum_over_stacks"] + meta["focal_br_sum_over_stacks"]) / 3,
        "attention": meta["att_per_scale(sum_stacks/3)"].sum() / 3,
        "pull": 0.1 * meta["pull_per_stack_unweighted"].sum() / 3,
        "push": 0.1 * meta["push_per_stack_unweighted"].sum() / 3,
        "offset": meta["off_per_stack(tl+br)"].sum() / 3,
    }
    for name, value in expected.items():
        assert result.components[name].item() == pytest.approx(value, rel=1e-5), name
    assert result.total.item() == pytest.approx(float(golden["loss/total"][0]), rel=1e-5)
    assert result.total.item() == pytest.approx(4994.2925, rel=1e-5)
    assert result.total.item() == pytest.approx(sum(c.item() for c in result.components.values()), rel=1e-6)


def test_outputs_untouched_and_gradients_finite(golden_case) -> None:
    outputs, targets = golden_case
    leaves = map_outputs(outputs, lambda t: t.clone().requires_grad_())
    CornerNetSaccadeLoss()(leaves, targets).total.backward()
    for before, after in zip(all_tensors(outputs), all_tensors(leaves)):
        assert torch.equal(before, after.detach())
        assert after.grad is not None and torch.isfinite(after.grad).all()


def test_batch_of_one_matches_duplicated_batch(golden_case) -> None:
    """Duplicating image 0 doubles every sum and every count: focal, attention and offset stay the
    same (up to the +1e-4 in the object count: 3 vs 6 objects, rel 2e-5), pull and push (summed
    over images) double."""
    outputs, targets = golden_case
    one = map_outputs(outputs, lambda t: t[:1])
    two = map_outputs(one, lambda t: torch.cat([t, t]))
    loss = CornerNetSaccadeLoss()
    single = loss(one, {k: v[:1] for k, v in targets.items()}).components
    double = loss(two, {k: torch.cat([v[:1], v[:1]]) for k, v in targets.items()}).components
    for name in ("focal", "attention", "offset"):
        assert single[name].item() == pytest.approx(double[name].item(), rel=3e-5), name
    for name in ("pull", "push"):
        assert 2 * single[name].item() == pytest.approx(double[name].item(), rel=1e-5), name
        assert single[name].item() > 0


def test_focal_loss_by_hand() -> None:
    logits = torch.zeros(1, 1, 4, 4)  # p = 0.5 everywhere
    gt = torch.zeros(1, 1, 4, 4)
    gt[0, 0, 1, 1] = 1
    gt[0, 0, 1, 2] = 0.5
    term = math.log(0.5) * 0.25  # log(p)(1-p)^2 == log(1-p)p^2
    # 1 positive, 1 half-weighted negative ((1-0.5)^4), 14 full negatives
    assert focal_loss(logits, gt).item() == pytest.approx(-(term + term / 16 + 14 * term), rel=1e-6)
    mask = torch.ones_like(gt)
    mask[0, 0, 1] = 0  # removes the positive and the half negative from the sum, not from the count
    assert focal_loss(logits, gt, mask).item() == pytest.approx(-12 * term, rel=1e-6)
    # no positives: the negative sum is not divided
    assert focal_loss(logits, torch.zeros_like(gt)).item() == pytest.approx(-16 * term, rel=1e-6)


def test_embedding_loss_invariants() -> None:
    mask = torch.tensor([[True, True, False]])
    # same embedding at both corners: pull 0; objects 2 apart: push 0 (margin 1) up to what the
    # +1e-4 guards leave of the cancelled diagonal: 2 * (1 - 1/2.0001) / 2.0001 - 2 / (2.0001 * 2.0001) = 5e-5
    pull, push = embedding_loss(torch.tensor([[0.0, 2.0, 9.0]]), torch.tensor([[0.0, 2.0, -9.0]]), mask)
    assert pull.item() == 0 and push.item() == pytest.approx(2 / 2.0001 - 4 / 2.0001 ** 2, abs=1e-7)
    # corners 1 apart around equal means: pull = 2 objects * (0.5^2 + 0.5^2) / 2 objects;
    # push = sum over the 2 ordered pairs i != j of relu(1 - 0) / (2 * 1) = 1
    pull, push = embedding_loss(torch.tensor([[0.5, 0.5, 0.0]]), torch.tensor([[-0.5, -0.5, 0.0]]), mask)
    assert pull.item() == pytest.approx(0.5, rel=1e-4) and push.item() == pytest.approx(1.0, rel=1e-4)
    pull, push = embedding_loss(torch.zeros(2, 3), torch.ones(2, 3), torch.zeros(2, 3, dtype=torch.bool))
    assert pull.item() == 0 and push.item() == 0


def test_offset_loss_by_hand() -> None:
    predicted = torch.full((1, 2, 2), 0.5)
    gt = torch.tensor([[[0.5, 2.5], [7.0, 7.0]]])
    mask = torch.tensor([[True, False]])
    # one object; |diff| = (0, 2) -> smooth-L1 0 + (2 - 0.5); the masked slot does not count
    assert offset_loss(predicted, gt, mask).item() == pytest.approx(1.5 / (1 + 1e-4), rel=1e-6)


def test_batch_of_one_without_objects() -> None:
    generator = torch.Generator().manual_seed(0)
    outputs = HeadOutputs(
        tl_heats=[torch.randn(1, 3, 8, 8, generator=generator)],
        br_heats=[torch.randn(1, 3, 8, 8, generator=generator)],
        tl_tags=[torch.randn(1, 1, 8, 8, generator=generator)],
        br_tags=[torch.randn(1, 1, 8, 8, generator=generator)],
        tl_offs=[torch.rand(1, 2, 8, 8, generator=generator)],
        br_offs=[torch.rand(1, 2, 8, 8, generator=generator)],
        attentions=[[torch.randn(1, 1, s, s, generator=generator) for s in (2, 4, 8)]],
    )
    targets = {"tl_heat": torch.zeros(1, 3, 8, 8), "br_heat": torch.zeros(1, 3, 8, 8),
               "tl_valid": torch.ones(1, 3, 8, 8), "br_valid": torch.ones(1, 3, 8, 8),
               "tag_mask": torch.zeros(1, 4, dtype=torch.bool), "tl_ind": torch.zeros(1, 4, dtype=torch.int64),
               "br_ind": torch.zeros(1, 4, dtype=torch.int64), "tl_off": torch.zeros(1, 4, 2),
               "br_off": torch.zeros(1, 4, 2), "att_coarse": torch.zeros(1, 1, 2, 2),
               "att_middle": torch.zeros(1, 1, 4, 4), "att_fine": torch.zeros(1, 1, 8, 8)}
    result = CornerNetSaccadeLoss()(outputs, targets)
    assert torch.isfinite(result.total) and result.total.item() > 0
    assert result.components["pull"].item() == 0 and result.components["push"].item() == 0
    assert result.components["offset"].item() == 0
    expected_focal = (focal_loss(outputs.tl_heats[0], targets["tl_heat"])
                      + focal_loss(outputs.br_heats[0], targets["br_heat"]))
    assert result.components["focal"].item() == pytest.approx(expected_focal.item(), rel=1e-6)


def test_split_batch_with_whole_batch_normalizers_adds_up(golden_case) -> None:
    """Each image's loss computed with the whole batch's counts: the parts sum to the batch loss."""
    outputs, targets = golden_case
    whole = CornerNetSaccadeLoss()(outputs, targets)
    counts = loss_normalizers(targets)
    parts = []
    for b in range(2):
        part = map_outputs(outputs, lambda t: t[b:b + 1])
        parts.append(CornerNetSaccadeLoss()(part, {k: v[b:b + 1] for k, v in targets.items()}, counts))
    for name, value in whole.components.items():
        assert sum(p.components[name].item() for p in parts) == pytest.approx(value.item(), rel=1e-5), name
    assert counts["objects"].item() == 5 and counts["tl_heat"].item() == 5


def test_half_precision_logits_stay_finite() -> None:
    logits = torch.full((1, 1, 2, 2), 30.0, dtype=torch.float16)  # sigmoid rounds to 1 in float16
    gt = torch.zeros(1, 1, 2, 2)
    loss = focal_loss(logits, gt)
    assert torch.isfinite(loss) and loss.item() == pytest.approx(-4 * math.log(1e-4) * (1 - 1e-4) ** 2, rel=1e-3)


def test_bf16_head_outputs_change_the_golden_loss_little(golden: dict[str, np.ndarray], golden_case) -> None:
    """Training under bf16 autocast (``amp: bf16``, what ``auto`` picks on AMX CPUs) hands the loss head
    outputs rounded to bf16; the loss itself runs in fp32 on them. On the golden case that rounding moves
    the total by well under 1 % (bf16 keeps 8 significant bits: 0.4 % per value at worst)."""
    outputs, targets = golden_case
    rounded = outputs_to_float32(map_outputs(outputs, lambda t: t.to(torch.bfloat16)))
    changed = sum(not torch.equal(a, b) for a, b in zip(all_tensors(outputs), all_tensors(rounded)))
    assert changed > 0 and all(t.dtype == torch.float32 for t in all_tensors(rounded))
    result = CornerNetSaccadeLoss()(rounded, targets)
    assert result.total.item() == pytest.approx(float(golden["loss/total"][0]), rel=5e-3)
    assert result.total.item() != pytest.approx(float(golden["loss/total"][0]), rel=1e-7)
