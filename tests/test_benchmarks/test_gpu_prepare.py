"""The GPU preparation (tools/gpu/) and the GPU study's CPU smoke run.

Fast: the wheelhouse's closure check on hand-made wheels.

Slow (one module fixture, about 3 minutes on 2 cores; needs the package
registry and ../shared/data): ``tools/gpu/prepare_wheelhouse.sh`` into a
temporary folder (under 64 MiB, pure-Python wheels, sha256 manifest), then
``tools/gpu/install.sh`` on a stand-in of the GPU machine, then
``benchmarks/study_gpu.sh --smoke`` with the python it installed.

The stand-in: the GPU machine's ``python3`` is itself a venv whose
site-packages hold torch and the rest of its package list, and nothing of
OpenMMLab. Here that is a venv made from the project venv's base Python
without its system site-packages, whose only other path is a folder of links
(``tools/gpu/simulate_site.py``) to the project venv's packages that the GPU
machine's list names (torch, numpy, cv2, ...) and to no others (mmengine,
mmcv, addict, yapf, ... are absent). ``install.sh`` then builds its venv over
that python exactly as on the GPU machine (a .pth to the parent's
site-packages; KDEP_GPU_SYSTEM_SITE=0 only because this base Python's own
site-packages hold unrelated packages the GPU machine may not have), so an
import that the wheelhouse fails to provide fails here too, and mmcv comes
without its ops. (A venv with --system-site-packages over the base Python
would not see torch at all: the base has none; PYTHONPATH to the project
venv would let the project's mmcv-with-ops and mmengine shadow the wheels.)
"""
import glob
import os
import os.path as osp
import subprocess
import sys
import tarfile
import zipfile

import pytest

from helpers.paths import REPO

sys.path.insert(0, osp.join(REPO, 'tools', 'gpu'))
import wheelhouse  # noqa: E402

LIMIT = 64 * 1024 * 1024


def _wheel(d, name, version, requires=(), tag='py3-none-any'):
    fname = f"{name.replace('-', '_')}-{version}-{tag}.whl"
    meta = ['Metadata-Version: 2.1', f'Name: {name}', f'Version: {version}']
    meta += [f'Requires-Dist: {r}' for r in requires]
    with zipfile.ZipFile(osp.join(d, fname), 'w') as z:
        z.writestr(f"{name.replace('-', '_')}-{version}.dist-info/METADATA",
                   '\n'.join(meta) + '\n\n')
    return fname


def test_closure_finds_a_missing_requirement(tmp_path):
    d = str(tmp_path)
    _wheel(d, 'mmengine', '0.10.7', ['addict', 'numpy', 'yapf',
                                     'opencv-python>=3',
                                     'regex; sys_platform == "win32"'])
    _wheel(d, 'yapf', '0.43.0', ['platformdirs>=3.5.1',
                                 'tomli>=2.0.1; python_version < "3.11"'])
    _wheel(d, 'platformdirs', '4.14.9', ['pytest; extra == "test"'])
    machine = {'numpy', 'pytest'}
    problems = wheelhouse.closure(d, machine=machine)
    # addict is missing; numpy is on the machine; opencv-python is covered
    # by the machine's headless build; tomli and regex do not apply on
    # CPython 3.12 / Linux; the extra never applies
    assert len(problems) == 1 and "'addict'" in problems[0], problems
    _wheel(d, 'addict', '2.4.0')
    assert wheelhouse.closure(d, machine=machine) == []


def test_closure_refuses_compiled_wheels_and_two_versions(tmp_path):
    d = str(tmp_path)
    _wheel(d, 'shapely', '2.2.0', tag='cp312-cp312-manylinux_2_28_x86_64')
    _wheel(d, 'addict', '2.4.0')
    _wheel(d, 'addict', '2.3.0')
    problems = wheelhouse.closure(d, machine=set())
    assert any('not a pure-Python wheel' in p for p in problems)
    assert any('two versions of addict' in p for p in problems)


def test_manifest_and_verify(tmp_path):
    d = str(tmp_path)
    f = _wheel(d, 'addict', '2.4.0')
    wheelhouse.write_manifest(d)
    assert wheelhouse.verify(d) == []
    with open(osp.join(d, f), 'ab') as fh:
        fh.write(b'x')
    assert any('sha256 differs' in p for p in wheelhouse.verify(d))


def _run(cmd, env=None, timeout=900):
    r = subprocess.run(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=timeout)
    return r.returncode, r.stdout


@pytest.fixture(scope='module')
def prepared(tmp_path_factory):
    shared = os.environ.get('KDEP_SHARED_DATA',
                            osp.join(osp.dirname(REPO), 'shared', 'data'))
    if not osp.isfile(osp.join(shared, 'cifar10_jpeg.tar.gz')):
        pytest.skip(f'no {shared}')
    root = tmp_path_factory.mktemp('gpu')
    whl, data = str(root / 'whl'), str(root / 'data')
    rc, out = _run(['bash', 'tools/gpu/prepare_wheelhouse.sh', whl])
    if rc and ('No matching distribution' in out or 'connection' in
               out.lower()):
        pytest.skip('the package registry cannot be reached:\n' + out[-800:])
    assert rc == 0, out
    rc, out = _run(['bash', 'tools/gpu/prepare_study_data.sh', data])
    assert rc == 0, out
    # the stand-in GPU machine: python3 is a venv seeing only the GPU list
    base = subprocess.run(
        [sys.executable, '-c', 'import sys; print(sys._base_executable)'],
        stdout=subprocess.PIPE, text=True, check=True).stdout.strip()
    machine, site = str(root / 'machine'), str(root / 'site')
    subprocess.run([base, '-m', 'venv', '--without-pip', machine], check=True)
    import sysconfig
    subprocess.run([sys.executable, 'tools/gpu/simulate_site.py',
                    sysconfig.get_paths()['purelib'], site], cwd=REPO,
                   check=True, stdout=subprocess.DEVNULL)
    mpy = osp.join(machine, 'bin', 'python')
    mlib = subprocess.run([mpy, '-c', 'import sysconfig; print(sysconfig.'
                           'get_paths()["purelib"])'], stdout=subprocess.PIPE,
                          text=True, check=True).stdout.strip()
    with open(osp.join(mlib, 'zz_gpu_machine_standin.pth'), 'w') as f:
        f.write(f'import site; site.addsitedir({site!r})\n')
    venv = str(root / 'venv')
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    env.update(PYTHON=mpy, KDEP_GPU_VENV=venv, KDEP_GPU_SYSTEM_SITE='0')
    rc, install_out = _run(['bash', 'tools/gpu/install.sh', whl], env=env)
    return dict(root=root, whl=whl, data=data, venv=venv, env=env, rc=rc,
                install_out=install_out)


@pytest.mark.slow
def test_wheelhouse_is_small_pure_and_listed(prepared):
    whl = prepared['whl']
    files = sorted(os.listdir(whl))
    total = sum(osp.getsize(osp.join(whl, f)) for f in files)
    assert total < LIMIT, total
    names = {wheelhouse.wheel_meta(osp.join(whl, f))[0].lower(): f
             for f in files if f.endswith('.whl')}
    for want in ('mmengine', 'mmcv-lite', 'mmpretrain', 'kdep_mm', 'addict',
                 'yapf', 'termcolor', 'mat4py', 'modelindex', 'ordered-set'):
        assert want in names, (want, sorted(names))
    assert all(wheelhouse.wheel_tag(f).endswith('-none-any')
               for f in names.values())
    with zipfile.ZipFile(osp.join(whl, names['mmcv-lite'])) as z:
        assert not [n for n in z.namelist() if n.endswith('.so')]
    assert wheelhouse.verify(whl) == []
    assert wheelhouse.closure(whl) == []
    man = wheelhouse.read_manifest(whl)
    assert set(man) == set(names.values())
    data = prepared['data']
    carried = total + sum(osp.getsize(p) for p in glob.glob(
        osp.join(data, '**', '*'), recursive=True) if osp.isfile(p))
    assert carried < LIMIT - 4 * 2**20, carried  # room for the tree


@pytest.mark.slow
def test_install_works_without_index_and_mmcv_has_no_ops(prepared):
    assert prepared['rc'] == 0, prepared['install_out']
    assert 'mmcv 2.1.0 (no ops)' in prepared['install_out']
    py = osp.join(prepared['venv'], 'bin', 'python')
    code = ('import importlib.util, sys, mmcv, mmengine, mmpretrain, kdep_mm,'
            ' torch\n'
            'assert importlib.util.find_spec("mmcv._ext") is None\n'
            'try:\n    import mmcv.ops\nexcept ImportError:\n    pass\n'
            'else:\n    raise SystemExit("mmcv.ops imported")\n'
            'import kdep_mm.engine, kdep_mm.models, kdep_mm.evaluation\n'
            'import kdep_mm.datasets\n'
            'assert sorted(kdep_mm.datasets.DOWNSTREAM_IMPORT_ERRORS) == '
            '["BCCDDataset", "CamVidDataset"]\n'
            'print(mmcv.__file__, torch.__file__)\n')
    r = subprocess.run([py, '-c', code], cwd='/', stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True,
                       env=prepared['env'])
    assert r.returncode == 0, r.stdout
    mmcv_file, torch_file = r.stdout.split()[-2:]
    assert mmcv_file.startswith(prepared['venv'])
    assert torch_file.startswith(str(prepared['root'] / 'site'))


@pytest.mark.slow
def test_study_gpu_smoke_on_the_installed_wheels(prepared):
    assert prepared['rc'] == 0, prepared['install_out']
    root = prepared['root']
    out, rdir = str(root / 'out'), str(root / 'results')
    env = dict(prepared['env'])
    env.update(KDEP_GPU_PY=osp.join(prepared['venv'], 'bin', 'python'),
               KDEP_GPU_DATA=prepared['data'], KDEP_GPU_RESULTS=rdir,
               OUT=out)
    env.pop('KDEP_DATA_CACHE', None)  # the tests' unpack cache
    env['KDEP_DATA_CACHE'] = osp.join(REPO, 'data', 'shared')
    rc, log = _run(['bash', 'benchmarks/study_gpu.sh', '--smoke'], env=env,
                   timeout=1500)
    assert rc == 0, log[-4000:]
    assert ('kdep_mm datasets not available here: BCCDDataset, '
            'CamVidDataset') in log
    assert sorted(os.listdir(out)) == ['cells.tar.gz', 'env.txt',
                                       'study_gpu.log', 'table.md']
    with tarfile.open(osp.join(out, 'cells.tar.gz')) as t:
        names = set(t.getnames())
    for a in 'abcdefg':
        assert f'cells/pretrain__{a}__r20w8__s0.json' in names
        assert f'cells/probe__{a}__r20w8__s0__m3.json' in names
    assert not [n for n in names if '__m0' in n]  # final exports only
    table = open(osp.join(out, 'table.md')).read()
    assert table.startswith('**SMOKE RUN')
    rows = [ln for ln in table.splitlines() if ln.startswith('| (')]
    assert len(rows) == 8 and 'not run' not in table, table


@pytest.fixture(scope='module')
def prepared_or_none(request):
    """``prepared``, or None where it skips (no package registry, no
    shared data): the GPU check's smoke then runs on the project's venv,
    so that the script is covered either way, by one run."""
    try:
        return request.getfixturevalue('prepared')
    except pytest.skip.Exception:
        return None


@pytest.mark.slow
def test_gpu_check_smoke_on_the_installed_wheels(prepared_or_none, tmp_path):
    # benchmarks/gpu_check.sh --smoke with the python install.sh made on
    # the stand-in machine (mmcv-lite, no mmdet / mmseg): every benchmark's
    # imports work there, kdep's included (without a wheelhouse: the
    # project's venv, the same script and checks)
    from test_gpu_check import check_smoke_page, run_smoke
    prepared = prepared_or_none
    if prepared is None:
        rc, log = run_smoke(tmp_path / 'out', tmp_path / 'kept')
        assert rc == 1, log[-3000:]  # DMAE stopped at its cap
        check_smoke_page(str(tmp_path / 'out'), str(tmp_path / 'kept'), log,
                         kdep=True)
        return
    assert prepared['rc'] == 0, prepared['install_out']
    root = prepared['root']
    out, kept = root / 'check_out', root / 'check_kept'
    rc, log = run_smoke(out, kept,
                        python=osp.join(prepared['venv'], 'bin', 'python'),
                        env=prepared['env'], timeout=1500)
    assert rc == 1, log[-4000:]  # DMAE stopped at its cap
    _, env = check_smoke_page(str(out), str(kept), log, kdep=True)
    assert 'mmcv 2.1.0 ' + prepared['venv'] in env  # the wheel's mmcv-lite
