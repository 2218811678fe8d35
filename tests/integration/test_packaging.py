"""Packaging (issue 20): pyproject metadata, the wheel's ``kdep_mm/.mim``,
and ``mim train`` / ``mim test`` from the installed wheel.

The slow test builds the wheel from a copy of the working tree (tracked and
untracked-but-not-ignored files, so the build never writes into the
checkout), installs it with ``--no-index`` into a throwaway virtual
environment that sees the project's ``.venv`` site-packages through a
``.pth`` file (torch, the mmcv wheel built by tools/setup_env.sh, the
OpenMMLab stack, openmim), and runs one ``mim train`` iteration and a
``mim test`` of the tiny configs from outside the repository.
"""
import glob
import os
import os.path as osp
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from email.parser import Parser

import pytest

from tiny_image_folder import make_image_folder
from helpers.paths import REPO



def _pyproject():
    with open(osp.join(REPO, 'pyproject.toml'), 'rb') as f:
        return tomllib.load(f)


def _run(cmd, cwd, env=None, timeout=300):
    proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, (
        f'{" ".join(map(str, cmd))} exited with {proc.returncode}:\n'
        f'{proc.stdout[-6000:]}')
    return proc.stdout


def test_pyproject_declarations_are_honest():
    project = _pyproject()['project']
    assert project['requires-python'] == '>=3.11,<3.12'
    assert project['dynamic'] == ['version']
    names = [re.split(r'[<>=!~; ]', d)[0].lower()
             for d in project['dependencies']]
    # mmcv is never a pip requirement (pip would build it without the C++20
    # fix); mmdet / mmseg only for the users who fine-tune with them
    assert 'mmcv' not in names
    assert 'mmdet' not in names and 'mmsegmentation' not in names
    assert {'mmengine', 'mmpretrain', 'torch'} <= set(names)
    extras = project['optional-dependencies']
    assert extras['det'] == ['mmdet==3.3.0']
    assert extras['seg'][0] == 'mmsegmentation==1.2.2'
    assert {'ftfy', 'regex'} <= set(extras['seg'])
    assert 'tests' in extras


def test_mmcv_pin_matches_setup_env_and_the_environment():
    import mmcv
    pin = _pyproject()['tool']['kdep_mm']['mmcv']
    with open(osp.join(REPO, 'tools', 'setup_env.sh')) as f:
        (script_pin, ) = re.findall(r'^MMCV_VERSION=(\S+)$', f.read(), re.M)
    assert pin == script_pin == mmcv.__version__


def test_version_comes_from_version_py():
    import kdep_mm
    from kdep_mm.version import __version__
    dynamic = _pyproject()['tool']['setuptools']['dynamic']
    assert dynamic['version'] == {'attr': 'kdep_mm.version.__version__'}
    assert kdep_mm.__version__ == __version__


def test_licence_is_apache_2():
    with open(osp.join(REPO, 'LICENSE')) as f:
        text = f.read()
    assert 'Apache License' in text and 'Version 2.0, January 2004' in text
    assert 'TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION' in text


def _copy_tree(dst):
    files = subprocess.run(
        ['git', 'ls-files', '-co', '--exclude-standard', '-z'], cwd=REPO,
        check=True, stdout=subprocess.PIPE).stdout.decode().split('\0')
    for rel in filter(None, files):
        src = osp.join(REPO, rel)
        if not osp.isfile(src):  # deleted in the working tree
            continue
        os.makedirs(osp.dirname(osp.join(dst, rel)), exist_ok=True)
        shutil.copy2(src, osp.join(dst, rel))


@pytest.fixture(scope='module')
def wheel(tmp_path_factory):
    root = tmp_path_factory.mktemp('pkg')
    src, dist = root / 'src', root / 'dist'
    _copy_tree(str(src))
    _run([sys.executable, '-m', 'pip', 'wheel', '--no-deps',
          '--no-build-isolation', '--no-index', '--disable-pip-version-check',
          '-q', '-w', str(dist), str(src)], cwd=str(root))
    (whl, ) = glob.glob(str(dist / 'kdep_mm-*.whl'))
    return whl


@pytest.mark.slow
def test_wheel_from_the_sdist_has_the_same_files(wheel, tmp_path):
    """MANIFEST.in carries configs/ and tools/ into the sdist, so a wheel
    built from it has the same kdep_mm/.mim."""
    src = osp.join(osp.dirname(osp.dirname(wheel)), 'src')
    _run([sys.executable, 'setup.py', '-q', 'sdist', '-d',
          str(tmp_path / 'sdist')], cwd=src)
    (sdist, ) = glob.glob(str(tmp_path / 'sdist' / 'kdep_mm-*.tar.gz'))
    _run([sys.executable, '-m', 'pip', 'wheel', '--no-deps',
          '--no-build-isolation', '--no-index', '--disable-pip-version-check',
          '-q', '-w', str(tmp_path / 'dist'), sdist], cwd=str(tmp_path))
    (again, ) = glob.glob(str(tmp_path / 'dist' / 'kdep_mm-*.whl'))

    def files(path):
        with zipfile.ZipFile(path) as z:
            return sorted(n for n in z.namelist() if '.dist-info/' not in n)

    assert files(again) == files(wheel)


@pytest.mark.slow
def test_wheel_contents(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        (meta, ) = [n for n in names if n.endswith('.dist-info/METADATA')]
        metadata = Parser().parsestr(z.read(meta).decode())
    for rel in ('configs/kdep/cifar10_r56_to_r20.py',
                'configs/_base_/kdep_runtime.py',
                'configs/tiny/tiny_kdep_synthetic.py',
                'tools/train.py', 'tools/test.py', 'tools/dist_train.sh',
                'tools/_launch.sh',
                'model-index.yml', 'configs/kdep/metafile.yml'):
        assert f'kdep_mm/.mim/{rel}' in names, rel
    assert not any('__pycache__' in n for n in names)
    assert not any(n.startswith('tests/') for n in names)
    # test-only code stays in tests/: no kdep_mm.testing package (its hooks
    # would register into the production registry)
    assert not any(n.startswith('kdep_mm/testing/') for n in names)
    assert 'kdep_mm/.mim/tools/dataset_converters/tiny_image_folder.py' in names
    assert any(n.endswith('.dist-info/LICENSE') for n in names)
    assert metadata['Requires-Python'] == '<3.12,>=3.11'
    plain = [r for r in metadata.get_all('Requires-Dist') if 'extra ==' not in r]
    assert not [r for r in plain if r.startswith(('mmcv', 'mmdet', 'mmseg'))]
    assert {'det', 'seg', 'tests'} <= set(metadata.get_all('Provides-Extra'))


@pytest.fixture(scope='module')
def installed(wheel, tmp_path_factory):
    """A throwaway venv with the wheel, reusing the project environment."""
    pytest.importorskip('mim')
    root = tmp_path_factory.mktemp('venv')
    venv = root / 'venv'
    _run([sys.executable, '-m', 'venv', str(venv)], cwd=str(root))
    py = str(venv / 'bin' / 'python')
    purelib = subprocess.run(
        [py, '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
        check=True, stdout=subprocess.PIPE, text=True).stdout.strip()
    with open(osp.join(purelib, '_kdep_reuse_project_env.pth'), 'w') as f:
        f.write(sysconfig.get_paths()['purelib'] + '\n')
    # --no-deps: torch 2.14.1 declares setuptools>=77 while setup_env.sh
    # keeps setuptools<70 for the mmcv build, so pip's resolver refuses the
    # project environment as a whole; kdep_mm's own requirements are checked
    # one by one below instead.
    _run([py, '-m', 'pip', 'install', '--no-index', '--no-deps',
          '--disable-pip-version-check', '-q', wheel], cwd=str(root))
    data = root / 'data'
    make_image_folder(str(data), num_classes=2, per_class=8)
    env = {k: v for k, v in os.environ.items()
           if k not in ('PYTHONPATH', 'LOCAL_RANK', 'RANK', 'WORLD_SIZE')}
    env.update(KDEP_TINY_DATA=str(data), OMP_NUM_THREADS='1',
               MKL_NUM_THREADS='1')
    run_dir = root / 'run'  # outside the repository: no configs/ here
    run_dir.mkdir()
    return py, purelib, env, run_dir


@pytest.mark.slow
def test_installed_wheel_meets_its_requirements(installed):
    py, purelib, env, run_dir = installed
    out = _run([py, '-c', '''
import kdep_mm, mmcv, mmcv.ops
from importlib.metadata import distribution, version
from packaging.requirements import Requirement
for r in map(Requirement, distribution("kdep_mm").requires):
    if r.marker is None:
        assert r.specifier.contains(version(r.name), prereleases=True), r
print(kdep_mm.__file__)
'''], cwd=str(run_dir), env=env)
    assert out.strip().splitlines()[-1].startswith(purelib)


@pytest.mark.slow
def test_mim_train_and_test_from_the_installed_wheel(installed):
    py, purelib, env, run_dir = installed
    mim = [py, '-m', 'mim']
    mim_root = osp.join(purelib, 'kdep_mm', '.mim')
    # a kdep_mm config (runtime base via _base_, kdep_mm models): one epoch
    # of one iteration
    out = _run(mim + [
        'train', 'kdep_mm', 'configs/tiny/tiny_kdep_synthetic.py', '--gpus',
        '0', '--work-dir', 'kdep', '--cfg-options', 'train_cfg.max_epochs=1',
        'train_dataloader.batch_size=16'
    ], cwd=str(run_dir), env=env)
    assert osp.join(mim_root, 'configs', 'tiny') in out
    assert 'Training finished successfully' in out
    assert 'Epoch(train) [1][1/1]' in out.replace('  ', ' ')
    assert osp.exists(run_dir / 'kdep' / 'epoch_1.pth')
    # train one iteration of the tiny classifier, then `mim test` it
    out = _run(mim + [
        'train', 'kdep_mm', 'tiny_classifier_synthetic.py', '--gpus', '0',
        '--work-dir', 'cls', '--cfg-options', 'train_cfg.max_iters=1'
    ], cwd=str(run_dir), env=env)
    assert 'Training finished successfully' in out
    ckpt = run_dir / 'cls' / 'iter_1.pth'
    assert ckpt.exists()
    out = _run(mim + [
        'test', 'kdep_mm', 'tiny_classifier_synthetic.py', '--gpus', '0',
        '--checkpoint', str(ckpt), '--work-dir', 'cls_test'
    ], cwd=str(run_dir), env=env)
    assert 'Testing finished successfully' in out
    assert 'accuracy/top1' in out


def _lint_tool(name, spec_var):
    """The linter ``name`` of the venv, after checking that setup_env.sh's
    pin (``spec_var``) is the one of the ``tests`` extra."""
    tool = shutil.which(name, path=osp.dirname(sys.executable))
    if tool is None:
        pytest.skip(f'{name} is not installed (tools/setup_env.sh installs it)')
    with open(osp.join(REPO, 'tools', 'setup_env.sh')) as f:
        (script_pin, ) = re.findall(rf'^{spec_var}="(\S+)"$', f.read(), re.M)
    assert script_pin in _pyproject()['project']['optional-dependencies'][
        'tests']
    return tool


def test_ruff_pins_agree_and_the_tree_passes():
    _run([_lint_tool('ruff', 'RUFF_SPEC'), 'check', '.'], cwd=REPO)


def test_import_linter_pins_agree_and_its_contracts_are_declared():
    """The layering contract is checked by ``lint-imports`` in .ci/run;
    here only that the tool is pinned once and the contracts name the
    layers of the package."""
    _lint_tool('lint-imports', 'IMPORT_LINTER_SPEC')
    linter = _pyproject()['tool']['importlinter']
    assert linter['root_package'] == 'kdep_mm'
    (layers, ) = [c for c in linter['contracts'] if c['type'] == 'layers']
    assert layers['layers'] == [
        'kdep_mm.apis', 'kdep_mm.engine | kdep_mm.evaluation',
        'kdep_mm.models | kdep_mm.datasets', 'kdep_mm.utils',
        'kdep_mm.registry'
    ]
    assert any(c['type'] == 'acyclic_siblings' for c in linter['contracts'])
    with open(osp.join(REPO, '.ci', 'run')) as f:
        ci = f.read()
    assert ci.index('ruff check') < ci.index('lint-imports')


_WITHOUT_DET_SEG = '''
import sys
sys.modules["mmdet"] = None      # as if the [det] and [seg] extras were
sys.modules["mmseg"] = None      # not installed
import kdep_mm, kdep_mm.models, kdep_mm.engine
{extra}
'''


def test_pretraining_modules_import_without_mmdet_and_mmseg():
    _run([sys.executable, '-c', _WITHOUT_DET_SEG.format(extra='')], cwd=REPO)


def test_datasets_import_without_mmdet_and_mmseg():
    _run([sys.executable, '-c',
          _WITHOUT_DET_SEG.format(extra='import kdep_mm.datasets')], cwd=REPO)
