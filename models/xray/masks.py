"""The verifier's mask targets: where in a candidate's crop the narcotics lie.

Kept apart from verifier_train (which needs torch) because the truth study's crops
(truth_study.collect) carry them too, and that data is built and tested without the `train` extra.
"""

from __future__ import annotations

import cv2
import numpy as np

from detectors.xray.verifier import CROP, crop_window

MASK_SIDE = CROP // 8  # the verifier's feature grid: three stride-2 stages


def truth_image(objects, shape: tuple[int, int]) -> np.ndarray:
    """A float 0/1 image of where `objects` (the simulator's, each with its exact mask) lie: what
    mask_target averages over each crop's cells."""
    truth = np.zeros(shape, np.float32)
    for o in objects:
        truth[o.mask] = 1.0
    return truth


def mask_target(truth: np.ndarray, box) -> np.ndarray:
    """[MASK_SIDE, MASK_SIDE]: the share of each cell of `box`'s crop that `truth` (a float 0/1
    image) covers. The crop's own window (crop_window), area-averaged as crop_input resizes it, so
    cell (i, j) of the target lies under cell (i, j) of the verifier's features."""
    X1, Y1, X2, Y2 = crop_window(box, truth.shape)
    return cv2.resize(truth[Y1:Y2, X1:X2], (MASK_SIDE, MASK_SIDE), interpolation=cv2.INTER_AREA)
