"""Command line: thin click commands that parse options, call one library function and print.

Every GpactError (bad grammar, formula, config) becomes one line on stderr and exit status 2.
"""

from __future__ import annotations

import dataclasses
import sys

import click

from gpact.config import RunConfig
from gpact.errors import GpactError
from gpact.llm import LLMConfig


class _Group(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except GpactError as exc:
            click.echo(f"gpact: error: {exc}", err=True)
            sys.exit(2)


@click.group(cls=_Group)
@click.version_option(package_name="gpact")
def main() -> None:
    """gpact: genetic-programming search for activation functions, scored out of distribution."""


# Commands are added below, one function each; keep them thin.


@main.command()
@click.option("--grammar", "-g", default="grammars/full.yaml", show_default=True,
              help="Grammar file, or the name of a shipped one (full, minimal, ...).")
@click.option("--generations", type=int, default=RunConfig.generations, show_default=True)
@click.option("--population", type=int, default=RunConfig.population, show_default=True,
              help="Rounded up to a multiple of 4.")
@click.option("--seed", type=int, default=RunConfig.seed, show_default=True)
@click.option("--tasks", default=RunConfig.tasks, show_default=True, help="Task suite or comma-separated tasks.")
@click.option("--train-seeds", type=int, default=RunConfig.train_seeds, show_default=True,
              help="Network initialisations per task (the score takes their median).")
@click.option("--steps", type=int, default=None, help="Training steps per network [default: 200].")
@click.option("--width", type=int, default=None, help="Hidden width of the MLPs [default: 16].")
@click.option("--evaluator", type=click.Choice(["auto", "reference", "batched"]), default="auto", show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--holdout", default=RunConfig.holdout, show_default=True,
              help="Task suite scored once at the end (never used for selection); '' to skip.")
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
def run(grammar, generations, population, seed, tasks, train_seeds, steps, width, evaluator, device, holdout,
        out_dir, run_id, llm_base_url, llm_model, llm_api_key_env, llm_rate, llm_mutation_rate, llm_max_calls,
        llm_timeout):
    """Search for activation functions; print and save the Pareto front (OOD score vs FLOPs)."""
    from gpact.runner import run as run_search

    train = RunConfig().train
    train = dataclasses.replace(train, steps=steps or train.steps, width=width or train.width)
    cfg = RunConfig(grammar=grammar, generations=generations, population=population, seed=seed, tasks=tasks,
                    train_seeds=train_seeds, train=train, evaluator=evaluator, device=device, holdout=holdout,
                    out_dir=out_dir, run_id=run_id,
                    llm=LLMConfig(base_url=llm_base_url, model=llm_model, api_key_env=llm_api_key_env, rate=llm_rate,
                                  mutation_rate=llm_mutation_rate, max_calls=llm_max_calls, timeout=llm_timeout))
    run_search(cfg, echo=click.echo)
