from .transforms import *  # noqa: F401,F403
from .subset import class_balanced_subset, write_ann_file  # noqa: F401
from .bccd import BCCDDataset  # noqa: F401
from .camvid import CamVidDataset  # noqa: F401
from .synthetic_shapes import generate_shapes_dataset  # noqa: F401
from .teacher_store import TeacherStore, TeacherStoreWriter  # noqa: F401
