"""What every editing method shares: the `Editor` protocol, the method registry and hyperparameters.

Methods are looked up by name (``"rome"``, ``"r-rome"``, ``"memit"``, ``"alphaedit"``, ``"ft"``,
``"ft-l-inf"``, ``"mend"``).
Each method is one :class:`MethodSpec` line in :data:`METHODS`, naming its editor factory (and its
batched engine, if it has one) by import path, so importing this file stays cheap.

Hyperparameters are YAML files with EasyEdit's key names, next to each method's code
(``editcollapse/editors/<method>/hparams/<model>.yaml``), read into the method's frozen
:class:`~editcollapse.editors.hparams.Hparams` class (:func:`load_hparams`, :func:`hparams_for`,
:func:`load_hparams_file`); a file of one's own (``--hparams FILE``) takes the place of the packaged
one. r-ROME reads ROME's files (it differs by one switch, set by its editor).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from torch import nn
from transformers import PreTrainedTokenizerBase

from editcollapse.core.case import EditCase
from editcollapse.core.delta import Delta
from editcollapse.core.registry import Registry, import_object
from editcollapse.editors.hparams import Hparams
from editcollapse.models.archmap import ArchMap

if TYPE_CHECKING:
    from editcollapse.models.loading import LoadedModel


@dataclass(frozen=True)
class MethodSpec:
    """One editing method: where its editor, its hyperparameters and (if it has one) its batched engine live.

    ``editor``, ``hparams`` and ``batched`` are import paths (``"module:attribute"``), imported on
    first use, so the registry below costs nothing to import. ``editor(method)`` builds the
    :class:`Editor`; ``hparams`` is its :class:`~editcollapse.editors.hparams.Hparams` class;
    ``hparams_folder`` (``"package:folder"``) holds its packaged ``<model>.yaml`` files; ``batched``
    is a class built as ``cls(model, tokenizer, arch, hparams, method=...)`` whose ``updates(cases)``
    computes many independent single edits at once (the sweep's batched engine uses it). ``ready``
    is a function ``(hparams) -> str | None`` that raises :class:`~editcollapse.core.errors.RunRefused`
    naming the fixing command when the editor cannot edit yet (an untrained network, a key
    covariance that can be neither read nor computed), so a run is refused before it starts; it
    returns a fingerprint of what the editor loads beyond its hparams (MEND's trained network), or
    None when the hparams decide everything. ``reads_earlier``: the editor's ``edit`` takes
    ``earlier=``, the sum of the Deltas a sequence applied before (AlphaEdit keeps their keys in its
    null space); the others need nothing beyond the model as it is (:func:`edit_after`).

    Adding a method = one folder (editor, hparams class, YAMLs) + one line here.
    """

    name: str
    editor: str
    hparams: str
    hparams_folder: str
    batched: str | None = None
    ready: str | None = None
    reads_earlier: bool = False

    def build_editor(self) -> Editor:
        return import_object(self.editor)(self.name)

    def hparams_class(self) -> type[Hparams]:
        return import_object(self.hparams)

    def hparams_dir(self) -> Path:
        """The folder of this method's packaged hyperparameter files."""
        package, _, folder = self.hparams_folder.partition(":")
        return Path(str(resources.files(package) / folder))

    def batched_class(self) -> type | None:
        return None if self.batched is None else import_object(self.batched)


COVARIANCE_READY = "editcollapse.editors.covariance:check_ready"
METHODS: Registry[MethodSpec] = Registry("editing method")
for _spec in (
    # r-ROME reads ROME's files: it differs by one switch, set by its editor
    MethodSpec(
        name="rome",
        editor="editcollapse.editors.rome.editor:editor",
        hparams="editcollapse.editors.rome.hparams:ROMEHparams",
        hparams_folder="editcollapse.editors.rome:hparams",
        batched="editcollapse.editors.rome.batched:BatchedROME",
        ready=COVARIANCE_READY,
    ),
    MethodSpec(
        name="r-rome",
        editor="editcollapse.editors.rome.editor:editor",
        hparams="editcollapse.editors.rome.hparams:ROMEHparams",
        hparams_folder="editcollapse.editors.rome:hparams",
        batched="editcollapse.editors.rome.batched:BatchedROME",
        ready=COVARIANCE_READY,
    ),
    MethodSpec(
        name="memit",
        editor="editcollapse.editors.memit.editor:editor",
        hparams="editcollapse.editors.memit.hparams:MEMITHparams",
        hparams_folder="editcollapse.editors.memit:hparams",
        ready=COVARIANCE_READY,
    ),
    # AlphaEdit reads the keys the earlier edits of a sequence carry (their summed Delta)
    MethodSpec(
        name="alphaedit",
        editor="editcollapse.editors.alphaedit.editor:editor",
        hparams="editcollapse.editors.alphaedit.hparams:AlphaEditHparams",
        hparams_folder="editcollapse.editors.alphaedit:hparams",
        ready=COVARIANCE_READY,
        reads_earlier=True,
    ),
    # FT and FT-L∞ share one class, with a folder of files each
    MethodSpec(
        name="ft",
        editor="editcollapse.editors.ft.editor:editor",
        hparams="editcollapse.editors.ft.hparams:FTHparams",
        hparams_folder="editcollapse.editors.ft:hparams/ft",
    ),
    MethodSpec(
        name="ft-l-inf",
        editor="editcollapse.editors.ft.editor:editor",
        hparams="editcollapse.editors.ft.hparams:FTHparams",
        hparams_folder="editcollapse.editors.ft:hparams/ft-l-inf",
    ),
    # MEND needs a trained network: `editcollapse mend train`
    MethodSpec(
        name="mend",
        editor="editcollapse.editors.mend:editor",
        hparams="editcollapse.editors.mend.hparams:MENDHparams",
        hparams_folder="editcollapse.editors.mend:hparams",
        ready="editcollapse.editors.mend.readiness:check_ready",
    ),
):
    METHODS.register(_spec.name, _spec)

TINY_HPARAMS = "tiny"  # tiny-gpt2, tiny-llama … share one file per method


@runtime_checkable
class Editor(Protocol):
    """An editing method: (model, tokenizer, arch map, cases, hparams) → a `Delta`; the model is left as it was.

    ``hparams`` is the method's typed :class:`~editcollapse.editors.hparams.Hparams` (its registry class).
    """

    method: str

    def edit(
        self,
        model: nn.Module,
        tokenizer: PreTrainedTokenizerBase,
        arch: ArchMap,
        cases: list[EditCase],
        hparams: Hparams,
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


def edit_after(
    method: str,
    editor: Editor,
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    arch: ArchMap,
    cases: list[EditCase],
    hparams: Hparams,
    earlier: Delta | None,
) -> Delta:
    """``editor.edit`` on a model that already carries ``earlier`` (the sum of the Deltas applied before,
    or None): a method that reads earlier edits (``reads_earlier``) is given them; the others edit the
    model as it is."""
    if earlier is not None and method_spec(method).reads_earlier:
        return editor.edit(model, tokenizer, arch, cases, hparams, earlier=earlier)
    return editor.edit(model, tokenizer, arch, cases, hparams)


def check_ready(method: str, hparams: Hparams) -> str | None:
    """Refuse (:class:`~editcollapse.core.errors.RunRefused`) when ``method`` cannot edit with ``hparams``
    yet; else the fingerprint of the state it will load beyond them (None: the hparams decide it all)."""
    spec = method_spec(method)
    return None if spec.ready is None else import_object(spec.ready)(hparams)


def hparams_path(method: str, model_name: str) -> Path:
    """The packaged YAML file holding ``method``'s hyperparameters for ``model_name``."""
    folder = method_spec(method).hparams_dir()
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
        f"known: {', '.join(known)} (start from one: `editcollapse hparams show {method} MODEL > mine.yaml`, "
        "adapt it, pass --hparams mine.yaml)"
    )


def load_hparams_file(method: str, path: str | Path) -> Hparams:
    """``method``'s hyperparameters from a file of one's own (EasyEdit keys, checked as the packaged ones)."""
    return method_spec(method).hparams_class().from_yaml(path)


def load_hparams(method: str, model_name: str, path: str | Path | None = None) -> Hparams:
    """``method``'s hyperparameters for ``model_name``: the packaged file, or the file at ``path``.

    ``model_name`` fills ``model_name`` (covariance caches and MEND stores are keyed by it) unless
    the file names one, so a file of one's own behaves as a packaged one.
    """
    hparams = load_hparams_file(method, path if path is not None else hparams_path(method, model_name))
    return hparams if hparams.model_name is not None else replace(hparams, model_name=model_name)


def hparams_for(loaded: LoadedModel, method: str, path: str | Path | None = None) -> Hparams:
    """:func:`load_hparams` for a loaded model, with its revision (``model_revision``) for cache keys."""
    return hparams_for_revision(method, loaded.name, loaded.revision, path)


def hparams_for_revision(method: str, model_name: str, revision: str | None, path: str | Path | None = None) -> Hparams:
    """:func:`load_hparams` (the packaged file, or the file at ``path``) with ``model_revision`` set to
    ``revision`` (unless the file sets one): what :func:`hparams_for` gives once the model is loaded,
    known before (a run's preflight)."""
    hparams = load_hparams(method, model_name, path)
    return hparams if hparams.model_revision is not None else replace(hparams, model_revision=revision)
