"""`editcollapse hardedit …`: generate HardEdit candidates with an LLM, filter them with ROME, and
inspect the subject repository and the generation prompt."""

from __future__ import annotations

from pathlib import Path

import typer

from editcollapse.cli import formatting, options
from editcollapse.cli.stage import make_config, print_json, run_stage

hardedit_app = typer.Typer(
    help="HardEdit: LLM-generated hard edit cases, filtered by a ROME single edit.", no_args_is_help=True
)


@hardedit_app.command("generate")
def generate(
    backend: str = typer.Option(
        "local",
        help="local (a transformers chat model) or openai (any "
        "OpenAI-compatible endpoint; EDITCOLLAPSE_LLM_BASE_URL/_MODEL/_API_KEY)",
    ),
    calls: int = typer.Option(5, help="generation calls (each asks for --points samples)"),
    model: str = typer.Option(
        None,
        help="the generator: with local, a model name, local folder or hub id (default smollm2-135m); "
        "with openai, the endpoint's model (default $EDITCOLLAPSE_LLM_MODEL or gpt-3.5-turbo)",
    ),
    base_url: str = typer.Option(
        None, help="endpoint of the openai backend (default $EDITCOLLAPSE_LLM_BASE_URL or $OPENAI_BASE_URL)"
    ),
    seeds: str = typer.Option(
        "paper",
        help="seed examples: 'paper' (packaged) or a load_cases source (hardcf, a HardCF/HardEdit/CounterFact file)",
    ),
    n_seeds: int = typer.Option(30, help="seed examples per prompt (the paper: 30)"),
    subjects: Path = typer.Option(None, help="subject repository JSON (default: the packaged one)"),
    template: Path = typer.Option(None, help="prompt template file (default: the packaged Figure 12 one)"),
    subjects_per_prompt: int = typer.Option(10),
    points: int = typer.Option(10, help="samples asked for per call"),
    max_requests: int = typer.Option(None, help="budget: requests sent, retries included"),
    max_tokens: int = typer.Option(None, help="budget: prompt + completion tokens"),
    rpm: float = typer.Option(20.0, help="rate limit of the openai backend, requests per minute (0: none)"),
    max_new_tokens: int = typer.Option(1024, help="completion length cap"),
    temperature: float = typer.Option(None, help="sampling temperature (default 0.7 local, 1.0 openai)"),
    seed: int = options.seed(),
    run_id: str = options.run_id(),
    warehouse: str = options.warehouse(),
    prefect: bool = options.prefect(),
) -> None:
    """Generate candidates (paper Figure 12 prompt), validate them, store all in hardedit_candidates.

    Example: editcollapse hardedit generate --backend local --calls 2 --no-prefect
    """
    from editcollapse.stages.hardedit.config import GenerationConfig, generator_fields

    config = make_config(
        GenerationConfig,
        backend=backend,
        n_calls=calls,
        **generator_fields(backend, model),
        base_url=base_url,
        seed=seed,
        seeds_source=seeds,
        n_seeds=n_seeds,
        subjects_file=str(subjects) if subjects else None,
        template_file=str(template) if template else None,
        subjects_per_prompt=subjects_per_prompt,
        n_points=points,
        max_requests=max_requests,
        max_tokens=max_tokens,
        requests_per_minute=rpm,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        run_id=run_id,
    )
    result = run_stage(
        config,
        warehouse,
        prefect=prefect,
        flow="editcollapse.orchestration.flows.hardedit:generate_hardedit_candidates",
        plain="editcollapse.stages.hardedit.runs:run_generation",
        progress="HardEdit generation",
    )
    print_json(result)


@hardedit_app.command("filter")
def filter_(
    model: list[str] = typer.Option(
        None, "--model", help="reference model (repeat for several; default smollm2-135m; the paper: gpt2-xl)"
    ),
    method: str = options.method(),
    run: list[str] = typer.Option(None, "--run", help="only candidates of this generation run (repeatable)"),
    limit: int = options.limit("valid candidates"),
    ppl_corpus: str = options.ppl_corpus(),
    threshold: float = options.threshold(help="keep candidates whose edited model's ME-PPL exceeds this"),
    shard_size: int = typer.Option(10),
    output: Path = typer.Option(None, "--output", "-o", help="JSON export (default <warehouse>/exports/<run>.json)"),
    run_id: str = options.run_id(),
    seed: int = options.seed(),
    device: str = options.device(),
    warehouse: str = options.warehouse(),
    prefect: bool = options.prefect(),
    hparams: Path = options.hparams(),
) -> None:
    """Edit each valid candidate with ROME on the reference model(s); keep ME-PPL > threshold.

    Example: editcollapse hardedit filter --model smollm2-135m --limit 20 --no-prefect
    """
    from editcollapse.stages.hardedit.config import FilterConfig

    config = make_config(
        FilterConfig,
        reference_models=tuple(model or FilterConfig.reference_models),
        method=method,
        candidate_runs=tuple(run or ()),
        limit=limit,
        ppl_corpus=ppl_corpus,
        threshold=threshold,
        shard_size=shard_size,
        seed=seed,
        export=str(output) if output else None,
        run_id=run_id,
        device=device,
        hparams_file=hparams,
    )
    result = run_stage(
        config,
        warehouse,
        prefect=prefect,
        flow="editcollapse.orchestration.flows.hardedit:filter_hardedit",
        plain="editcollapse.stages.hardedit.runs:run_filter",
        progress="HardEdit filter",
    )
    print_json(result)


@hardedit_app.command("subjects")
def subjects(path: Path = typer.Option(None, help="a subject repository JSON (default: the packaged one)")) -> None:
    """The subject repository: categories, sizes and where each list comes from.

    Example: editcollapse hardedit subjects
    """
    from rich.table import Table

    from editcollapse.stages.hardedit.subjects import load_subject_repository

    repository = load_subject_repository(path)
    table = Table(title=f"{len(repository.subjects())} unique single-word subjects")
    for column in ("category", "n", "examples", "provenance"):
        table.add_column(column)
    for category in repository.categories:
        table.add_row(category.name, str(len(category.subjects)), ", ".join(category.subjects[:5]), category.provenance)
    formatting.console().print(table)


@hardedit_app.command("prompt")
def prompt(
    template: Path = typer.Option(None, help="prompt template file (default: the packaged one)"),
    seeds: str = typer.Option("paper"),
    seed: int = options.seed(help="which 10 subjects are drawn"),
    excluded: list[str] = typer.Option(None, "--exclude", help="an excluded subject (repeatable)"),
) -> None:
    """Print one generation prompt as the generator would send it (to check an edited template).

    Example: editcollapse hardedit prompt --template my_template.md --seed 1
    """
    import random

    from editcollapse.stages.hardedit.prompt import build_prompt, load_seed_examples, load_template
    from editcollapse.stages.hardedit.subjects import load_subject_repository

    offered = load_subject_repository().sample(10, random.Random(f"{seed}:0"))
    typer.echo(build_prompt(load_template(template), load_seed_examples(seeds), offered, list(excluded or [])))


def register(app: typer.Typer) -> None:
    """Add this module's commands to the main app."""
    app.add_typer(hardedit_app, name="hardedit")
