"""Contracts shipped as test suites: what every featurizer, source and store must do.

Like zarr's ``StoreTests``, optuna's ``StorageTestCase`` and scikit-learn's
``check_estimator``, these run inside xenonscale's own tests
(``tests/test_contracts.py``: every registered featurizer, every source
format on the local disk and on S3, the store on both) and in a plugin's tests:

:func:`check_featurizer`
    One call, no pytest needed: the batch contract, scikit-learn manners,
    pickling, determinism, batch invariance, ``on_error``.
:class:`SourceTests`
    A pytest base class: subclass it, say how to write records in your format,
    and it provides the tests of the :class:`~xenonscale.sources.base.Source`
    contract (plan, read, ids, fingerprint, empty / missing / malformed files,
    pickling).
:class:`StoreTests`
    A pytest base class for a store location (local folder, ``s3://`` bucket):
    create with the engine, region writes, resume, spec refusal, job lock,
    ``open_store`` / ``read_errors``.

:class:`SourceTests` and :class:`StoreTests` need pytest (a test dependency,
imported only when they are first used); :func:`check_featurizer` needs
scikit-learn (a dependency of xenonscale).

Examples
--------
>>> from xenonscale.featurize.registry import FeaturizerSpec
>>> from xenonscale.testing import check_featurizer
>>> check_featurizer(
...     FeaturizerSpec.parse("composition", "magpie").build(),
...     ["Fe2O3", "NaCl", "LiFePO4"],
...     ["Xx2O3", "garbage!", None],
... )  # doctest: +SKIP

A plugin's own source format (pytest collects the ``Test`` subclass)::

    import pytest
    from xenonscale.testing import SourceRecord, SourceTests

    class TestMyFormat(SourceTests):
        filename = "records.myf"
        kind = "composition"

        @pytest.fixture
        def records(self):
            return [SourceRecord(f, id=f"m{i}") for i, f in enumerate(FORMULAS)]

        def encode(self, records):  # the bytes of one file of the format
            return "".join(f"{r.id} {r.input}\\n" for r in records).encode()

        def open(self, url, storage_options):
            return MyFormatSource(url, storage_options=storage_options)
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

from xenonscale.testing.featurizers import FEATURIZER_CHECKS, check_featurizer

__all__ = ["FEATURIZER_CHECKS", "SourceRecord", "SourceTests", "StoreTests", "check_featurizer"]

_LAZY = {  # these import pytest: only when asked for
    "SourceRecord": "xenonscale.testing.sources",
    "SourceTests": "xenonscale.testing.sources",
    "StoreTests": "xenonscale.testing.stores",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'xenonscale.testing' has no attribute {name!r}")
    fresh = sorted({m for m in _LAZY.values() if m not in sys.modules})
    if fresh:  # pytest's assertion messages in the base classes (before they are imported)
        import pytest

        pytest.register_assert_rewrite(*fresh)
    return getattr(importlib.import_module(module), name)
