"""Train the one-layer LSTM forecaster with torch (CPU) and export its weights for :mod:`udfs.lstm`.

The model reads one normalised value per step and predicts the next. It is trained on overlapping chunks of the
history with truncated backpropagation (the first ``burn_in`` steps of each chunk only warm the state up), which
matches how the stream runs it: statefully, one step per point. Needs the ``train`` extra (torch); the stream
only ever loads the exported array.
"""

from __future__ import annotations

import time

import numpy as np

from models.artifacts import Artifact

KIND = "lstm"


def _require_torch():
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise RuntimeError("training the LSTM needs torch: install the project's 'train' extra "
                           "(./augur.sh does)") from exc
    return torch


def build(hidden: int, seed: int):
    torch = _require_torch()
    torch.manual_seed(seed)

    class Forecaster(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = torch.nn.LSTM(1, hidden, batch_first=True)
            self.out = torch.nn.Linear(hidden, 1)

        def forward(self, u):
            h, _ = self.lstm(u)
            return self.out(h).squeeze(-1)

    return Forecaster().double()


def fit(y: np.ndarray, hidden: int = 8, chunk: int = 48, burn_in: int = 16, steps: int = 80, batch: int = 32,
        lr: float = 0.01, seed: int = 0, input_clip: float = 8.0):
    """Train on the finite values of ``y``; return ``(model, weights)``. Empty weights if there is too little data.

    Each of ``steps`` Adam steps takes ``batch`` chunks of ``chunk`` points at random (seeded) offsets.
    """
    torch = _require_torch()
    torch.set_num_threads(1)
    y = np.asarray(y, dtype=np.float64)
    y = y[np.isfinite(y)]
    if y.shape[0] < chunk + 1:
        return None, np.empty(0)
    mu = float(np.mean(y))
    sd = float(np.std(y)) or 1.0
    u = torch.tensor(np.clip((y - mu) / sd, -input_clip, input_clip))
    target = torch.tensor((y - mu) / sd)
    model = build(hidden, seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    offsets = torch.arange(chunk)
    for _ in range(steps):
        starts = torch.randint(0, y.shape[0] - chunk, (batch,), generator=gen)
        idx = starts[:, None] + offsets[None, :]
        opt.zero_grad()
        pred = model(u[idx][..., None])
        loss = torch.nn.functional.smooth_l1_loss(pred[:, burn_in:], target[idx + 1][:, burn_in:])
        loss.backward()
        opt.step()
    return model, export(model, mu, sd)


def export(model, mu: float, sd: float) -> np.ndarray:
    lstm = model.lstm
    hidden = lstm.hidden_size
    parts = [np.array([hidden, mu, sd], dtype=np.float64)]
    for t in (lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0, lstm.bias_hh_l0, model.out.weight,
              model.out.bias):
        parts.append(t.detach().cpu().double().numpy().reshape(-1))
    return np.concatenate(parts)


def train_artifact(y: np.ndarray, series_id: str, **kwargs) -> Artifact:
    start = time.perf_counter()
    _, weights = fit(y, **kwargs)
    return Artifact(KIND, f"{KIND}/{len(y)}", {"weights": weights},
                    {"series_id": series_id, "points": int(len(y)), "fit_s": time.perf_counter() - start})
