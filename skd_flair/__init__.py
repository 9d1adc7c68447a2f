"""skd_flair: structural knowledge distillation for Flair.

``import skd_flair`` is enough for Flair's loaders (``flair.nn.Model.load``, ``Classifier.load``) to find
skd_flair's model classes and its ``FastTextSubwordEmbeddings``: Flair resolves the ``__cls__`` name of a saved
model among the subclasses Python has defined so far, so ``skd_flair.models`` must have been imported. That
module imports Flair (seconds), so it is not imported here eagerly: when Flair is already imported it is
imported at once, otherwise right after ``flair`` itself finishes importing (a one-shot import hook), so a
process that never touches Flair (``skd-flair --help``) never pays for it.
"""
import importlib.abc
import importlib.util
import sys
import warnings

__version__ = "0.1.0"


def _register_with_flair() -> None:
    try:
        import skd_flair.models  # noqa: F401  (defines the classes; Flair finds them as subclasses)
    except Exception as error:  # never break `import flair` itself; Model.load will then not know our classes
        warnings.warn(f"skd_flair could not register its models with Flair: {type(error).__name__}: {error}")


class _LoaderThenRegister(importlib.abc.Loader):
    """Flair's own loader, followed by :func:`_register_with_flair` once ``flair/__init__`` has run."""

    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        module.__loader__ = module.__spec__.loader = self._loader  # leave no trace of the hook on flair
        self._loader.exec_module(module)
        _register_with_flair()

    def __getattr__(self, name):
        return getattr(self._loader, name)


class _FlairImportHook(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname != "flair":
            return None
        _remove_hook()
        spec = importlib.util.find_spec("flair")
        if spec is not None and spec.loader is not None:
            spec.loader = _LoaderThenRegister(spec.loader)
        return spec


def _remove_hook() -> None:
    sys.meta_path[:] = [finder for finder in sys.meta_path if not isinstance(finder, _FlairImportHook)]


def _install() -> None:
    flair = sys.modules.get("flair")
    if flair is None:
        _remove_hook()
        sys.meta_path.insert(0, _FlairImportHook())
    elif not getattr(getattr(flair, "__spec__", None), "_initializing", False):
        _register_with_flair()
    # else flair is importing right now and imported skd_flair itself: nothing to do


_install()
