"""Will it fit? The peak memory of a converted encoder for inference or fine-tuning, estimated from
its shapes and structure without running it (and without torch), and the measurement that holds
the estimate to account (:mod:`bertconv.memory.measure`, which needs torch and transformers).

    report = bertconv.memory.estimate("bert-large-hf", batch=[8, 32], seq_len=512, mode="train",
                                      dtype="bfloat16", gpu="A100-40GB")
    print(report.render())          # or report.to_dict()
"""
from __future__ import annotations

from .estimate import (
           ATTENTIONS,
           DEFAULT_ATTENTION,
           DEVICES,
           DTYPES,
           MODES,
           OPTIMIZERS,
           Estimate,
           Settings,
           simulate,
)
from .report import GPU, GPUS, MemoryReport, estimate, fits, parse_gpu
from .shape import EncoderShape, encoder_shape, shape_from_config

__all__ = [
           "ATTENTIONS",
           "DEFAULT_ATTENTION",
           "DEVICES",
           "DTYPES",
           "GPU",
           "GPUS",
           "MODES",
           "OPTIMIZERS",
           "EncoderShape",
           "Estimate",
           "MemoryReport",
           "Settings",
           "encoder_shape",
           "estimate",
           "fits",
           "parse_gpu",
           "shape_from_config",
           "simulate",
]
