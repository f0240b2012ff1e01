"""The local spool: one append-only JSON-lines file per run, and its "uploaded up to" marker.

Every point and record a session logs is appended here first (a write-ahead log); the
writer uploads from it and advances the marker. What is left after a run (server down,
process killed) is uploaded later by `tfrepro sync`.

Directory: $TFREPRO_SPOOL_DIR, else ~/.cache/tfrepro/spool. Files:
    <run>.jsonl        first line {"run": {...}} (run id, experiment, tracking URI, ...), then
                       {"step", "ts", "metrics"} | {"params"} | {"tags"} |
                       {"text", "file"} | {"artifacts", "path"} | {"end", "end_time"}
    <run>.state.json   {"offset": bytes confirmed uploaded, "run_id": real id of a local run}
A live session holds an exclusive flock on its .jsonl, so `sync` leaves it alone.
The spool holds the tracking URI, params and the patch: the directory is 0700, files 0600,
and a directory another user owns (or a symlink) is never used.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
import threading
from typing import Dict, Iterator, List, Optional, Tuple

from tfrepro import schema

try:
    import fcntl
except ImportError:  # pragma: no cover - not Linux
    fcntl = None

DEFAULT_DIR = os.path.join("~", ".cache", "tfrepro", "spool")
SUFFIX = ".jsonl"
STATE_SUFFIX = ".state.json"


def spool_dir(override: Optional[str] = None) -> str:
    return os.path.expanduser(override or os.environ.get(schema.ENV_SPOOL_DIR) or DEFAULT_DIR)


def private_dir(directory: str) -> str:
    """Create `directory` 0700, or check that an existing one is ours and not a symlink
    (and make it 0700). Raises OSError otherwise."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    st = os.lstat(directory)
    if not stat.S_ISDIR(st.st_mode):
        raise OSError("%s is not a directory (a symlink?)" % directory)
    _make_private(directory, st, 0o700, lambda mode: os.chmod(directory, mode))
    return directory


def _make_private(path: str, st: os.stat_result, mode: int, chmod) -> None:
    """Refuse what another user owns; give ours `mode` (through `chmod`) if it has another."""
    if st.st_uid != os.geteuid():
        raise OSError("%s belongs to another user (uid %d)" % (path, st.st_uid))
    if stat.S_IMODE(st.st_mode) != mode:
        chmod(mode)


def fallback_dir() -> str:
    """$TMPDIR/tfrepro-spool-<uid> when it is ours, else a fresh private temporary directory."""
    path = os.path.join(tempfile.gettempdir(), "tfrepro-spool-%d" % os.geteuid())
    try:
        return private_dir(path)
    except OSError:
        return tempfile.mkdtemp(prefix="tfrepro-spool-")


def open_private(path: str, flags: int):
    """Open a spool file 0600, never through a symlink; an existing one of ours is made 0600."""
    fd = os.open(path, flags | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        _make_private(path, os.fstat(fd), 0o600, lambda mode: os.fchmod(fd, mode))
    except BaseException:
        os.close(fd)
        raise
    return fd


def state_path(path: str) -> str:
    return path[: -len(SUFFIX)] + STATE_SUFFIX if path.endswith(SUFFIX) else path + STATE_SUFFIX


def load_state(path: str) -> Dict:
    try:
        with open(state_path(path)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def save_state(path: str, state: Dict) -> None:
    """Atomic: a crash leaves the old marker or the new one, never half of one."""
    target = state_path(path)
    tmp = "%s.tmp.%d.%d" % (target, os.getpid(), threading.get_ident())
    with os.fdopen(open_private(tmp, os.O_WRONLY | os.O_TRUNC), "w") as f:
        json.dump(state, f)
    os.replace(tmp, target)


def remove(path: str) -> None:
    for p in (path, state_path(path)):
        try:
            os.unlink(p)
        except OSError:
            pass


def try_lock(fd) -> bool:
    """Exclusive non-blocking flock; False when another open file holds it."""
    if fcntl is None:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


def pending_files(directory: str) -> List[str]:
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return []
    return [os.path.join(directory, n) for n in names if n.endswith(SUFFIX)]


class SpoolFile:
    """The append side, shared by the writer's threads (and the training thread on spill)."""

    def __init__(self, directory: str, run_id: str, header: Dict):
        private_dir(directory)
        base = os.path.join(directory, run_id)
        path, n = base + SUFFIX, 1
        while True:
            self._file = os.fdopen(open_private(path, os.O_WRONLY | os.O_APPEND), "ab")
            if try_lock(self._file):
                break
            self._file.close()  # another live session spools this run: take a file of our own
            n += 1
            path = "%s.%d%s" % (base, n, SUFFIX)
        self.path = path
        self._lock = threading.Lock()
        self.dirty = False
        self.flushed = self._file.tell()
        if self.flushed == 0:
            self.write([encode({"run": header})])
        elif not _ends_with_newline(path):
            self.write([b"\n"])  # a killed writer left half a line: keep the next one whole
        self.flush()

    def write(self, lines: List[bytes]) -> None:
        with self._lock:
            self._file.writelines(lines)
            self.dirty = True

    def flush(self) -> int:
        """Hand buffered lines to the OS (survives a killed process); returns the flushed size."""
        with self._lock:
            if not self._file.closed:
                self._file.flush()
                self.flushed = self._file.tell()
                self.dirty = False
            return self.flushed

    def close(self) -> None:
        with self._lock:
            if self._file.closed:
                return
            self._file.flush()
            self.flushed = self._file.tell()
            try:
                os.fsync(self._file.fileno())
            except OSError:
                pass
            self._file.close()  # releases the flock


def encode(record: Dict) -> bytes:
    return (json.dumps(record, separators=(",", ":")) + "\n").encode()


_keys: Dict[str, str] = {}


def encode_metrics(step: int, ts: int, metrics: Dict[str, float]) -> bytes:
    """encode({"step", "ts", "metrics"}) without json.dumps per line: the hot path."""
    parts = []
    for key, value in metrics.items():
        quoted = _keys.get(key)
        if quoted is None:
            quoted = json.dumps(key)
            if len(_keys) < 10000:  # metric names are few; bound the cache anyway
                _keys[key] = quoted
        text = repr(value)
        if text in ("nan", "inf", "-inf"):
            text = json.dumps(value)
        parts.append(quoted + ":" + text)
    return ('{"step":%d,"ts":%d,"metrics":{%s}}\n' % (step, ts, ",".join(parts))).encode()


def _ends_with_newline(path: str) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def read_header(path: str) -> Dict:
    with open(path, "rb") as f:
        line = f.readline()
    try:
        header = json.loads(line)["run"]
    except (ValueError, KeyError, TypeError):
        return {}
    return header if isinstance(header, dict) else {}


def read(
    path: str, offset: int, end: Optional[int] = None, max_entities: int = 1000, handle=None
) -> Tuple[List[Dict], int]:
    """Whole records from `offset` up to `end` (default EOF), stopping after ~max_entities
    metric points. Returns (records, offset after the last whole line read).

    Lines are decoded many at a time (one json.loads of a JSON array: the uploader's main
    per-point cost was one call per line); the first line alone says how many points a line
    holds, so about as many lines are read as the budget needs."""
    f = handle or open(path, "rb")
    try:
        f.seek(offset)
        records: List[Dict] = []
        entities, lines_read, want = 0, 0, 1
        while entities < max_entities and (end is None or offset < end):
            lines: List[bytes] = []
            position, whole = offset, True
            while len(lines) < want and (end is None or position < end):
                line = f.readline()
                if not line.endswith(b"\n"):
                    whole = False  # a line still being written (or cut by a kill)
                    break
                lines.append(line)
                position += len(line)
            for line, record in zip(lines, _decode_lines(lines)):
                offset += len(line)
                lines_read += 1
                if isinstance(record, dict):  # None: a torn line from a killed writer
                    records.append(record)
                    entities += len(record.get("metrics") or ()) or 1
                    if entities >= max_entities:
                        break
            if not whole or not lines:
                break
            per_line = max(entities / lines_read, 1.0)
            want = max(int((max_entities - entities) / per_line), 1)
            f.seek(offset)
        return records, offset
    finally:
        if handle is None:
            f.close()


def _decode_lines(lines: List[bytes]) -> List[Optional[object]]:
    """json.loads of each line (None where a line is not JSON), in one call when all are."""
    if len(lines) > 1:
        try:
            decoded = json.loads(b"[" + b",".join(lines) + b"]")
            if isinstance(decoded, list) and len(decoded) == len(lines):
                return decoded
        except ValueError:
            pass  # a torn line among them: one at a time
    out: List[Optional[object]] = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except ValueError:
            out.append(None)
    return out


def iter_records(path: str, offset: int = 0) -> Iterator[Dict]:
    while True:
        records, offset2 = read(path, offset)
        if offset2 == offset:
            return
        for r in records:
            yield r
        offset = offset2
