"""Render markdown as the installed MLflow's web UI renders a run description, with the showdown
and sanitize-html code of that MLflow's own JS bundle (tests/fixtures/mlflow_ui/), run by node.
Nothing is downloaded: without node or the bundle, `renderer()` is None and the tests skip."""

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


SCRIPT = os.path.join(os.path.dirname(__file__), "fixtures", "mlflow_ui", "render_description.js")


def bundle_dir():
    try:
        import mlflow
    except ImportError:
        return None
    path = os.path.join(os.path.dirname(mlflow.__file__), "server", "js", "build", "static", "js")
    return path if os.path.isdir(path) else None


def renderer():
    """A function markdown -> HTML, as the run page shows the description; None when unavailable."""
    node, js = shutil.which("node"), bundle_dir()
    if not node or not js:
        return None

    def render(markdown):
        done = subprocess.run(
            [node, SCRIPT, js], input=markdown.encode(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120
        )
        if done.returncode:
            raise RuntimeError("render_description.js failed: %s" % done.stderr.decode()[-2000:])
        return done.stdout.decode()

    return render
