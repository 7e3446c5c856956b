"""Model builders: the papers' own CNNs and ImageNet transfer-learning backbones."""

from .custom import alexnet, p1_deep_cnn, p2_traditional_cnn, p4_sequential_cnn, p5_small_cnn
from .pretrained import (
                         BACKBONES,
                         backbone_features,
                         build_backbone,
                         imagenet_weights,
                         resolve_weights,
                         transfer_classifier,
                         weights_kind,
                         weights_label,
                         weights_source,
)

__all__ = ["BACKBONES", "alexnet", "backbone_features", "build_backbone", "imagenet_weights", "p1_deep_cnn",
           "p2_traditional_cnn", "p4_sequential_cnn", "p5_small_cnn", "resolve_weights", "transfer_classifier",
           "weights_kind", "weights_label", "weights_source"]

from .patch import patch_cnn
from .pretrained import (
                         alexnet_classifier,
                         alexnet_fc,
                         concatenated_backbones,
                         concatenated_classifier,
                         resolve_top_weights,
                         vgg16_block4,
                         vgg16_block5,
                         vgg16_fc6,
)

__all__ += ["alexnet_classifier", "alexnet_fc", "concatenated_backbones", "concatenated_classifier", "patch_cnn",
            "resolve_top_weights", "vgg16_block4", "vgg16_block5", "vgg16_fc6"]
