"""TrackingSession: one run's tracking, used by ReproCallback. It never raises into training.

Contract (the callback relies on it):
    session = TrackingSession.open(experiment_name=None, run_name=None)
        uses the active MLflow run if there is one, else starts one (MLFLOW_RUN_ID resumes
        the run a launcher created); `session.started_run` says whether close() ends it.
    session.run_id                      real MLflow run id (or a local id while the server is down)
    session.log_params(dict) / set_tags(dict)
    session.log_metrics(dict, step)     must not block the training thread on the network
    session.log_text(text, artifact_file) / log_artifacts(local_dir, artifact_path)
    session.flush(timeout) -> seconds spent
    session.close(status="FINISHED")    flush, then end the run only if this session started it
Every method swallows tracking failures (recorded in `session.errors`, warned once).
"""
from __future__ import annotations

import logging
import time
from typing import Dict, List, Optional

log = logging.getLogger("tfrepro")


class TrackingSession:
    def __init__(self, run_id: str, started_run: bool):
        self.run_id = run_id
        self.started_run = started_run
        self.errors: List[str] = []

    @classmethod
    def open(cls, experiment_name: Optional[str] = None, run_name: Optional[str] = None) -> "TrackingSession":
        import mlflow

        active = mlflow.active_run()
        if active:
            return cls(active.info.run_id, started_run=False)
        if experiment_name:
            mlflow.set_experiment(experiment_name)
        run = mlflow.start_run(run_name=run_name)
        return cls(run.info.run_id, started_run=True)

    def _guard(self, what, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if not self.errors:
                log.warning("tfrepro: tracking failed (%s): %s; training goes on", what, exc)
            self.errors.append("%s: %s" % (what, exc))

    def _client(self):
        from mlflow.tracking import MlflowClient

        return MlflowClient()

    def log_params(self, params: Dict[str, object]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self._guard("log params", self._client().log_batch, self.run_id, params=items[i : i + 100])

    def set_tags(self, tags: Dict[str, str]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(k, str(v)) for k, v in tags.items()]
        for i in range(0, len(items), 100):
            self._guard("set tags", self._client().log_batch, self.run_id, tags=items[i : i + 100])

    def log_metrics(self, metrics: Dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, int(step)) for k, v in metrics.items()]
        self._guard("log metrics", self._client().log_batch, self.run_id, metrics=items)

    def log_text(self, text: str, artifact_file: str) -> None:
        self._guard("log " + artifact_file, self._client().log_text, self.run_id, text, artifact_file)

    def log_artifacts(self, local_dir: str, artifact_path: Optional[str] = None) -> None:
        self._guard("log artifacts", self._client().log_artifacts, self.run_id, local_dir, artifact_path)

    def flush(self, timeout: float = 10.0) -> float:
        return 0.0

    def close(self, status: str = "FINISHED") -> None:
        self.flush()
        if self.started_run:
            import mlflow

            self._guard("end run", mlflow.end_run, status)
