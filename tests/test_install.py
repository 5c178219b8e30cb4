"""Grammars ship as package data: a non-editable install runs `gpact run --grammar minimal` from any folder."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gpact.expr.grammar import GRAMMAR_DIR, load_grammar, resolve_path

ROOT = Path(__file__).resolve().parents[1]


def test_grammars_live_once_in_the_package():
    assert GRAMMAR_DIR == Path(__file__).resolve().parents[1] / "gpact" / "grammars"
    assert {p.name for p in GRAMMAR_DIR.glob("*.yaml")} >= {"full.yaml", "minimal.yaml"}
    top = ROOT / "grammars"
    assert top.is_symlink() and top.resolve() == GRAMMAR_DIR.resolve()  # the README's grammars/, one copy


@pytest.mark.parametrize("name", ["minimal", "minimal.yaml", "grammars/minimal.yaml"])
def test_shipped_grammars_by_name_from_any_folder(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    assert resolve_path(name) == GRAMMAR_DIR / "minimal.yaml"
    assert load_grammar(name).name == "minimal"


def test_non_editable_install_runs_from_another_folder(tmp_path):
    pytest.importorskip("setuptools")
    pytest.importorskip("wheel")
    src, target, elsewhere = tmp_path / "src", tmp_path / "site", tmp_path / "elsewhere"
    src.mkdir()
    elsewhere.mkdir()
    # a copy of the project, so the in-tree build leaves no build/ or egg-info in the checkout
    shutil.copytree(ROOT / "gpact", src / "gpact", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copyfile(ROOT / name, src / name)
    pip = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "--quiet",
           "--target", str(target), str(src)]
    res = subprocess.run(pip, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert (target / "gpact" / "grammars" / "minimal.yaml").is_file()

    env = {**os.environ, "PYTHONPATH": str(target)}
    where = subprocess.run([sys.executable, "-c", "import gpact; print(gpact.__file__)"], cwd=elsewhere, env=env,
                           capture_output=True, text=True, timeout=60)
    assert where.stdout.strip() == str(target / "gpact" / "__init__.py"), where.stderr
    cmd = [sys.executable, "-m", "gpact", "run", "--grammar", "minimal", "--generations", "1", "--population", "4",
           "--tasks", "smoke", "--train-seeds", "1", "--steps", "20", "--width", "8", "--validation", "", "--test", "",
           "--out", str(tmp_path / "runs"), "--run-id", "installed"]
    res = subprocess.run(cmd, cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert (tmp_path / "runs" / "installed" / "pareto.csv").is_file()
    assert "grammar minimal" in res.stdout
