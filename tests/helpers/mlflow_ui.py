"""Render markdown as the installed MLflow's web UI does, with the code of that MLflow's own JS
bundle (tests/fixtures/mlflow_ui/), run by node: the run description (showdown + sanitize-html)
and MLflow 3's .md artifact viewer (react-markdown + GFM). Nothing is downloaded: without node or
the bundle the renderers are None and the tests skip."""

import os
import shutil
import subprocess
from html.parser import HTMLParser

# A crafted record's strings (issue 20): each must render as plain text
BRANCH = "x](javascript:alert(1))"
COMMAND = "python train.py <img src=x onerror=alert(1)>"
GPU = "NVIDIA | H100\n| a | b |\n|---|---|"
COMMIT_MESSAGE = "fix [the docs](https://evil.example/phish) see www.evil.example and :smile: @alice bob@evil.example"
ALL_SPECIALS = "\\`*_{}[]()#+-.!|<>&~=:@ $^'\""


class Tags(HTMLParser):
    """Every element and attribute, and the text, of an HTML fragment."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags, self.text = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def parse(fragment):
    parser = Tags()
    parser.feed(fragment)
    return parser


FIXTURES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "mlflow_ui")
NO_VIEWER = 4  # render_artifact.js: this MLflow has no markdown artifact viewer (MLflow 2)


def bundle_dir():
    try:
        import mlflow
    except ImportError:
        return None
    path = os.path.join(os.path.dirname(mlflow.__file__), "server", "js", "build", "static", "js")
    return path if os.path.isdir(path) else None


def _renderer(script):
    node, js = shutil.which("node"), bundle_dir()
    if not node or not js:
        return None

    def render(markdown):
        done = subprocess.run(
            [node, os.path.join(FIXTURES, script), js],
            input=markdown.encode(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            timeout=120,
        )
        if done.returncode == NO_VIEWER:
            return None
        if done.returncode:
            raise RuntimeError("%s failed: %s" % (script, done.stderr.decode()[-2000:]))
        return done.stdout.decode()

    return render


def renderer():
    """markdown -> HTML as the run page shows a description (showdown + sanitize-html, MLflow 2.17
    and 3.x); None without node or the bundle."""
    return _renderer("render_description.js")


def artifact_renderer():
    """markdown -> HTML as MLflow 3's artifact viewer shows a .md file (react-markdown + GFM); the
    function returns None on MLflow 2, which has no such viewer; None without node or the bundle."""
    return _renderer("render_artifact.js")
