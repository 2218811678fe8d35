import os.path as osp

from setuptools import find_packages, setup

here = osp.dirname(osp.abspath(__file__))
version = {}
with open(osp.join(here, 'kdep_mm', 'version.py')) as f:
    exec(f.read(), version)

setup(
    name='kdep_mm',
    version=version['__version__'],
    description='Knowledge distillation as efficient pre-training of vision '
    'backbones, as an OpenMMLab plugin (KDEP, TCS, DMAE, ensemble KD).',
    long_description=open(osp.join(here, 'README.md')).read()
    if osp.exists(osp.join(here, 'README.md')) else '',
    long_description_content_type='text/markdown',
    packages=find_packages(exclude=('tests', 'tests.*', 'configs', 'tools')),
    include_package_data=True,
    package_data={'kdep_mm': ['.mim/configs/**/*.py']},
    python_requires='>=3.8',
    # torch/torchvision and mmcv (with compiled ops) are installed by
    # tools/setup_env.sh; the pure-Python stack is pinned here.
    install_requires=[
        'mmengine==0.10.7',
        'mmcv>=2.0.0,<2.2.0',
        'mmpretrain==1.2.0',
        'mmdet==3.3.0',
        'mmsegmentation==1.2.2',
        'ftfy',
        'regex',
        'numpy',
    ],
    extras_require={'tests': ['pytest>=7', 'matplotlib']},
    zip_safe=False,
)
