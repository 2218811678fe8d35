"""CamVid road-scene segmentation, SegNet's 11-class version.

``CamVid/{train,val,test}/*.jpg`` with label maps
``CamVid/{train,val,test}annot/*.png`` (values 0-10 = the classes below,
11 = void) and split lists ``CamVid/{train,val,test}.txt`` whose lines read
``train/X.jpg trainannot/X.png`` (paths relative to the data root).
"""
import os.path as osp
from typing import List

from mmengine.fileio import get_local_path
from mmseg.datasets import BaseSegDataset

from kdep_mm.registry import DATASETS


@DATASETS.register_module()
class CamVidDataset(BaseSegDataset):
    """CamVid (11 classes; void, label 11, is ignored).

    The void label is mapped to ``ignore_index`` (255, mmseg's default) when
    the label maps are loaded, so the decode heads, the data preprocessor's
    padding value and ``IoUMetric`` all share one ignore index.

    Use from an mmseg config with ``type='kdep_mm.CamVidDataset'``.

    Args:
        ann_file (str): a split list of ``<image> <label map>`` lines,
            relative to ``data_root`` (e.g. ``'train.txt'``). If empty, the
            folders ``data_prefix['img_path']`` / ``['seg_map_path']`` are
            scanned instead (e.g. ``train`` / ``trainannot``).
        void_label (int): the label value of void pixels. Defaults to 11.
        **kwargs: :class:`mmseg.datasets.BaseSegDataset` arguments.
    """

    METAINFO = dict(
        classes=('Sky', 'Building', 'Pole', 'Road', 'Pavement', 'Tree',
                 'SignSymbol', 'Fence', 'Car', 'Pedestrian', 'Bicyclist'),
        palette=[[128, 128, 128], [128, 0, 0], [192, 192, 128],
                 [128, 64, 128], [60, 40, 222], [128, 128, 0],
                 [192, 128, 128], [64, 64, 128], [64, 0, 128], [64, 64, 0],
                 [0, 128, 192]])

    def __init__(self,
                 ann_file: str = '',
                 img_suffix: str = '.jpg',
                 seg_map_suffix: str = '.png',
                 void_label: int = 11,
                 **kwargs) -> None:
        self.void_label = void_label
        kwargs.setdefault('reduce_zero_label', False)
        super().__init__(
            ann_file=ann_file,
            img_suffix=img_suffix,
            seg_map_suffix=seg_map_suffix,
            **kwargs)

    def _with_void(self, label_map):
        label_map = dict(label_map or {})
        if self.void_label is not None:
            label_map[self.void_label] = self.ignore_index
        return label_map

    def load_data_list(self) -> List[dict]:
        if not (self.ann_file and osp.isfile(self.ann_file)):
            data_list = super().load_data_list()
        else:
            data_list = []
            with get_local_path(self.ann_file) as local:
                with open(local) as f:
                    lines = [ln.split() for ln in f if ln.strip()]
            for i, parts in enumerate(lines):
                if len(parts) != 2:
                    raise ValueError(
                        f'{self.ann_file}, line {i + 1}: expected '
                        f'"<image> <label map>", got {" ".join(parts)!r}')
                img, seg = parts
                data_list.append(
                    dict(
                        img_path=osp.join(self.data_root or '', img),
                        seg_map_path=osp.join(self.data_root or '', seg),
                        reduce_zero_label=self.reduce_zero_label,
                        seg_fields=[]))
        for info in data_list:
            info['label_map'] = self._with_void(self.label_map)
        return data_list
