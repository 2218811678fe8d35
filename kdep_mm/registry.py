"""Registries of kdep_mm, children of mmengine's root registries.

Every registry has scope ``kdep_mm`` and a ``locations`` list, so that
``Registry.get('kdep_mm.X')`` imports the module that registers ``X`` on
demand. Each mmengine root has its ``kdep_mm`` child, including those that
kdep_mm registers nothing into (runners, loops, optimisers, visualizers,
...): under ``default_scope='kdep_mm'`` (``register_all_modules()``) a root
without that child builds from itself with a "Failed to search registry"
warning. From an mmdet / mmseg / mmpretrain config, the ``kdep_mm.``
prefix is enough (mmengine imports ``kdep_mm.registry`` for it, and the
registry imports the module through ``locations``)::

    model = dict(backbone=dict(type='kdep_mm.CIFARResNet', depth=20))
"""
from mmengine.registry import DATA_SAMPLERS as MMENGINE_DATA_SAMPLERS
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import EVALUATOR as MMENGINE_EVALUATOR
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import LOG_PROCESSORS as MMENGINE_LOG_PROCESSORS
from mmengine.registry import LOOPS as MMENGINE_LOOPS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODEL_WRAPPERS as MMENGINE_MODEL_WRAPPERS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import \
    OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import OPTIM_WRAPPERS as MMENGINE_OPTIM_WRAPPERS
from mmengine.registry import OPTIMIZERS as MMENGINE_OPTIMIZERS
from mmengine.registry import PARAM_SCHEDULERS as MMENGINE_PARAM_SCHEDULERS
from mmengine.registry import \
    RUNNER_CONSTRUCTORS as MMENGINE_RUNNER_CONSTRUCTORS
from mmengine.registry import RUNNERS as MMENGINE_RUNNERS
from mmengine.registry import TASK_UTILS as MMENGINE_TASK_UTILS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import VISBACKENDS as MMENGINE_VISBACKENDS
from mmengine.registry import VISUALIZERS as MMENGINE_VISUALIZERS
from mmengine.registry import \
    WEIGHT_INITIALIZERS as MMENGINE_WEIGHT_INITIALIZERS
from mmengine.registry import Registry

SCOPE = 'kdep_mm'


def _child(name, parent, locations):
    return Registry(name, parent=parent, scope=SCOPE, locations=locations)


# runners and loops
RUNNERS = _child('runner', MMENGINE_RUNNERS, ['kdep_mm.engine'])
RUNNER_CONSTRUCTORS = _child('runner constructor',
                             MMENGINE_RUNNER_CONSTRUCTORS, ['kdep_mm.engine'])
LOOPS = _child('loop', MMENGINE_LOOPS, ['kdep_mm.engine'])
HOOKS = _child('hook', MMENGINE_HOOKS, ['kdep_mm.engine'])
LOG_PROCESSORS = _child('log processor', MMENGINE_LOG_PROCESSORS,
                        ['kdep_mm.engine'])

# data
DATASETS = _child('dataset', MMENGINE_DATASETS, ['kdep_mm.datasets'])
DATA_SAMPLERS = _child('data sampler', MMENGINE_DATA_SAMPLERS,
                       ['kdep_mm.datasets'])
TRANSFORMS = _child('transform', MMENGINE_TRANSFORMS, ['kdep_mm.datasets'])

# models
MODELS = _child('model', MMENGINE_MODELS, ['kdep_mm.models'])
MODEL_WRAPPERS = _child('model_wrapper', MMENGINE_MODEL_WRAPPERS,
                        ['kdep_mm.models'])
WEIGHT_INITIALIZERS = _child('weight initializer',
                             MMENGINE_WEIGHT_INITIALIZERS, ['kdep_mm.models'])
TASK_UTILS = _child('task util', MMENGINE_TASK_UTILS, ['kdep_mm.models'])

# optimisation
OPTIMIZERS = _child('optimizer', MMENGINE_OPTIMIZERS, ['kdep_mm.engine'])
OPTIM_WRAPPERS = _child('optim_wrapper', MMENGINE_OPTIM_WRAPPERS,
                        ['kdep_mm.engine'])
OPTIM_WRAPPER_CONSTRUCTORS = _child('optimizer wrapper constructor',
                                    MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS,
                                    ['kdep_mm.engine'])
PARAM_SCHEDULERS = _child('parameter scheduler', MMENGINE_PARAM_SCHEDULERS,
                          ['kdep_mm.engine'])

# evaluation
METRICS = _child('metric', MMENGINE_METRICS, ['kdep_mm.evaluation'])
EVALUATOR = _child('evaluator', MMENGINE_EVALUATOR, ['kdep_mm.evaluation'])

# logging (kdep_mm.NoVisBackend, an empty slot in the visualizer's list)
VISUALIZERS = _child('visualizer', MMENGINE_VISUALIZERS, ['kdep_mm.engine'])
VISBACKENDS = _child('vis_backend', MMENGINE_VISBACKENDS, ['kdep_mm.engine'])
