"""The network of our X-ray detector (torch; training only, the runtime never imports this).

A small fully-convolutional detector in the CenterNet/FCOS family: a 4-stage plain-conv backbone
(stride 2 each), a light top-down path back to stride 4, and two heads on the stride-4 grid:

- heat [C, h, w]: per-class centre heatmap (sigmoid), trained with the CenterNet focal loss;
- ltrb [4, h, w]: distances from each cell centre to the box's left, top, right and bottom sides,
  in input pixels (exp of the raw output, times a fixed scale), trained with GIoU near centres.

Plain 3x3 convolutions rather than depthwise ones because on a CPU the dense kernels are the fast
path in both torch (training) and onnxruntime (inference).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

LTRB_SCALE = 16.0


def conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class XrayNet(nn.Module):
    def __init__(self, num_classes: int = 4, width: tuple[int, int, int, int] = (16, 32, 64, 96),
                 seg_extra: int = 0):
        super().__init__()
        c1, c2, c3, c4 = width
        self.s1 = conv(3, c1, 2)  # /2
        self.s2 = nn.Sequential(conv(c1, c2, 2), conv(c2, c2))  # /4
        self.s3 = nn.Sequential(conv(c2, c3, 2), conv(c3, c3))  # /8
        self.s4 = nn.Sequential(conv(c3, c4, 2), conv(c4, c4), conv(c4, c4))  # /16
        self.lat3 = nn.Conv2d(c3, c4, 1)
        self.lat2 = nn.Conv2d(c2, c4, 1)
        self.fuse3 = conv(c4, c3)
        self.fuse2 = conv(c4, 48)
        self.up3 = nn.Conv2d(c3, c4, 1)
        self.heat = nn.Sequential(conv(48, 48), nn.Conv2d(48, num_classes, 1))
        self.ltrb = nn.Sequential(conv(48, 48), nn.Conv2d(48, 4, 1))
        # CenterNet's prior: start with a low heat everywhere so the focal loss is stable
        nn.init.constant_(self.heat[-1].bias, -2.19)
        # training-only: which cells each class's objects cover (forward_with_seg), and with
        # seg_extra > 0 which cells each of as many kinds of ordinary items covers; not exported
        self.seg = nn.Conv2d(48, num_classes + seg_extra, 1)
        nn.init.constant_(self.seg.bias, -4.0)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The stride-4 map both heads read."""
        f2 = self.s2(self.s1(x))
        f3 = self.s3(f2)
        f4 = self.s4(f3)
        p3 = self.fuse3(self.lat3(f3) + F.interpolate(f4, size=f3.shape[-2:], mode="nearest"))
        return self.fuse2(self.lat2(f2) + F.interpolate(self.up3(p3), size=f2.shape[-2:], mode="nearest"))

    def _heads(self, p2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.heat(p2), torch.exp(self.ltrb(p2).clamp(-6.0, 5.0)) * LTRB_SCALE

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw outputs: heat logits [N, C, h, w] and ltrb in input pixels [N, 4, h, w]."""
        return self._heads(self.features(x))

    def forward_with_seg(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """forward's outputs and the segmentation logits [N, C + seg_extra, h, w] (training only)."""
        p2 = self.features(x)
        return *self._heads(p2), self.seg(p2)


class ExportWrapper(nn.Module):
    """What goes into the ONNX file: sigmoid heat with the 3x3 max-pool peak filter (CenterNet's
    NMS) done in the graph, so the runtime only gathers cells above a threshold."""

    def __init__(self, net: XrayNet, views: int = 1):
        super().__init__()
        self.net = net
        self.views = views

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.views == 1:
            logits, ltrb = self.net(x)
            heat = torch.sigmoid(logits)
        else:
            heat, ltrb = self._flip_average(x)
        peak = F.max_pool2d(heat, 3, 1, 1)
        return heat * (peak == heat).to(heat.dtype), ltrb

    def _flip_average(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Test-time augmentation inside the graph: the bag and its mirror images (the flips the
        network was trained with) in one batch, mirrored back and averaged. A bag is not
        mirror-symmetric, so each view gives the network another look at the same evidence."""
        flips = [(), (3,), (2,), (2, 3)][: self.views]
        batch = torch.cat([x.flip(f) if f else x for f in flips])
        logits, ltrb = self.net(batch)
        heat = torch.sigmoid(logits)
        hs, ds = [], []
        for k, f in enumerate(flips):
            h, d = heat[k:k + 1], ltrb[k:k + 1]
            if f:
                h, d = h.flip(f), d.flip(f)
            if 3 in f:  # mirrored left-right: left and right distances swap
                d = d[:, [2, 1, 0, 3]]
            if 2 in f:
                d = d[:, [0, 3, 2, 1]]
            hs.append(h)
            ds.append(d)
        return torch.stack(hs).mean(0), torch.stack(ds).mean(0)


class VerifierNet(nn.Module):
    """The verifier (detectors/xray/verifier.py): a plain conv stack on a 64 x 64 crop (stride 2
    three times, to 8 x 8), its mean and max over the crop, the box features, two dense layers.
    Returns a logit per crop. ~22 M multiply-adds a crop: a wider stack (24-48-64-96, 37 M) did
    about as well for the same training time (MODEL_CARD.md, "Verifier"), and training time is
    what the one-hour recipe is short of.

    A second head, used only in training (`forward_with_mask`; the exported graph is `forward`),
    says which of the 8 x 8 cells of the crop the block covers, against the simulator's own mask.
    One label a crop says only "a block is somewhere here"; the mask says where, whatever the
    detector's box. With it the verifier alone found 3-4 points more narcotics at the same false
    alarms on the validation draw (MODEL_CARD.md, "Verifier", "The mask head")."""

    def __init__(self, channels: int = 4, features: int = 3):
        super().__init__()
        self.body = nn.Sequential(conv(channels, 16, 2), conv(16, 32), conv(32, 48, 2), conv(48, 48),
                                  conv(48, 96, 2), conv(96, 96))
        self.head = nn.Sequential(nn.Linear(2 * 96 + features, 64), nn.ReLU(inplace=True), nn.Linear(64, 1))
        self.mask = nn.Conv2d(96, 1, 1)

    def _logit(self, f: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([f.mean((2, 3)), f.amax((2, 3)), box], 1))[:, 0]

    def forward(self, crop: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
        return self._logit(self.body(crop), box)

    def forward_with_mask(self, crop: torch.Tensor, box: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The logit and the [N, 8, 8] mask logits."""
        f = self.body(crop)
        return self._logit(f, box), self.mask(f)[:, 0]
