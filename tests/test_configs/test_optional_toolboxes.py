"""Pre-training needs neither mmdet nor mmseg: kdep_mm.datasets (the
transforms, the teacher store) imports without them, and a config that names
a downstream dataset then fails at build time saying which extra it needs."""
import subprocess
import sys
from helpers.paths import REPO


SCRIPT = '''
import sys
sys.modules["mmdet"] = None      # as if the [det] and [seg] extras were
sys.modules["mmseg"] = None      # not installed
import kdep_mm, kdep_mm.datasets
from kdep_mm.datasets import TeacherStore, ApplyStoredView  # noqa: F401
from kdep_mm.registry import DATASETS
for name, extra in (("BCCDDataset", "kdep_mm[det]"),
                    ("CamVidDataset", "kdep_mm[seg]")):
    try:
        DATASETS.build(dict(type="kdep_mm." + name, data_root="x"))
    except ImportError as e:
        assert extra in str(e) and "No module named" in str(e), e
    else:
        raise AssertionError(name + " built without its toolbox")
print("ok")
'''


def test_datasets_import_without_mmdet_and_mmseg_and_say_why_on_build():
    out = subprocess.run([sys.executable, '-c', SCRIPT], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith('ok')


def test_with_the_toolboxes_the_real_datasets_are_registered():
    from mmdet.datasets import XMLDataset
    from mmseg.datasets import BaseSegDataset

    import kdep_mm.datasets as D
    from kdep_mm.registry import DATASETS
    assert D.DOWNSTREAM_IMPORT_ERRORS == {}
    assert issubclass(DATASETS.get('BCCDDataset'), XMLDataset)
    assert issubclass(DATASETS.get('CamVidDataset'), BaseSegDataset)
