"""tfrepro.import_hook.AfterImport (the one post-import hook) on stand-in packages, and the
standalone files the launch hook ships: their environment names are schema's."""

import ast
import importlib
import importlib.util
import sys

import pytest

from tfrepro import determinism, schema
from tfrepro.import_hook import AfterImport
from tfrepro.launch import hooks


@pytest.fixture
def packages(tmp_path, monkeypatch):
    """Two importable stand-ins that import each other, as tensorflow and keras do."""
    (tmp_path / "fake_tf.py").write_text("import sys\nif 'fake_keras' not in sys.modules:\n    import fake_keras\n")
    (tmp_path / "fake_keras.py").write_text("import fake_tf\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr("tfrepro.import_hook.WATCHED", ("fake_tf", "fake_keras"))
    yield
    for name in ("fake_tf", "fake_keras"):
        sys.modules.pop(name, None)


def watch(wanted, seen):
    hook = AfterImport(lambda: seen.append(sorted(n for n in ("fake_tf", "fake_keras") if n in sys.modules)), wanted)
    hook.install()
    return hook


@pytest.mark.parametrize("first", ["fake_tf", "fake_keras"])
@pytest.mark.parametrize("wanted", [("fake_tf",), ("fake_keras",)])
def test_fires_once_after_both_imports_end(packages, first, wanted):
    seen = []
    hook = watch(wanted, seen)
    assert hook in sys.meta_path and seen == []
    importlib.import_module(first)
    assert seen == [["fake_keras", "fake_tf"]]  # not half-way: the other import had ended too
    assert hook not in sys.meta_path and hook.done
    importlib.reload(sys.modules[first])
    assert len(seen) == 1


def test_fires_at_once_when_already_imported(packages):
    import fake_tf  # noqa: F401

    seen = []
    hook = watch(("fake_tf",), seen)
    assert seen and hook not in sys.meta_path


def test_removed_before_the_import_it_never_fires(packages):
    seen = []
    watch(("fake_tf",), seen).remove()
    import fake_tf  # noqa: F401

    assert seen == []


def test_two_hooks_do_not_recurse_and_both_fire(packages):
    seen = []
    watch(("fake_tf",), seen)
    watch(("fake_keras",), seen)
    import fake_keras  # noqa: F401

    assert len(seen) == 2


def test_other_modules_pass_through(packages):
    hook = AfterImport(lambda: None)
    assert hook.find_spec("json") is None


# -- the files that run alone in a container keep schema's names -----------------------------


def load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # not named sitecustomize: nothing runs on import
    return module


def test_standalone_files_spell_schemas_environment_names():
    site = load(hooks.HOOK_SOURCE, "tfrepro_hook_under_test")
    assert site.ENV_AUTOLOG == schema.ENV_AUTOLOG
    assert site.ENV_DETERMINISTIC == schema.ENV_DETERMINISTIC
    assert site.ENV_SEED == schema.ENV_SEED
    assert site.WARNED == schema.ENV_HOOK_WARNED
    assert determinism.ENV_SEED == schema.ENV_SEED


def test_companions_import_no_tfrepro():
    """They run where tfrepro is not installed: standard library only at import."""
    site = load(hooks.HOOK_SOURCE, "tfrepro_hook_under_test")
    for name in site.COMPANIONS:
        tree = ast.parse(open(importlib.util.find_spec("tfrepro." + name).origin).read())
        top = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
        modules = [alias.name for node in top for alias in node.names if isinstance(node, ast.Import)]
        modules += [node.module for node in top if isinstance(node, ast.ImportFrom)]
        assert all(module.split(".")[0] in ("os", "random", "sys", "typing") for module in modules), name


def test_the_hook_prefers_the_companion_beside_it(tmp_path, monkeypatch):
    site = load(hooks.HOOK_SOURCE, "tfrepro_hook_under_test")
    (tmp_path / "tfrepro_determinism.py").write_text("WHERE = 'beside'\n")
    monkeypatch.setattr(site, "HOOK_DIR", str(tmp_path))
    assert site.companion("determinism").WHERE == "beside"
    installed = site.companion("import_hook")  # not beside it: the installed tfrepro's
    assert installed.__file__ == importlib.util.find_spec("tfrepro.import_hook").origin
    assert installed is not sys.modules.get("tfrepro.import_hook")
