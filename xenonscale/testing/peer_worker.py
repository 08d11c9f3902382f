"""The peer side of :class:`xenonscale.testing.peers.PeerEnvironment` (run by the peers' Python).

This file is executed as a script by the interpreter of the peer environment
(``.venv-peers``: XenonPy 0.6.7, matminer, pandas < 3). It imports nothing
from xenonscale, so the peers never need the core environment and the core
never needs the peers' pins. It reads one JSON request per line on standard
input and answers one JSON line each::

    {"call": "xenonpy_compositions", "args": {...}, "out": "/tmp/…/3"}
    {"ok": true, "result": {...}, "frame": "/tmp/…/3.parquet"}

Tables come back as Parquet, arrays as ``.npy`` written with
``allow_pickle=False``; nothing is pickled across the boundary. Whatever the
peers print goes to standard error, so it cannot corrupt the answers. Each
call that computes something can repeat it (``repeats``) and reports wall and
CPU seconds per repeat, measured here, around the peer's own call only.
"""

from __future__ import annotations

import gc
import json
import os
import re
import sys
import time
import traceback
import warnings
from pathlib import Path

_XENONPY = {}


def _timed(fn, repeats):
    """``fn()``'s last result, with wall and CPU seconds of each of ``repeats`` calls."""
    wall, cpu, result = [], [], None
    for _ in range(max(1, int(repeats))):
        gc.collect()  # as the bench does before each of ours
        w0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    return result, {"wall_s": wall, "cpu_s": cpu}


def _xenonpy(elements_csv):
    """``xenonpy.descriptor``, imported once with HOME at a private folder holding its table.

    XenonPy reads ``~/.xenonpy/dataset/elements_completed.pd.xz`` (a pandas
    pickle of its own making, written here by this environment's pandas from the
    mirror's CSV) and fixes its configuration root from ``Path.home()`` at import
    time; HOME is restored right after the import.
    """
    if "module" in _XENONPY:
        return _XENONPY["module"]
    import tempfile

    import pandas as pd

    home = Path(tempfile.mkdtemp(prefix="xenonpy-home-"))
    dataset = home / ".xenonpy" / "dataset"
    dataset.mkdir(parents=True)
    pd.read_csv(elements_csv, index_col=0).to_pickle(dataset / "elements_completed.pd.xz")
    old_home = os.environ.get("HOME")
    os.environ["HOME"] = str(home)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import xenonpy.descriptor as descriptor
    finally:
        if old_home is None:
            os.environ.pop("HOME", None)
        else:
            os.environ["HOME"] = old_home
    _XENONPY["module"] = descriptor
    return descriptor


class _OldFormatElement:
    """pymatgen's ``Element`` with the configuration text in its former ``3d<sup>6</sup>`` form.

    XenonPy 0.6.7's OFM parses ``Element.electronic_structure`` with a regular
    expression for that form; today's pymatgen writes ``3d6`` and XenonPy would
    give every element a zero vector. With this shim XenonPy's own code computes
    the OFM it was written to compute.
    """

    def __init__(self, name):
        from pymatgen.core import Element

        self._element = Element(name)

    @property
    def electronic_structure(self):
        text = self._element.electronic_structure
        return re.sub(r"\.(\d)([spdf])(\d+)", r".\1\2<sup>\3</sup>", text)


# ------------------------------------------------------------------------- calls
def versions(args):
    """Versions of the peer environment's libraries (what the parity tests ran against)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": sys.version.split()[0]}
    for name in args.get("packages", ["xenonpy", "matminer", "pandas", "pymatgen", "rdkit"]):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found, None


def xenonpy_compositions(args):
    """XenonPy's ``Compositions(featurizers=..., n_jobs=1).transform`` on formulas or dicts."""
    descriptor = _xenonpy(args["elements_csv"])
    items = args["compositions"]
    if args.get("parse_formulas"):
        from pymatgen.core import Composition

        def run():
            comps = [Composition(f).as_dict() for f in items]
            return featurizer.transform(comps)
    else:

        def run():
            return featurizer.transform(items)

    featurizer = descriptor.Compositions(featurizers=args["featurizers"], n_jobs=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frame, times = _timed(run, args.get("repeats", 1))
    return {"times": times}, frame


def xenonpy_molecules(args):
    """A XenonPy fingerprint or ``DescriptorFeature`` class on SMILES (``on_errors="raise"``)."""
    from rdkit import rdBase

    descriptor = _xenonpy(args["elements_csv"])
    cls = getattr(descriptor, args["cls"])
    featurizer = cls(n_jobs=1, input_type="any", on_errors="raise", **args.get("kwargs", {}))
    smiles = args["smiles"]
    with rdBase.BlockLogs(), warnings.catch_warnings():  # XenonPy calls deprecated RDKit
        warnings.simplefilter("ignore")
        frame, times = _timed(
            lambda: featurizer.transform(smiles, return_type="df"), args.get("repeats", 1)
        )
    frame.columns = [str(c) for c in frame.columns]
    return {"times": times}, frame


def xenonpy_structures(args):
    """XenonPy's RDF or OFM ``featurize`` per structure (dicts from ``Structure.as_dict()``)."""
    import numpy as np
    from pymatgen.core import Structure

    descriptor = _xenonpy(args["elements_csv"])
    import xenonpy.descriptor.structure as module

    cls = {"RDF": descriptor.RadialDistributionFunction, "OFM": descriptor.OrbitalFieldMatrix}[
        args["cls"]
    ]
    structures = [Structure.from_dict(d) for d in args["structures"]]
    if args.get("remove_oxidation_states", True):
        for s in structures:
            s.remove_oxidation_states()  # XenonPy's OFM calls Element("Na+") otherwise
    featurizer = cls(n_jobs=1, **args.get("kwargs", {}))
    original = module.Element
    if args.get("shim", True):
        module.Element = _OldFormatElement
    try:
        rows, times = _timed(
            lambda: [featurizer.featurize(s) for s in structures], args.get("repeats", 1)
        )
    finally:
        module.Element = original
    return {"times": times, "labels": [str(x) for x in cls().feature_labels]}, np.array(rows)


def xenonpy_ofm_element(args):
    """XenonPy's OFM vector of one element with today's pymatgen (no shim): why the shim exists."""
    descriptor = _xenonpy(args["elements_csv"])
    vector = descriptor.OrbitalFieldMatrix.get_element_representation(args["element"])
    return {"vector": [float(v) for v in vector]}, None


def matminer_element_property(args):
    """matminer's ``ElementProperty.from_preset(...).featurize_many`` (one process).

    ``prebuilt`` parses the formulas into pymatgen ``Composition`` objects before
    the clock starts (matminer's own cost only); ``ignore_errors`` as matminer's.
    """
    import numpy as np
    from matminer.featurizers.composition import ElementProperty
    from pymatgen.core import Composition

    featurizer = ElementProperty.from_preset(args["preset"], impute_nan=args["impute_nan"])
    featurizer.set_n_jobs(1)
    formulas = args["formulas"]
    prebuilt = [Composition(f) for f in formulas] if args.get("prebuilt") else None
    ignore = bool(args.get("ignore_errors", False))

    def run():
        comps = prebuilt if prebuilt is not None else [Composition(f) for f in formulas]
        return featurizer.featurize_many(comps, ignore_errors=ignore, pbar=False)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows, times = _timed(run, args.get("repeats", 1))
    result = {"times": times, "labels": list(featurizer.feature_labels())}
    return result, np.array(rows, dtype=float)


def matminer_magpie(args):
    """matminer's ``MagpieData(impute_nan).all_elemental_props`` and its data folder."""
    import matminer
    from matminer.utils.data import MagpieData

    props = MagpieData(impute_nan=args["impute_nan"]).all_elemental_props
    folder = Path(matminer.__file__).parent / "utils" / "data_files" / "magpie_elementdata"
    table = {
        p: {s: [float(x) for x in v] if isinstance(v, list) else float(v) for s, v in d.items()}
        for p, d in props.items()
    }
    return {"props": table, "folder": str(folder)}, None


def xenonpy_molecules_array(args):
    """XenonPy's ``cls(n_jobs=1, input_type=...).transform(smiles, return_type="array")``.

    What ``bench/molecules.py`` times: ``input_type`` defaults to ``"smiles"``,
    ``on_errors`` to ``"raise"``, ``kwargs`` go to the class. Only ``transform``
    is timed; its array comes back as float64 (``shape`` in the result). With
    ``values`` false no array comes back (timed rounds whose output is unused).
    """
    import numpy as np
    from rdkit import rdBase

    descriptor = _xenonpy(args["elements_csv"])
    featurizer = getattr(descriptor, args["cls"])(
        n_jobs=1,
        input_type=args.get("input_type", "smiles"),
        on_errors=args.get("on_errors", "raise"),
        **args.get("kwargs", {}),
    )
    smiles = args["smiles"]
    with rdBase.BlockLogs(), warnings.catch_warnings():  # XenonPy calls deprecated RDKit
        warnings.simplefilter("ignore")
        values, times = _timed(
            lambda: featurizer.transform(smiles, return_type="array"), args.get("repeats", 1)
        )
    result = {"times": times, "shape": list(np.shape(values))}
    return result, np.asarray(values, dtype=np.float64) if args.get("values", True) else None


_MATMINER_ALIASES = {"RDF": "RadialDistributionFunction", "OFM": "OrbitalFieldMatrix"}


def matminer_structures(args):
    """A matminer structure featurizer's ``featurize_many`` (one process) on pymatgen dicts.

    ``cls``: a class of ``matminer.featurizers.structure`` (``"RDF"`` and
    ``"OFM"`` name RadialDistributionFunction and OrbitalFieldMatrix), built
    as ``cls.from_preset(preset, **kwargs)`` when ``preset`` is given (e.g.
    SiteStatsFingerprint), else ``cls(**kwargs)``; ``fit`` fits it on the
    structures first. Oxidation states are removed unless
    ``remove_oxidation_states`` is false; ``oxidation_guesses`` then adds
    pymatgen's guesses (``add_oxidation_state_by_guess``). Only
    ``featurize_many`` is timed (``ignore_errors`` default true: NaN rows;
    ``n_jobs`` processes, default 1); the labels come back too.
    """
    import matminer.featurizers.structure as module
    import numpy as np
    from pymatgen.core import Structure

    cls = getattr(module, _MATMINER_ALIASES.get(args["cls"], args["cls"]))
    kwargs = args.get("kwargs", {})
    preset = args.get("preset")
    featurizer = cls.from_preset(preset, **kwargs) if preset else cls(**kwargs)
    featurizer.set_n_jobs(int(args.get("n_jobs", 1)))
    structures = [Structure.from_dict(d) for d in args["structures"]]
    if args.get("remove_oxidation_states", True):
        for s in structures:
            s.remove_oxidation_states()
    if args.get("oxidation_guesses"):
        for s in structures:
            s.add_oxidation_state_by_guess()
    ignore = bool(args.get("ignore_errors", True))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if args.get("fit"):
            featurizer.fit(structures)
        rows, times = _timed(
            lambda: featurizer.featurize_many(structures, ignore_errors=ignore, pbar=False),
            args.get("repeats", 1),
        )
    result = {"times": times, "labels": [str(x) for x in featurizer.feature_labels()]}
    return result, np.array(rows, dtype=float)


def matminer_ofm_vectors(args):
    """matminer's OFM one-hot valence vectors, one row per ``z`` (Z = 1…94), flattened."""
    import numpy as np
    from matminer.featurizers.structure import OrbitalFieldMatrix

    ohvs = OrbitalFieldMatrix(period_tag=bool(args.get("period_tag", False))).ohvs
    zs = sorted(int(z) for z in ohvs)
    return {"z": zs}, np.array([np.asarray(ohvs[z], dtype=float).ravel() for z in zs])


CALLS = {
    fn.__name__: fn
    for fn in (
        versions,
        xenonpy_compositions,
        xenonpy_molecules,
        xenonpy_structures,
        xenonpy_ofm_element,
        matminer_element_property,
        matminer_magpie,
        xenonpy_molecules_array,
        matminer_structures,
        matminer_ofm_vectors,
    )
}


def _save(out, payload):
    """Write a frame (Parquet) or an array (``.npy``, no pickle); the path, or None."""
    if payload is None:
        return {}
    import numpy as np

    if isinstance(payload, np.ndarray):
        path = f"{out}.npy"
        np.save(path, payload, allow_pickle=False)
        return {"array": path}
    path = f"{out}.parquet"
    payload.to_parquet(path)
    return {"frame": path}


def main():
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # peers' prints go to stderr
    sys.stdout = sys.stderr
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        try:
            result, payload = CALLS[request["call"]](request.get("args", {}))
            answer = {"ok": True, "result": result, **_save(request["out"], payload)}
        except Exception as exc:
            answer = {
                "ok": False,
                "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(),
            }
        answers.write(json.dumps(answer) + "\n")


if __name__ == "__main__":
    main()
