# The ImageNet normalisation, stated once: the RGB mean / std of ImageNet,
# (0.485, 0.456, 0.406) / (0.229, 0.224, 0.225) on 0-1, here x255, with
# which mmpretrain's model zoo, the classic CIFAR ResNet checkpoints
# (akamaster) and the kdep_mm students are trained. Images decode as BGR,
# hence to_rgb=True.
# List this file (directly, or through a dataset base that lists it) and
# complete the preprocessor by merging, e.g.
#     data_preprocessor = dict(num_classes=10)
# A model-level preprocessor of another shape takes the values by reference:
#     mean={{_base_.data_preprocessor.mean}},
#     std={{_base_.data_preprocessor.std}}
data_preprocessor = dict(
    type='mmpretrain.ClsDataPreprocessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True)
