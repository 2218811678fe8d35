"""``tools/export_student.py --as classifier``: the whole student of a TCS or
ensemble checkpoint as an mmpretrain ImageClassifier, built from the config
the checkpoint records (teachers left out: their checkpoints need not exist
where the export runs), round-tripped into an ImageClassifier that predicts
what the distiller predicts."""
import copy
import os.path as osp
import sys

import pytest
import torch

import kdep_mm  # noqa: F401
from kdep_mm.registry import MODELS
from kdep_mm.utils.checkpoint import safe_torch_load
from helpers.paths import REPO
from helpers.scripts import load_script

sys.path.insert(0, osp.join(REPO, 'tests', 'test_models'))
import test_ensemble as E  # noqa: E402
import test_tcs as T  # noqa: E402


@pytest.fixture(scope='module')
def cli():
    return load_script(osp.join(REPO, 'tools', 'export_student.py'))


def _save(tmp_path, model, cfg):
    from mmengine.config import Config
    path = str(tmp_path / 'epoch_1.pth')
    torch.save(dict(state_dict=model.state_dict(),
                    meta=dict(cfg=Config(dict(model=cfg)).pretty_text)), path)
    return path


def test_tcs_classifier_round_trip(tmp_path, cli, capsys):
    model = T.build(seed=1)
    with torch.no_grad():
        model.mask[-3:] = 0  # a tailored head: three coordinates pruned
    # the training config had an online teacher whose checkpoint is not here
    cfg = T.tcs_cfg(teacher=copy.deepcopy(T.TEACHER),
                    teacher_ckpt=str(tmp_path / 'absent_teacher.pth'))
    src = _save(tmp_path, model, cfg)
    dst = str(tmp_path / 'cls.pth')
    assert cli.main(['--as', 'classifier', src, dst]) == 0
    assert 'TCSDistiller' in capsys.readouterr().out
    clf = MODELS.build(dict(
        type='mmpretrain.ImageClassifier', backbone=copy.deepcopy(T.STUDENT),
        neck=dict(type='mmpretrain.GlobalAveragePooling'),
        head=dict(type='mmpretrain.LinearClsHead', num_classes=T.NUM_CLASSES,
                  in_channels=T.C_S)))
    clf.load_state_dict(safe_torch_load(dst)['state_dict'], strict=True)
    x = torch.randn(4, 3, 32, 32)
    model.eval()
    clf.eval()
    with torch.no_grad():
        torch.testing.assert_close(clf(x, mode='tensor'),
                                   model(x, mode='tensor'), atol=1e-5,
                                   rtol=1e-5)


def test_ensemble_classifier_round_trip(tmp_path, cli):
    model = E.build(seed=2)
    with torch.no_grad():
        model.student.teacher_tokens.normal_()
    cfg = E.model_cfg(online=True, teacher_ckpts=dict(
        cnn=str(tmp_path / 'absent_cnn.pth'), res=None))
    src = _save(tmp_path, model, cfg)
    dst = str(tmp_path / 'cls.pth')
    assert cli.main(['--as', 'classifier', src, dst]) == 0
    clf = MODELS.build(dict(type='mmpretrain.ImageClassifier',
                            backbone=E.student_cfg(),
                            head=E.model_cfg()['head']))
    clf.load_state_dict(safe_torch_load(dst)['state_dict'], strict=True)
    x = torch.randn(2, 3, E.SIZE, E.SIZE)
    model.eval()
    clf.eval()
    with torch.no_grad():
        torch.testing.assert_close(clf(x, mode='tensor'),
                                   model(x, mode='tensor'))


def test_refusals(tmp_path, cli, capsys):
    model = T.build(seed=1)
    # no recorded config and none given
    bare = str(tmp_path / 'bare.pth')
    torch.save(dict(state_dict=model.state_dict()), bare)
    assert cli.main(['--as', 'classifier', bare, str(tmp_path / 'o.pth')]) \
        == 1
    assert '--config' in capsys.readouterr().err
    # a KDEP checkpoint has no classifier: export its backbone
    kdep = str(tmp_path / 'kdep.pth')
    torch.save(dict(state_dict={}, meta=dict(
        cfg="model = dict(type='kdep_mm.KDEPDistiller')")), kdep)
    assert cli.main(['--as', 'classifier', kdep, str(tmp_path / 'o.pth')]) \
        == 1
    assert '--as backbone' in capsys.readouterr().err
    # a state dict of another width than the config's model
    other = T.build(seed=1)
    cfg = T.tcs_cfg(student=dict(T.STUDENT, base_channels=8),
                    student_channels=2 * T.C_S)
    src = _save(tmp_path, other, cfg)
    assert cli.main(['--as', 'classifier', src, str(tmp_path / 'o.pth')]) \
        == 1
    assert 'does not fit' in capsys.readouterr().err
    assert not osp.exists(tmp_path / 'o.pth')  # nothing written half
    # --config is for classifiers only
    assert cli.main(['--config', 'x.py', bare, str(tmp_path / 'b.pth')]) == 1
