"""Host paths a container may never get, after resolving symlinks, // and .. (launch/hostpaths.py)."""

import os
import socket

import pytest

from tfrepro.launch import hostpaths as H


@pytest.fixture
def home(tmp_path):
    home = tmp_path / "home" / "alice"
    for d in (".ssh", ".docker", ".aws", ".kube", ".config/gcloud", ".gnupg", "data"):
        (home / d).mkdir(parents=True)
    return home


@pytest.fixture
def rules(home, tmp_path):
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "docker.sock"))  # a stand-in daemon socket, named by DOCKER_HOST
    yield H.policy(str(home), {"DOCKER_HOST": "unix://%s" % (tmp_path / "docker.sock")})
    sock.close()


def refused(path, rules, allow=False):
    return H.refusal(H.resolve(str(path)), rules, allow)


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "//",
        "/proc",
        "/proc/1/root",
        "/sys",
        "/dev",
        "/etc",
        "/etc/../etc/passwd",
        "/run",
        "/var/run",
        "//var/run",
        "/var/run/docker.sock",
        "//var/run/docker.sock",
        "/var/./run/../run/docker.sock",
        "/run/docker.sock",
        "/usr/..",
    ],
)
def test_system_paths_refused(path, rules):
    assert refused(path, rules)


def test_home_itself_and_its_credentials_refused(home, rules):
    assert "home directory" in refused(home, rules)
    assert "home directory" in refused(home.parent, rules)  # /home contains $HOME
    for d in (".ssh", ".docker", ".aws", ".kube", ".config/gcloud", ".gnupg", ".ssh/id_ed25519"):
        assert refused(home / d, rules), d
    assert refused(str(home) + "//.ssh", rules) and refused(str(home / "data" / ".." / ".ssh"), rules)
    assert refused(home / ".config", rules)  # contains .config/gcloud
    assert refused(home / "data", rules) is None


def test_symlinks_are_resolved(home, tmp_path, rules):
    (tmp_path / "innocent").symlink_to(home / ".ssh")
    (tmp_path / "rootlink").symlink_to("/")
    assert ".ssh" in refused(tmp_path / "innocent", rules)
    assert "root directory" in refused(tmp_path / "rootlink", rules)
    assert H.check(str(tmp_path / "innocent"), rules)[0] == str(home / ".ssh")  # what would be mounted


def test_docker_socket_by_inode(tmp_path, rules):
    os.link(str(tmp_path / "docker.sock"), str(tmp_path / "harmless"))  # same inode, other name
    assert "Docker socket" in refused(tmp_path / "harmless", rules)
    assert "Docker socket" in refused(tmp_path / "docker.sock", rules)
    assert "contains the Docker socket" in refused(tmp_path, rules)
    assert refused(tmp_path / "docker.sock", rules, allow=True) is None  # --mount-docker-socket
    assert refused("/var/run", rules, allow=True)  # the flag grants the socket, not its directory


def test_ordinary_paths_pass(tmp_path, home, rules):
    (tmp_path / "datasets").mkdir()
    assert refused(tmp_path / "datasets", rules) is None
    assert refused(tmp_path / "not-yet-created", rules) is None
    assert refused("/usr/share", rules) is None


def test_refusal_escapes_the_recorded_path(rules):
    message = H.refusal(H.HostPath("/etc\x1b[2K", "/etc"), rules)
    assert "\x1b" not in message and "\\x1b[2K" in message
