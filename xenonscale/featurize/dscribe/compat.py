"""Loading DScribe lazily, and the one fix DScribe 2.1.2 needs to run beside ASE ≥ 3.26.

:func:`load_dscribe` imports ``dscribe.descriptors`` (with numba, sparse and
scikit-learn: about two seconds) the first time a ``dscribe:`` featurizer
builds its descriptor, never when the registry is imported, and names the
install command when DScribe is missing.

The fix. DScribe's ``dscribe.core.System`` (an ``ase.Atoms`` subclass that
MBTR k = 2, 3, Valle–Oganov and the sine matrix build from every system)
passes its arguments to ``ase.Atoms.__init__`` *by position*. ASE 3.26 added
``velocities`` after ``info`` and moved ``calculator`` out of the positional
list, so DScribe's ``calculator`` lands in ``info`` and its ``info`` (a dict,
never None) in ``velocities``: every such call raises ``TypeError: Use only
one of "momenta" and "velocities"`` (SINGROUP/dscribe issue #165, open at
DScribe 2.1.2). :func:`load_dscribe` probes for exactly that failure and,
only when it occurs, replaces ``System.__init__`` with one that passes the
same values to ``ase.Atoms.__init__`` *by keyword* and sets DScribe's own
attributes (``wyckoff_positions``, ``equivalent_atoms`` and the four caches)
as DScribe does. Nothing else changes: the descriptors' arithmetic is
DScribe's. The fix is process-wide (so DScribe called directly, as the
parity tests do, works too) and applied once.

Examples
--------
>>> import warnings
>>> from ase.build import bulk
>>> sine = load_dscribe().SineMatrix(n_atoms_max=2, permutation="eigenspectrum")
>>> with warnings.catch_warnings():
...     warnings.simplefilter("ignore", FutureWarning)  # DScribe calls atoms.get_calculator()
...     sine.create(bulk("Si")).round(2).tolist()
[323.31, 239.95]
"""

from __future__ import annotations

import threading
import warnings
from types import ModuleType

from xenonscale.errors import FeaturizerError

__all__ = ["DSCRIBE_HINT", "dscribe_version", "load_dscribe", "system_fix_applied"]

DSCRIBE_HINT = "pip install 'xenonscale[dscribe]'"
_LOCK = threading.Lock()
_STATE: dict[str, object] = {}


def load_dscribe() -> ModuleType:
    """``dscribe.descriptors``, imported once per process, with the ``System`` fix if needed.

    Raises
    ------
    FeaturizerError
        DScribe (or ASE) is not importable; the message names the install command.
    """
    module = _STATE.get("descriptors")
    if module is not None:
        return module  # type: ignore[return-value]
    with _LOCK:
        if "descriptors" not in _STATE:
            try:
                import dscribe.descriptors  # lazy: ~2 s (numba, sparse, sklearn)
                from dscribe.core import system  # lazy: with dscribe
            except ImportError as exc:
                raise FeaturizerError(
                    f"dscribe: featurizers need DScribe, which is not importable ({exc}): "
                    f"{DSCRIBE_HINT}"
                ) from exc
            _STATE["fixed"] = _fix_system(system.System)
            _STATE["descriptors"] = dscribe.descriptors
    return _STATE["descriptors"]  # type: ignore[return-value]


def system_fix_applied() -> bool:
    """Whether :func:`load_dscribe` had to replace ``System.__init__`` in this process."""
    load_dscribe()
    return bool(_STATE["fixed"])


def dscribe_version() -> str:
    """The installed DScribe version (for provenance), or ``"unknown"``."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dscribe")
    except PackageNotFoundError:
        return "unknown"


def _broken(system_class) -> bool:
    """True when ``System.from_atoms`` fails on a plain one-atom ``Atoms`` (issue #165)."""
    from ase import Atoms  # lazy: ASE comes with DScribe

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # DScribe calls atoms.get_calculator()
        try:
            system_class.from_atoms(Atoms("H", positions=[[0.0, 0.0, 0.0]]))
        except TypeError as exc:
            return "velocities" in str(exc)
    return False


def _fix_system(system_class) -> bool:
    """Give ``System`` a keyword-passing ``__init__`` when the positional one is broken."""
    if not _broken(system_class):
        return False
    from ase import Atoms  # lazy: ASE comes with DScribe

    def __init__(
        self,
        symbols=None,
        positions=None,
        numbers=None,
        tags=None,
        momenta=None,
        masses=None,
        magmoms=None,
        charges=None,
        scaled_positions=None,
        cell=None,
        pbc=None,
        celldisp=None,
        constraint=None,
        calculator=None,
        info=None,
        wyckoff_positions=None,
        equivalent_atoms=None,
    ):
        Atoms.__init__(
            self,
            symbols,
            positions=positions,
            numbers=numbers,
            tags=tags,
            momenta=momenta,
            masses=masses,
            magmoms=magmoms,
            charges=charges,
            scaled_positions=scaled_positions,
            cell=cell,
            pbc=pbc,
            celldisp=celldisp,
            constraint=constraint,
            calculator=calculator,
            info=info,
        )
        self.wyckoff_positions = wyckoff_positions
        self.equivalent_atoms = equivalent_atoms
        self._cell_inverse = None
        self._displacement_tensor = None
        self._distance_matrix = None
        self._inverse_distance_matrix = None

    system_class.__init__ = __init__
    if _broken(system_class):  # pragma: no cover - another ASE change: say so, do not guess
        raise FeaturizerError(
            "dscribe: DScribe's System still cannot be built from ase.Atoms after the keyword "
            f"fix (an ASE/DScribe version pair not seen before): {DSCRIBE_HINT} with a matching ASE"
        )
    return True
