"""Corner heatmaps -> boxes (the original ``_decode``, docs/reference.md §5 step 3).

Every coordinate here is in **output-map cells** (64x64 for a 255x255 crop, 128x128 for 511x511):
a corner at integer cell ``(y, x)`` with predicted offset ``(dx, dy)`` sits at ``(x + dx, y + dy)``.
All work is batched tensor ops on the inputs' device; nothing is copied to the host.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from cornernet_saccade.model.heads import HeadOutputs

#: Score given to a rejected corner pair (as in the original; real scores are in (0, 1)).
REJECTED_SCORE = -1.0

# The columns of a detection row ``[..., 8]`` (:func:`decode_detections`; the frame changes as the
# detector maps rows from output-map cells to crop and image pixels, the columns do not).
#: ``x1, y1, x2, y2``: the box.
BOX = slice(0, 4)
#: The pair's score ``(tl + br) / 2``, or :data:`REJECTED_SCORE`.
SCORE = 4
#: The top-left and bottom-right corners' own scores.
TL_SCORE, BR_SCORE = 5, 6
#: The class, 0-based, as a float.
LABEL = 7
#: The columns a trace keeps of each candidate: box, score, label.
CANDIDATE_COLUMNS = [0, 1, 2, 3, SCORE, LABEL]


@dataclass(frozen=True)
class CornerPeaks:
    """The ``K`` best corners of one type per image, best first.

    ``scores`` ``[B,K]`` sigmoid heat after peak keeping; ``inds`` ``[B,K]`` int64 flat cell index
    ``y * W + x`` in the output map; ``classes`` ``[B,K]`` int64, 0-based; ``ys``/``xs`` ``[B,K]``
    float, the integer cell row/column.
    """

    scores: Tensor
    inds: Tensor
    classes: Tensor
    ys: Tensor
    xs: Tensor


def keep_peaks(heat: Tensor, kernel: int) -> Tensor:
    """Zero every value that is not the maximum of its ``kernel x kernel`` window (stride 1).

    ``heat`` ``[B,C,H,W]`` (same shape out); ties with the window maximum are all kept. Used for
    corner heatmaps (``_nms``) and attention maps (``att_nms``).
    """
    pooled = F.max_pool2d(heat, kernel, stride=1, padding=(kernel - 1) // 2)
    return heat * (pooled == heat).to(heat.dtype)


def top_corners(heat_logits: Tensor, k: int, kernel: int) -> CornerPeaks:
    """Sigmoid, peak keeping and top-``k`` over all classes and cells of ``heat_logits`` ``[B,C,H,W]``."""
    batch, _, height, width = heat_logits.shape
    heat = keep_peaks(torch.sigmoid(heat_logits), kernel)
    scores, flat = torch.topk(heat.reshape(batch, -1), k)
    cells = height * width
    inds = flat % cells
    return CornerPeaks(
        scores=scores,
        inds=inds,
        classes=flat // cells,
        ys=(inds // width).to(scores.dtype),
        xs=(inds % width).to(scores.dtype),
    )


def gather_at(maps: Tensor, inds: Tensor) -> Tensor:
    """Values of ``maps`` ``[B,D,H,W]`` at flat cells ``inds`` ``[B,K]`` -> ``[B,K,D]``."""
    flat = maps.reshape(maps.shape[0], maps.shape[1], -1)
    return flat.gather(2, inds.unsqueeze(1).expand(-1, maps.shape[1], -1)).transpose(1, 2)


def decode_detections(
    tl_heat: Tensor,
    br_heat: Tensor,
    tl_tag: Tensor,
    br_tag: Tensor,
    tl_off: Tensor,
    br_off: Tensor,
    *,
    k: int = 100,
    kernel: int = 1,
    ae_threshold: float = 1.0,
    num_dets: int = 1000,
    no_border: bool = False,
) -> Tensor:
    """Pair the top-``k`` top-left and bottom-right corners of each image into ``num_dets`` boxes.

    Inputs are raw logits of one stack: heats ``[B,C,H,W]``, tags ``[B,1,H,W]``, offsets
    ``[B,2,H,W]`` (x, y). Returns ``[B,num_dets,8]`` rows (fewer when the map has fewer than ``k``
    cells times classes: then every corner is taken) ``x1, y1, x2, y2, score, tl_score,
    br_score, class`` (0-based, as float) in output-map cells, best score first. A pair scores
    ``(tl + br) / 2``, or :data:`REJECTED_SCORE` when the classes differ, the tags are more than
    ``ae_threshold`` apart, the box is inverted after offsets, or (``no_border``) the top-left peak is
    on row/column 0 or the bottom-right one on the last row/column. Rejected rows come after the
    valid ones in ``torch.topk`` tie order, like the original.
    """
    height, width = tl_heat.shape[2:]
    if num_dets > k * k:
        raise ValueError(f"num_dets ({num_dets}) exceeds the {k * k} corner pairs of k={k}")
    k = min(k, tl_heat[0].numel())  # a small map (a tiny image, a large k) offers fewer corners
    num_dets = min(num_dets, k * k)
    tl = top_corners(tl_heat, k, kernel)
    br = top_corners(br_heat, k, kernel)
    tl_shift, br_shift = gather_at(tl_off, tl.inds), gather_at(br_off, br.inds)  # [B,K,2]
    tl_xs = (tl.xs + tl_shift[..., 0]).unsqueeze(2)  # [B,K,1]: rows index tl corners
    tl_ys = (tl.ys + tl_shift[..., 1]).unsqueeze(2)
    br_xs = (br.xs + br_shift[..., 0]).unsqueeze(1)  # [B,1,K]: columns index br corners
    br_ys = (br.ys + br_shift[..., 1]).unsqueeze(1)

    tag_gap = (gather_at(tl_tag, tl.inds) - gather_at(br_tag, br.inds).transpose(1, 2)).abs()  # [B,K,K]
    rejected = (
        (tl.classes.unsqueeze(2) != br.classes.unsqueeze(1))
        | (tag_gap > ae_threshold)
        | (br_xs < tl_xs)
        | (br_ys < tl_ys)
    )
    if no_border:
        tl_on_border = (tl.ys == 0) | (tl.xs == 0)
        br_on_border = (br.ys == height - 1) | (br.xs == width - 1)
        rejected = rejected | tl_on_border.unsqueeze(2) | br_on_border.unsqueeze(1)
    pair_scores = (tl.scores.unsqueeze(2) + br.scores.unsqueeze(1)) / 2
    pair_scores = pair_scores.masked_fill(rejected, REJECTED_SCORE)

    batch = tl_heat.shape[0]
    scores, pairs = torch.topk(pair_scores.reshape(batch, -1), num_dets)
    tl_pick, br_pick = pairs // k, pairs % k
    boxes = torch.stack(
        (
            tl_xs.squeeze(2).gather(1, tl_pick),
            tl_ys.squeeze(2).gather(1, tl_pick),
            br_xs.squeeze(1).gather(1, br_pick),
            br_ys.squeeze(1).gather(1, br_pick),
        ),
        dim=2,
    )
    return torch.cat(
        (
            boxes,
            scores.unsqueeze(2),
            tl.scores.gather(1, tl_pick).unsqueeze(2),
            br.scores.gather(1, br_pick).unsqueeze(2),
            tl.classes.gather(1, tl_pick).unsqueeze(2).to(scores.dtype),
        ),
        dim=2,
    )


def decode_heads(
    out: HeadOutputs, *, k: int, kernel: int, ae_threshold: float, num_dets: int, no_border: bool = False
) -> Tensor:
    """:func:`decode_detections` of the last stack of ``out``: ``[B,num_dets,8]`` rows in output-map cells."""
    return decode_detections(
        out.tl_heats[-1], out.br_heats[-1], out.tl_tags[-1], out.br_tags[-1], out.tl_offs[-1], out.br_offs[-1],
        k=k, kernel=kernel, ae_threshold=ae_threshold, num_dets=num_dets, no_border=no_border,
    )
