"""rgfl: rotated Generalized Focal Loss detection for DOTA-format aerial images.

The package is layered in the order data flows through it; each layer imports only the ones below:

- ``rgfl.geometry`` (exposed as ``rgfl.ops``): rotated boxes, polygons, IoU, NMS.
- ``rgfl.dota``, ``rgfl.evaluation``: DOTA files, splitting, merging, the official metric.
- ``rgfl.data``, ``rgfl.model``, ``rgfl.losses``: dataset, detector, training losses.
- ``rgfl.engine``: configs, training loop, checkpoints, inference.
- ``rgfl.cli``: the ``rgfl`` command (lives in the top-level ``cli/`` folder).

Importing ``rgfl`` is cheap: nothing heavy is imported here.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
