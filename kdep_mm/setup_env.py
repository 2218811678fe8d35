import datetime
import warnings

from mmengine import DefaultScope


def register_all_modules(init_default_scope: bool = True) -> None:
    """Import every kdep_mm module so that it is registered.

    It imports every layer, so it lives above them (``kdep_mm.setup_env``,
    not ``kdep_mm.utils``), and imports them when called: ``import kdep_mm``
    stays light and the registries' ``locations`` import on demand.

    Args:
        init_default_scope (bool): also make ``kdep_mm`` the current default
            scope, so that ``type='SomeModule'`` resolves in kdep_mm first
            and then in mmengine. Defaults to True.
    """
    import kdep_mm.datasets  # noqa: F401,F403
    import kdep_mm.engine  # noqa: F401,F403
    import kdep_mm.evaluation  # noqa: F401,F403
    import kdep_mm.models  # noqa: F401,F403

    if not init_default_scope:
        return
    current = DefaultScope.get_current_instance()
    if current is None:
        DefaultScope.get_instance('kdep_mm', scope_name='kdep_mm')
    elif current.scope_name != 'kdep_mm':
        warnings.warn(f'The current default scope "{current.scope_name}" is '
                      'not "kdep_mm"; register_all_modules creates a new '
                      'default scope named "kdep_mm".')
        new_name = f'kdep_mm-{datetime.datetime.now()}'
        DefaultScope.get_instance(new_name, scope_name='kdep_mm')
