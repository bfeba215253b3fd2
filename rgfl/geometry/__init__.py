"""Rotated-box geometry: conventions and conversions (``boxes``), rotated IoU (``iou``), rotated
NMS (``nms``). Public entry point: :mod:`rgfl.ops`."""
