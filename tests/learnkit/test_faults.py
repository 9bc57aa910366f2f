"""The fault suite: run state under kills and concurrent runs, hostile names, and errors a user can act
on. (Resume, fingerprints, readers, reports and exports have theirs beside their own tests.)"""

import errno
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from learnkit.cli import build_parser, main
from learnkit.config import load_config
from learnkit.core.children import started_child
from learnkit.core.errors import ConfigError, LearnKitError
from learnkit.core.fsutil import write_json
from learnkit.pipeline.runner import run_lock
from tests.launch import CLI

REPO = Path(__file__).resolve().parents[2]
CONFIG = """
name: {name}
runs_dir: {runs}
data: {{format: {format}, path: {data}{options}}}
ceg:
  encoders:
    llm: {{model: {{tiny_random: {{hidden: 16, layers: 1, heads: 2, seed: 0}}}}, max_tokens: 16}}
"""


def config_file(tmp_path, name="t", data=None, fmt="canonical", options=""):
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "c.yaml"
    path.write_text(
        CONFIG.format(name=name, runs=tmp_path / "runs", data=data or tmp_path / "data", format=fmt, options=options)
    )
    return path


@pytest.mark.parametrize("name", ["../escape", "/tmp/abs", ".", "a/b", ".hidden"])
def test_a_run_name_must_be_a_plain_name(tmp_path, name):
    with pytest.raises(ConfigError, match=r"key 'name': .* is not a plain name"):
        load_config(config_file(tmp_path, name=name))


def test_one_writer_per_run_directory_and_leftovers_cleaned_at_the_next_start(tmp_path, caplog):
    run = tmp_path / "runs" / "t"
    with run_lock(run):
        with pytest.raises(LearnKitError, match=rf"{run} is in use by another learn-kit run \(pid {os.getpid()}"):
            with run_lock(run):
                pass
    # a run killed while holding the lock, in the middle of writing
    script = (
        f"import sys, time; sys.path.insert(0, {str(REPO)!r})\n"
        "from pathlib import Path\nfrom learnkit.pipeline.runner import run_lock\n"
        f"run = Path({str(run)!r})\n"
        "with run_lock(run):\n"
        "    (run / 'pch' / '.step-00000004.partial').mkdir(parents=True)\n"
        "    (run / 'data' / '.events.parquet.x1y2.tmp').parent.mkdir()\n"
        "    (run / 'data' / '.events.parquet.x1y2.tmp').write_text('half')\n"
        "    print('writing', flush=True)\n    time.sleep(60)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "writing"
    with pytest.raises(LearnKitError, match=rf"in use by another learn-kit run \(pid {child.pid} since"):
        with run_lock(run):
            pass
    child.kill()
    child.wait()
    with run_lock(run):  # the kernel released the dead holder's lock
        assert not (run / "pch" / ".step-00000004.partial").exists()
        assert not (run / "data" / ".events.parquet.x1y2.tmp").exists()
    assert "pch/.step-00000004.partial, left behind by a killed run" in caplog.text
    assert "data/.events.parquet.x1y2.tmp, left behind by a killed run" in caplog.text


def _alive(pid):
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return not re.search(r"State:\s+Z", state)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_child_dies_with_its_parent(tmp_path):
    pid_file = tmp_path / "child.pid"
    (tmp_path / "child.py").write_text(
        f"import os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\ntime.sleep(60)\n"
    )
    script = (
        f"import sys; sys.path.insert(0, {str(REPO)!r})\nfrom learnkit.core.children import started_child\n"
        f"with started_child([sys.executable, {str(tmp_path / 'child.py')!r}]) as child:\n    child.wait()\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.time() + 20
    while not (pid_file.is_file() and pid_file.read_text()) and time.time() < deadline:
        time.sleep(0.05)
    child = int(pid_file.read_text())
    assert _alive(child)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.time() + 5
    while _alive(child) and time.time() < deadline:
        time.sleep(0.05)
    assert not _alive(child)


def test_a_background_child_is_killed_when_the_work_beside_it_fails():
    with pytest.raises(RuntimeError, match="the export beside it failed"):
        with started_child([sys.executable, "-c", "import time; time.sleep(60)"]) as child:
            pid = child.pid
            assert _alive(pid)
            raise RuntimeError("the export beside it failed")
    assert not _alive(pid) and child.returncode == -signal.SIGKILL


def test_user_errors_are_one_line_with_exit_code_2(tmp_path, caplog, capsys):
    assert main(["run", str(config_file(tmp_path, data=tmp_path / "nowhere"))]) == 2
    assert "key 'data.path': " in caplog.text and "does not exist" in caplog.text
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "items.csv").write_text("item_id,title,title\ni1,A,B\n")
    (tmp_path / "data" / "events.csv").write_text("user_id,item_id,ts,label\nu1,i1,1700000000,1\n")
    assert main(["run", str(config_file(tmp_path, options=", options: {min_rating: 3}"))]) == 2
    assert "key 'data.options.min_rating': not an option of the canonical importer (its options: none)" in caplog.text
    assert main(["run", str(config_file(tmp_path))]) == 2
    assert "items.csv: malformed header: column 'title' appears twice" in caplog.text
    assert "Traceback" not in capsys.readouterr().err


def test_a_full_disk_names_the_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    target = tmp_path / "metrics.json"
    write_json(target, {"old": 1})

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", no_space)
    with pytest.raises(LearnKitError, match=rf"{target}: No space left on device \(ENOSPC\) while writing it"):
        write_json(target, {"new": 2})
    monkeypatch.undo()
    assert target.read_text().strip().replace(" ", "").replace("\n", "") == '{"old":1}'
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temporary file left behind


def test_every_command_a_message_suggests_exists():
    """Each `learn-kit <command> <arguments>` in a message, docstring or the CLI help parses with the real
    parser (a bare `learn-kit run` names the command in prose)."""
    parser = build_parser()
    found = set()
    for source in [
        *REPO.glob("learnkit/**/*.py"),
        *REPO.glob("learn_embed/*.py"),
        *REPO.glob("export/*.py"),
        *REPO.glob("ranking/*.py"),
        *REPO.glob("eval/*.py"),
    ]:
        for command in re.findall(r"`(learn-kit [^`]+)`", source.read_text()):
            # placeholders: a stage name where one goes, else a config path
            command = re.sub(r"\{(dep|name|stage)\}", "data", command)
            found.add(re.sub(r"\{[^}]*\}", "x.yaml", command))
    assert len(found) >= 5, found
    for command in sorted(found):
        mandatory = command.split("[", 1)[0]  # a usage line's optional parts aside
        args = ["x.yaml" if a in ("CONFIG", "DIR") else a for a in shlex.split(mandatory)[1:] if a != "..."]
        if len(args) < 2:
            continue
        try:
            parser.parse_args(args)
        except SystemExit as exc:
            pytest.fail(f"`{command}` does not parse (exit {exc.code})")


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["data", "ceg"])
def test_a_run_killed_inside_a_stage_reruns_it_to_the_same_outputs(tmp_path, shared_data, isolated_cache, stage):
    data = tmp_path / "data"
    data.mkdir()
    inter = (shared_data / "ml-100k" / "ml-100k.inter").read_text().splitlines()[1:400]
    items = {line.split("\t")[1] for line in inter}
    (data / "items.csv").write_text("item_id,title\n" + "".join(f"{i},Movie {i}\n" for i in sorted(items)))
    (data / "events.csv").write_text(
        "user_id,item_id,ts,label\n"
        + "".join(f"{u},{i},{t},{int(float(r) >= 4)}\n" for u, i, r, t in (line.split("\t") for line in inter))
    )
    clean, killed = config_file(tmp_path / "a", data=data), config_file(tmp_path / "b", data=data)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    assert subprocess.run([*CLI, "run", str(clean)], env=env, capture_output=True).returncode == 0
    run = tmp_path / "b" / "runs" / "t"
    process = subprocess.Popen(
        [*CLI, "run", str(killed)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while not (run / stage / "_running.json").is_file() and time.time() < deadline:
        time.sleep(0.01)
    process.kill()  # inside the stage: it has started and not finished
    process.wait()
    assert not (run / stage / "_stage.json").exists()
    again = subprocess.run([*CLI, "run", str(killed)], env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]
    for name in ("data/events.parquet", "data/items.parquet", "ceg/llm/part-00000-of-00001.parquet"):
        import pyarrow.parquet as pq

        assert pq.read_table(run / name).equals(pq.read_table(tmp_path / "a" / "runs" / "t" / name)), name
    assert not [p for p in run.rglob("*") if p.name.endswith((".partial", ".tmp"))]


SMALL = """
name: t
runs_dir: {runs}
data: {{format: canonical, path: {data}}}
ceg:
  encoders:
    llm: {{model: {{tiny_random: {{hidden: 16, layers: 1, heads: 2, seed: 0}}}}, max_tokens: 16}}
i2i: {{k: 3, queries: 1{i2i}}}
pch:
  model: {{width: 16, layers: 1, heads: 2, out_dim: 16}}
  train: {{epochs: 1, batch_size: 8}}
  train_before_test_period: true
  methods:
    learn_llm: {{encoder: llm}}
test_period: {{start_quantile: 0.8{period}}}
export: {{method: learn_llm, content_model: false}}
ranking: {{train: {{epochs: 1}}}}
ab: {{}}
"""


def small_run(tmp_path, users, per_user, label=lambda u, j: (u + j) % 2, i2i="", period=""):
    data = tmp_path / "data"
    data.mkdir()
    (data / "items.csv").write_text("item_id,title,category\n" + "".join(f"i{k},Item {k},c{k % 3}\n" for k in range(6)))
    (data / "events.csv").write_text(
        "user_id,item_id,ts,label\n"
        + "".join(
            f"u{u},i{(u + j) % 6},{1700000000 + 10 * u + 1000 * j},{label(u, j)}\n"
            for u in range(users)
            for j in range(per_user)
        )
    )
    config = tmp_path / "c.yaml"
    config.write_text(SMALL.format(runs=tmp_path / "runs", data=data, i2i=i2i, period=period))
    return config


@pytest.mark.parametrize(
    "users, per_user, label, i2i, period, message",
    [
        (3, 4, lambda u, j: (u + j) % 2, "", "",
         r"ranking: no user has both a conversion and a non-conversion in the test period: UAUC is undefined; "
         r"ab: the A/B test needs at least 2 users in each arm; 3 users have test-period events"),
        (20, 6, lambda u, j: 0, "", "",
         r"ranking: the ranker needs both labels in its training rows \(before the test period\); they hold no "
         r"label 1 \(conversions\)"),
        (20, 6, lambda u, j: (u + j) % 2, "", ", start_ts: 1900000000",
         r"test_period: the test period \(events from ts 1900000000 on\) holds no events"),
        (20, 6, lambda u, j: (u + j) % 2, ", label_column: genre", "",
         r"i2i: key 'i2i.label_column': the items have no column 'genre' \(they have: title, category"),
    ],
)  # fmt: skip
def test_data_a_stage_cannot_use_is_refused_before_any_stage_trains(
    tmp_path, isolated_cache, caplog, users, per_user, label, i2i, period, message
):
    config = small_run(tmp_path, users, per_user, label, i2i, period)
    assert main(["run", str(config)]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "\n" not in errors[0]
    assert re.search(rf"data/events.parquet: the data cannot serve the configured stages: .*{message}", errors[0])
    run = tmp_path / "runs" / "t"
    assert (run / "data" / "_stage.json").is_file() and not (run / "ceg").exists()  # refused right after data
    assert main(["pch", "--config", str(config)]) == 2  # a stage run alone is checked the same way
    assert not (run / "ceg").exists()


def test_changed_raw_files_are_never_read_through_old_tables_whichever_command_runs(tmp_path, isolated_cache, caplog):
    config = small_run(tmp_path, 20, 6)
    config.write_text(config.read_text().split("pch:")[0])  # data, ceg and i2i: enough to show the mechanism
    assert main(["run", str(config)]) == 0
    events = tmp_path / "data" / "events.csv"
    events.write_text(events.read_text().replace("u0,i0,1700000000,0", "u0,i0,1700000000,1"))
    for command in (["i2i", "--config", str(config)], ["run", str(config), "--only", "i2i"]):
        caplog.clear()
        assert main(command) == 2
        assert (
            "stage 'i2i' would read the outputs of stage 'data', which is out of date (changed since it ran: "
            "external.events.csv)"
        ) in caplog.text
    assert main(["run", str(config)]) == 0  # the whole run brings every stage up to date
    assert main(["i2i", "--config", str(config)]) == 0
