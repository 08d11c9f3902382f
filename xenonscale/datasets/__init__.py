"""Named public datasets: registry, checksums, local mirror, cache and download.

Each dataset (the Matbench composition sets, OQMD formation enthalpy, element
tables, QM9, the iQSPR PubChemQC set, MOSES, ...) has a canonical public URL
(or an explanation when the file is derived), a SHA-256 of its content, a
reader that returns a :class:`pandas.DataFrame`, and a cache.

Files are found in this order: the local mirror ``$XENONSCALE_DATA_DIR``
(laid out like ``../shared/data``: ``compositions/``, ``elements/``,
``molecules/``, ``structures/``), the cache (``$XENONSCALE_CACHE_DIR``,
default ``~/.cache/xenonscale``), then a download of the public URL. Offline
and without a mirror, :class:`~xenonscale.errors.DatasetUnavailableError`
names the dataset, its URL and the variable to set.

Examples
--------
>>> from xenonscale import datasets
>>> datasets.names(kind="elements")
['jarvis', 'magpie', 'mat2vec', 'oliynyk', 'xenonpy58']
>>> info = datasets.info("matbench_expt_gap")
>>> info.path, info.rows, info.input_column, info.target_column
('compositions/matbench_expt_gap.csv', 4604, 'formula', 'target')
>>> frame = datasets.load("matbench_expt_gap")  # doctest: +REQUIRES_DATA
>>> frame.shape
(4604, 2)

Cite the original publishers (``info(name).citation``) when reporting results.
"""

from __future__ import annotations

from xenonscale.datasets.files import content_sha256, fetch, load
from xenonscale.datasets.registry import KINDS, READERS, Dataset, names, register
from xenonscale.datasets.registry import get as info

__all__ = [
    "KINDS",
    "READERS",
    "Dataset",
    "content_sha256",
    "fetch",
    "info",
    "load",
    "names",
    "register",
]
