"""Why two runs' results can differ: the recorded factors, ranked, one line and a fix each. Pure.

Built on `tfrepro.inspect.compare.compare_runs` (the ranked rows `tfrepro diff` prints): this
module maps those rows to causes, and adds what no row shows: a missing seed or op determinism
on the original, data that changed since it ran, and untracked files it could see.

Order (most to least likely to explain a divergence):
    seed and op determinism, data, fit()'s inputs, params (batch size first), code, image and TensorFlow build,
    oneDNN, GPU model / compute capability, GPU or replica count, driver, untracked files,
    then any other recorded difference of high or medium rank.
When none applies, one factor says so: the replay diverged with the same recorded environment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence

from tfrepro import schema
from tfrepro.inspect import compare

SAME_ENVIRONMENT = "same-environment"
FIX_DETERMINISM = "call tfrepro.deterministic() before building the model, or launch with `tfrepro run --seed N`"
FIX_NOISE = "replay on the recorded hardware, or judge against run-to-run noise with `tfrepro replay RUN --repeat N`"
FIX_IMAGE = "replay in the recorded image (by digest), as `tfrepro replay` does by default"
REPLICA_PARAMS = ("distribute.replicas", "num_replicas", "replicas")
INPUT_TAG, REPLICAS_TAG = schema.INPUT_PREFIX, schema.DISTRIBUTE_REPLICAS  # set by tracking/inputs.py


@dataclass(frozen=True)
class Factor:
    key: str  # seed | data | inputs | batch_size | params | code | image | tf_build | onednn | gpu_model | gpu_count | driver | untracked | other | same-environment
    line: str
    fix: str

    def text(self) -> str:
        return "%s (fix: %s)" % (self.line, self.fix)


def _flag(value) -> Optional[bool]:
    if value is None:
        return None
    return str(value).lower() in ("true", "1")


def _seed_and_determinism(record) -> Optional[Factor]:
    tags, env = record.tags or {}, record.environment
    tf = env.tensorflow if env else None
    seed = tags.get(schema.SEED) or (tf.seed if tf else None) or (record.params or {}).get("seed")
    op = _flag(tags.get(schema.TF_DETERMINISM))
    if op is None and tf and tf.imported:
        op = _flag((tf.determinism or {}).get("op_determinism"))
    if seed is None and op is False:
        return Factor(
            "seed",
            "the original set no seed and op determinism was off: initial weights, shuffling "
            "and kernel summation order change from run to run",
            FIX_DETERMINISM,
        )
    if seed is None:
        return Factor(
            "seed",
            "the original set no seed (no tfrepro.seed): initial weights and shuffling "
            "start from a different random state each run",
            FIX_DETERMINISM,
        )
    if op is False:
        return Factor(
            "seed",
            "op determinism was off (tfrepro.tf.determinism=false): some kernels "
            "(GPU atomics, cuDNN autotuning, parallel reductions) add in a different order each run",
            FIX_DETERMINISM,
        )
    return None


def _listed(items: Sequence[str], limit: int = 3) -> str:
    shown = ", ".join(items[:limit])
    return shown + (" (+%d more)" % (len(items) - limit) if len(items) > limit else "")


def _change(diff: compare.Difference) -> str:
    return "%s -> %s" % (diff.a if diff.a is not None else "unset", diff.b if diff.b is not None else "unset")


def _data(drift) -> Optional[Factor]:
    if not drift:
        return None
    return Factor(
        "data",
        "the data changed since the original ran: %s" % _listed(["%s %s" % (d.path, d.kind) for d in drift]),
        "restore the data as recorded (`tfrepro show RUN` lists its fingerprint), then replay without --allow-drift",
    )


def _untracked(record, data_sources) -> Optional[Factor]:
    git = record.environment.git if record.environment else None
    if not git or not git.untracked or any(s.label in ("untracked", "ignored") for s in data_sources):
        return None  # fingerprinted untracked inputs are judged as data instead
    return Factor(
        "untracked",
        "%d untracked file(s) were visible to the original and are not replayed: %s"
        % (len(git.untracked), _listed(list(git.untracked))),
        "commit them, or launch with `tfrepro run`: it fingerprints untracked and ignored files, "
        "and replay mounts them from your clone",
    )


def _tagged(original, replay) -> List[Factor]:
    """What the callback tagged about fit()'s inputs, compared only where both runs have it."""
    a, b = original.tags or {}, replay.tags or {}
    out = []
    changed = [
        "%s %s -> %s" % (k[len(INPUT_TAG) : -len(".digest")], a[k][:19], b[k][:19])
        for k in sorted(a)
        if k.startswith(INPUT_TAG) and k.endswith(".digest") and k in b and a[k] != b[k]
    ]
    if changed:
        out.append(
            Factor(
                "inputs",
                "the arrays or tf.data pipeline fit() was given differ: %s" % _listed(changed),
                "make the script read its data from the recorded commit or a mounted, fingerprinted path",
            )
        )
    if a.get(REPLICAS_TAG) and b.get(REPLICAS_TAG) and a[REPLICAS_TAG] != b[REPLICAS_TAG]:
        out.append(
            Factor(
                "gpu_count",
                "replica count differs: %s -> %s: the batch is split and reduced across "
                "other replicas" % (a[REPLICAS_TAG], b[REPLICAS_TAG]),
                "replay with the recorded --gpus on a host with as many GPUs",
            )
        )
    return out


# (key, which compare rows, line, fix). A row goes to the first entry that claims it.
ROW_FACTORS = (
    (
        "seed",
        lambda d: d.group == "determinism" and d.field != "TF_ENABLE_ONEDNN_OPTS",
        "seed or determinism settings differ: {changes}",
        FIX_DETERMINISM,
    ),
    (
        "batch_size",
        lambda d: d.group == "params" and d.field in ("batch_size", "batch-size"),
        "batch size differs: {changes}",
        "replay the recorded command and code unchanged",
    ),
    (
        "gpu_count",
        lambda d: (d.group, d.field) == ("gpu", "count") or (d.group == "params" and d.field in REPLICA_PARAMS),
        "GPU or replica count differs: {changes}: the batch is split and reduced across other replicas",
        "replay with the recorded --gpus on a host with as many GPUs",
    ),
    (
        "params",
        lambda d: d.group == "params",
        "params differ: {changes}",
        "replay the recorded command and code unchanged",
    ),
    (
        "code",
        lambda d: d.group == "code" and d.field in ("commit", "dirty", "patch_sha256"),
        "the code differs: {changes}",
        "replay the recorded commit and patch",
    ),
    (
        "tf_build",
        lambda d: d.group == "tensorflow" and d.field in ("cuda_build", "cudnn_build"),
        "TensorFlow's CUDA/cuDNN build differs: {changes}",
        FIX_IMAGE,
    ),
    (
        "onednn",
        lambda d: (d.group, d.field) == ("determinism", "TF_ENABLE_ONEDNN_OPTS"),
        "TF_ENABLE_ONEDNN_OPTS differs: {changes}: oneDNN kernels change float summation order on CPU",
        "set TF_ENABLE_ONEDNN_OPTS as the original had it (-e TF_ENABLE_ONEDNN_OPTS=...)",
    ),
    (
        "image",
        lambda d: (
            (d.group == "image" and d.field in ("digest", "id"))
            or (d.group, d.field) == ("tensorflow", "version")
            or d.group == "packages"
        ),
        "the image or its packages differ: {changes}",
        FIX_IMAGE,
    ),
    (
        "gpu_model",
        lambda d: (d.group, d.field) in (("gpu", "model"), ("gpu", "compute_capability")),
        "GPU model differs: {changes}: cuDNN gives no bitwise guarantee across architectures",
        FIX_NOISE,
    ),
    (
        "driver",
        lambda d: (d.group, d.field) in (("gpu", "driver"), ("gpu", "cuda_driver")),
        "GPU driver differs: {changes}",
        FIX_NOISE,
    ),
)
# Rows that never explain a result: outcomes, the launch plumbing, where and when it ran.
NOT_CAUSES = ("metrics", "launch", "record", "system", "process", "workers")  # workers: _workers() below


def _worker_count(record) -> int:
    value = (record.tags or {}).get(schema.LAUNCH_WORKERS, "1")
    return int(value) if str(value).isdigit() else 1


def _workers(original, replay) -> List[Factor]:
    """The job's shape: another worker count, or workers of one run that disagree (tracking/workers.py)."""
    out = []
    recorded, replayed = _worker_count(original), _worker_count(replay)
    if recorded != replayed:
        out.append(
            Factor(
                "workers",
                "replayed with %d worker%s, recorded with %d: the global batch and the reduction order differ"
                % (replayed, "" if replayed == 1 else "s", recorded),
                "replay with the recorded worker count (leave out --workers)",
            )
        )
    for name, record in (("original", original), ("replay", replay)):
        tags = record.tags or {}
        if tags.get(schema.WORKERS_AGREE) == "false":
            out.append(
                Factor(
                    "workers_disagree",
                    "the %s's workers disagree on %s (tfrepro/workers.json)"
                    % (name, tags.get(schema.WORKERS_DISAGREE) or "their environment"),
                    "run every worker on nodes with the same driver, GPU model and image digest",
                )
            )
            break
    return out


def _row_factors(diffs: Sequence[compare.Difference]) -> Dict[str, Factor]:
    claimed: Dict[str, List[compare.Difference]] = {}
    other: List[compare.Difference] = []
    for diff in diffs:
        if diff.equal or diff.rank in (compare.RESULT, compare.LOW) or diff.group in NOT_CAUSES:
            continue
        key = next((k for k, match, _, _ in ROW_FACTORS if match(diff)), None)
        if key is None:
            if diff.group != "code" or diff.field != "untracked":
                other.append(diff)
        else:
            claimed.setdefault(key, []).append(diff)
    out = {}
    for key, _, line, fix in ROW_FACTORS:
        if key in claimed:
            changes = _listed(["%s %s" % (d.field, _change(d)) for d in claimed[key]])
            out[key] = Factor(key, line.format(changes=changes), fix)
    if other:
        out["other"] = Factor(
            "other",
            "other recorded differences: %s" % _listed(["%s %s %s" % (d.group, d.field, _change(d)) for d in other]),
            "see `tfrepro diff ORIGINAL REPLAY`",
        )
    return out


ORDER = (
    "seed",
    "data",
    "inputs",
    "batch_size",
    "workers",
    "workers_disagree",
    "params",
    "code",
    "image",
    "tf_build",
    "onednn",
    "gpu_model",
    "gpu_count",
    "driver",
    "untracked",
    "other",
)


def explain(
    original,
    replay,
    data_drift: Sequence = (),
    data_sources: Sequence = (),
    diffs: Optional[Sequence[compare.Difference]] = None,
) -> List[Factor]:
    """Ranked factors that can explain why `replay`'s results differ from `original`'s.

    `original`/`replay` are run records (environment, params, launch, metrics, tags); `data_drift`
    the data rows found before the replay launched; `data_sources` the original's recorded data.
    """
    if diffs is None:
        diffs = compare.compare_runs(original, replay)
    found: Dict[str, Factor] = dict(_row_factors(diffs))
    for factor in _tagged(original, replay) + _workers(original, replay):
        found.setdefault(factor.key, factor)
    # a missing seed on the original says more than how the replay's settings differ: it wins the key
    for winner in (_seed_and_determinism(original), _data(data_drift), _untracked(original, data_sources)):
        if winner:
            found[winner.key] = winner
    factors = [found[k] for k in ORDER if k in found]
    if not factors:
        factors.append(
            Factor(
                SAME_ENVIRONMENT,
                "diverged with the same recorded environment: seed, op determinism, "
                "data, code, image, GPUs and params all match; a nondeterministic op or an input "
                "tfrepro does not record may remain",
                FIX_NOISE,
            )
        )
    return factors


def render(factors: Sequence[Factor], indent: str = "  ") -> str:
    """Numbered, one line and its fix each, for the terminal."""
    lines = []
    for n, factor in enumerate(factors, 1):
        lines.append("%s%d. %s" % (indent, n, factor.line))
        lines.append("%s   fix: %s" % (indent, factor.fix))
    return "\n".join(lines)


def detail(factors: Sequence[Factor]) -> str:
    """One string for the tfrepro.replay.detail tag."""
    return " | ".join("%d. %s" % (n, f.text()) for n, f in enumerate(factors, 1))


def as_dicts(factors: Sequence[Factor]) -> List[Mapping[str, str]]:
    return [{"key": f.key, "line": f.line, "fix": f.fix} for f in factors]
