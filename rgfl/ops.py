"""Public rotated-box operations of rgfl.

Box format ``obb``: ``(cx, cy, w, h, theta)`` in pixels and radians, last dimension of a tensor
``[..., 5]``; the corners are ``(+-w/2, +-h/2)`` rotated by ``theta`` (x right, y down, so a
positive ``theta`` turns clockwise on screen) and shifted to the center. Every op accepts any real
``theta`` and either side order; angle *versions* (``le135`` default, ``le90``, ``oc``) only
choose a representative, see :mod:`rgfl.geometry.boxes` (the one place that defines the convention).
Polygons ``poly``: ``(x1, y1, ..., x4, y4)`` in ``[..., 8]``. Horizontal boxes: ``(xmin, ymin,
xmax, ymax)``.

Example::

    >>> import torch
    >>> from rgfl import ops
    >>> box = torch.tensor([[50.0, 50.0, 40.0, 10.0, 0.3]])
    >>> ops.poly2obb(ops.obb2poly(box))
    tensor([[50.0000, 50.0000, 40.0000, 10.0000,  0.3000]])
"""

from rgfl.geometry.boxes import ANGLE_VERSIONS, norm_angle, obb2hbb, obb2poly, poly2obb, regularize
from rgfl.geometry.iou import box_iou_rotated
from rgfl.geometry.nms import batched_nms_rotated, nms_rotated

__all__ = [
    "ANGLE_VERSIONS",
    "norm_angle",
    "regularize",
    "poly2obb",
    "obb2poly",
    "obb2hbb",
    "box_iou_rotated",
    "nms_rotated",
    "batched_nms_rotated",
]
