"""The Ray backend on CPU: a local Ray (2 CPUs) with a worker killed mid-chunk, and a two-node cluster on loopback.

Ray takes seconds to start on a small machine, so there are few tests here and each starts Ray once. Nothing
runs `ray stop` (it would stop every Ray of this user on the machine): the cluster's `ray start --block`
processes are ended by their ids, which stops the Ray processes they started.
"""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from faults import use_faults

from gpact.backends.base import SerialBackend
from gpact.backends.ray_pool import RayBackend
from gpact.backends.worker import ROOT
from gpact.cli import main
from gpact.config import TrainConfig
from gpact.expr.grammar import load_grammar
from gpact.expr.trees import analyse, formula_to_sympy
from gpact.train.fitness import WORST
from gpact.train.tasks import make_suite

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.timeout(900)

TINY = ["run", "--grammar", "minimal", "--generations", "1", "--population", "8", "--seed", "3", "--tasks", "smoke",
        "--train-seeds", "1", "--steps", "5", "--width", "4", "--validation", "validation:2", "--test", "test:2"]
CFG = TrainConfig(width=4, steps=5)
RAY_BIN = str(Path(sys.executable).with_name("ray")) if Path(sys.executable).with_name("ray").exists() \
    else shutil.which("ray") or "ray"


def _serial_run(tmp_path: Path) -> Path:
    res = CliRunner().invoke(main, [*TINY, "--out", str(tmp_path), "--run-id", "serial"])
    assert res.exit_code == 0, res.output
    return tmp_path / "serial"


def _same_results(a: Path, b: Path) -> None:
    for name in ("pareto.csv", "candidates.jsonl"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_local_ray_run_with_a_killed_worker_matches_serial(tmp_path, monkeypatch):
    serial = _serial_run(tmp_path)
    use_faults(monkeypatch, "kill_chunk_0_once")  # every call's first chunk: its actor dies once, the retry runs
    res = CliRunner().invoke(main, [*TINY, "--out", str(tmp_path), "--run-id", "ray", "--backend", "ray",
                                    "--workers", "2"])
    assert res.exit_code == 0, res.output
    assert "chunk attempts failed" in res.output and "Ray worker lost" in res.output
    _same_results(tmp_path / "ray", serial)
    assert not ray.is_initialized()  # the backend started Ray, so it stopped it


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _ray_start(args: list[str], log: Path, env: dict) -> subprocess.Popen:
    """`ray start ... --block` in the background; returns once the node is up."""
    ports = _free_ports(6)
    cmd = [RAY_BIN, "start", "--block", "--num-cpus=1", "--object-store-memory=100000000", "--disable-usage-stats",
           "--min-worker-port=0", "--max-worker-port=0", f"--node-manager-port={ports[0]}",
           f"--object-manager-port={ports[1]}", f"--dashboard-agent-listen-port={ports[2]}",
           f"--dashboard-agent-grpc-port={ports[3]}", f"--metrics-export-port={ports[4]}",
           f"--runtime-env-agent-port={ports[5]}", *args]
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 240
    while "Ray runtime started" not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"ray start failed:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    return proc


def _stop(procs: list[subprocess.Popen], temp: str) -> None:
    """End the `ray start --block` processes (they stop their nodes), then any leftover process of this
    cluster, found by its unique temp dir in the command line; by process id only."""
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(60)
        except subprocess.TimeoutExpired:
            p.kill()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if temp in cmdline and int(pid) != os.getpid():
            try:
                os.kill(int(pid), 9)
            except OSError:
                pass


@pytest.fixture(scope="module")
def two_node_cluster(tmp_path_factory):
    """A head node and one more node (`ray start --address=...`), 1 CPU each, on 127.0.0.1."""
    logs = tmp_path_factory.mktemp("ray")
    temp = tempfile.mkdtemp(prefix="gpr", dir="/tmp")  # short path: Ray puts unix sockets under it
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))}
    (port,) = _free_ports(1)
    procs = []
    try:
        procs.append(_ray_start(["--head", f"--port={port}", "--node-ip-address=127.0.0.1",
                                 "--include-dashboard=false", f"--temp-dir={temp}"], logs / "head.log", env))
        procs.append(_ray_start([f"--address=127.0.0.1:{port}", "--node-ip-address=127.0.0.1"],
                                logs / "node.log", env))
        yield f"127.0.0.1:{port}"
    finally:
        if ray.is_initialized():
            ray.shutdown()
        _stop(procs, temp)
        shutil.rmtree(temp, ignore_errors=True)


def test_two_node_cluster_run_matches_serial(tmp_path, two_node_cluster):
    serial = _serial_run(tmp_path)
    res = CliRunner().invoke(main, [*TINY, "--out", str(tmp_path), "--run-id", "cluster", "--backend", "ray",
                                    "--ray-address", two_node_cluster])
    assert res.exit_code == 0, res.output
    _same_results(tmp_path / "cluster", serial)


def test_two_node_cluster_faults_and_nodes(two_node_cluster, monkeypatch):
    """Chunk 0's actor dies on every attempt: WORST with the reason; chunk 1's hangs once: timed out, re-run.
    Actors run on both nodes."""
    g = load_grammar("minimal")
    tasks = make_suite("smoke", n_train=32, n_ood=32, seed=0)
    exprs = [analyse(formula_to_sympy(f, g), g).expr for f in ("gelu(x)", "x*tanh(x)", "sin(x) + x", "tanh(x)")]
    serial = SerialBackend().evaluate(exprs, g, tasks, [0], CFG)
    chunk_fn = use_faults(monkeypatch, "kill_chunk_0_hang_chunk_1")
    with RayBackend(address=two_node_cluster, chunk_timeout=20, chunk_fn=chunk_fn) as b:
        fits = b.evaluate(exprs, g, tasks, [0], CFG)
        assert len(b.nodes) == 2
    assert fits[2:] == serial[2:]
    assert all(f.ood_score == WORST and f.reason.startswith("Ray worker lost") for f in fits[:2])
    assert "twice" in fits[0].reason
