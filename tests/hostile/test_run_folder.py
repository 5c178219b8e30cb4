"""Hostile run folders (issue 14): whatever is in runs/<id>/ or wherever --out points, gpact answers with exit
status 2 and one line naming the file, runs nothing from it, leaves no half-made folder and damages no run.
One process per folder (a lock that kill -9 cannot leave stale), through the real command line."""

import csv
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from gpact.cli import main
from gpact.run import lock, rundir, runner, stopping

ROOT = Path(__file__).resolve().parents[2]
HOOK = ROOT / "tests" / "hooked_run.py"
TINY = ["--grammar", "minimal", "--generations", "1", "--population", "8", "--seed", "1", "--tasks", "smoke",
        "--train-seeds", "1", "--steps", "5", "--width", "4", "--validation", "", "--test", "",
        "--evaluator", "reference"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
INJECTED = '"""; __import__("os").system("touch PWNED"); """'


@pytest.fixture(scope="module")
def finished(cli_run):
    """A finished tiny run; tests work on copies of it."""
    return cli_run(TINY, "done")


@pytest.fixture
def run_dir(finished, tmp_path):
    path = tmp_path / "runs" / "r"
    shutil.copytree(finished, path)
    return path


def _refused(args, needle, *, unchanged=()):
    """`gpact ARGS` exits 2 with one line on stderr that contains `needle`; the files `unchanged` keep their bytes."""
    before = {p: _content(p) for p in unchanged}
    started = time.monotonic()
    res = CliRunner().invoke(main, [str(a) for a in args])
    assert res.exit_code == 2, res.output
    assert time.monotonic() - started < 10
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpact: error:") and needle in lines[0], res.stderr
    assert "Traceback" not in res.output and isinstance(res.exception, SystemExit)
    for p, data in before.items():
        assert _content(p) == data, p
    return lines[0]


def _content(path):
    """The bytes of a file; of a sparse giant, its size and time (reading it would take the test's time)."""
    st = path.stat()
    return path.read_bytes() if st.st_size < 1 << 24 else (st.st_size, st.st_mtime_ns)


# ---------------------------------------------------------------------------------------------------------
# one process per run folder


def test_a_folder_in_use_is_refused_naming_the_holder_and_freed_after(run_dir):
    held = lock.acquire(run_dir)  # as a running `gpact run` holds it
    ckpt = run_dir / "checkpoint.json"
    line = _refused(["run", "--resume", run_dir, "--generations", "2"], f"pid {os.getpid()}", unchanged=[ckpt])
    assert "in use by another gpact process" in line
    lock.release(held)
    assert not (run_dir / lock.FILE).exists()
    res = CliRunner().invoke(main, ["run", "--resume", str(run_dir), "--generations", "2"])
    assert res.exit_code == 0, res.output
    assert not (run_dir / lock.FILE).exists()  # released on a normal exit


def test_kill_9_leaves_no_stale_lock(run_dir):
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from gpact.run import lock; "
                               f"lock.acquire({str(run_dir)!r}); print('held', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True, env=ENV)
    assert holder.stdout.readline().strip() == "held"
    _refused(["run", "--resume", run_dir], f"pid {holder.pid}")
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    assert (run_dir / lock.FILE).exists()  # the file stays behind, but the kernel dropped the lock
    res = CliRunner().invoke(main, ["run", "--resume", str(run_dir), "--generations", "2"])
    assert res.exit_code == 0, res.output


def test_two_real_runs_of_one_folder_and_sigterm_releases_the_lock(tmp_path):
    """A real `gpact run` paused mid-generation holds its folder: a concurrent resume or a new run there is
    refused and writes nothing; after SIGTERM (exit 143) the lock is gone and the resume runs."""
    marker = tmp_path / "marker"
    marker.mkdir()
    err = open(tmp_path / "stderr", "w")
    proc = subprocess.Popen([sys.executable, str(HOOK), "1", str(marker), "run", *TINY, "--out", str(tmp_path),
                             "--run-id", "x"], stdout=subprocess.DEVNULL, stderr=err, env=ENV)
    deadline = time.monotonic() + 120
    while not (marker / "paused").exists():
        assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "stderr").read_text()
        time.sleep(0.05)
    run_dir = tmp_path / "x"
    logs = [run_dir / "checkpoint.json", run_dir / "candidates.jsonl", run_dir / "generations.jsonl"]
    _refused(["run", "--resume", run_dir], f"pid {proc.pid}", unchanged=logs)
    _refused(["run", *TINY, "--out", tmp_path, "--run-id", "x"], "already exists", unchanged=logs)
    proc.send_signal(signal.SIGTERM)
    (marker / "go").write_text("go")
    assert proc.wait(timeout=120) == 143
    assert not (run_dir / lock.FILE).exists()
    res = CliRunner().invoke(main, ["run", "--resume", str(run_dir)])
    assert res.exit_code == 0, res.output
    gens = [json.loads(line)["generation"] for line in (run_dir / "generations.jsonl").read_text().splitlines()]
    assert gens == [0, 1]  # no generation logged twice


# ---------------------------------------------------------------------------------------------------------
# reading run-folder files back


def _bomb(path):
    path.write_text("[" * 200_000)


def _huge(path):
    with open(path, "wb") as f:  # sparse: no disk used, and gpact must not read it to find out
        f.truncate((1 << 30) + 1)


def _edit(**changes):
    def edit(path):
        data = json.loads(path.read_text())
        for key, value in changes.items():
            if value is None:
                data.pop(key)
            else:
                data[key] = value
        path.write_text(json.dumps(data))
    return edit


@pytest.mark.parametrize("damage, needle", [
    (_bomb, "nested too deeply"),
    (_huge, "larger than"),
    (lambda p: p.write_text("[]"), "expected a JSON object"),
    (lambda p: p.write_bytes(b"\xff\xfe{"), "not readable JSON"),
    (lambda p: p.write_text("9" * 5000), "not readable JSON"),
    (_edit(records=None), "'records' is missing"),
    (_edit(records=[{"key": 1}]), "not a valid checkpoint"),
    (_edit(records=[[1, 2]]), "not a valid checkpoint"),
    (_edit(population=[{"fitness": [1, 2]}]), "not a valid checkpoint"),
    (_edit(population=[{"tree": "__import__('os')", "fitness": [1.0, 2.0], "crowding_dist": 0.0}]),
     "population cannot be restored"),
    (_edit(rng={"python": [3, [1, 2], None], "numpy": [], "torch": "zz"}), "not a valid checkpoint"),
    (_edit(counters={"evaluations": "many"}), "not a valid checkpoint"),
    (_edit(generation="2"), "'generation' is a string"),
    (_edit(generation=-3), "negative generation"),
    (_edit(version=None), "checkpoint version None"),
    (_edit(config={"seed": [1]}), "config"),
])
def test_damaged_checkpoint_is_one_line_naming_it(run_dir, damage, needle):
    ckpt = run_dir / "checkpoint.json"
    damage(ckpt)
    line = _refused(["run", "--resume", run_dir, "--generations", "2"], needle, unchanged=[ckpt])
    assert "checkpoint.json" in line or "config" in needle
    (run_dir / "summary.json").unlink()  # so that show and list read the checkpoint
    if "population" not in needle and "config" not in needle:  # parts only a resume uses
        _refused(["show", run_dir, "--no-plots"], needle)
        _refused(["list", run_dir.parent], needle)


@pytest.mark.parametrize("name, damage, needle", [
    ("config.json", _bomb, "nested too deeply"),
    ("config.json", lambda p: p.write_text('{"grammar": 5}'), "'grammar' is an integer"),
    ("config.json", lambda p: p.write_text("null"), "expected a JSON object"),
    ("summary.json", _huge, "larger than"),
    ("summary.json", _edit(status=["complete"]), "'status' is a list"),
    ("summary.json", _edit(references={"gelu(x)": "good"}), "'references'"),
    ("pareto.csv", lambda p: p.write_text(p.read_text().splitlines()[0] + "\n1,1,1,,,,,1," + "x" * (1 << 20) + "\n"),
     "field larger than field limit"),
    ("pareto.csv", lambda p: p.write_text(p.read_text().replace("\n1,", "\none,", 1)), "not a number"),
    ("pareto.csv", lambda p: p.write_text(p.read_text() + '9,1,1,,,,,1,"a\nb",x,k,gp\n'), "control characters"),
])
def test_damaged_run_files_are_one_line_naming_them(run_dir, name, damage, needle):
    damage(run_dir / name)
    line = _refused(["show", run_dir, "--no-plots"], needle)
    assert name in line
    if name != "pareto.csv":  # list reads the front only of runs without a current summary
        _refused(["list", run_dir.parent], needle)
    else:
        _refused(["export", run_dir, "--format", "sympy"], needle)


def test_a_swapped_grammar_is_refused_and_old_checkpoints_still_resume(run_dir):
    ckpt = run_dir / "checkpoint.json"
    original = (run_dir / "grammar.yaml").read_bytes()
    (run_dir / "grammar.yaml").write_bytes(original + b"\n# swapped\n")
    _refused(["run", "--resume", run_dir, "--generations", "2"], "grammar.yaml: changed", unchanged=[ckpt])
    _refused(["export", run_dir], "grammar.yaml: changed")
    (run_dir / "grammar.yaml").unlink()
    _refused(["run", "--resume", run_dir, "--generations", "2"], "grammar.yaml: missing", unchanged=[ckpt])
    (run_dir / "grammar.yaml").write_bytes(original)
    _edit(grammar_sha256=None)(ckpt)  # a checkpoint written before the hash existed
    res = CliRunner().invoke(main, ["run", "--resume", str(run_dir), "--generations", "2"])
    assert res.exit_code == 0, res.output
    assert json.loads(ckpt.read_text())["grammar_sha256"]


# ---------------------------------------------------------------------------------------------------------
# export writes code only from the parsed tree


def _set_first_row(front, **cells):
    rows = list(csv.DictReader(front.open(newline="")))
    rows[0].update(cells)
    with front.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def test_export_never_writes_front_text_into_code(run_dir, tmp_path, monkeypatch):
    front = run_dir / "pareto.csv"
    _set_first_row(front, formula=INJECTED)
    target = tmp_path / "act.py"
    res = CliRunner().invoke(main, ["export", str(run_dir), "--out", str(target)])
    assert res.exit_code == 0, res.output
    source = target.read_text()
    assert "__import__" not in source and "PWNED" not in source
    monkeypatch.chdir(tmp_path)
    subprocess.run([sys.executable, str(target)], check=True, env=ENV, timeout=120)
    assert not (tmp_path / "PWNED").exists()

    _set_first_row(front, tree='__import__("os").system("touch PWNED")')
    _refused(["export", run_dir, "--out", target], "rank 1")
    assert not (tmp_path / "PWNED").exists()


def test_export_out_under_a_file_is_one_line(run_dir, tmp_path):
    (tmp_path / "afile").write_text("mine")
    _refused(["export", run_dir, "--out", tmp_path / "afile" / "act.py"], "afile")
    assert (tmp_path / "afile").read_text() == "mine"


# ---------------------------------------------------------------------------------------------------------
# failed starts, full disks, read-only folders


def test_out_at_a_file_or_run_id_at_a_file_is_one_line(tmp_path):
    (tmp_path / "afile").write_text("mine")
    _refused(["run", *TINY, "--out", tmp_path / "afile", "--run-id", "x"], "afile")
    _refused(["run", *TINY, "--out", tmp_path, "--run-id", "afile"], "a file of that name exists")
    assert (tmp_path / "afile").read_text() == "mine"


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("existed", [False, True])
def test_a_failed_start_leaves_no_half_made_folder(tmp_path, monkeypatch, existed):
    if existed:
        (tmp_path / "x").mkdir()
    monkeypatch.setattr(runner.shutil, "copyfile", _enospc)  # the disk fills as the grammar is copied
    _refused(["run", *TINY, "--out", tmp_path, "--run-id", "x"], "No space left on device")
    assert (tmp_path / "x").exists() == existed
    assert not existed or not any((tmp_path / "x").iterdir())


def test_a_full_disk_mid_run_keeps_the_checkpoint(run_dir, monkeypatch):
    ckpt = run_dir / "checkpoint.json"
    monkeypatch.setattr(os, "fsync", _enospc)  # every run-folder write fsyncs before it counts
    _refused(["run", "--resume", run_dir, "--generations", "2"], "No space left on device", unchanged=[ckpt])
    assert not (run_dir / lock.FILE).exists()  # released on the way out
    assert not [p for p in run_dir.iterdir() if p.name.endswith(".tmp")]
    monkeypatch.undo()
    res = CliRunner().invoke(main, ["run", "--resume", str(run_dir), "--generations", "2"])
    assert res.exit_code == 0, res.output


def test_a_read_only_run_folder_is_one_line(run_dir, monkeypatch):
    real_open = os.open

    def read_only(path, *args, **kwargs):  # root ignores chmod, so the file system says no here
        if str(path).endswith(lock.FILE):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    _refused(["run", "--resume", run_dir], "Read-only file system", unchanged=[run_dir / "checkpoint.json"])


def test_run_files_share_one_mode(finished):
    modes = {p.name: p.stat().st_mode & 0o777 for p in finished.iterdir() if p.is_file()}
    assert set(modes.values()) == {rundir.FILE_MODE}, modes


# ---------------------------------------------------------------------------------------------------------
# a signal after the last generation


def test_a_signal_during_the_final_report_finishes_it_and_exits_130(tmp_path, monkeypatch, capfd):
    draw = runner.write_plots

    def interrupted_plots(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        return draw(*args, **kwargs)

    monkeypatch.setattr(runner, "write_plots", interrupted_plots)
    res = CliRunner().invoke(main, ["run", *TINY, "--out", str(tmp_path), "--run-id", "s"])
    assert res.exit_code == 130, res.output
    err = capfd.readouterr().err
    assert "finishing its report" in err and "finishing this generation" not in err
    assert (tmp_path / "s" / "summary.json").exists() and not (tmp_path / "s" / lock.FILE).exists()


def test_a_second_signal_during_the_report_abandons_it():
    notes = []
    stopper = stopping.Stopper(runner.RunConfig(), notify=notes.append)
    stopper.reporting()
    stopper._handle(signal.SIGTERM, None)
    with pytest.raises(stopping.Abandoned):
        stopper._handle(signal.SIGTERM, None)
    assert stopper.exit_code == 143 and "abandoning the report" in notes[-1]


def test_show_of_a_read_only_folder_shows_all_but_the_plots(run_dir, monkeypatch):
    from gpact.report import show

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(show, "write_plots", read_only)
    res = CliRunner().invoke(main, ["show", str(run_dir)])
    assert res.exit_code == 0, res.output
    assert "Pareto front" in res.output and "plots: not written (Read-only file system)" in res.output
