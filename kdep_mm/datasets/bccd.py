"""BCCD blood-cell detection in PASCAL VOC layout (3 classes).

``BCCD/{Annotations,JPEGImages,ImageSets/Main/{train,val,trainval,test}.txt}``
as published by Shenggan/BCCD_Dataset. Two boxes of the original
annotations are degenerate (``xmin == xmax`` and ``ymin == ymax``); they are
dropped when the annotations are parsed, in training and evaluation alike,
and the other boxes are clipped to the image.
"""
from typing import List, Union

from mmdet.datasets import XMLDataset

from kdep_mm.registry import DATASETS


@DATASETS.register_module()
class BCCDDataset(XMLDataset):
    """BCCD (RBC, WBC, Platelets), an mmdet :class:`XMLDataset`.

    Use from an mmdet config with ``type='kdep_mm.BCCDDataset'``,
    ``data_root='data/BCCD/'``, ``ann_file='ImageSets/Main/train.txt'`` and
    ``data_prefix=dict(sub_data_root='')``.

    Args:
        min_box_size (float): boxes narrower or lower than this (in pixels,
            after clipping to the image) are dropped. Defaults to 1.
        **kwargs: :class:`mmdet.datasets.XMLDataset` arguments.
    """

    METAINFO = dict(
        classes=('RBC', 'WBC', 'Platelets'),
        palette=[(220, 20, 60), (0, 0, 142), (119, 11, 32)])

    def __init__(self, min_box_size: float = 1., **kwargs) -> None:
        self.min_box_size = min_box_size
        self.num_dropped_boxes = 0
        super().__init__(**kwargs)

    def parse_data_info(self, img_info: dict) -> Union[dict, List[dict]]:
        data_info = super().parse_data_info(img_info)
        w, h = data_info['width'], data_info['height']
        kept = []
        for inst in data_info['instances']:
            x1, y1, x2, y2 = inst['bbox']
            x1, x2 = min(max(x1, 0), w), min(max(x2, 0), w)
            y1, y2 = min(max(y1, 0), h), min(max(y2, 0), h)
            if x2 - x1 < self.min_box_size or y2 - y1 < self.min_box_size:
                self.num_dropped_boxes += 1
                continue
            inst['bbox'] = [x1, y1, x2, y2]
            kept.append(inst)
        data_info['instances'] = kept
        return data_info
