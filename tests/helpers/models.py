"""Tiny model configs and seeded builders shared by the model tests."""
import torch

from kdep_mm.registry import MODELS


def cifar_resnet_classifier(num_classes: int,
                            base_channels: int = 8,
                            depth: int = 8) -> dict:
    """Config of a tiny ``ImageClassifier``: a ``kdep_mm.CIFARResNet``
    (``4 * base_channels`` output channels), global average pooling and a
    linear head of ``num_classes``."""
    return dict(
        type='mmpretrain.ImageClassifier',
        backbone=dict(type='kdep_mm.CIFARResNet', depth=depth,
                      base_channels=base_channels),
        neck=dict(type='mmpretrain.GlobalAveragePooling'),
        head=dict(type='mmpretrain.LinearClsHead', num_classes=num_classes,
                  in_channels=4 * base_channels))


def build_seeded(cfg: dict, seed: int = 0):
    """``MODELS.build(cfg)`` after ``torch.manual_seed(seed)``, with its
    ``init_weights()`` applied."""
    torch.manual_seed(seed)
    model = MODELS.build(cfg)
    model.init_weights()
    return model
