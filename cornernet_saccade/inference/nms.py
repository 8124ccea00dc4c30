"""Per-class soft-NMS exactly as the original Cython ``soft_nms`` (docs/reference.md §5 step 9), and the
``max_per_image`` cut.

Boxes are ``x1, y1, x2, y2`` in any one pixel frame (image pixels in the detector); widths count
``x2 - x1 + 1`` pixels as in the Cython code. The original is sequential: take the highest score
still in the list (first one on ties), swap it to the front, decay every later box that overlaps it,
drop boxes whose score fell below ``score_threshold`` by moving the last box into their place, repeat.
Here each step does that for all classes at once with tensor ops, and reproduces the Cython
arithmetic (float32 storage, some sums in double) so scores and order are bit-identical.
"""
from __future__ import annotations

from enum import IntEnum

import numpy as np
import torch
from torch import Tensor


class SoftNMSMethod(IntEnum):
    """How a box's score is decayed by its IoU ``o`` with a picked box (the Cython ``method``)."""

    HARD = 0  # score * 0 if o > overlap_threshold
    LINEAR = 1  # score * (1 - o) if o > overlap_threshold
    GAUSSIAN = 2  # score * exp(-o^2 / sigma)


def soft_nms(
    boxes: Tensor,
    scores: Tensor,
    labels: Tensor | None = None,
    *,
    method: SoftNMSMethod = SoftNMSMethod.GAUSSIAN,
    sigma: float = 0.7,
    overlap_threshold: float = 0.5,
    score_threshold: float = 0.001,
) -> tuple[Tensor, Tensor]:
    """Soft-NMS within each class of ``labels`` (one class when ``None``).

    ``boxes`` ``[N,4]``, ``scores`` ``[N]``, ``labels`` ``[N]`` int. Returns ``(keep, kept_scores)``:
    int64 indices into the inputs ``[M]`` and their decayed float32 scores, ordered by label
    (ascending) and, within a label, in the Cython output order (pick order). Within a label, the
    input order decides ties, as in the original.
    """
    if labels is None:
        labels = torch.zeros(len(scores), dtype=torch.int64, device=scores.device)
    rows, counts = _group_rows(labels)  # [G,L] input row of each slot, [G] boxes per group
    group_boxes = boxes.to(torch.float32)[rows]  # [G,L,4]
    group_scores = scores.to(torch.float32)[rows]
    slots = torch.arange(rows.shape[1], device=rows.device).expand_as(rows)
    order = slots.clone()  # slot of the box at each position
    for step in range(rows.shape[1]):
        order, group_scores, counts = _soft_nms_step(
            step, order, group_scores, counts, group_boxes, method, sigma, overlap_threshold, score_threshold
        )
    kept = slots < counts.unsqueeze(1)
    return rows.gather(1, order)[kept], group_scores[kept]


def best_per_image(scores: Tensor, max_per_image: int) -> Tensor:
    """Boolean mask of the ``max_per_image`` highest ``scores``, keeping every tie at the cut."""
    if len(scores) <= max_per_image:
        return torch.ones_like(scores, dtype=torch.bool)
    return scores >= torch.topk(scores, max_per_image).values[-1]


def _group_rows(labels: Tensor) -> tuple[Tensor, Tensor]:
    """Input rows grouped by label: ``rows`` ``[G,L]`` (each group in input order, padded with row 0)
    and the group sizes ``[G]``; groups in ascending label order."""
    if len(labels) == 0:
        return torch.zeros((0, 0), dtype=torch.int64, device=labels.device), labels.new_zeros(0, dtype=torch.int64)
    _, group, sizes = torch.unique(labels, return_inverse=True, return_counts=True)
    by_group = torch.argsort(group, stable=True)
    starts = torch.cumsum(sizes, 0) - sizes
    slot = torch.arange(len(labels), device=labels.device) - starts[group[by_group]]
    rows = torch.zeros((len(sizes), int(sizes.max())), dtype=torch.int64, device=labels.device)
    rows[group[by_group], slot] = by_group
    return rows, sizes


def _soft_nms_step(
    step: int,
    order: Tensor,
    scores: Tensor,
    counts: Tensor,
    boxes: Tensor,
    method: SoftNMSMethod,
    sigma: float,
    overlap_threshold: float,
    score_threshold: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """One outer iteration ``i = step`` of the Cython loop for every group at once.

    ``order`` ``[G,L]``: slot (into ``boxes`` ``[G,L,4]``) at each position; ``scores`` ``[G,L]``:
    score at each position; ``counts`` ``[G]``: boxes still in the list. Returns the updated three.
    """
    positions = torch.arange(order.shape[1], device=order.device)
    live = positions < counts.unsqueeze(1)  # [G,L]
    # pick the first maximum among positions >= step and move it to position `step`
    candidates = scores.masked_fill(~live | (positions < step), float("-inf"))
    best = torch.where(counts > step, candidates.argmax(1), step)
    swap = positions.expand_as(order).clone()
    swap.scatter_(1, best.unsqueeze(1), torch.full_like(best.unsqueeze(1), step))
    swap[:, step] = best
    order, scores = order.gather(1, swap), scores.gather(1, swap)

    picked = boxes.gather(1, order[:, step, None, None].expand(-1, 1, 4))  # [G,1,4]
    current = boxes.gather(1, order.unsqueeze(2).expand(-1, -1, 4))  # [G,L,4] by position
    overlaps, iou = _overlap_plus_one(picked, current)
    later = live & (positions > step)
    touched = later & overlaps
    decayed = _decay(iou, method, sigma, overlap_threshold) * scores
    scores = torch.where(touched, decayed, scores)
    dropped = touched & (scores < score_threshold)
    return _drop_by_last_swap(step, order, scores, counts, later, dropped)


def _overlap_plus_one(picked: Tensor, boxes: Tensor) -> tuple[Tensor, Tensor]:
    """Whether each box overlaps ``picked`` and their IoU, both ``[G,L]``, with +1-pixel widths.

    Mirrors the C that Cython emits for ``float`` variables: ``x2 - x1`` in float32, ``+ 1`` and the
    area products in double, every stored intermediate rounded to float32.
    """
    f32, f64 = torch.float32, torch.float64

    def plus_one(length: Tensor) -> Tensor:
        return length.to(f64) + 1.0

    tx1, ty1, tx2, ty2 = picked.unbind(2)
    x1, y1, x2, y2 = boxes.unbind(2)
    area = (plus_one(x2 - x1) * plus_one(y2 - y1)).to(f32)
    iw = plus_one(torch.minimum(tx2, x2) - torch.maximum(tx1, x1)).to(f32)
    ih = plus_one(torch.minimum(ty2, y2) - torch.maximum(ty1, y1)).to(f32)
    inter = iw * ih
    union = (plus_one(tx2 - tx1) * plus_one(ty2 - ty1) + area.to(f64) - inter.to(f64)).to(f32)
    return (iw > 0) & (ih > 0), inter / union


def _decay(iou: Tensor, method: SoftNMSMethod, sigma: float, overlap_threshold: float) -> Tensor:
    """Score multiplier (float32) for IoU ``iou``."""
    if method == SoftNMSMethod.GAUSSIAN:
        exponent = -(iou * iou) / torch.tensor(sigma, dtype=torch.float32)
        return torch.exp(exponent.to(torch.float64)).to(torch.float32)
    above = iou > torch.tensor(overlap_threshold, dtype=torch.float32)
    if method == SoftNMSMethod.LINEAR:
        return torch.where(above, 1 - iou, torch.ones_like(iou))
    return (~above).to(iou.dtype)


def _drop_by_last_swap(
    step: int, order: Tensor, scores: Tensor, counts: Tensor, later: Tensor, dropped: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Remove the ``dropped`` positions the way the Cython loop does; returns ``(order, scores, counts)``.

    Scanning forward, a dropped box is overwritten by the last box of the list (which is then
    checked in turn). Net effect: with ``S`` survivors among the ``later`` positions (those after
    ``step``), the list ends at ``step + 1 + S``; survivors before that end stay in place, and the
    holes there are filled, front to back, by the survivors behind the end taken back to front.
    """
    positions = torch.arange(order.shape[1], device=order.device)
    survivors = later & ~dropped
    counts = torch.where(counts > step, step + 1 + survivors.sum(1), counts)
    inside = positions < counts.unsqueeze(1)
    holes = dropped & inside
    donors = survivors & ~inside
    donors_back_to_front = torch.where(donors, positions, -1).sort(1, descending=True).values
    hole_rank = (torch.cumsum(holes.int(), 1) - 1).clamp(min=0)
    source = torch.where(holes, donors_back_to_front.gather(1, hole_rank), positions)
    return order.gather(1, source), scores.gather(1, source), counts


def soft_nms_rows(
    rows: np.ndarray,
    *,
    method: SoftNMSMethod = SoftNMSMethod.GAUSSIAN,
    sigma: float = 0.5,
    overlap_threshold: float = 0.5,
    score_threshold: float = 0.001,
    merge_weight_exp: float | None = None,
) -> np.ndarray:
    """The CornerNet tester's use of the Cython ``soft_nms`` / ``soft_nms_merge``: one class's
    ``rows`` ``[N,7]`` (x1, y1, x2, y2, score, tl_score, br_score) processed in place and **all N
    rows** returned, columns 0-4 ``[N,5]`` float32 (the tester ignores the keep list).

    Beyond the kept boxes the result holds what the in-place algorithm left there: boxes moved over
    dropped ones (with the score they had when moved) and dropped boxes. ``merge_weight_exp`` set:
    ``soft_nms_merge`` (each picked box becomes the tl/br-score weighted mean of itself and its
    overlapping later boxes, weights ``(1 - decay) ** merge_weight_exp``; columns 5-6 stay with
    their row positions, as in the original, which swaps only columns 0-4). Float32 arithmetic as
    the Cython code; the decay reuses :func:`soft_nms`'s IoU and decay functions.
    """
    boxes = np.array(rows, dtype=np.float32)[:, :7].copy()
    count = len(boxes)
    for i in range(len(boxes)):
        if i < count:
            best = i + int(np.argmax(boxes[i:count, 4]))
            boxes[[i, best], :5] = boxes[[best, i], :5]
        count = _suppress_after(boxes, i, count, method, sigma, overlap_threshold, score_threshold, merge_weight_exp)
    return boxes[:, :5]


def _pair_decay(boxes: np.ndarray, i: int, method: SoftNMSMethod, sigma: float, overlap: float
                ) -> tuple[np.ndarray, np.ndarray]:
    """Overlap flags and decay factors (float32) of every row against row ``i`` (+1-pixel IoU)."""
    table = torch.from_numpy(boxes[:, :4])
    overlaps, iou = _overlap_plus_one(table[i : i + 1].unsqueeze(0), table.unsqueeze(0))
    return overlaps[0].numpy(), _decay(iou[0], method, sigma, overlap).numpy()


def _suppress_after(
    boxes: np.ndarray, i: int, count: int, method: SoftNMSMethod, sigma: float, overlap: float,
    threshold: float, merge_weight_exp: float | None,
) -> int:
    """The inner loop of the Cython code for picked row ``i``: decay (and drop) the rows after it,
    merging their coordinates into row ``i`` when ``merge_weight_exp`` is set. Returns the new count."""
    f32 = np.float32
    if count > i + 1:
        flags, decay = _pair_decay(boxes, i, method, sigma, overlap)
    else:
        flags, decay = np.zeros(len(boxes), bool), np.ones(len(boxes), f32)
    merge = merge_weight_exp is not None
    if merge:
        t_i, b_i = boxes[i, 5], boxes[i, 6]
        acc = [boxes[i, 0] * t_i, boxes[i, 1] * t_i, boxes[i, 2] * b_i, boxes[i, 3] * b_i, t_i, b_i]
    pos = i + 1
    while pos < count:
        if not flags[pos]:
            pos += 1
            continue
        weight = decay[pos]
        if merge_weight_exp is not None:
            mw = f32(float(f32(1.0) - weight) ** float(merge_weight_exp))
            t, b = boxes[pos, 5], boxes[pos, 6]
            terms = (boxes[pos, 0] * t * mw, boxes[pos, 1] * t * mw, boxes[pos, 2] * b * mw,
                     boxes[pos, 3] * b * mw, t * mw, b * mw)
            acc = [a + term for a, term in zip(acc, terms)]
        boxes[pos, 4] = weight * boxes[pos, 4]
        if boxes[pos, 4] < threshold:
            boxes[pos, :5] = boxes[count - 1, :5]
            flags[pos], decay[pos] = flags[count - 1], decay[count - 1]
            count -= 1
        else:
            pos += 1
    if merge:
        boxes[i, :4] = (acc[0] / acc[4], acc[1] / acc[4], acc[2] / acc[5], acc[3] / acc[5])
    return count
