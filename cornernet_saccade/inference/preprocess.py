"""Network input normalisation: the COCO colour statistics of the original (docs/reference.md §2), in BGR order.

The original reads images with OpenCV (BGR) and feeds ``(bgr / 255 - mean) / std`` in float32; the
package keeps images RGB everywhere else, so the flip to BGR happens here.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

#: Per-channel mean of COCO images in [0, 1], B, G, R.
COCO_MEAN_BGR = (0.40789654, 0.44719302, 0.47026115)
#: Per-channel standard deviation of COCO images in [0, 1], B, G, R.
COCO_STD_BGR = (0.28863828, 0.27408164, 0.27809835)


def normalize_bgr(images_rgb01: Tensor | np.ndarray) -> Tensor:
    """RGB images in ``[0, 1]``, channels first ``[..., 3, H, W]`` -> normalised BGR float32 tensor.

    Computed in float32 as the original: ``(x - mean) / std`` per channel. Arrays become tensors
    (CPU); tensors stay on their device.
    """
    images = torch.as_tensor(images_rgb01)
    if images.ndim < 3 or images.shape[-3] != 3:
        raise ValueError(f"expected channels-first RGB images [..., 3, H, W], got shape {tuple(images.shape)}")
    bgr = images.flip(-3).to(torch.float32)
    mean = torch.tensor(COCO_MEAN_BGR, dtype=torch.float32, device=bgr.device).reshape(3, 1, 1)
    std = torch.tensor(COCO_STD_BGR, dtype=torch.float32, device=bgr.device).reshape(3, 1, 1)
    return (bgr - mean) / std
