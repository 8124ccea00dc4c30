"""CornerNet-Saccade training loss (docs/reference.md §4), vectorised over the batch.

Differences from the original ``CornerNet_Saccade_Loss``, all deliberate: the sigmoid is not applied
in place (the network outputs are left untouched), the associative-embedding loss works for batch
size 1 and for images without objects, and each term is reported separately.

Splitting a batch across processes (DDP) or micro-batches (gradient accumulation): pass
``normalizers`` = :func:`loss_normalizers` summed over the *whole* batch. Every divided term then
uses the whole batch's counts and the per-part losses add up to the whole batch's loss (pull and
push are sums over images anyway); the caller multiplies by the number of processes to undo DDP's
gradient averaging.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import torch
from torch import Tensor, nn

from cornernet_saccade.data.targets import ATTENTION_TARGET_KEYS

if TYPE_CHECKING:
    from cornernet_saccade.model.heads import HeadOutputs

_PROB_EPS = 1e-4
_COUNT_EPS = 1e-4
#: Keys of :func:`loss_normalizers`: positives of each heatmap target, and ``objects``.
NORMALIZER_KEYS = ("tl_heat", "br_heat", *ATTENTION_TARGET_KEYS, "objects")


@dataclass
class LossOutput:
    """``total``: 0-dim loss to back-propagate. ``components``: 0-dim terms ``focal, attention, pull,
    push, offset``, each already weighted and divided by the number of stacks, so that
    ``total == sum(components.values())``."""

    total: Tensor
    components: dict[str, Tensor]


def clamped_sigmoid(logits: Tensor) -> Tensor:
    """``sigmoid`` clamped to ``[1e-4, 1 - 1e-4]`` (out of place) so that the logs stay finite.

    Half-precision logits (autocast) are computed in float32: ``1 - 1e-4`` rounds to 1 in float16.
    """
    probs = torch.sigmoid(logits.to(torch.promote_types(logits.dtype, torch.float32)))
    return torch.clamp(probs, min=_PROB_EPS, max=1 - _PROB_EPS)


def focal_loss(logits: Tensor, gt: Tensor, mask: Tensor | None = None, num_pos: Tensor | None = None) -> Tensor:
    """CornerNet focal loss (alpha 2, beta 4) of one stack, summed over the whole batch.

    ``logits``, ``gt`` and ``mask`` share a shape (``[N, C, H, W]``); ``gt`` holds the Gaussian
    targets in ``[0, 1]`` with exact 1s at the positives (every other location is a negative);
    ``mask`` (0/1) removes locations from both terms. The sum is divided by the number of
    ``gt == 1`` locations (masked or not) when there are any; ``num_pos`` replaces that count
    (e.g. the count over a larger batch this one is part of).
    """
    prob = clamped_sigmoid(logits)
    positive = gt.eq(1)
    pos_term = torch.log(prob) * (1 - prob) ** 2
    neg_term = torch.log(1 - prob) * prob ** 2 * (1 - gt) ** 4
    per_location = torch.where(positive, pos_term, neg_term)
    if mask is not None:
        per_location = per_location * mask
    count = positive.sum() if num_pos is None else num_pos
    return -per_location.sum() / count.clamp(min=1)


def gather_at_cells(feature_map: Tensor, indices: Tensor) -> Tensor:
    """Values of ``feature_map [N, C, H, W]`` at flat cells ``indices [N, M]`` (``y * W + x``) -> ``[N, M, C]``."""
    n, c = feature_map.shape[:2]
    flat = feature_map.reshape(n, c, -1)
    return flat.gather(2, indices.unsqueeze(1).expand(n, c, indices.shape[1])).transpose(1, 2)


def embedding_loss(tl_tags: Tensor, br_tags: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Associative-embedding pull and push losses, summed over the batch.

    ``tl_tags``, ``br_tags``: ``[N, M]`` embeddings gathered at the objects' corners; ``mask``:
    bool ``[N, M]`` real objects. Per image with ``K`` objects, ``e_k`` the mean of an object's two
    embeddings: pull = sum_k ((tl_k - e_k)^2 + (br_k - e_k)^2) / K; push = sum over ordered pairs
    ``i != j`` of ``relu(1 - |e_i - e_j|) / (K (K - 1))`` (the original sums over ``i == j`` too and
    subtracts ``1/K`` per pair, which cancels the diagonal; the ``+1e-4`` guards are kept).
    """
    maskf = mask.to(tl_tags.dtype)
    count = maskf.sum(dim=1, keepdim=True)
    mean = (tl_tags + br_tags) / 2
    pull = (((tl_tags - mean) ** 2 + (br_tags - mean) ** 2) / (count + _COUNT_EPS) * maskf).sum()

    pair_mask = maskf.unsqueeze(1) * maskf.unsqueeze(2)
    closeness = torch.relu(1 - (mean.unsqueeze(1) - mean.unsqueeze(2)).abs())
    pair_count = (count - 1) * count
    push_terms = (closeness - 1 / (count.unsqueeze(2) + _COUNT_EPS)) / (pair_count.unsqueeze(2) + _COUNT_EPS)
    push = (push_terms * pair_mask).sum()
    return pull, push


def offset_loss(offsets: Tensor, gt_offsets: Tensor, mask: Tensor, num_objects: Tensor | None = None) -> Tensor:
    """Smooth-L1 (beta 1, summed) over real objects / (number of objects in the batch + 1e-4).

    ``offsets``, ``gt_offsets``: ``[N, M, 2]`` sub-cell offsets; ``mask``: bool ``[N, M]``;
    ``num_objects`` replaces the batch's object count when given.
    """
    maskf = mask.to(offsets.dtype).unsqueeze(2)
    per_value = nn.functional.smooth_l1_loss(offsets, gt_offsets, reduction="none", beta=1.0)
    count = maskf.sum() if num_objects is None else num_objects
    return (per_value * maskf).sum() / (count + _COUNT_EPS)


def loss_normalizers(targets: dict[str, Tensor]) -> dict[str, Tensor]:
    """The counts the loss divides by, for the batch in ``targets`` (int64 0-dim tensors): the
    ``== 1`` locations of ``tl_heat``, ``br_heat`` and the attention maps, and ``objects`` (real
    objects in ``tag_mask``). Counts of batch parts add up to the whole batch's."""
    counts = {key: targets[key].eq(1).sum() for key in NORMALIZER_KEYS[:-1]}
    counts["objects"] = targets["tag_mask"].bool().sum()
    return counts


class CornerNetSaccadeLoss(nn.Module):
    """Focal + attention focal + 0.1 pull + 0.1 push + offset, summed over stacks, / number of stacks.

    ``targets`` (batched along dim 0, as ``data.sampler.collate`` makes them): ``tl_heat, br_heat,
    tl_valid, br_valid [N, C, H, W]``, ``tag_mask [N, M]`` (bool or 0/1), ``tl_ind, br_ind [N, M]``
    int64, ``tl_off, br_off [N, M, 2]``, ``att_coarse, att_middle, att_fine [N, 1, s, s]``.
    """

    def __init__(self, pull_weight: float = 0.1, push_weight: float = 0.1, off_weight: float = 1.0) -> None:
        super().__init__()
        self.pull_weight = pull_weight
        self.push_weight = push_weight
        self.off_weight = off_weight

    def forward(
        self, outputs: HeadOutputs, targets: dict[str, Tensor], normalizers: dict[str, Tensor] | None = None
    ) -> LossOutput:
        """The loss of a batch; ``normalizers`` (:func:`loss_normalizers` of a larger batch this one
        is part of) replace this batch's own counts, see the module docstring."""
        num_stacks = len(outputs.tl_heats)
        mask = targets["tag_mask"].bool()
        counts = loss_normalizers(targets) if normalizers is None else normalizers
        per_stack = [self._stack_terms(outputs, stack, targets, mask, counts) for stack in range(num_stacks)]
        # The original divides the attention term by the number of stacks twice (per scale, then in total).
        weights = {"focal": 1.0, "attention": 1.0 / num_stacks, "pull": self.pull_weight,
                   "push": self.push_weight, "offset": self.off_weight}
        components = {
            name: cast(Tensor, weight * sum(terms[name] for terms in per_stack) / num_stacks)
            for name, weight in weights.items()
        }
        return LossOutput(total=cast(Tensor, sum(components.values())), components=components)

    @staticmethod
    def _stack_terms(
        outputs: HeadOutputs, stack: int, targets: dict[str, Tensor], mask: Tensor, counts: dict[str, Tensor]
    ) -> dict[str, Tensor]:
        """Unweighted loss terms of one stack (tl + br where both corners contribute)."""
        focal = cast(Tensor, sum(
            focal_loss(getattr(outputs, f"{corner}_heats")[stack], targets[f"{corner}_heat"],
                       targets[f"{corner}_valid"], counts[f"{corner}_heat"])
            for corner in ("tl", "br")
        ))
        offset = cast(Tensor, sum(
            offset_loss(gather_at_cells(getattr(outputs, f"{corner}_offs")[stack], targets[f"{corner}_ind"]),
                        targets[f"{corner}_off"], mask, counts["objects"])
            for corner in ("tl", "br")
        ))
        pull, push = embedding_loss(
            gather_at_cells(outputs.tl_tags[stack], targets["tl_ind"]).squeeze(2),
            gather_at_cells(outputs.br_tags[stack], targets["br_ind"]).squeeze(2),
            mask,
        )
        attention = sum(
            (focal_loss(logits, targets[key], num_pos=counts[key])
             for logits, key in zip(outputs.attentions[stack], ATTENTION_TARGET_KEYS)),
            focal.new_zeros(()),
        )
        return {"focal": focal, "attention": attention, "pull": pull, "push": push, "offset": offset}
