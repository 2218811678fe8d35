from kdep_mm.registry import DATASETS

from .transforms import *  # noqa: F401,F403
from .subset import class_balanced_subset, write_ann_file  # noqa: F401
from .synthetic_shapes import generate_shapes_dataset  # noqa: F401
from .store import TeacherStore, TeacherStoreWriter  # noqa: F401

# The downstream datasets need their toolboxes: BCCD mmdet (the [det] extra),
# CamVid mmseg (the [seg] extra), both mmcv with its compiled ops. Without
# them, pre-training (the transforms, the teacher store) still imports; a
# config that names kdep_mm.BCCDDataset / kdep_mm.CamVidDataset then fails
# at build time with the reason (a stand-in registered under that name).
DOWNSTREAM_IMPORT_ERRORS = {}
try:
    from .bccd import BCCDDataset  # noqa: F401
except ImportError as e:  # mmdet missing, or mmcv without ops
    DOWNSTREAM_IMPORT_ERRORS['BCCDDataset'] = (
        f'kdep_mm.BCCDDataset needs mmdet (pip install kdep_mm[det]) and '
        f'mmcv with its ops: {type(e).__name__}: {e}')
try:
    from .camvid import CamVidDataset  # noqa: F401
except ImportError as e:  # mmseg missing, or mmcv without ops
    DOWNSTREAM_IMPORT_ERRORS['CamVidDataset'] = (
        f'kdep_mm.CamVidDataset needs mmsegmentation (pip install '
        f'kdep_mm[seg]) and mmcv with its ops: {type(e).__name__}: {e}')


def _register_unavailable(name: str, reason: str) -> None:
    def unavailable(*args, **kwargs):
        raise ImportError(reason)

    DATASETS.register_module(name=name, module=unavailable)


for _name, _reason in DOWNSTREAM_IMPORT_ERRORS.items():
    _register_unavailable(_name, _reason)
