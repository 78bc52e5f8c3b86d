"""A small PyTorch multilayer perceptron as a scikit-learn binary classifier.

torch is needed to fit (optionally on CUDA), not to predict: the trained weights are kept
as numpy arrays and inference is a numpy forward pass, so a saved model loads and serves
in a process without torch (or without a GPU).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

logger = logging.getLogger(__name__)

# torch's thread count and default RNG (dropout masks) are process-global: two fits in
# parallel threads (a background retrain beside another training) would make each other
# non-reproducible, so fits take turns
_FIT_LOCK = threading.Lock()


class TorchMLPClassifier(ClassifierMixin, BaseEstimator):
    """ReLU MLP with dropout, trained with Adam on binary cross-entropy."""

    def __init__(
        self,
        hidden_layer_sizes: tuple[int, ...] = (32, 16),
        dropout: float = 0.1,
        learning_rate: float = 3e-3,
        weight_decay: float = 1e-4,
        epochs: int = 100,
        batch_size: int = 64,
        random_state: int = 0,
        device: str = "cpu",
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.dropout = dropout
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.batch_size = batch_size
        self.random_state = random_state
        self.device = device

    def fit(self, X: Any, y: Any) -> TorchMLPClassifier:
        import torch
        from torch import nn

        X = np.asarray(X, dtype=np.float32)
        y = np.asarray(y).astype(np.float32)
        device = self.device
        if device == "cuda" and not torch.cuda.is_available():
            logger.warning("MLP: CUDA requested but not available; training on CPU")
            device = "cpu"
        with _FIT_LOCK:
            return self._fit(torch, nn, X, y, device)

    def _fit(self, torch: Any, nn: Any, X: np.ndarray, y: np.ndarray, device: str) -> TorchMLPClassifier:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # tiny matrices: one thread is fastest and deterministic
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(self.random_state))
                layers: list[nn.Module] = []
                width = X.shape[1]
                for size in self.hidden_layer_sizes:
                    layers += [nn.Linear(width, int(size)), nn.ReLU(), nn.Dropout(float(self.dropout))]
                    width = int(size)
                layers.append(nn.Linear(width, 1))
                net = nn.Sequential(*layers).to(device)
                opt = torch.optim.Adam(net.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay)
                loss_fn = nn.BCEWithLogitsLoss()
                xt = torch.from_numpy(X).to(device)
                yt = torch.from_numpy(y).to(device)
                gen = torch.Generator().manual_seed(int(self.random_state))
                net.train()
                for _ in range(int(self.epochs)):
                    order = torch.randperm(len(xt), generator=gen).to(device)
                    for start in range(0, len(xt), int(self.batch_size)):
                        idx = order[start : start + int(self.batch_size)]
                        opt.zero_grad()
                        loss = loss_fn(net(xt[idx]).squeeze(1), yt[idx])
                        loss.backward()
                        opt.step()
                linears = [m for m in net if isinstance(m, nn.Linear)]
                self.weights_ = [m.weight.detach().cpu().numpy().astype(np.float64) for m in linears]
                self.biases_ = [m.bias.detach().cpu().numpy().astype(np.float64) for m in linears]
        finally:
            torch.set_num_threads(threads)
        self.device_ = device
        self.classes_ = np.array([0, 1])
        self.n_features_in_ = X.shape[1]
        return self

    def decision_function(self, X: Any) -> np.ndarray:
        h = np.asarray(X, dtype=np.float64)
        for i, (w, b) in enumerate(zip(self.weights_, self.biases_, strict=True)):
            h = h @ w.T + b
            if i < len(self.weights_) - 1:
                h = np.maximum(h, 0.0)
        return h[:, 0]

    def predict_proba(self, X: Any) -> np.ndarray:
        z = np.clip(self.decision_function(X), -50, 50)
        p = 1.0 / (1.0 + np.exp(-z))
        return np.column_stack([1.0 - p, p])

    def predict(self, X: Any) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)
