"""Write ``old_heads.pt``: head weights, inputs and outputs of each head variant as the code before
the per-variant head modules computed them (commit 01981c2), for ``test_head_variants.py``.

Run from the repository root at that commit: ``python tests/model/data/make_old_heads.py``.
The file must not be regenerated with newer code: its point is to hold what the old code did.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import torch

from rgfl.model.detector import RotatedGFL

HERE = Path(__file__).resolve().parent
SMALL = {"feat_channels": 32, "stacked_convs": 1, "fpn_channels": 32, "score_thr": 0.02, "max_per_img": 40, "reg_max": 6}
LEVEL_SIZES = [(8, 8), (4, 4), (2, 2), (1, 1), (1, 1)]  # a 64 x 64 input, strides 8 ... 128


def main() -> None:
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=HERE).stdout.strip()
    record = {"commit": commit, "settings": SMALL, "level_sizes": LEVEL_SIZES, "heads": {}}
    for head in ("gfl", "vanilla"):
        generator = torch.Generator().manual_seed(7)
        model = RotatedGFL(3, head=head, depth=18, pretrained="none", **SMALL).eval()
        with torch.no_grad():
            # Weights far from the initialisation so that distributions, angles and scores vary.
            for name, param in model.head.named_parameters():
                value = torch.randn(param.shape, generator=generator) * (0.6 if name.endswith("bias") else 0.15)
                param.copy_(value.half().float())  # stored as float16 (a smaller file), exactly
            features = [torch.randn(2, 32, h, w, generator=generator).half().float() for h, w in LEVEL_SIZES]
            outputs = model.head(features, model.strides)
            detections = model.postprocess(outputs, [(64, 64), (64, 48)])
        record["heads"][head] = {
            "state": {k: v.half() for k, v in model.head.state_dict().items()},
            "features": [f.half() for f in features],
            "cls_logits": outputs.cls_logits,
            "box_logits": outputs.box_logits,
            "angle_logits": outputs.angle_logits,
            "detections": [{"boxes": d.boxes, "scores": d.scores, "labels": d.labels} for d in detections],
        }
        print(head, [len(d) for d in detections])
    torch.save(record, HERE / "old_heads.pt")


if __name__ == "__main__":
    main()
