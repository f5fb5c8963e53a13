"""The HardEdit generation prompt (paper Appendix A.6, Figure 12), built from a user-editable template.

The prompt has the paper's four parts: the task description and data illustration, HardCF seed
examples, a reference list of 10 subjects drawn at random from the subject repository, and the
emphasis instructions (ending in "Generate 10 data points"). The subjects already generated are
listed as ``excluded_subjects``, the JSON array the paper's first instruction refers to.

The template (``prompt_template.md`` beside this module, or any file the user passes) uses
``string.Template`` placeholders, because the text itself is full of JSON braces:
``$seed_examples``, ``$subject_list``, ``$excluded_subjects``, ``$n_points``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template

from editcollapse.stages.hardedit.subjects import is_single_word

TEMPLATE_FILE = "prompt_template.md"
PAPER_SEEDS = "paper"  # the seed source naming the packaged cases quoted from the paper
PAPER_SEEDS_FILE = "seeds_paper.json"
PLACEHOLDERS = ("seed_examples", "subject_list", "excluded_subjects", "n_points")


@dataclass(frozen=True)
class SeedExample:
    """One HardCF example shown to the generator, in the form it must answer in."""

    prompt: str
    target_new: str
    subject: str
    ground_truth: str

    def to_dict(self) -> dict[str, str]:
        return {
            "prompt": self.prompt,
            "target_new": self.target_new,
            "subject": self.subject,
            "ground_truth": self.ground_truth,
        }


def load_template(path: str | Path | None = None) -> str:
    """The packaged template, or the user's file (checked to use only known placeholders)."""
    if path is None:
        return resources.files("editcollapse.stages.hardedit").joinpath(TEMPLATE_FILE).read_text(encoding="utf-8")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise ValueError(f"{path}: cannot read the prompt template ({error})") from error
    unknown = {name for name in Template(text).get_identifiers() if name not in PLACEHOLDERS}
    if unknown:
        raise ValueError(
            f"{path}: unknown placeholder(s) {sorted(unknown)}; "
            f"known: {', '.join('$' + p for p in PLACEHOLDERS)} (write $$ for a literal $)"
        )
    return text


def _paper_seeds() -> list[SeedExample]:
    text = resources.files("editcollapse.stages.hardedit").joinpath(PAPER_SEEDS_FILE).read_text(encoding="utf-8")
    return [
        SeedExample(r["prompt"], r["target_new"], r["subject"], r["ground_truth"]) for r in json.loads(text)["seeds"]
    ]


def load_seed_examples(source: str = PAPER_SEEDS, *, single_word_only: bool = True) -> list[SeedExample]:
    """Seed examples: ``"paper"`` (the packaged cases quoted from the paper) or any ``load_cases`` source.

    ``source`` may be ``"hardcf"``, a HardCF/HardEdit/CounterFact JSON file, … — whatever
    ``editcollapse.datasets.load_cases`` reads. ``single_word_only`` drops seeds whose subject is
    not one word: the prompt demands one-word subjects, and multi-word seeds contradict it.
    """
    if source == PAPER_SEEDS:
        seeds = _paper_seeds()
    else:
        from editcollapse.datasets import load_cases

        seeds = [
            SeedExample(case.filled_prompt, case.target_new, case.subject, case.target_true or "")
            for case in load_cases(source, strict=True).cases
        ]
    if single_word_only:
        seeds = [seed for seed in seeds if is_single_word(seed.subject)]
    if not seeds:
        raise ValueError(f"seed source {source!r} gave no usable seed example")
    return seeds


def build_prompt(
    template: str, seeds: list[SeedExample], subjects: list[str], excluded: list[str], n_points: int = 10
) -> str:
    """Fill the template: seeds as a JSON list, ``{"subjects": [...]}``, ``{"excluded_subjects": [...]}``."""
    values = {
        "seed_examples": json.dumps([seed.to_dict() for seed in seeds], indent=1, ensure_ascii=False),
        "subject_list": json.dumps({"subjects": subjects}, ensure_ascii=False),
        "excluded_subjects": json.dumps({"excluded_subjects": excluded}, ensure_ascii=False),
        "n_points": str(n_points),
    }
    return Template(template).substitute(values)
