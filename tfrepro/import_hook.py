"""AfterImport: run a function once the program has imported TensorFlow (or Keras), never before.

The one post-import hook of tfrepro. tfrepro.autolog() waits with it for keras to wrap
Model.fit; the launch hook (tfrepro/launch/sitecustomize.py) waits with it to seed
TensorFlow and start autolog. Importing TensorFlow ourselves would cost every Python
process seconds (`pip`, a plain `python -c`), so nothing heavy is imported here.

Standard library only, Python 3.8, no tfrepro import: `tfrepro run` copies this file beside
the sitecustomize into a container that may have no tfrepro at all (launch/hooks.py).
"""

import sys

WATCHED = ("tensorflow", "keras")  # either may import the other


class AfterImport:
    """A sys.meta_path finder that calls `action()` once every module of `wanted` is imported
    and no import of a WATCHED module is still in progress, then steps aside.

        hook = AfterImport(action, wanted=("keras",))
        hook.install()   # at once when they are imported already
        hook.remove()    # give up before it fired
    """

    def __init__(self, action, wanted=("tensorflow",)):
        self.action = action
        self.wanted = tuple(wanted)
        self.watched = tuple(dict.fromkeys(WATCHED + self.wanted))
        self.done = False
        self._searching = False  # asking the other finders (maybe another AfterImport) for a spec

    def install(self):
        if self.ready():
            self.fire()
        elif self not in sys.meta_path:
            sys.meta_path.insert(0, self)

    def remove(self):
        if self in sys.meta_path:
            sys.meta_path.remove(self)

    def ready(self, finishing=None):
        """Every wanted module is imported, and none of the watched (but `finishing`, whose
        import ends as we ask) is half-way through its import."""
        if any(name not in sys.modules for name in self.wanted):
            return False
        for name in self.watched:
            spec = getattr(sys.modules.get(name), "__spec__", None)
            if name != finishing and getattr(spec, "_initializing", False):
                return False  # its import goes on: fire when it ends
        return True

    def fire(self):
        self.done = True
        self.remove()
        self.action()

    def find_spec(self, name, path=None, target=None):
        if self.done or self._searching or name not in self.watched:
            return None
        self._searching = True
        try:
            spec = None
            for finder in sys.meta_path:
                find = getattr(finder, "find_spec", None)
                if finder is self or find is None:
                    continue
                spec = find(name, path, target)
                if spec is not None:
                    break
        finally:
            self._searching = False
        if spec is None or getattr(spec.loader, "exec_module", None) is None:
            return None
        spec.loader = _NotifyingLoader(spec.loader, self, name)
        return spec

    def loaded(self, name):
        if not self.done and self.ready(finishing=name):
            self.fire()


class _NotifyingLoader:
    """The real loader, telling the hook when a watched module's code has run."""

    def __init__(self, loader, hook, name):
        self._loader, self._hook, self._name = loader, hook, name

    def __getattr__(self, attr):
        return getattr(self._loader, attr)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        self._hook.loaded(self._name)
