"""What every editing method shares: the `Editor` protocol, the method registry and hyperparameters.

Methods are looked up by name (``"rome"``, ``"r-rome"``, ``"memit"``, ``"ft"``, ``"ft-l-inf"``,
``"mend"``).
Each method is one :class:`MethodSpec` line in :data:`METHODS`, naming its editor factory (and its
batched engine, if it has one) by import path, so importing this file stays cheap.

Hyperparameters are YAML files in ``editcollapse/editors/hparams/<method>/<model>.yaml`` with
EasyEdit's key names. r-ROME reads ROME's files (it differs by one switch, set by its editor).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import yaml
from torch import nn
from transformers import PreTrainedTokenizerBase

from editcollapse.core.case import EditCase
from editcollapse.core.delta import Delta
from editcollapse.core.registry import Registry, import_object
from editcollapse.models.archmap import ArchMap

if TYPE_CHECKING:
    from editcollapse.models.loading import LoadedModel


@dataclass(frozen=True)
class MethodSpec:
    """One editing method: where its editor and (if it has one) its batched single-edit engine live.

    ``editor`` and ``batched`` are import paths (``"module:attribute"``), imported on first use, so the
    registry below costs nothing to import. ``editor(method)`` builds the :class:`Editor`; ``batched``
    is a class built as ``cls(model, tokenizer, arch, hparams, method=...)`` whose ``updates(cases)``
    computes many independent single edits at once (the sweep's batched engine uses it).
    """

    name: str
    editor: str
    hparams_method: str  # whose hyperparameter files it reads (r-ROME differs from ROME by one switch)
    batched: str | None = None

    def build_editor(self) -> Editor:
        return import_object(self.editor)(self.name)

    def batched_class(self) -> type | None:
        return None if self.batched is None else import_object(self.batched)


METHODS: Registry[MethodSpec] = Registry("editing method")
for _spec in (
    MethodSpec(
        "rome", "editcollapse.editors.rome.editor:editor", "rome", "editcollapse.editors.rome.batched:BatchedROME"
    ),
    MethodSpec(
        "r-rome", "editcollapse.editors.rome.editor:editor", "rome", "editcollapse.editors.rome.batched:BatchedROME"
    ),
    MethodSpec("memit", "editcollapse.editors.memit.editor:editor", "memit"),
    MethodSpec("ft", "editcollapse.editors.ft.editor:editor", "ft"),
    MethodSpec("ft-l-inf", "editcollapse.editors.ft.editor:editor", "ft-l-inf"),
    # MEND needs a trained network: `editcollapse mend train`
    MethodSpec("mend", "editcollapse.editors.mend:editor", "mend"),
):
    METHODS.register(_spec.name, _spec)

TINY_HPARAMS = "tiny"  # tiny-gpt2, tiny-llama … share one file per method


@runtime_checkable
class Editor(Protocol):
    """An editing method: (model, tokenizer, arch map, cases, hparams) → a `Delta`; the model is left as it was."""

    method: str

    def edit(
        self,
        model: nn.Module,
        tokenizer: PreTrainedTokenizerBase,
        arch: ArchMap,
        cases: list[EditCase],
        hparams: dict[str, Any],
    ) -> Delta:
        """Compute the weight change that makes ``cases`` true."""
        ...


def methods() -> tuple[str, ...]:
    """The method names :func:`get_editor` accepts."""
    return METHODS.names()


def method_spec(method: str) -> MethodSpec:
    """The registry entry of ``method`` (an unknown name is an error listing the known ones)."""
    return METHODS.get(method)


def get_editor(method: str) -> Editor:
    """The editor of ``method`` (imports its module on first use)."""
    return method_spec(method).build_editor()


def hparams_dir() -> Path:
    """The folder of packaged hyperparameter YAMLs."""
    return Path(str(resources.files("editcollapse.editors") / "hparams"))


def hparams_path(method: str, model_name: str) -> Path:
    """The YAML file holding ``method``'s hyperparameters for ``model_name``."""
    folder = hparams_dir() / method_spec(method).hparams_method
    if not folder.is_dir():
        raise ValueError(f"no hyperparameters for method {method!r} (no folder {folder})")
    candidates = [folder / f"{model_name}.yaml"]
    if model_name.startswith("tiny-"):
        candidates.append(folder / f"{TINY_HPARAMS}.yaml")
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    known = sorted(path.stem for path in folder.glob("*.yaml"))
    raise ValueError(
        f"no {method} hyperparameters for model {model_name!r} in {folder}; "
        f"known: {', '.join(known)} (copy one to {model_name}.yaml and adapt it)"
    )


def load_hparams(method: str, model_name: str) -> dict[str, Any]:
    """``method``'s hyperparameters for ``model_name`` as a dict (EasyEdit keys).

    ``model_name`` is added under ``"model_name"`` (covariance caches are keyed by it) unless the
    file names one.
    """
    path = hparams_path(method, model_name)
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: not valid YAML ({error})") from error
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: expected a mapping of hyperparameters, got {type(loaded).__name__}")
    loaded.setdefault("model_name", model_name)
    return loaded


def hparams_for(loaded: LoadedModel, method: str) -> dict[str, Any]:
    """:func:`load_hparams` for a loaded model, with its revision (``model_revision``) for cache keys."""
    hparams = load_hparams(method, loaded.name)
    hparams.setdefault("model_revision", loaded.revision)
    return hparams


def hparams_hash(hparams: dict[str, Any]) -> str:
    """A short stable digest of ``hparams`` (JSON with sorted keys) for `Delta.hparams_hash`."""
    canonical = json.dumps(hparams, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def require_keys(hparams: dict[str, Any], keys: tuple[str, ...], method: str) -> None:
    """Fail with one clear message naming every missing hyperparameter."""
    missing = [key for key in keys if key not in hparams]
    if missing:
        raise ValueError(f"{method} hparams lack {missing} (model {hparams.get('model_name', '?')})")
