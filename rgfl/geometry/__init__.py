"""Rotated-box geometry: conventions and conversions (``boxes``), rotated IoU (``iou``, with the
numba CPU kernels in ``iou_numba``), rotated NMS (``nms``). Public entry point: :mod:`rgfl.ops`."""

import os
import sys

# numba's default OpenMP threading layer (GNU libgomp) kills a forked child ("fork() called from a
# process already using GNU OpenMP") once the parent has run a parallel kernel, which breaks
# multiprocessing with 'fork' and DataLoader workers. 'forksafe' picks TBB, a fork-safe OpenMP or
# numba's workqueue. The workqueue layer is not thread-safe, so rgfl launches its parallel kernels
# under ``iou_numba.PARALLEL_LAUNCH_LOCK``. A user's explicit NUMBA_THREADING_LAYER is respected.
if "NUMBA_THREADING_LAYER" not in os.environ:
    os.environ["NUMBA_THREADING_LAYER"] = "forksafe"
    if "numba" in sys.modules:
        sys.modules["numba"].config.THREADING_LAYER = "forksafe"
