"""Training without third-party chatter: Lightning's tips and banners, known-harmless warnings.

Lightning prints its hardware banner (``GPU available: ...``), advertising
tips and a ``Trainer.fit stopped`` line at INFO through its ``rank_zero``
loggers; Lightning's pytree helper trips a torch deprecation warning on every
step; torchmetrics warns that ``SpearmanCorrCoef`` buffers its inputs (our
validation sets are sized for that). :func:`quiet_training` mutes exactly
those for the duration of a fit, at their source, and keeps every other
warning (a real problem still shows).

Examples
--------
>>> import logging
>>> from xenonscale.models.quiet import quiet_training
>>> with quiet_training():
...     logging.getLogger("lightning.pytorch.utilities.rank_zero").isEnabledFor(logging.INFO)
False
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator

__all__ = ["quiet_training"]

#: Loggers whose INFO lines are banners and tips, not results.
CHATTY_LOGGERS = (
    "lightning.pytorch.utilities.rank_zero",
    "lightning.fabric.utilities.rank_zero",
    "lightning.pytorch.accelerators.cuda",
)
#: Warnings that say nothing about the user's run (message regex, category).
HARMLESS_WARNINGS = (
    (r".*isinstance\(treespec, LeafSpec\)` is deprecated", Warning),
    (r"Metric `SpearmanCorrcoef` will save all targets and predictions", UserWarning),
    (r"The '\w+_dataloader' does not have many workers", UserWarning),
    (r".*`num_workers` argument", UserWarning),
)


@contextlib.contextmanager
def quiet_training() -> Iterator[None]:
    """Mute Lightning's banners/tips and the known-harmless warnings inside the block."""
    loggers = [logging.getLogger(name) for name in CHATTY_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            for message, category in HARMLESS_WARNINGS:
                warnings.filterwarnings("ignore", message=message, category=category)
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
