"""Which device training runs on: `MLOPS_DEVICE` auto | cpu | cuda, falling back to CPU."""

from __future__ import annotations

import functools
import json
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class DeviceChoice:
    """The device per library, and why (a note when the request could not be honoured)."""

    requested: str
    xgboost: str  # "cpu" | "cuda"
    torch: str  # "cpu" | "cuda" (cpu also when torch is missing)
    note: str | None = None

    @property
    def used(self) -> str:
        return "cuda" if "cuda" in (self.xgboost, self.torch) else "cpu"


@functools.lru_cache(maxsize=1)
def torch_cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    try:
        return bool(torch.cuda.is_available())
    except Exception:  # noqa: BLE001 - a broken driver means "no GPU", not a crash
        return False


def gpu_visible() -> bool:
    """An NVIDIA device node (or torch seeing CUDA): cheap, and silent on CPU-only machines."""
    if os.environ.get("CUDA_VISIBLE_DEVICES") in ("", "-1"):
        return False
    return any(Path("/dev").glob("nvidia[0-9]*")) or torch_cuda_available()


@functools.lru_cache(maxsize=1)
def xgboost_cuda_available() -> bool:
    """True when a GPU is visible, this xgboost build has CUDA, and a tiny fit on the GPU succeeds.

    The probe fit only runs when a GPU is visible: without one xgboost warns from a C
    callback (in whatever thread trains), which is noise at best.
    """
    if not gpu_visible():
        return False
    try:
        import numpy as np
        import xgboost as xgb

        if not xgb.build_info().get("USE_CUDA"):
            return False
        dm = xgb.DMatrix(np.array([[0.0], [1.0]]), label=np.array([0.0, 1.0]))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            booster = xgb.train({"device": "cuda", "tree_method": "hist", "verbosity": 1}, dm, num_boost_round=1)
        # Without a visible GPU, xgboost warns and silently switches the booster to CPU.
        if any("GPU" in str(w.message) for w in caught):
            return False
        config = json.loads(booster.save_config())
        return str(config["learner"]["generic_param"].get("device", "")).startswith("cuda")
    except Exception:  # noqa: BLE001 - any failure means "do not use the GPU"
        return False


def resolve_device(requested: str) -> DeviceChoice:
    """auto -> CUDA where each library can use it, else CPU; cuda without a GPU -> CPU + note."""
    if requested not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {requested!r}")
    if requested == "cpu":
        return DeviceChoice(requested, "cpu", "cpu")
    xgb_dev = "cuda" if xgboost_cuda_available() else "cpu"
    torch_dev = "cuda" if torch_cuda_available() else "cpu"
    note = None
    if requested == "cuda" and (xgb_dev, torch_dev) != ("cuda", "cuda"):
        missing = [lib for lib, dev in (("xgboost", xgb_dev), ("torch", torch_dev)) if dev != "cuda"]
        note = f"CUDA requested but not usable by {', '.join(missing)}; falling back to CPU for those"
        logger.warning(note)
    elif requested == "auto" and (xgb_dev, torch_dev) == ("cpu", "cpu"):
        note = "no usable GPU found; training on CPU"
        logger.info(note)
    return DeviceChoice(requested, xgb_dev, torch_dev, note)
