"""Python source: the package lock from metadata folder names."""

import re
import sys
from importlib import metadata

from tfrepro.fingerprint import python


def test_split_folder():
    assert python.split_folder("numpy-1.23.5.dist-info") == ("numpy", "1.23.5")
    assert python.split_folder("typing_extensions-4.12.2.dist-info") == ("typing_extensions", "4.12.2")
    assert python.split_folder("PyYAML-5.4.1-py3.8-linux-x86_64.egg-info") == ("PyYAML", "5.4.1")
    assert python.split_folder("tfrepro.egg-info") == ("tfrepro", None)
    assert python.split_folder("pkg-py3.8.egg-info") == ("pkg-py3.8", None)


def test_lock_matches_importlib_metadata():
    expected = {"%s==%s" % (python.normalize(d.metadata["Name"]), d.version) for d in metadata.distributions()}
    info = python.collect()
    assert set(info.packages) == expected
    names = [p.split("==")[0] for p in info.packages]
    assert names == sorted(set(names))
    assert info.version == "%d.%d.%d" % sys.version_info[:3] and info.executable == sys.executable


def test_first_entry_on_sys_path_wins_and_names_are_normalised(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    (first / "Foo_Bar-2.0.dist-info").mkdir(parents=True)
    (second / "foo.bar-1.0.dist-info").mkdir(parents=True)
    legacy = second / "legacy.egg-info"
    legacy.mkdir()
    (legacy / "PKG-INFO").write_text("Metadata-Version: 1.1\nName: Legacy.Pkg\nVersion: 0.3\n")
    raw = python.query([str(first), str(second), str(tmp_path / "missing"), str(tmp_path / "x.zip")])
    assert python.parse(raw).packages == ("foo-bar==2.0", "legacy-pkg==0.3")


def test_normalize():
    assert python.normalize("Foo__Bar.baz") == "foo-bar-baz"
    assert re.fullmatch(r"[a-z0-9-]+", python.normalize("Zope.Interface"))
