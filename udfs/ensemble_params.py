"""The ensemble's parameters: declared once here (default, meaning), packed into the float64 array the kernel reads.

:mod:`augur.config` exposes every field as the option ``ensemble.<field-with-dashes>``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

DETECTORS = ("robust_z", "ewma", "cusum", "seasonal", "lstm", "context")
N_DET = len(DETECTORS)
ROBUST, EWMA, CUSUM, SEASONAL, LSTM, CONTEXT = range(N_DET)
COMBINERS = ("mean", "max", "vote", "top2", "views")

def _p(default, help_text: str):
    return field(default=default, metadata={"help": help_text})


@dataclass(frozen=True)
class EnsembleParams:
    window: int = _p(64, "robust_z: trailing points in the median/MAD window")
    min_history: int = _p(24, "points a detector learns before it scores")
    outlier_z: float = _p(6.0, "robust_z: points at or beyond this |z| are kept out of its window")
    rel_floor: float = _p(1e-3, "smallest trusted scale, relative to the series level (augur detect; the stream "
                          "uses each metric type's floors, udfs/transforms.py)")
    abs_floor: float = _p(1e-9, "smallest trusted scale, absolute (augur detect; see rel_floor)")
    alpha: float = _p(0.02, "ewma: weight of a new point in the mean and variance")
    drift: float = _p(0.5, "cusum: allowed drift per point, in sigmas")
    limit: float = _p(12.0, "cusum: alarm limit, in sigmas")
    clip: float = _p(4.0, "outliers are learned only up to this many sigmas")
    adapt_alpha: float = _p(0.01, "seasonal/lstm: weight of a new residual in the level and scale")
    input_clip: float = _p(8.0, "lstm: normalised inputs are clipped to +- this")
    bins: int = _p(96, "calibration: log-spaced bins of a detector's raw scores")
    cal_lo: float = _p(1e-3, "calibration: lowest bin edge")
    cal_hi: float = _p(1e4, "calibration: highest bin edge")
    cal_min: int = _p(50, "calibration: raw scores needed before a calibrated score")
    cal_max: float = _p(20_000.0, "calibration: counts are halved at this total (forgetting)")
    tail_index: float = _p(2.0, "calibration: Pareto index of the tail beyond the largest score seen")
    z_unit: float = _p(1.5, "materiality: a z-like score counts at most erf(|z| / (sqrt 2 z_unit)), whatever its rank")
    combiner: str = _p("views", "how calibrated scores combine: views (the mean of the two highest of four views: "
                       "robust_z, cusum, context, and the forecast-residual detectors ewma, seasonal and lstm as one, "
                       "by their highest; two kinds of evidence must agree), top2 (the mean of the two highest "
                       "detectors), mean (weighted), max or vote")
    vote_p: float = _p(0.995, "vote: a detector votes 'anomaly' at this calibrated score")
    enter: float = _p(0.999, "an incident opens when the ensemble score reaches this")
    exit: float = _p(0.95, "... and closes after exit_after points below this")
    exit_after: int = _p(6, "points below `exit` that close an incident")
    min_detectors: int = _p(2, "detectors that must be ready before a verdict")
    hidden: int = _p(8, "lstm: hidden units (the state reserves room for a model of this size)")
    context_bins: int = _p(6, "context: levels a value is quantised to, between the smallest and largest seen")
    context_length: int = _p(3, "context: the last this many levels form a context (bins ** length are counted)")
    context_decay: float = _p(0.999, "context: weight kept per point by past occurrences of a context (forgetting)")
    weights: tuple = _p((1.0, 1.0, 1.0, 1.0, 1.0, 1.0),
                        "weight of each detector (robust_z, ewma, cusum, seasonal, lstm, context)")

    def __post_init__(self):
        if self.combiner not in COMBINERS:
            raise ValueError(f"combiner must be one of {', '.join(COMBINERS)}, got {self.combiner!r}")
        if len(self.weights) != N_DET or any(w < 0 for w in self.weights):
            raise ValueError(f"weights: {N_DET} non-negative numbers ({', '.join(DETECTORS)})")
        if not 0 < self.exit <= self.enter <= 1:
            raise ValueError("need 0 < exit <= enter <= 1")
        if not 0 < self.context_decay <= 1 or self.context_bins < 2 or self.context_bins ** self.context_length > 65536:
            raise ValueError("context: need 0 < decay <= 1, bins >= 2 and at most 65,536 contexts (bins ** length)")

    def only(self, name: str) -> "EnsembleParams":
        """The same parameters with every detector but ``name`` switched off (for ablation)."""
        w = tuple(1.0 if d == name else 0.0 for d in DETECTORS)
        return replace(self, weights=w, min_detectors=1)

    def to_array(self) -> np.ndarray:
        """The float64 array the kernel reads: the fields in declaration order (the combiner as its index in
        :data:`COMBINERS`), the detector weights, then the calibrators' bin edges. The ``P_*`` indexes below are
        derived from the same order."""
        # NumPy is imported here, not at the top: augur.config reads this module's options, and so the collectors,
        # which use no NumPy, would load it for nothing (about 15 MB resident)
        import numpy as np
        from udfs.calibration import edges
        a = np.zeros(N_PARAMS + max(self.bins - 3, 0))
        for i, name in enumerate(PACKED):
            value = getattr(self, name)
            a[i] = COMBINERS.index(value) if name == "combiner" else value
        a[P_WEIGHTS:P_WEIGHTS + N_DET] = self.weights
        a[P_EDGES:] = edges(self.bins, self.cal_lo, self.cal_hi)  # the calibrators' bin edges, taken once here
        return a

    @classmethod
    def from_options(cls, values: dict) -> "EnsembleParams":
        """From ``{"ensemble.<name-with-dashes>": value}`` (the config's view); missing keys keep their default."""
        kwargs = {}
        for f in fields(cls):
            key = option_key(f.name)
            if key in values:
                kwargs[f.name] = values[key]
        return cls(**kwargs)


PACKED = tuple(f.name for f in fields(EnsembleParams) if f.name != "weights")


def _slot(name: str) -> int:
    return PACKED.index(name)


# indexes into the parameter array the kernel reads (a misspelt name fails at import)
P_WINDOW, P_MIN_HISTORY, P_OUTLIER_Z = _slot("window"), _slot("min_history"), _slot("outlier_z")
P_REL_FLOOR, P_ABS_FLOOR, P_CLIP = _slot("rel_floor"), _slot("abs_floor"), _slot("clip")
P_ALPHA, P_DRIFT, P_LIMIT = _slot("alpha"), _slot("drift"), _slot("limit")
P_ADAPT_ALPHA, P_INPUT_CLIP, P_HIDDEN = _slot("adapt_alpha"), _slot("input_clip"), _slot("hidden")
P_BINS, P_CAL_LO, P_CAL_HI = _slot("bins"), _slot("cal_lo"), _slot("cal_hi")
P_CAL_MIN, P_CAL_MAX, P_TAIL_INDEX, P_Z_UNIT = _slot("cal_min"), _slot("cal_max"), _slot("tail_index"), _slot("z_unit")
P_COMBINER, P_VOTE_P, P_MIN_DETECTORS = _slot("combiner"), _slot("vote_p"), _slot("min_detectors")
P_ENTER, P_EXIT, P_EXIT_AFTER = _slot("enter"), _slot("exit"), _slot("exit_after")
P_CTX_BINS, P_CTX_LENGTH, P_CTX_DECAY = _slot("context_bins"), _slot("context_length"), _slot("context_decay")
P_WEIGHTS = len(PACKED)
N_PARAMS = P_WEIGHTS + N_DET
P_EDGES = N_PARAMS  # then the calibrators' bin edges (bins - 3 of them)


def option_key(name: str) -> str:
    return "ensemble." + name.replace("_", "-")


def option_types() -> dict[str, tuple[type, object, str]]:
    """``{option key: (field type, default, help)}`` for :mod:`augur.config`."""
    return {option_key(f.name): (f.type, f.default, f.metadata["help"]) for f in fields(EnsembleParams)}
