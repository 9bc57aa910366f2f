"""Faults a server sees every week, made real: a full disk (a small tmpfs), a read-only run folder (a read-only
bind mount) and a folder without write permission, inside a user and mount namespace of their own (`unshare
-rm`), so that the test needs no privilege and leaves the machine as it was. Each fault must end the command
with one line naming the path and the errno (exit 2), leave nothing half-written, and a re-run after the fault
is gone must work."""

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.learnkit.test_faults import SMALL

REPO = Path(__file__).resolve().parents[2]


def _namespaces_work() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt"], capture_output=True)
    return probe.returncode == 0


pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not _namespaces_work(),
    reason="needs unprivileged user and mount namespaces (unshare -rm) to make a small disk",
)


def _dataset(folder: Path) -> None:
    folder.mkdir()
    (folder / "items.csv").write_text(
        "item_id,title,category\n" + "".join(f"i{k},Item number {k},c{k % 4}\n" for k in range(30))
    )
    (folder / "events.csv").write_text(
        "user_id,item_id,ts,label\n"
        + "".join(f"u{u},i{(3 * u + j) % 30},{1700000000 + 1000 * j + u},1\n" for u in range(40) for j in range(8))
    )


# Runs inside the namespaces: the CLI in this interpreter, each fault in turn, results as JSON on stdout.
DRIVER = """
import json, logging, os, shutil, subprocess, sys
from pathlib import Path
sys.path.insert(0, {repo!r})
from learnkit.cli import main

runs, config, locked = Path({runs!r}), {config!r}, {locked!r}
messages = []
class Keep(logging.Handler):
    def emit(self, record):
        messages.append(record.getMessage())
logging.getLogger().addHandler(Keep(level=logging.ERROR))

def cli(*args):
    messages.clear()
    try:
        code = main(["run", config, *args])
    except BaseException as exc:  # a traceback is what the test must never see
        return {{"code": f"raised {{type(exc).__name__}}: {{exc}}", "errors": list(messages)}}
    return {{"code": code, "errors": list(messages)}}

def fill(leave_kb):
    free = shutil.disk_usage(runs).free // 1024
    with open(runs / "filler", "wb") as fh:
        fh.write(bytes(1024 * max(0, free - leave_kb)))

def state(stage):
    run = runs / "t"
    left = [str(p) for p in run.rglob("*") if p.name.endswith((".tmp", ".partial"))]
    return {{"leftovers": left, "finished": (run / stage / "_stage.json").is_file()}}

subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(runs)], check=True)
out = {{"first": cli()}}
# i2i fails on its plot (PIL); pch after its 4 KB records and split, on the 27 KB weights (safetensors)
for stage, leave_kb in (("i2i", 8), ("pch", 20)):
    shutil.rmtree(runs / "t" / stage)
    fill(leave_kb)
    out[stage] = {{**cli("--only", stage, "--force"), **state(stage)}}
    (runs / "filler").unlink()
    out[stage + "_again"] = {{**cli("--only", stage), **state(stage)}}
subprocess.run(["mount", "--bind", str(runs), str(runs)], check=True)
subprocess.run(["mount", "-o", "remount,ro,bind", str(runs)], check=True)
out["read_only"] = cli("--only", "i2i", "--force")
out["no_permission"] = cli("--set", f"runs_dir={{locked}}/runs")
print(json.dumps(out))
"""


def test_full_disk_read_only_and_no_permission_are_one_line_and_a_rerun_works(tmp_path, isolated_cache):
    _dataset(tmp_path / "data")
    runs, locked = tmp_path / "runs", tmp_path / "locked"
    runs.mkdir()
    locked.mkdir(mode=0o555)
    if os.geteuid() == 0:
        os.chown(locked, 65534, 65534)  # owned by an id the namespace does not map: its root cannot write there
    config = tmp_path / "c.yaml"
    # data, ceg, i2i and pch of the fault suite's small run: a plot (PIL) and weights (safetensors) to write
    small = SMALL.split("\ntest_period:")[0] + "\n"
    config.write_text(small.format(runs=runs, data=tmp_path / "data", i2i=", label_column: category", period=""))
    driver = DRIVER.format(repo=str(REPO), runs=str(runs), config=str(config), locked=str(locked))
    done = subprocess.run(
        ["unshare", "-rm", sys.executable, "-c", textwrap.dedent(driver)],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["first"] == {"code": 0, "errors": []}
    run = runs / "t"
    expected = {
        "i2i": rf"^{run}/i2i/category_at_3\.png: No space left on device \(ENOSPC\) while writing it",
        "pch": rf"^{run}/pch: No space left on device \(ENOSPC\) in stage 'pch'; free some space and run again$",
    }
    for stage, pattern in expected.items():
        fault = out[stage]
        assert fault["code"] == 2 and len(fault["errors"]) == 1, fault
        assert "\n" not in fault["errors"][0] and not fault["leftovers"], fault
        assert re.match(pattern, fault["errors"][0]), fault["errors"][0]
        assert not fault["finished"]  # nothing half-done passes for finished
        again = out[f"{stage}_again"]
        assert again["code"] == 0 and again["finished"] and not again["leftovers"], again
    read_only = out["read_only"]
    assert read_only["code"] == 2 and len(read_only["errors"]) == 1
    assert read_only["errors"][0].startswith(f"{run}/") and "Read-only file system (EROFS)" in read_only["errors"][0]
    denied = out["no_permission"]
    assert denied["code"] == 2 and denied["errors"] == [
        f"{locked}/runs: Permission denied (EACCES); no permission: make the folder writable for this user, or "
        "set runs_dir to a writable folder"
    ]


TF_DRIVER = """
import subprocess, sys
sys.path.insert(0, {repo!r})
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", {folder!r}], check=True)
from learnkit.core.frameworks import prepare_tensorflow
prepare_tensorflow()
import tensorflow as tf
from learnkit.core.errors import storage_error, storage_fault
module = tf.Module()
module.weights = tf.Variable(tf.zeros([200_000]))  # 800 KB: more than the disk holds
try:
    tf.saved_model.save(module, {folder!r} + "/model")
except Exception as exc:
    fault = storage_fault(exc)
    print(type(exc).__name__, "|", storage_error(*fault) if fault else "not recognised")
"""


def test_tensorflow_reports_a_full_disk_in_its_own_exception_and_it_is_recognised(tmp_path):
    """The ranker's SavedModel write fails inside TensorFlow's C++ (ResourceExhaustedError, no OSError): the
    one-line message still names the file and the errno."""
    folder = tmp_path / "small"
    folder.mkdir()
    done = subprocess.run(
        ["unshare", "-rm", sys.executable, "-c", TF_DRIVER.format(repo=str(REPO), folder=str(folder))],
        capture_output=True,
        text=True,
        timeout=120,
    )
    line = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-2000:]
    name, message = line.split(" | ")
    assert name == "ResourceExhaustedError"
    assert message.startswith(f"{folder}/model/") and "No space left on device (ENOSPC)" in message, message
