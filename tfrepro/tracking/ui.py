"""Addresses in MLflow's web UI for an http(s) tracking server. Pure.

The UI is a single-page app served by `mlflow server` at the tracking URI, with its routes after
"#" (MLflow 2.17 and 3.x alike; read from their server/js routes):

    run page        #/experiments/<experiment>/runs/<run>
    run artifact    #/experiments/<experiment>/runs/<run>/artifacts/<path>
    compare page    #/compare-runs?runs=["<run>",...]&experiments=["<experiment>",...]   (JSON lists;
                    the page decodes percent-escapes, so they are sent encoded)
    logged model    #/experiments/<experiment>/models/<model id>        (MLflow 3 only)
    model version   #/models/<name>/versions/<version>

Each function returns None when there is no UI to link to: a file or sqlite store, Databricks,
or an id that is not one (ids come from records: untrusted). Credentials in the URI (user:password@)
never reach a link, nor do its query and fragment.
"""

from __future__ import annotations

import json
import re
from typing import Optional, Sequence
from urllib.parse import quote, urlsplit, urlunsplit

from tfrepro.redact import strip_url_credentials

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,127}$")  # run, experiment and logged model ids
_VERSION = re.compile(r"^[0-9]{1,10}$")


def base_url(tracking_uri: Optional[str]) -> Optional[str]:
    """The UI's address for a tracking URI ("http://host:5000/prefix"), None for a non-http store."""
    uri = strip_url_credentials((tracking_uri or "").strip())
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 (raises on a malformed port)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
        return None
    if re.search(r"[\s\"'<>()\\`]", uri):
        return None
    path = quote(parts.path.rstrip("/"), safe="/-._~%")
    return urlunsplit((parts.scheme.lower(), parts.netloc, path, "", ""))


def _page(tracking_uri: Optional[str], route: str) -> Optional[str]:
    base = base_url(tracking_uri)
    return None if base is None else "%s/#%s" % (base, route)


def _ids(*ids) -> bool:
    return all(isinstance(i, str) and _ID.match(i) for i in ids)


def _experiment_page(tracking_uri: Optional[str], experiment_id: str, kind: str, item_id: str) -> Optional[str]:
    """The page of a run or a logged model (`kind` "runs", "models") under its experiment."""
    if not _ids(experiment_id, item_id):
        return None
    return _page(tracking_uri, "/experiments/%s/%s/%s" % (experiment_id, kind, item_id))


def run_url(tracking_uri: Optional[str], experiment_id: str, run_id: str) -> Optional[str]:
    return _experiment_page(tracking_uri, experiment_id, "runs", run_id)


def artifact_url(tracking_uri: Optional[str], experiment_id: str, run_id: str, path: str) -> Optional[str]:
    """The run page's artifact tab, opened at `path` (e.g. tfrepro/replay.md)."""
    if not _ids(experiment_id, run_id) or not path or ".." in path.split("/"):
        return None
    route = "/experiments/%s/runs/%s/artifacts/%s" % (experiment_id, run_id, quote(path, safe="/-._~"))
    return _page(tracking_uri, route)


def compare_url(tracking_uri: Optional[str], run_ids: Sequence[str], experiment_ids: Sequence[str]) -> Optional[str]:
    """The compare page for runs (2 or more) of the given experiments (as the UI sorts them)."""
    runs = list(dict.fromkeys(run_ids))
    experiments = sorted(set(experiment_ids))
    if len(runs) < 2 or not experiments or not _ids(*runs) or not _ids(*experiments):
        return None
    query = "?runs=%s&experiments=%s" % (
        quote(json.dumps(runs, separators=(",", ":")), safe=""),
        quote(json.dumps(experiments, separators=(",", ":")), safe=""),
    )
    return _page(tracking_uri, "/compare-runs" + query)


def logged_model_url(tracking_uri: Optional[str], experiment_id: str, model_id: str) -> Optional[str]:
    """A logged model's page (MLflow 3: ids "m-..."; MLflow 2 has no such page)."""
    return _experiment_page(tracking_uri, experiment_id, "models", model_id)


def model_version_url(tracking_uri: Optional[str], name: str, version) -> Optional[str]:
    """A registered model version's page."""
    version = str(version)
    if not name or not _VERSION.match(version) or any(ord(c) < 32 for c in name):
        return None
    return _page(tracking_uri, "/models/%s/versions/%s" % (quote(name, safe=""), version))
