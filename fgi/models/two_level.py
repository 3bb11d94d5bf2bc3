"""The two-level gaze baseline (GazeMedSeg's ``MultiLevelModel`` with two levels): one image-only U-Net
per gaze level, predicting with the mean of their logits."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from fgi.models.unet import UNet


def propagate_features(feat: torch.Tensor, radius: int, dilation: int) -> torch.Tensor:
    """GazeMedSeg's feature propagation: each pixel's feature becomes the mean of its neighbours' (itself
    included) weighted by a softmax over their non-negative inner products with it. No parameters; zero
    padding outside the image, as the reference.

    Args:
        feat: feature map.
        radius: neighbours on each side (a ``2 * radius + 1`` square window).
        dilation: spacing of the neighbours in pixels.

    Shape:
        feat (B, C, H, W). Returns (B, C, H, W).
    """
    h, w = feat.shape[-2:]
    pad = radius * dilation
    padded = F.pad(feat, (pad, pad, pad, pad))
    # shifted views of one padded map: the same neighbours as ``F.unfold``, ~7x faster forward and back on CPU
    offsets = [k * dilation for k in range(2 * radius + 1)]
    neighbours = [padded[:, :, y:y + h, x:x + w] for y in offsets for x in offsets]
    weights = torch.stack([(feat * n).sum(1) for n in neighbours], 1).clamp_min(0).softmax(1)
    return sum(n * weights[:, k:k + 1] for k, n in enumerate(neighbours))


class TwoLevel(nn.Module):
    """Two U-Nets of the same shape, one trained on the tight gaze level and one on the loose level.

    Args:
        in_channels: image channels.
        widths: channels per U-Net level, shallow to deep (both networks).
        norm_groups: GroupNorm groups.
        copy_init: start the second network from the first one's weights, as GazeMedSeg's ``deepcopy``
            does (the networks then differ only through their labels); False draws each independently.
        prop_radius, prop_dilation: the neighbourhood of ``propagate_features`` (GazeMedSeg: 2 and 2).

    Shape:
        image (B, C, H, W). Returns {"logits": (B, 1, H, W) mean of the two, "levels": (2, B, 1, H, W)
        tight then loose, "features": {}} (no feature alignment in this baseline); with ``propagate``, also
        "propagated": (2, B, 1, H, W), each network's head on its propagated last decoder features.
    """

    def __init__(self, *, in_channels: int, widths: Sequence[int], norm_groups: int, copy_init: bool = True,
                 prop_radius: int = 2, prop_dilation: int = 2) -> None:
        super().__init__()
        self.nets = nn.ModuleList(UNet(in_channels=in_channels, widths=widths, norm_groups=norm_groups) for _ in range(2))
        self.prop_radius, self.prop_dilation = prop_radius, prop_dilation
        if copy_init:
            self.nets[1].load_state_dict(self.nets[0].state_dict())

    def forward(self, image: torch.Tensor, propagate: bool = False) -> dict:
        """Mean logits and each level's logits (and their propagated logits when asked)."""
        feats = [net.decode_features(net.encode(image)) for net in self.nets]
        levels = torch.stack([net.head(f) for net, f in zip(self.nets, feats, strict=True)])
        out = {"logits": levels.mean(0), "levels": levels, "features": {}}
        if propagate:
            out["propagated"] = torch.stack([
                net.head(propagate_features(f, self.prop_radius, self.prop_dilation))
                for net, f in zip(self.nets, feats, strict=True)])
        return out
