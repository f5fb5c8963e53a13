"""What a screen is: its parameters and its run id (imports only the core, so the CLI loads no torch)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from editcollapse.core.defaults import EMBEDDED_MODEL
from editcollapse.core.hparams_file import checked_hparams_file, hparams_file_parameters
from editcollapse.stages.sweep.plan import default_run_id

SCREEN_METHODS = ("rome", "r-rome")
DEFAULT_SHARD_SIZE = 500  # a shard is seconds of forward passes: large shards, few parts
DEFAULT_BATCH = 64  # cases whose texts (every context template) run together, in groups of equal length


@dataclass(frozen=True)
class ScreenConfig:
    """Everything that decides a screen's rows (and so its run id; ``run_id`` empty: derived from them)."""

    model: str = EMBEDDED_MODEL
    method: str = "rome"
    dataset: str = "geofacts"
    limit: int | None = None
    shard_size: int = DEFAULT_SHARD_SIZE
    batch: int = DEFAULT_BATCH
    seed: int = 0
    device: str | None = None
    run_id: str = field(default="")
    hparams_file: str | None = None  # hyperparameters YAML of one's own (default: the packaged file)

    def __post_init__(self) -> None:
        if self.method not in SCREEN_METHODS:
            raise ValueError(
                f"screen does not apply to method {self.method!r}: it bounds the one rank-one update of ROME and "
                "r-ROME by its denominator k·u (MEMIT solves a least-squares update over several layers, FT and "
                "MEND have no key) — screen with --method rome or --method r-rome"
            )
        for name in ("shard_size", "batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be at least 1 (or None for all cases), got {self.limit}")
        object.__setattr__(self, "hparams_file", checked_hparams_file(self.hparams_file))
        if not self.run_id:
            object.__setattr__(self, "run_id", default_run_id(self.parameters(), prefix="screen"))

    def parameters(self) -> dict[str, Any]:
        """The parameters recorded in the ``runs`` row: all but the run id, the device and the batch
        (they change no number beyond float rounding)."""
        params = asdict(self)
        for execution_option in ("run_id", "device", "batch"):
            params.pop(execution_option)
        return params | hparams_file_parameters(params.pop("hparams_file"))

    def preflight(self) -> None:
        """Refuse what the run would fail on before anything is loaded: the model, the method's
        hyperparameters and readiness (the key covariance), the cases."""
        from editcollapse.stages.preflight import check_cases, check_edit_setup

        check_edit_setup(self.model, self.method, seed=self.seed, hparams_file=self.hparams_file)
        check_cases(self.dataset)
