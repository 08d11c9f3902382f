"""The matminer side of :mod:`xenonscale.featurize.matminer`: one featurizer, one interpreter.

This file is run as a script by an interpreter that has matminer (matminer
pins ``pandas<3``, so usually not the core one). It imports only the standard
library, numpy, pymatgen and matminer, never xenonscale. It speaks JSON lines
on standard input and output; whatever matminer prints goes to standard
error, so it cannot corrupt an answer::

    <- {"hello": {"matminer": "0.10.1", ...}}            (or {"fatal": "..."} and exit)
    -> {"op": "build", "name": "EwaldEnergy", "preset": false, "args": [],
        "kwargs": {"accuracy": "4"}, "oxidation": "guess"}
    <- {"built": {"labels": [...], "citations": [...], "implementors": [...], ...}}
    -> {"op": "featurize", "records": [{...}, ...]}
    <- {"ready": 2}
    <- {"i": 0, "v": [-0.25, ...]}                       (one line per record, in order)
    <- {"i": 1, "e": "ValueError: ..."}
    <- {"done": 2}

Arguments arrive as Python source text of literals and are read with
``ast.literal_eval`` only; the class is looked up by name among matminer's
structure or composition featurizers (never ``eval``). Floats go back as
``repr`` text, which reads back to the same float64. Records are pymatgen
``Structure.as_dict()`` mappings (structure featurizers) or
``Composition`` inputs (a formula string or an ``{element: amount}``
mapping; composition featurizers). The process ends at the end of its input,
or when its parent process is gone.

Examples
--------
An error row's text is the exception's type and message on one line:

>>> from xenonscale.featurize.matminer_sidecar import _text
>>> _text(ValueError("no   oxidation  states"))
'ValueError: no oxidation states'
"""

import ast
import json
import math
import numbers
import os
import sys
import threading
import time
import traceback
import warnings

import numpy as np

MODULES = {
    "structure": "matminer.featurizers.structure",
    "composition": "matminer.featurizers.composition",
}
OXIDATION = ("keep", "remove", "guess")


def _versions():
    from importlib.metadata import version

    found = {"python": sys.version.split()[0], "executable": sys.executable}
    for name in ("matminer", "pymatgen", "numpy", "pandas"):
        found[name] = version(name)
    return found


def _featurizer_classes():
    """``{name: (kind, class)}`` of every matminer structure and composition featurizer."""
    import importlib

    from matminer.featurizers.base import BaseFeaturizer

    found = {}
    for kind, module_name in MODULES.items():
        module = importlib.import_module(module_name)
        for name in dir(module):
            value = getattr(module, name)
            featurizer = isinstance(value, type) and issubclass(value, BaseFeaturizer)
            if featurizer and value is not BaseFeaturizer and not name.startswith("_"):
                found[name] = (kind, value)
    return found


def _text(exc):
    message = " ".join(str(exc).split())
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


class Featurizer:
    """One matminer featurizer built from a ``build`` request, applied record by record."""

    def __init__(self, request):
        classes = _featurizer_classes()
        name = request["name"]
        if name not in classes:
            raise LookupError(name, sorted(classes))
        self.kind, cls = classes[name]
        args = [ast.literal_eval(text) for text in request.get("args", [])]
        kwargs = {k: ast.literal_eval(v) for k, v in request.get("kwargs", {}).items()}
        self.oxidation = request.get("oxidation", "keep")
        if self.oxidation not in OXIDATION:
            raise ValueError(f"oxidation={self.oxidation!r}: use one of {OXIDATION}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if request.get("preset"):
                self.featurizer = cls.from_preset(*args, **kwargs)
            else:
                self.featurizer = cls(*args, **kwargs)
        self.cls = cls

    def describe(self):
        """Labels, citations, implementors and the class (``needs_fit`` if labels need fit)."""
        try:
            labels = [str(label) for label in self.featurizer.feature_labels()]
        except Exception as exc:
            return {"needs_fit": _text(exc)}
        return {
            "labels": labels,
            "citations": [str(c) for c in self.featurizer.citations()],
            "implementors": [str(i) for i in self.featurizer.implementors()],
            "class": f"{self.cls.__module__}.{self.cls.__qualname__}",
            "kind": self.kind,
            "versions": _versions(),
        }

    def read(self, record):
        """A record → the pymatgen object matminer featurizes (oxidation states as asked)."""
        if self.kind == "structure":
            from pymatgen.core import Structure

            item = Structure.from_dict(record)
            if self.oxidation in ("remove", "guess"):
                item.remove_oxidation_states()
            if self.oxidation == "guess":
                item.add_oxidation_state_by_guess()
            return item
        from pymatgen.core import Composition

        item = Composition(record)
        if self.oxidation in ("remove", "guess"):
            item = item.remove_charges()
        if self.oxidation == "guess":
            item = item.add_charges_from_oxi_state_guesses()
        return item

    def row(self, record, labels):
        """One record → ``{"v": values}`` or ``{"e": reason}`` (never raises for a record)."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                values = self.featurizer.featurize(self.read(record))
        except Exception as exc:  # whatever matminer or pymatgen raise for this record
            return {"e": _text(exc)}
        if len(values) != len(labels):
            return {"e": f"matminer returned {len(values)} values for {len(labels)} labels"}
        out = []
        for label, value in zip(labels, values, strict=True):
            if value is None:
                out.append(math.nan)  # as featurize_many's float array reads it
            elif isinstance(value, bool | numbers.Real | np.bool_):
                out.append(float(value))
            else:
                return {
                    "e": f"feature {label!r} is {value!r} ({type(value).__name__}), not a "
                    "number: leave it out of the featurizer's arguments"
                }
        return {"v": out}


def _watch_parent(parent):
    """End this process when the parent is gone (a stuck record would keep it alive)."""
    while True:
        time.sleep(2.0)
        if os.getppid() != parent:
            os._exit(0)


def main():
    # Python put this file's folder first on sys.path, and xenonscale's matminer.py is there.
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # matminer's prints go to stderr
    sys.stdout = sys.stderr
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()

    def send(message):
        answers.write(json.dumps(message) + "\n")

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            versions = _versions()
            _featurizer_classes()
    except Exception as exc:
        send({"fatal": _text(exc)})
        sys.exit(3)
    send({"hello": versions})
    featurizer, labels = None, []
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        if request["op"] == "build":
            featurizer, labels = None, []
            try:
                featurizer = Featurizer(request)
                built = featurizer.describe()
                labels = built.get("labels", [])
                send({"built": built})
            except LookupError as exc:
                send({"unknown": exc.args[0], "known": exc.args[1]})
            except Exception as exc:
                send({"error": _text(exc), "traceback": traceback.format_exc()})
        elif request["op"] == "featurize":
            records = request["records"]
            send({"ready": len(records)})
            for i, record in enumerate(records):
                send({"i": i, **featurizer.row(record, labels)})
            send({"done": len(records)})


if __name__ == "__main__":
    main()
