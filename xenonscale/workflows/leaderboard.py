"""Published Matbench v0.1 figures for the composition tasks, each with where it comes from.

Every number below was copied from the per-task leaderboard pages of the
Matbench repository, ``materialsproject/matbench`` at commit
:data:`SOURCE_COMMIT` (2024-01-20), files ``docs_src/Leaderboards
Per-Task/matbench_v0.1_<task>.md``, the tables rendered at
https://matbench.materialsproject.org. A figure is the mean over the five
Matbench folds and its standard deviation (``numpy.std``, ddof 0, as Matbench
computes it). Regression tasks are ranked by MAE, classification tasks by
ROC-AUC.

Which entries are kept, per task: the leaderboard's best (``best``), MODNet
(its newest version, ``modnet``), CrabNet (the original submission,
``crabnet``; CrabNet has no classification entries), the Matbench reference
random forest (``rf``: RF-SCM/Magpie, 500 trees on Magpie features and, for
structure tasks, the Sine Coulomb matrix) and ``dummy`` (the training-fold
mean; a stratified random classifier). ``mp_e_form`` and ``mp_gap`` are
structure tasks in Matbench: their best entry (coGN) and the MODNet and RF
entries use the crystal structure, which a composition model does not see, so
the best composition-only entry is listed too (``best-composition``).

Classification caveat: Matbench scores ``rocauc`` on what was submitted. Every
classification entry kept here has ``rocauc`` equal to its
``balanced_accuracy`` (both listed on the pages), i.e. it submitted hard 0/1
labels; ROC-AUC from probabilities (what :mod:`xenonscale.workflows.matbench`
reports as ``rocauc``) is higher for the same model, so compare those entries
with our ``balanced_accuracy`` too (reported beside it).

References: Dunn, Wang, Ganose, Dopp, Jain, npj Comput. Mater. 6, 138 (2020)
(Matbench, RF-SCM/Magpie, Dummy); De Breuck, Evans, Rignanese, J. Phys.:
Condens. Matter 33, 404002 (2021) and De Breuck, Hautier, Rignanese, npj
Comput. Mater. 7, 83 (2021) (MODNet); Wang, Kauwe, Murdock, Sparks, npj
Comput. Mater. 7, 77 (2021) (CrabNet); Xie et al., arXiv:2304.02213 (2023)
(Darwin); Ruff, Reiser, Stühmer, Friederich, arXiv:2302.14102 (2023) (coGN);
Ihalage and Hao, Adv. Sci. 9, 2200164 (2022) (Finder); Olson et al., GECCO
2016 (TPOT; the TPOT-Mat entry).

Examples
--------
>>> from xenonscale.workflows.leaderboard import LEADERBOARD, published
>>> entry = published("matbench_expt_gap", "best")
>>> entry.algorithm, entry.mean, entry.std
('Darwin', 0.2865, 0.0083)
>>> published("matbench_expt_gap", "modnet").mean
0.3327
>>> published("matbench_glass", "crabnet") is None
True
>>> sorted(LEADERBOARD)[:2]
['matbench_expt_gap', 'matbench_expt_is_metal']
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LEADERBOARD", "ROLES", "SOURCE", "SOURCE_COMMIT", "PublishedScore", "published"]

#: The Matbench repository commit the figures were read from.
SOURCE_COMMIT = "936176db18ca4cd7b38cbd957c017a5bac770c6b"
#: Where each figure comes from (``{task}`` is the Matbench task name).
SOURCE = (
    "materialsproject/matbench@936176d docs_src/Leaderboards Per-Task/matbench_v0.1_{task}.md "
    "(https://matbench.materialsproject.org)"
)
#: What an entry stands for, in the order tables list them.
ROLES = ("best", "best-composition", "modnet", "crabnet", "rf", "dummy")

_MATBENCH = "Dunn et al., npj Comput. Mater. 6, 138 (2020)"
_MODNET = "De Breuck, Evans, Rignanese, J. Phys.: Condens. Matter 33, 404002 (2021)"
_CRABNET = "Wang, Kauwe, Murdock, Sparks, npj Comput. Mater. 7, 77 (2021)"
_DARWIN = "Xie et al., arXiv:2304.02213 (2023)"
_COGN = "Ruff, Reiser, Stühmer, Friederich, arXiv:2302.14102 (2023)"
_FINDER = "Ihalage and Hao, Adv. Sci. 9, 2200164 (2022)"
_TPOT = "Olson et al., GECCO 2016 (TPOT); Matbench entry TPOT-Mat"
_LABELS = "rocauc equals balanced_accuracy on the page: hard labels were submitted"


@dataclass(frozen=True)
class PublishedScore:
    """One leaderboard entry: the algorithm's name, mean ± std over the 5 folds, reference."""

    role: str
    algorithm: str
    mean: float
    std: float
    reference: str
    note: str = ""


def _entries(*rows: tuple) -> dict[str, PublishedScore]:
    return {row[0]: PublishedScore(*row) for row in rows}


#: Our dataset name → role → :class:`PublishedScore` (metric: MAE or ROC-AUC, see the task).
LEADERBOARD: dict[str, dict[str, PublishedScore]] = {
    "matbench_expt_gap": _entries(
        ("best", "Darwin", 0.2865, 0.0083, _DARWIN, "fine-tuned language model"),
        ("modnet", "MODNet (v0.1.12)", 0.3327, 0.0239, _MODNET),
        ("crabnet", "CrabNet", 0.3463, 0.0088, _CRABNET,
         "Ax/SAASBO CrabNet v1.2.7 (tuned): 0.3310 ± 0.0071"),
        ("rf", "RF-SCM/Magpie", 0.4461, 0.0177, _MATBENCH),
        ("dummy", "Dummy", 1.1435, 0.0310, _MATBENCH),
    ),
    "matbench_expt_is_metal": _entries(
        ("best", "Darwin", 0.9598, 0.0041, _DARWIN, _LABELS),
        ("modnet", "MODNet (v0.1.12)", 0.9161, 0.0072, _MODNET, _LABELS),
        ("rf", "RF-SCM/Magpie", 0.9167, 0.0064, _MATBENCH, _LABELS),
        ("dummy", "Dummy", 0.4924, 0.0128, _MATBENCH, "stratified random labels"),
    ),
    "matbench_glass": _entries(
        ("best", "MODNet (v0.1.12)", 0.9603, 0.0075, _MODNET, _LABELS),
        ("modnet", "MODNet (v0.1.12)", 0.9603, 0.0075, _MODNET, _LABELS),
        ("rf", "RF-SCM/Magpie", 0.8587, 0.0158, _MATBENCH, _LABELS),
        ("dummy", "Dummy", 0.5005, 0.0178, _MATBENCH, "stratified random labels"),
    ),
    "matbench_steels_yield": _entries(
        ("best", "TPOT-Mat", 79.9468, 13.5883, _TPOT, "Matbench task matbench_steels"),
        ("modnet", "MODNet (v0.1.12)", 87.7627, 12.2188, _MODNET),
        ("crabnet", "CrabNet", 107.3160, 18.9057, _CRABNET),
        ("rf", "RF-SCM/Magpie", 103.5125, 11.0368, _MATBENCH),
        ("dummy", "Dummy", 229.7445, 9.6958, _MATBENCH),
    ),
    "matbench_mp_e_form": _entries(
        ("best", "coGN", 0.0170, 0.0003, _COGN, "uses the crystal structure"),
        ("best-composition", "Finder_v1.2 composition-only", 0.0839, 0.0011, _FINDER),
        ("modnet", "MODNet (v0.1.12)", 0.0448, 0.0039, _MODNET, "uses the crystal structure"),
        ("crabnet", "CrabNet", 0.0862, 0.0010, _CRABNET),
        ("rf", "RF-SCM/Magpie", 0.1165, 0.0008, _MATBENCH, "uses the crystal structure"),
        ("dummy", "Dummy", 1.0059, 0.0030, _MATBENCH),
    ),
    "matbench_mp_gap": _entries(
        ("best", "coGN", 0.1559, 0.0017, _COGN, "uses the crystal structure"),
        ("best-composition", "Finder_v1.2 composition-only", 0.2308, 0.0029, _FINDER),
        ("modnet", "MODNet (v0.1.12)", 0.2199, 0.0059, _MODNET, "uses the crystal structure"),
        ("crabnet", "CrabNet", 0.2655, 0.0029, _CRABNET),
        ("rf", "RF-SCM/Magpie", 0.3452, 0.0033, _MATBENCH, "uses the crystal structure"),
        ("dummy", "Dummy", 1.3272, 0.0060, _MATBENCH),
    ),
}  # fmt: skip


def published(task: str, role: str) -> PublishedScore | None:
    """The ``role`` entry (:data:`ROLES`) of ``task``'s leaderboard, or None where it has none."""
    return LEADERBOARD.get(task, {}).get(role)
