"""The hooks esq calls. torch, torchvision and timm load only when a backbone is built."""

from __future__ import annotations

import click

from esq import BackboneSpec, hookimpl, lazy

BACKBONES = [
    (
        "deeplabv3_resnet50",
        "deeplab:DeepLabV3ResNet50",
        "segmentation",
        "DeepLabV3-ResNet50, frozen body, trainable head; 2048-d, stride 8",
    ),
    ("vit_b_16", "vit:ViTB16", "segmentation", "ViT-B/16 encoder, frozen, conv segmentation head; 768-d patch tokens"),
    ("vit_b_32", "vit:ViTB32", "segmentation", "ViT-B/32 encoder, frozen, conv segmentation head; 768-d patch tokens"),
    ("resnet50", "classifiers:ResNet50", "features", "ResNet-50 feature taps (layer name or index); 2048-d layer4"),
    ("vgg19", "classifiers:VGG19", "features", "VGG-19 feature taps (features.i or index i); 512-d"),
    ("dinov2_vitb14", "dinov2:DINOv2ViTB14", "features", "DINOv2 ViT-B/14 (timm); 768-d patch tokens"),
    (
        "lpips_vgg",
        "lpips_vgg:LPIPSVGG",
        "features",
        "LPIPS-VGG weighted, normalised maps (extra: esq-backbones[lpips])",
    ),
    ("sd_vae", "sd_vae:SDVAEEncoder", "features", "Stable Diffusion VAE encoder taps (extra: esq-backbones[sd-vae])"),
    ("tiny_cnn", "tiny_cnn:TinyCNN", "segmentation", "4-block CNN, 32-d, for tests and the demo (random init)"),
    ("tiny_vit", "vit:TinyViT", "segmentation", "2-layer 32-d ViT, 4-px patches, for tests and the demo (random init)"),
]


@hookimpl
def esq_backbones() -> list[BackboneSpec]:
    return [
        BackboneSpec(name=name, factory=lazy(f"esq_backbones.{target}"), summary=summary, task=task)
        for name, target, task, summary in BACKBONES
    ]


@hookimpl
def esq_commands(cli: click.Group) -> None:
    from esq_backbones.weights_command import weights

    cli.add_command(weights)
