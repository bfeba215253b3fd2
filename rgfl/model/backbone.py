"""torchvision ResNet + FPN returning P3-P7 (strides 8, 16, 32, 64, 128), or P2-P7 with a stride-4 level."""

from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path

import torch
import torchvision
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelP6P7
from torchvision.ops.misc import FrozenBatchNorm2d

__all__ = ["ResNetFPN", "RESNET_DEPTHS", "LeanFrozenBatchNorm2d"]

logger = logging.getLogger(__name__)

# depth -> (torchvision builder, ImageNet weights enum member name, channels of C2, C3, C4, C5)
RESNET_DEPTHS = {
    18: ("resnet18", "ResNet18_Weights", (64, 128, 256, 512)),
    34: ("resnet34", "ResNet34_Weights", (64, 128, 256, 512)),
    50: ("resnet50", "ResNet50_Weights", (256, 512, 1024, 2048)),
    101: ("resnet101", "ResNet101_Weights", (256, 512, 1024, 2048)),
}
FPN_MIN_LEVELS = (2, 3)  # P2 (stride 4) is optional; P3 is the reference's first level
FPN_MAX_LEVEL = 7  # P6 and P7 come from P5 by stride-2 convs
NORM_AFFINE_MODES = ("frozen", "trainable")


class LeanFrozenBatchNorm2d(FrozenBatchNorm2d):
    """torchvision's ``FrozenBatchNorm2d`` (same buffers, same state-dict keys) run as one
    ``F.batch_norm`` call in inference mode.

    Why: the parent computes its scale and shift from the four buffers on every call, about ten
    tensor operations per layer (530 of a ResNet-50 training step's ~2600 operator calls, each a
    kernel launch on a GPU); one fused batch norm gives the same affine map, ``(x - mean) /
    sqrt(var + eps) * weight + bias``, equal to float rounding, and one backward operator.
    """

    def forward(self, x: Tensor) -> Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)


def _load_local_state_dict(path: Path) -> dict[str, Tensor]:
    if not path.is_file():
        raise FileNotFoundError(
            f"backbone weights not found at {path}; pass pretrained='imagenet', 'none' or the path of a saved ResNet state dict"
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path} does not hold a state dict (got {type(state).__name__})")
    # Accept checkpoints saved from a wrapper ("backbone." / "module." prefixes).
    for prefix in ("module.", "backbone.body.", "backbone."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


class ResNetFPN(nn.Module):
    """ResNet body (C2 or C3 to C5) + FPN with P6/P7 computed from P5's output.

    Args:
        depth: 18, 34, 50 or 101.
        pretrained: ``"imagenet"`` (torchvision's ``IMAGENET1K_V1`` weights through the weight API,
            downloaded by torchvision on first use), ``"none"`` (random init) or the path of a local
            ResNet state dict (torchvision key names; ``fc.*`` may be missing).
        frozen_stages: -1 freezes nothing, 0 the stem (conv1 + bn1), k >= 1 the stem and
            ``layer1..layer{k}`` (mmdet semantics; default 1).
        norm_eval: True -> BatchNorm statistics stay at their pretrained values (the usual setting
            for detection batch sizes); False -> ordinary BatchNorm that learns its statistics too.
        norm_affine: with ``norm_eval``: ``"frozen"`` -> every BatchNorm is a ``FrozenBatchNorm2d``
            (weight and bias fixed too); ``"trainable"`` -> ``nn.BatchNorm2d`` kept in eval mode,
            whose weight and bias train in the stages ``frozen_stages`` leaves trainable (the
            reference: mmdet's ``norm_cfg requires_grad=True`` with ``norm_eval=True``). Without
            ``norm_eval`` the affine parameters always train.
        out_channels: FPN channels.
        min_level: 3 for P3-P7 (the reference), 2 to add a stride-4 level P2 built from C2, for
            objects whose centres lie about 8 px apart (cars side by side in a parking row).

    Input: Tensor[B, 3, H, W] normalized images. Output: list of ``8 - min_level`` Tensor[B,
    out_channels, H_l, W_l], finest first, with strides ``self.strides``.
    """

    def __init__(
        self,
        depth: int = 50,
        pretrained: str | Path = "imagenet",
        frozen_stages: int = 1,
        norm_eval: bool = True,
        out_channels: int = 256,
        min_level: int = 3,
        norm_affine: str = "frozen",
    ) -> None:
        super().__init__()
        if norm_affine not in NORM_AFFINE_MODES:
            raise ValueError(f"norm_affine must be one of {NORM_AFFINE_MODES}, got {norm_affine!r}")
        if depth not in RESNET_DEPTHS:
            raise ValueError(f"backbone depth must be one of {sorted(RESNET_DEPTHS)}, got {depth}")
        if min_level not in FPN_MIN_LEVELS:
            raise ValueError(f"the first FPN level must be one of {FPN_MIN_LEVELS} (P2 or P3), got {min_level}")
        if not -1 <= frozen_stages <= 4:
            raise ValueError(f"frozen_stages must be in -1..4, got {frozen_stages}")
        builder_name, weights_name, in_channels = RESNET_DEPTHS[depth]
        norm_layer = LeanFrozenBatchNorm2d if norm_eval and norm_affine == "frozen" else nn.BatchNorm2d
        builder = getattr(torchvision.models, builder_name)
        pretrained_str = str(pretrained)
        if pretrained_str.lower() == "imagenet":
            weights = getattr(torchvision.models, weights_name).IMAGENET1K_V1
            body = builder(weights=weights, norm_layer=norm_layer)
        else:
            body = builder(weights=None, norm_layer=norm_layer)
            if pretrained_str.lower() != "none":
                state = _load_local_state_dict(Path(pretrained_str))
                missing, unexpected = body.load_state_dict(state, strict=False)
                missing = [k for k in missing if not k.startswith("fc.")]
                unexpected = [k for k in unexpected if not k.startswith("fc.") and not k.endswith("num_batches_tracked")]
                if missing or unexpected:
                    raise ValueError(
                        f"{pretrained_str} is not a ResNet-{depth} state dict: "
                        f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
                        f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
                    )
                logger.info("loaded backbone weights from %s", pretrained_str)
        self.body = nn.ModuleDict(
            OrderedDict(
                stem=nn.Sequential(body.conv1, body.bn1, body.relu, body.maxpool),
                layer1=body.layer1,
                layer2=body.layer2,
                layer3=body.layer3,
                layer4=body.layer4,
            )
        )
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.norm_affine = norm_affine
        frozen = ["stem", "layer1", "layer2", "layer3", "layer4"][: frozen_stages + 1]
        for name in frozen:
            for param in self.body[name].parameters():
                param.requires_grad_(False)
        self.min_level = min_level
        self.strides = tuple(2**level for level in range(min_level, FPN_MAX_LEVEL + 1))
        self.fpn = FeaturePyramidNetwork(
            list(in_channels[min_level - 2 :]), out_channels, extra_blocks=LastLevelP6P7(out_channels, out_channels)
        )

    def train(self, mode: bool = True) -> "ResNetFPN":
        super().train(mode)
        # Frozen stages keep their BatchNorm statistics fixed too (matters only with norm_eval=False).
        for name in ["stem", "layer1", "layer2", "layer3", "layer4"][: self.frozen_stages + 1]:
            self.body[name].eval()
        if self.norm_eval:
            # Trainable-affine BatchNorms normalise with their pretrained statistics and never update them.
            for module in self.body.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    def forward(self, images: Tensor) -> list[Tensor]:
        x = self.body["stem"](images)
        c2 = self.body["layer1"](x)
        c3 = self.body["layer2"](c2)
        c4 = self.body["layer3"](c3)
        c5 = self.body["layer4"](c4)
        levels = OrderedDict([("c2", c2), ("c3", c3), ("c4", c4), ("c5", c5)])
        features = self.fpn(OrderedDict(list(levels.items())[self.min_level - 2 :]))
        return list(features.values())
