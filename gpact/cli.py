"""Command line: thin click commands that parse options, call one library function and print.

Every GpactError (bad grammar, formula, config, run folder) and every OSError (a full disk, a read-only
folder) becomes one line on stderr and exit status 2; Ctrl-C before a command handles it, one line and 130.
Nothing heavy (torch, sympy) is imported at the top, so a Ctrl-C while it loads lands in these handlers.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import TYPE_CHECKING

import click

from gpact.config import OBJECTIVES, STRATEGIES, LLMConfig, ProtocolDist, RunConfig, TrainConfig
from gpact.errors import GpactError

if TYPE_CHECKING:
    from gpact.run.estimate import StartEstimate

TASKS_HELP = ("Comma-separated task suites, task names (library ones too: rational/3, feynman/I.12.4), "
              "seeded draws across families (random:N or random:N@SEED) or of a family split's part "
              "(search:N, validation:N, test:N, optionally @SEED); see docs/tasks.md.")


class _Group(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except GpactError as exc:
            click.echo(f"gpact: error: {_one_line(str(exc))}", err=True)
            sys.exit(2)
        except OSError as exc:  # the file system said no (a full disk, a read-only or missing folder)
            where = f": {exc.filename}" if exc.filename else ""
            click.echo(f"gpact: error: {exc.strerror or exc}{where}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:  # Ctrl-C before a command's own handlers are in place (imports, a checkpoint)
            click.echo("gpact: interrupted", err=True)
            sys.exit(130)


def _one_line(message: str, limit: int = 1000) -> str:
    """An error as one line of bounded length, whatever input it quotes (a formula, a file's line)."""
    message = " ".join(message.splitlines())
    return message if len(message) <= limit else f"{message[:limit // 2]} ... {message[-limit // 2:]}"


@click.group(cls=_Group)
@click.version_option(package_name="gpact")
def main() -> None:
    """gpact: genetic-programming search for activation functions, scored out of distribution."""


# Commands are added below, one function each; keep them thin.


@main.command()
@click.option("--grammar", "-g", default="grammars/full.yaml", show_default=True,
              help="Grammar file, or the name of a shipped one (full, minimal, ...).")
@click.option("--generations", type=int, default=RunConfig.generations, show_default=True,
              help="Generations after the initial population (on --resume: the new total).")
@click.option("--strategy", type=click.Choice(list(STRATEGIES)), default=RunConfig.strategy, show_default=True,
              help="How the next candidates are chosen: gp (NSGA-II over trees), surrogate (train the best-predicted "
                   "functions of the grammar's template space; AQuaSurF).")
@click.option("--time-limit", default="0", show_default=True,
              help="Stop at the first generation boundary after this wall time (90s, 30m, 2h); 0: none.")
@click.option("--max-evals", type=int, default=RunConfig.max_evals, show_default=True,
              help="Stop at the first generation boundary after training this many functions; 0: none.")
@click.option("--resume", "resume", type=click.Path(file_okay=False), default=None,
              help="Continue the run in this folder from its checkpoint; other options given change its config "
                   "(only limits, device and evaluator may differ).")
@click.option("--population", type=int, default=RunConfig.population, show_default=True,
              help="Rounded up to a multiple of 4.")
@click.option("--seed", type=int, default=RunConfig.seed, show_default=True)
@click.option("--tasks", default=RunConfig.tasks, show_default=True,
              help="The search tasks (selected on): 'search:N' draws N tasks of the run's search families "
                   "(docs/tasks.md); or " + TASKS_HELP[0].lower() + TASKS_HELP[1:])
@click.option("--train-seeds", type=int, default=RunConfig.train_seeds, show_default=True,
              help="Network initialisations per task (the score takes their median).")
@click.option("--protocol", type=click.Choice(["random", "fixed"]), default="random", show_default=True,
              help="random: each (task, seed) network draws width, depth, steps and lr from the run's distribution "
                   "(docs/design.md §5); fixed: all train alike. --width/--depth/--steps/--lr given pin theirs.")
@click.option("--steps", type=int, default=None, help="Training steps per network [default: random: "
              f"{'/'.join(map(str, ProtocolDist.steps))}; fixed: {RunConfig().train.steps}].")
@click.option("--width", type=int, default=None, help="Hidden width of the MLPs [default: random: "
              f"{'/'.join(map(str, ProtocolDist.widths))}; fixed: {RunConfig().train.width}].")
@click.option("--depth", type=int, default=None, help="Hidden layers of the MLPs [default: random: "
              f"{'/'.join(map(str, ProtocolDist.depths))}; fixed: {RunConfig().train.depth}].")
@click.option("--lr", type=float, default=None, help="Adam learning rate [default: random: "
              f"{'/'.join(map(str, ProtocolDist.lrs))}; fixed: {RunConfig().train.lr}].")
@click.option("--evaluator", type=click.Choice(["auto", "reference", "batched"]), default="auto", show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--validation", default=RunConfig.validation, show_default=True,
              help="Tasks that pick the recommended function among the front (never searched on); '' to skip. "
                   "'validation:N' draws N tasks of the run's validation families.")
@click.option("--test", default=RunConfig.test, show_default=True,
              help="Tasks the front is reported on and nothing is selected on; '' to skip. 'test:N' draws N "
                   "tasks of the run's test families.")
@click.option("--race-eta", type=int, default=RunConfig.race_eta, show_default=True,
              help="Racing: the best 1/ETA of a generation's new functions at each stage train on ETA times more "
                   "networks; 1: every function trains on every network.")
@click.option("--race-start", type=int, default=RunConfig.race_start, show_default=True,
              help="Racing: networks (task, seed) each new function trains on first.")
@click.option("--prescreen", type=int, default=RunConfig.prescreen, show_default=True,
              help="gp: make K times the children and train the surrogate's predicted best share (plus a few random "
                   "ones); 0: off.")
@click.option("--max-networks", type=int, default=RunConfig.max_networks, show_default=True,
              help="Stop at the first generation boundary after the search trained this many networks; 0: none.")
@click.option("--objective", type=click.Choice(list(OBJECTIVES)), default=RunConfig.objective, show_default=True,
              help="tail: ratio to GELU with a tail term for the worst quarter of networks; geomean: geometric mean "
                   "OOD loss (gpact before 0.2).")
@click.option("--out", "out_dir", default=RunConfig.out_dir, show_default=True, help="Folder for run folders.")
@click.option("--run-id", default="", help="Name of the run folder [default: date-grammar-seed].")
@click.option("--llm-base-url", default=None, help="OpenAI-compatible server for LLM crossover, e.g. "
              "http://localhost:8000/v1 (vLLM), http://localhost:11434/v1 (Ollama). See docs/llm.md.")
@click.option("--llm-model", default=None, help="Model name as the server knows it.")
@click.option("--llm-api-key-env", default=LLMConfig.api_key_env, show_default=True,
              help="Environment variable holding the API key (local servers need none).")
@click.option("--llm-rate", type=float, default=LLMConfig.rate, show_default=True,
              help="Probability that a crossover is done by the LLM.")
@click.option("--llm-mutation-rate", type=float, default=LLMConfig.mutation_rate, show_default=True,
              help="Probability that a mutation is done by the LLM.")
@click.option("--llm-max-calls", type=int, default=LLMConfig.max_calls, show_default=True,
              help="LLM requests per run, cached ones included.")
@click.option("--llm-timeout", type=float, default=LLMConfig.timeout, show_default=True,
              help="Seconds per LLM request (no retries).")
@click.option("--backend", type=click.Choice(["serial", "process", "ray"]), default="serial", show_default=True,
              help="Where candidates train: this process, local worker processes, or Ray (docs/scaleout.md).")
@click.option("--workers", type=int, default=0, show_default=True,
              help="Worker processes / Ray actors; 0: one per GPU, else one per CPU core.")
@click.option("--ray-address", default="", help="Ray cluster to join ('auto' or host:port) [default: start a "
              "local Ray].")
@click.option("--chunk-timeout", type=float, default=0.0, show_default=True,
              help="Seconds a worker may spend on one chunk before it is replaced and the chunk re-run; 0: no limit.")
def run(grammar, generations, time_limit, max_evals, resume, population, seed, tasks, train_seeds, steps, width,
        evaluator, device, validation, test, race_eta, race_start, max_networks, prescreen, objective, out_dir,
        run_id,
        llm_base_url, llm_model, llm_api_key_env, llm_rate, llm_mutation_rate, llm_max_calls, llm_timeout, backend,
        workers, ray_address, chunk_timeout, strategy, protocol, depth, lr):
    """Search for activation functions; print and save the Pareto front (OOD score vs FLOPs).

    Ctrl-C (or SIGTERM) finishes the current generation, writes the checkpoint and exits with 130 (143);
    a second one abandons the generation. `gpact run --resume runs/<id>` continues.
    """
    from gpact.run.estimate import check_population
    from gpact.run.stopping import parse_duration

    if resume:
        from gpact.run.runner import run as run_search

        result = run_search(_resume_config(click.get_current_context(), resume), echo=click.echo, resume=resume)
        sys.exit(result.exit_code)
    train, dist = _training(protocol, width=width, depth=depth, steps=steps, lr=lr)
    cfg = RunConfig(grammar=grammar, generations=generations, time_limit=parse_duration(time_limit),
                    max_evals=max_evals, population=population, seed=seed, tasks=tasks,
                    train_seeds=train_seeds, train=train, evaluator=evaluator, device=device, validation=validation,
                    test=test, objective=objective, race_eta=race_eta, race_start=race_start,
                    max_networks=max_networks, prescreen=prescreen,
                    out_dir=out_dir, run_id=run_id,
                    llm=LLMConfig(base_url=llm_base_url, model=llm_model, api_key_env=llm_api_key_env, rate=llm_rate,
                                  mutation_rate=llm_mutation_rate, max_calls=llm_max_calls, timeout=llm_timeout),
                    backend=backend, workers=workers, ray_address=ray_address, chunk_timeout=chunk_timeout,
                    strategy=strategy)
    cfg = dataclasses.replace(cfg, protocol=dist)
    _announce(check_population(cfg.mu), cfg.mu)  # before the runner's imports: a refusal is at once
    from gpact.run.runner import run as run_search

    sys.exit(run_search(cfg, echo=click.echo).exit_code)


def _announce(est: StartEstimate, population: int) -> None:
    """A line before a long, silent initial population (gpact.run.estimate)."""
    from gpact.run.estimate import ANNOUNCE_SECONDS

    if est.seconds > ANNOUNCE_SECONDS:
        click.echo(f"gpact: building the initial population of {population} functions: {est.describe()}")


def _training(choice: str, **pins) -> tuple[TrainConfig, ProtocolDist]:
    """The run's TrainConfig and protocol distribution; a pin given (width=32) fixes that field for all networks."""
    given = {k: v for k, v in pins.items() if v is not None}
    dist = ProtocolDist() if choice == "random" else ProtocolDist.fixed()
    fields = {"width": "widths", "depth": "depths", "steps": "steps", "lr": "lrs"}
    return (dataclasses.replace(RunConfig().train, **given),
            dataclasses.replace(dist, **{fields[k]: () for k in given}))  # (): the TrainConfig's value


# `gpact run` options whose config key differs from the option name; the rest map one to one.
_CONFIG_KEYS = {"steps": "train.steps", "width": "train.width", "depth": "train.depth", "lr": "train.lr",
                "out_dir": "out_dir",
                **{f"llm_{k}": f"llm.{k}" for k in ("base_url", "model", "api_key_env", "rate", "mutation_rate",
                                                     "max_calls", "timeout")}}


def _resume_config(ctx: click.Context, run_dir: str) -> RunConfig:
    """The run's saved config, changed by the options given on this command line (not by defaults)."""
    from click.core import ParameterSource

    from gpact.run.checkpoint import resume_config
    from gpact.run.stopping import parse_duration

    overrides = {}
    for name, value in ctx.params.items():
        if name == "resume" or ctx.get_parameter_source(name) != ParameterSource.COMMANDLINE:
            continue
        overrides[_CONFIG_KEYS.get(name, name)] = parse_duration(value) if name == "time_limit" else value
        if name == "protocol":
            overrides[name] = dataclasses.asdict(_training(value)[1])
    return resume_config(run_dir, overrides)


@main.command(name="show")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--no-plots", is_flag=True, help="Don't draw missing plots.")
def show_cmd(run_dir, no_plots):
    """Summary, Pareto front and plots of the run in RUN_DIR (runs/<id>)."""
    from gpact.report.show import show_run

    click.echo(show_run(run_dir, plots=not no_plots))


@main.command(name="list")
@click.argument("root", type=click.Path(file_okay=False), default="runs")
def list_cmd(root):
    """Runs under ROOT (default runs/): date, grammar, generations, evaluations, best score, status."""
    from gpact.report.show import format_list, list_runs

    click.echo(format_list(list_runs(root)))


@main.command(name="export")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--rank", "-k", type=int, default=None,
              help="Front member (1: best search score) [default: the run's recommended function, else 1].")
@click.option("--format", "fmt", type=click.Choice(["torch", "python", "sympy", "latex"]), default="torch",
              show_default=True, help="torch/python: a .py file with an nn.Module that imports only torch.")
@click.option("--trainable", is_flag=True, help="torch/python: constants as trainable nn.Parameters.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), default=None,
              help="File to write [default: RUN_DIR/export/rank<K>.py for torch/python; stdout otherwise].")
def export_cmd(run_dir, rank, fmt, trainable, out_path):
    """Export a front member of the run in RUN_DIR (its recommended function unless --rank is given) as torch
    module source, sympy or LaTeX."""
    from pathlib import Path

    from gpact.report.export import default_path, export, front_member
    from gpact.run.rundir import write_text

    member = front_member(run_dir, rank)
    text = export(member, fmt, trainable=trainable)
    if out_path is None and fmt in ("sympy", "latex"):
        click.echo(text, nl=False)
        return
    path = Path(out_path) if out_path else default_path(member, fmt)
    write_text(path, text)
    click.echo(f"wrote {path}  (rank {member.rank}: {member.formula})")


# ---------------------------------------------------------------------------------------------------------
# Scoring fixed formulas, known activations, template spaces, transfer to real data


def _score_options(f):
    """Options shared by `gpact eval` and `gpact baselines`."""
    D = TrainConfig()  # gpact.train.mlp.DEFAULT_CONFIG, without importing torch

    opts = [
        click.option("--tasks", default="default", show_default=True, help=TASKS_HELP),
        click.option("--seeds", type=int, default=5, show_default=True, help="Network initialisations per task."),
        click.option("--width", type=int, default=D.width, show_default=True, help="Hidden width of the MLPs."),
        click.option("--depth", type=int, default=D.depth, show_default=True, help="Hidden layers."),
        click.option("--steps", type=int, default=D.steps, show_default=True, help="Training steps per network."),
        click.option("--lr", type=float, default=D.lr, show_default=True, help="Adam learning rate."),
        click.option("--evaluator", type=click.Choice(["auto", "reference", "batched"]), default="auto",
                     show_default=True),
        click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True),
        click.option("--jobs", type=int, default=1, show_default=True,
                     help="Worker processes (one seed each); same numbers as 1."),
        click.option("--csv", "csv_path", type=click.Path(dir_okay=False), default=None,
                     help="Also write the table, with per-seed and per-task scores, as CSV."),
        click.option("--markdown", is_flag=True, help="Print the table as GitHub markdown."),
        click.option("--per-task", is_flag=True, help="Also print each task's loss relative to GELU."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def _score_and_print(items, grammar, tasks, seeds, width, depth, steps, lr, evaluator, device, jobs, csv_path,
                     markdown, per_task, sort):
    from gpact.config import TrainConfig
    from gpact.report.scores import format_per_task, format_table, to_csv
    from gpact.train.scoring import score_formulas

    def progress(done: int, total: int) -> None:
        click.echo(f"seed {done}/{total} done", err=True)

    cfg = TrainConfig(width=width, depth=depth, steps=steps, lr=lr)
    table = score_formulas(items, grammar=grammar, tasks=tasks, seeds=seeds, cfg=cfg, evaluator=evaluator,
                           device=device, jobs=jobs, progress=progress)
    click.echo(format_table(table, sort=sort, markdown=markdown))
    if per_task:
        click.echo("\n" + format_per_task(table, sort=sort, markdown=markdown))
    if csv_path:
        with open(csv_path, "w") as fh:
            fh.write(to_csv(table))


@main.command(name="eval")
@click.argument("formulas", nargs=-1)
@click.option("--file", "-f", "formula_file", type=click.File(encoding="utf-8", errors="replace"), default=None,
              help="Read formulas from a file, one per line ('#' comments), e.g. from `gpact enumerate --out`.")
@click.option("--grammar", "-g", default="full", show_default=True, help="Grammar the formulas are written in.")
@_score_options
def eval_(formulas, formula_file, grammar, tasks, seeds, width, depth, steps, lr, evaluator, device, jobs, csv_path,
          markdown, per_task):
    """Score FORMULAS (or baseline names such as gmtu) on the task suite, against GELU, over seeds.

    Example: gpact eval "gelu(x) + 0.1*sin(x)" gmtu --seeds 5
    """
    items = list(formulas)
    if formula_file is not None:
        items += [line.strip() for line in formula_file if line.strip() and not line.lstrip().startswith("#")]
    if not items:
        raise click.UsageError("give at least one formula (or --file)")
    _score_and_print(items, grammar, tasks, seeds, width, depth, steps, lr, evaluator, device, jobs, csv_path,
                     markdown, per_task, sort=False)


@main.command(name="baselines")
@click.option("--only", default=None, help="Comma-separated baseline names [default: all].")
@_score_options
def baselines_cmd(only, tasks, seeds, width, depth, steps, lr, evaluator, device, jobs, csv_path, markdown, per_task):
    """Score the library of known activations (gpact/baselines.py), best first relative to GELU."""
    from gpact.train.baselines import BASELINE_GRAMMAR, BASELINES, get

    names = [get(n.strip()).name for n in only.split(",")] if only else list(BASELINES)
    _score_and_print(names, BASELINE_GRAMMAR, tasks, seeds, width, depth, steps, lr, evaluator, device, jobs,
                     csv_path, markdown, per_task, sort=True)


_T = RunConfig().train  # crossval trains as the search does


@main.command(name="crossval")
@click.argument("formulas", nargs=-1, required=True)
@click.option("--families", default="", help="Comma-separated families (split units) [default: all 14].")
@click.option("--per-family", type=int, default=5, show_default=True, help="Tasks drawn per family.")
@click.option("--seeds", type=int, default=5, show_default=True, help="Network initialisations per task.")
@click.option("--task-seed", type=int, default=0, show_default=True, help="Seed of the task draw.")
@click.option("--width", type=int, default=_T.width, show_default=True, help="Hidden width of the MLPs.")
@click.option("--depth", type=int, default=_T.depth, show_default=True, help="Hidden layers.")
@click.option("--steps", type=int, default=_T.steps, show_default=True, help="Training steps per network.")
@click.option("--lr", type=float, default=_T.lr, show_default=True, help="Adam learning rate.")
@click.option("--evaluator", type=click.Choice(["auto", "reference", "batched"]), default="auto", show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), default=None,
              help="Also write every (formula, family, seed) log-ratio as CSV.")
@click.option("--markdown", is_flag=True, help="Print the table as GitHub markdown.")
def crossval_cmd(formulas, families, per_family, seeds, task_seed, width, depth, steps, lr, evaluator, device,
                 csv_path, markdown):
    """Ratio of FORMULAS (or baseline names) to GELU on each task family held out on its own, over seeds.

    Example: gpact crossval gelu_sine gmtu "x*sigmoid(2*x)" --families rational,damped,feynman-III
    """
    import time

    from gpact.config import TrainConfig
    from gpact.report.crossval import format_table, to_csv
    from gpact.train.crossval import crossval
    from gpact.train.library import UNITS

    units = [u.strip() for u in families.split(",") if u.strip()] if families else list(UNITS)
    start = time.perf_counter()

    def progress(done: int, total: int) -> None:
        click.echo(f"seed {done}/{total} done ({time.perf_counter() - start:.0f} s)", err=True)

    cfg = TrainConfig(width=width, depth=depth, steps=steps, lr=lr)
    table = crossval(formulas, units=units, per_family=per_family, seeds=seeds, cfg=cfg, task_seed=task_seed,
                     evaluator=evaluator, device=device, progress=progress)
    click.echo(format_table(table, markdown=markdown))
    if csv_path:
        with open(csv_path, "w") as fh:
            fh.write(to_csv(table))


@main.command(name="enumerate")
@click.option("--grammar", "-g", required=True, help="Grammar with templates, e.g. aquasurf, grafs, swish.")
@click.option("--template", "-t", default=None, help="Template name [default: the grammar's only template].")
@click.option("--points", type=int, default=1000, show_default=True,
              help="Random inputs, N(0,1) clipped to [-5, 5], on which outputs are compared.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random inputs.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), default=None,
              help="Write one formula per distinct function, one per line (input for `gpact eval -f`).")
def enumerate_cmd(grammar, template, points, seed, out_path):
    """Enumerate every expression of a template; count names and distinct functions (by outputs)."""
    from gpact.expr.grammar import load_grammar
    from gpact.expr.templates import count_distinct, describe_enumeration, pick_template

    g = load_grammar(grammar)
    t = pick_template(g, template)
    result = count_distinct(t, g, points=points, seed=seed, formulas=out_path is not None)
    click.echo(describe_enumeration(result, t, g))
    if out_path:
        with open(out_path, "w") as fh:
            fh.write("".join(f + "\n" for f in result.formulas))
        click.echo(f"wrote {len(result.formulas)} formulas to {out_path}")


@main.command(name="transfer")
@click.argument("formulas", nargs=-1, required=True)
@click.option("--dataset", "-d", required=True,
              help="breast_cancer, wine, digits, diabetes; comma-separated, or 'all'.")
@click.option("--seeds", type=int, default=5, show_default=True, help="Network initialisations.")
@click.option("--grammar", "-g", default="full", show_default=True, help="Grammar the formulas are written in.")
@click.option("--width", type=int, default=64, show_default=True)
@click.option("--depth", type=int, default=2, show_default=True)
@click.option("--steps", type=int, default=300, show_default=True)
@click.option("--lr", type=float, default=3e-3, show_default=True)
@click.option("--markdown", is_flag=True, help="Print the tables as GitHub markdown.")
def transfer_cmd(formulas, dataset, seeds, grammar, width, depth, steps, lr, markdown):
    """Train small networks with FORMULAS, GELU and ReLU on a real dataset (bundled with scikit-learn) under
    covariate shift: train on one part of the input space, test on another."""
    from gpact.report.transfer import DATASETS, TransferConfig, format_result, transfer

    names = list(DATASETS) if dataset == "all" else [d.strip() for d in dataset.split(",")]
    cfg = TransferConfig(width=width, depth=depth, steps=steps, lr=lr)
    for i, name in enumerate(names):
        result = transfer(list(formulas), name, seeds=seeds, cfg=cfg, grammar=grammar)
        click.echo(("\n" if i else "") + format_result(result, markdown=markdown))


@main.command(name="bench")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--candidates", "-k", type=int, default=64, show_default=True,
              help="Candidates trained (known activations, then random trees).")
@click.option("--steps", type=int, default=500, show_default=True, help="Adam steps per training.")
@click.option("--naive-max", type=int, default=64, show_default=True,
              help="Time the reference evaluator on at most this many of the candidates.")
@click.option("--kernel", type=click.Choice(["auto", "loop", "torch", "triton"]), default="auto", show_default=True,
              help="Activation interpreter of the batched evaluator (auto: loop on CPU, triton on CUDA).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
@click.option("--surrogate", is_flag=True,
              help="Instead: replay searches on the shipped table of scored aquasurf functions (no training).")
@click.option("--seeds", type=int, default=20, show_default=True, help="--surrogate: replays per search order.")
@click.option("--batch", type=int, default=8, show_default=True, help="--surrogate: functions per surrogate batch.")
@click.option("--model", type=click.Choice(["knn", "umap"]), default="knn", show_default=True,
              help="--surrogate: the surrogate model (umap needs gpact[surrogate]).")
@click.option("--gp-cap", type=int, default=300, show_default=True,
              help="--surrogate: evaluations a GP replay may use; 0 skips the GP replays.")
@click.option("--gp-seeds", type=int, default=0, show_default=True,
              help="--surrogate: GP replays (each costs sympy work per tree); 0: --seeds.")
@click.option("--limit", type=int, default=0, show_default=True,
              help="--surrogate: only the table's first N functions (a quick check); 0: all.")
def bench_cmd(device, candidates, steps, naive_max, kernel, as_json, surrogate, seeds, batch, model, gp_cap, gp_seeds,
              limit):
    """Trainings per second: the reference evaluator (one network at a time) against the batched one,
    on the reference protocol (MLP 1-64-64-1, Adam lr 1e-2, 512 points, y = sin(3x) + x^2).
    With --surrogate: evaluations the surrogate, random order and GP need on the replay table."""
    import json

    from gpact.errors import ConfigError
    from gpact.report.bench import run_bench

    if surrogate:
        from gpact.report.replay import format_replay, run_replay

        r = run_replay(seeds, batch, model, gp_cap, limit=limit, with_gp=gp_cap > 0, gp_seeds=gp_seeds,
                       echo=lambda s: click.echo(s, err=True))
        click.echo(json.dumps(r.to_dict()) if as_json else format_replay(r))
        return

    if candidates < 1 or steps < 1 or naive_max < 1:
        raise ConfigError("--candidates, --steps and --naive-max must be >= 1")
    r = run_bench(candidates, device, steps, naive_max, kernel=kernel, echo=lambda s: click.echo(s, err=True))
    if as_json:
        click.echo(json.dumps(r.to_dict()))
        return
    subset = f" (timed on {r.naive_candidates} of {r.candidates})" if r.naive_candidates < r.candidates else ""
    click.echo(f"device {r.device}, {r.candidates} candidates, {r.steps} steps")
    click.echo(f"reference: {r.naive_trainings_per_s:9.2f} trainings/s{subset}")
    click.echo(f"batched:   {r.batched_trainings_per_s:9.2f} trainings/s")
    click.echo(f"speed-up:  {r.speedup:9.1f}x")
