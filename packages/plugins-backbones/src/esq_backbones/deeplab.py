"""``deeplabv3_resnet50``: torchvision's DeepLabV3 with a frozen ResNet-50 (output stride 8) and
its trainable ASPP classifier; the 2048-d ``layer4`` map is what a quantizer squeezes. A weights
file of your own may hold any ``num_classes`` (pass the same value).

``weights="default"`` reads torchvision's COCO-with-VOC-labels checkpoint (21 classes); its
auxiliary classifier is not used, and with another ``num_classes`` the final 1×1 convolution is
re-initialised (it is trained anyway).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision.models import segmentation

from esq import check_int
from esq_backbones.classifiers import resnet_taps
from esq_backbones.images import ImageTransform
from esq_backbones.segmentation import SegmentationBackbone

PRETRAINED_CLASSES = 21


class DeepLabV3ResNet50(SegmentationBackbone):
    """DeepLabV3-ResNet50: frozen ResNet body, trainable DeepLab head."""

    name = "deeplabv3_resnet50"
    WEIGHTS = segmentation.DeepLabV3_ResNet50_Weights.DEFAULT
    probe_size = 64

    def __init__(
        self,
        weights: str | Path = "none",
        num_classes: int = PRETRAINED_CLASSES,
        train_last_block: bool = False,
        batch_size: int = 16,
        channels_last: bool = True,
    ) -> None:
        num_classes = check_int(self.name, "num_classes", num_classes, minimum=1)
        model = segmentation.deeplabv3_resnet50(
            weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=False
        )
        # the pretrained file has 21 classes: with another num_classes its final 1×1 conv starts fresh
        fresh = ("classifier.4.",) if str(weights) == "default" and num_classes != PRETRAINED_CLASSES else ()
        self.load_weights(weights, model, ignore=("aux_classifier.", *fresh))
        classifier = model.classifier
        body = model.backbone
        taps, stages = resnet_taps(body)
        super().__init__(
            body,
            taps,
            "layer4.2",
            weights=weights,
            aliases=stages,
            head=classifier,
            last_block=body.layer4,
            num_classes=num_classes,
            train_last_block=train_last_block,
            batch_size=batch_size,
            channels_last=channels_last,
        )
        self.preprocess = ImageTransform(self.name, self.WEIGHTS.transforms().mean, self.WEIGHTS.transforms().std)

    def trunk(self, images: torch.Tensor) -> torch.Tensor:
        body = self.network
        x = body.maxpool(body.relu(body.bn1(body.conv1(images))))
        return body.layer3(body.layer2(body.layer1(x)))
