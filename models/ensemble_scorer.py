"""One series' ensemble scorer: the kernel's parameters, the series' models and its state, plus explanations.

:class:`EnsembleScorer` is what every engine holds per series (the Flink job in keyed state as ``state``, the
backfill and ``augur detect`` in memory). Scoring is :func:`udfs.ensemble.score_batch`, so one point at a time or a
whole array give the same numbers. Models (Prophet components, LSTM weights) are optional and can be swapped in at
any time with :meth:`adopt`; without them those two detectors abstain.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import NamedTuple

import numpy as np

from models.artifacts import digest_tag
from udfs import ensemble as ens
from udfs.ensemble_params import DETECTORS, EnsembleParams

EMPTY = np.empty(0)


class Scores(NamedTuple):
    score: np.ndarray       # ensemble score in [0, 1], NaN in warm-up
    verdict: np.ndarray     # int8: -1 warm-up, 0 normal, 1 anomaly
    onset: np.ndarray       # bool: first point of an incident
    expected: np.ndarray    # the seasonal baseline's expectation (the online level without a model)
    raw: np.ndarray         # n x detectors: raw scores (NaN = abstained)
    probs: np.ndarray       # n x detectors: calibrated scores

    def alert(self) -> np.ndarray:
        """The alert score: the ensemble score, except 0 at the points of an incident after its first (what an
        alerting consumer thresholds: an open incident is not news again); NaN in warm-up."""
        return np.where((self.verdict == ens.VERDICT_ANOMALY) & ~self.onset, 0.0, self.score)


@dataclass
class Models:
    season: np.ndarray = field(default_factory=lambda: EMPTY)
    lstm: np.ndarray = field(default_factory=lambda: EMPTY)
    version: str = "none"

    @cached_property
    def tag(self) -> float:
        """A number naming these models, kept in the state to notice when a series' models change."""
        if not self.season.shape[0] and not self.lstm.shape[0]:
            return 0.0
        return digest_tag(self.season.tobytes() + b"|" + self.lstm.tobytes())


class EnsembleScorer:
    def __init__(self, params: EnsembleParams, models: Models | None = None, state: np.ndarray | None = None,
                 packed: np.ndarray | None = None):
        self.params = params
        self.p = params.to_array() if packed is None else packed
        self.models = models or Models()
        self.state = ens.init_state(self.p) if state is None else state

    def score(self, xs: np.ndarray, t_s: np.ndarray) -> Scores:
        xs = np.ascontiguousarray(xs, dtype=np.float64)
        t_s = np.ascontiguousarray(t_s, dtype=np.float64)
        return Scores(*ens.score_batch(self.state, self.p, self.models.season, self.models.lstm, xs, t_s))

    def adopt(self, models: Models, recent: np.ndarray) -> None:
        """Switch to newly trained models; ``recent`` (the last points, oldest first) primes the LSTM."""
        self.models = models
        ens.adopt_models(self.state, self.p, models.lstm, np.ascontiguousarray(recent, dtype=np.float64))
        self.state[ens.S_MODELS] = models.tag

    def use(self, models: Models) -> None:
        """Score with ``models`` from now on, adopting them if the state last saw other models (stream use: the
        LSTM is primed from the values the state still holds)."""
        self.models = models
        if self.state[ens.S_MODELS] != models.tag:
            self.adopt(models, ens.recent_values(self.state, self.p))

    def detector_versions(self) -> list[str]:
        m = self.models
        return ["robust_z/1", "ewma/1", "cusum/1",
                m.version if m.season.shape[0] else "seasonal/none",
                m.version if m.lstm.shape[0] else "lstm/none", "context/1"]


def detectors_list(row_raw: np.ndarray, row_probs: np.ndarray, params: EnsembleParams,
                   versions: list[str]) -> list[dict]:
    """The anomaly record's ``detectors`` entries of one point (detectors that abstained are left out)."""
    out = []
    for d, name in enumerate(DETECTORS):
        p = row_probs[d]
        if params.weights[d] <= 0 or p != p:
            continue
        raw = row_raw[d]
        out.append({"name": name, "score": float(p), "raw": float(raw) if raw == raw else None,
                    "vote": bool(p >= params.vote_p), "model_version": versions[d]})
    return out


def explain(name: str, value: float, expected: float, row_probs: np.ndarray, params: EnsembleParams) -> str:
    """One line: what is odd, against what, and which detectors agree."""
    voters = [(DETECTORS[d], row_probs[d]) for d in range(ens.N_DET)
              if params.weights[d] > 0 and row_probs[d] == row_probs[d] and row_probs[d] >= params.vote_p]
    ranked = sorted(((DETECTORS[d], row_probs[d]) for d in range(ens.N_DET)
                     if params.weights[d] > 0 and row_probs[d] == row_probs[d]), key=lambda kv: -kv[1])
    lead = voters or ranked[:1]
    direction = "above" if value > expected else "below"
    who = ", ".join(f"{n} {p:.3f}" for n, p in lead[:3])
    agree = f"{len(voters)} of {len(ranked)} detectors vote anomaly" if ranked else "no detector ready"
    return f"{name} = {value:.4g}, {direction} the expected {expected:.4g}; {agree} ({who})"
