"""Composition descriptors: xenonscale side by side with XenonPy 0.6.7 and matminer.

What is measured (one core's worth of work for every tool):

* **XenonPy** ``xenonpy.descriptor.Compositions`` with its seven poolings
  (WeightedAverage, WeightedSum, WeightedVariance, GeometricMean, HarmonicMean,
  MaxPooling, MinPooling → 406 features), ``n_jobs=1``. XenonPy does not parse
  formula strings, so it is timed twice: *from strings* (pymatgen
  ``Composition(f).as_dict()`` + XenonPy) and *XenonPy only* (dicts parsed
  beforehand).
* **matminer** ``ElementProperty.from_preset("magpie")`` (132 features),
  ``set_n_jobs(1)`` + ``featurize_many``: *from strings* (pymatgen parse +
  matminer) and *matminer only* (``Composition`` objects parsed beforehand).
* **xenonscale** ``Compositions(elements="xenonpy58", featurizers="pooling")``
  (the same 406 features) and ``ElementStatistics()`` (the same 132), always
  from formula strings, on the peers' sample and on a much larger one.

The peers take milliseconds per composition, so they run on ``--peer-rows``
formulas (default 500) and xenonscale on ``--rows`` (default 20000) as well as
on that same sample. Each measurement is one untimed warm-up call followed by
``--repeats`` timed calls (``time.perf_counter``, garbage collected before
each); the table gives the median and minimum µs per composition. The bench
also checks that xenonscale's numbers agree with XenonPy's and matminer's on
the sample, so like is compared with like.

Formulas are a seeded random sample of a real dataset (default Matbench
``matbench_mp_e_form``, column ``formula``). ``XENONSCALE_DATA_DIR`` defaults
to ``../shared/data`` beside the project when that folder exists.

XenonPy and matminer run in their own environment (``.venv-peers``: matminer
pins ``pandas<3``), one long-lived interpreter called through
:class:`xenonscale.testing.peers.PeerEnvironment`; their seconds are measured
in that process around their own call only (no transfer of inputs or outputs
is counted against them). Rounds stay interleaved: each round calls every
case once, ours in this process and theirs in the peer process, so slow
drifts of a shared machine spread over every tool.

Run::

    make bench                       # = python bench/compositions.py
    python bench/compositions.py --rows 50000 --peer-rows 1000 --json bench/results/run.json
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import json
import os
import platform
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
if not os.environ.get("XENONSCALE_DATA_DIR") and SHARED_DATA.is_dir():
    os.environ["XENONSCALE_DATA_DIR"] = str(SHARED_DATA)

from xenonscale import datasets  # noqa: E402  (after the data-dir default)
from xenonscale.featurize import Compositions, ElementStatistics  # noqa: E402
from xenonscale.testing.peers import PeerEnvironment  # noqa: E402

XENONPY_POOLINGS = [
    "WeightedAverage",
    "WeightedSum",
    "WeightedVariance",
    "GeometricMean",
    "HarmonicMean",
    "MaxPooling",
    "MinPooling",
]
RTOL_REPORT = 1e-6  # cells worse than this are listed by formula and column
ATOL_FACTOR = 1e-9  # absolute floor = ATOL_FACTOR × column scale (for exact zeros)
NONZERO_FACTOR = 1e-6  # "clearly nonzero" peer cells: |peer| > NONZERO_FACTOR × column scale


@dataclass
class Timing:
    """One measurement: ``seconds`` of each timed call over ``rows`` compositions."""

    tool: str
    what: str
    rows: int
    seconds: list[float]
    features: int
    failed_rows: int = 0

    @property
    def median_us(self) -> float:
        return float(np.median(self.seconds)) / self.rows * 1e6

    @property
    def min_us(self) -> float:
        return min(self.seconds) / self.rows * 1e6

    @property
    def per_second(self) -> float:
        return 1e6 / self.median_us

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(median_us=self.median_us, min_us=self.min_us, per_second=self.per_second)
        return out


@dataclass
class Parity:
    """xenonscale against a peer on the same formulas, aligned by feature label."""

    peer: str
    rows: int
    columns: int
    cells_compared: int = 0
    max_rel_diff: float = 0.0
    max_rel_diff_nonzero: float = 0.0
    worst: dict[str, Any] = field(default_factory=dict)
    cells_over_rtol: int = 0
    examples_over_rtol: list[dict[str, Any]] = field(default_factory=list)
    ours_nan_peer_finite: int = 0
    peer_nan_ours_finite: int = 0
    peer_inf_ours_finite: int = 0
    both_nonfinite: int = 0
    peer_nonfinite_by_column: dict[str, int] = field(default_factory=dict)
    peer_nonfinite_examples: list[dict[str, Any]] = field(default_factory=list)
    missing_labels: list[str] = field(default_factory=list)


# --------------------------------------------------------------------- timing
@dataclass
class Case:
    """One thing to time: ``fn()`` featurizes ``rows`` compositions."""

    tool: str
    what: str
    rows: int
    width: int
    fn: Callable[[], Any]
    #: fn returns ``(output, seconds)``: it timed itself (a peer, in its own process)
    self_timed: bool = False


def measure(cases: Sequence[Case], repeats: int) -> tuple[list[Timing], list[Any]]:
    """Warm every case up once, then time ``repeats`` rounds, one call of each case per round.

    Interleaving the rounds spreads slow drifts of a shared machine (another
    process, frequency changes) over every tool instead of one.
    """
    results = [case.fn()[0] if case.self_timed else case.fn() for case in cases]
    seconds: list[list[float]] = [[] for _ in cases]
    for _ in range(repeats):
        for i, case in enumerate(cases):
            gc.collect()
            start = time.perf_counter()
            output = case.fn()
            elapsed = time.perf_counter() - start
            if case.self_timed:
                output, elapsed = output
            results[i] = output
            seconds[i].append(elapsed)
    timings = []
    for case, secs, result in zip(cases, seconds, results, strict=True):
        if isinstance(result, pd.DataFrame):  # a peer: rows that came back all-NaN
            failed = int(result.isna().all(axis=1).sum())
        else:
            failed = int((~result.ok).sum())
        timings.append(Timing(case.tool, case.what, case.rows, secs, case.width, failed))
    return timings, results


@contextlib.contextmanager
def quiet_peers() -> Iterator[None]:
    """Silence the peers' RuntimeWarnings (NaN means, XenonPy's table-version notice)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        yield


# -------------------------------------------------------------------- peers
def run_xenonpy(
    peers: PeerEnvironment, items: list[Any], parse: bool
) -> tuple[pd.DataFrame, float]:
    """XenonPy's ``Compositions(featurizers=XENONPY_POOLINGS, n_jobs=1).transform`` in its env.

    ``parse``: the items are formula strings that the peer parses with pymatgen
    (``Composition(f).as_dict()``) inside the timed call; else they are dicts.
    """
    answer = peers.call(
        "xenonpy_compositions",
        compositions=items,
        parse_formulas=parse,
        featurizers=XENONPY_POOLINGS,
        elements_csv=str(datasets.fetch("xenonpy58")),
    )
    return answer["frame"], answer["result"]["times"]["wall_s"][0]


def run_matminer(
    peers: PeerEnvironment, formulas: list[str], prebuilt: bool
) -> tuple[pd.DataFrame, float]:
    """matminer's ``ElementProperty.from_preset("magpie")`` ``featurize_many`` in its env.

    ``prebuilt``: pymatgen ``Composition`` objects are built before the clock
    starts (matminer only); else the parse is timed too.
    """
    answer = peers.call(
        "matminer_element_property",
        preset="magpie",
        impute_nan=True,
        formulas=formulas,
        prebuilt=prebuilt,
        ignore_errors=True,
    )
    frame = pd.DataFrame(answer["array"], columns=answer["result"]["labels"], dtype=float)
    return frame, answer["result"]["times"]["wall_s"][0]


# ------------------------------------------------------------------- parity
def compare(
    peer: str,
    ours: np.ndarray,
    ours_labels: Sequence[str],
    theirs: pd.DataFrame,
    formulas: Sequence[str],
) -> Parity:
    """Relative difference ``|ours - peer| / (|peer| + atol)`` where the peer is finite.

    ``atol`` is ``ATOL_FACTOR`` × the column's largest finite peer magnitude:
    a floor for values that are 0 in exact arithmetic (a variance of one
    element) and come out as ±1e-14 in floating point.
    """
    index = {label: i for i, label in enumerate(ours_labels)}
    common = [c for c in theirs.columns if c in index]
    result = Parity(peer=peer, rows=len(formulas), columns=len(common))
    result.missing_labels = [c for c in theirs.columns if c not in index]
    a = ours[:, [index[c] for c in common]]
    b = theirs[common].to_numpy(dtype=float)
    peer_ok, ours_ok = np.isfinite(b), np.isfinite(a)
    scale = np.nanmax(np.where(peer_ok, np.abs(b), np.nan), axis=0, initial=0.0)
    atol = ATOL_FACTOR * np.where(scale > 0, scale, 1.0)
    both = peer_ok & ours_ok
    with np.errstate(all="ignore"):
        rel = np.where(both, np.abs(a - b) / (np.abs(b) + atol), 0.0)
    result.cells_compared = int(both.sum())
    nonzero = both & (np.abs(b) > NONZERO_FACTOR * scale)
    result.max_rel_diff_nonzero = float(rel[nonzero].max()) if nonzero.any() else 0.0
    result.ours_nan_peer_finite = int((peer_ok & ~ours_ok).sum())
    result.peer_nan_ours_finite = int((np.isnan(b) & ours_ok).sum())
    result.peer_inf_ours_finite = int((np.isinf(b) & ours_ok).sum())
    result.both_nonfinite = int((~peer_ok & ~ours_ok).sum())

    def cell(r: int, c: int) -> dict[str, Any]:
        return {
            "formula": formulas[r],
            "column": common[c],
            "xenonscale": float(a[r, c]),
            peer: float(b[r, c]),
            "rel_diff": float(rel[r, c]),
        }

    if rel.size:
        r, c = np.unravel_index(int(np.argmax(rel)), rel.shape)
        result.max_rel_diff = float(rel[r, c])
        result.worst = cell(r, c)
    over = np.argwhere(rel > RTOL_REPORT)
    over = over[np.argsort(-rel[over[:, 0], over[:, 1]])] if len(over) else over
    result.cells_over_rtol = len(over)
    result.examples_over_rtol = [cell(r, c) for r, c in over[:10].tolist()]
    result.examples_over_rtol += [
        {"formula": formulas[r], "column": common[c], "xenonscale": "nan", peer: float(b[r, c])}
        for r, c in np.argwhere(peer_ok & ~ours_ok)[:10].tolist()
    ]
    peer_bad = np.argwhere(~peer_ok & ours_ok)
    counts = np.bincount(peer_bad[:, 1], minlength=len(common))
    result.peer_nonfinite_by_column = {common[c]: int(counts[c]) for c in np.flatnonzero(counts)}
    result.peer_nonfinite_examples = [
        {
            "formula": formulas[r],
            "column": common[c],
            "xenonscale": float(a[r, c]),
            peer: str(b[r, c]),
        }
        for r, c in peer_bad[:5].tolist()
    ]
    return result


# ---------------------------------------------------------------------- main
def machine(extra: tuple[str, ...] = (), peers: PeerEnvironment | None = None) -> dict[str, Any]:
    """CPU, Python, platform and versions of the usual packages plus ``extra`` ones.

    With ``peers``, the versions in the peer environment too (``peer_versions``).
    """
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions = {}
    for dist in ("xenonscale", "xenonpy", "matminer", "pymatgen", "numpy", "pandas", *extra):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[dist] = metadata.version(dist)
    return {
        "cpu": model,
        "cpu_count": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
        **({"peer_versions": peers.call("versions")["result"]} if peers is not None else {}),
    }


def write_results(results: dict[str, Any], path: str | None) -> None:
    """Write a bench's results as JSON to ``path`` (nothing when None) and say where."""
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(results, indent=2, default=str))
        print(f"\nresults → {path}")


def load_formulas(dataset: str, column: str | None, rows: int, seed: int) -> list[str]:
    frame = datasets.load(dataset)
    column = column or datasets.info(dataset).input_column or "formula"
    formulas = frame[column].dropna().astype(str)
    rows = min(rows, len(formulas))
    return formulas.sample(n=rows, random_state=seed).tolist()


def run(args: argparse.Namespace, peers: PeerEnvironment) -> dict[str, Any]:
    from pymatgen.core import Composition

    drawn = load_formulas(args.dataset, args.column, max(args.rows, args.peer_rows), args.seed)
    formulas, sample = drawn[: args.rows], drawn[: args.peer_rows]  # the sample is a prefix
    print(
        f"{len(formulas)} formulas from {args.dataset!r} (seed {args.seed}); peers on {len(sample)}"
    )

    pool = Compositions(elements="xenonpy58", featurizers="pooling")
    stats = ElementStatistics()

    timings: list[Timing] = []

    sample_dicts = [Composition(f).as_dict() for f in sample]
    n, big = len(sample), len(formulas)
    cases = [
        # 7 poolings × 58 XenonPy properties = 406 features
        Case("XenonPy 0.6.7", "from strings (pymatgen+XenonPy)", n, 406,
             lambda: run_xenonpy(peers, sample, parse=True), self_timed=True),
        Case("XenonPy 0.6.7", "XenonPy only (parsed dicts)", n, 406,
             lambda: run_xenonpy(peers, sample_dicts, parse=False), self_timed=True),
        Case("xenonscale Compositions", "from strings", n, 406,
             lambda: pool.featurize_batch(sample)),
        Case("xenonscale Compositions", "from strings", big, 406,
             lambda: pool.featurize_batch(formulas)),
        Case("xenonscale Compositions.transform", "from strings (DataFrame)", n, 406,
             lambda: pool.transform(sample)),
        Case("xenonscale Compositions.transform", "from strings (DataFrame)", big, 406,
             lambda: pool.transform(formulas)),
        # 6 statistics × 22 Magpie properties = 132 features
        Case("matminer ElementProperty", "from strings (pymatgen+matminer)", n, 132,
             lambda: run_matminer(peers, sample, prebuilt=False), self_timed=True),
        Case("matminer ElementProperty", "matminer only (Compositions)", n, 132,
             lambda: run_matminer(peers, sample, prebuilt=True), self_timed=True),
        Case("xenonscale ElementStatistics", "from strings", n, 132,
             lambda: stats.featurize_batch(sample)),
        Case("xenonscale ElementStatistics", "from strings", big, 132,
             lambda: stats.featurize_batch(formulas)),
    ]  # fmt: skip
    print(f"timing {len(cases)} cases: 1 warm-up + {args.repeats} interleaved rounds ...")
    timings, outputs = measure(cases, args.repeats)
    xpy_out, pool_sample, mm_out, stats_sample = (outputs[i] for i in (0, 2, 6, 8))

    parity = [
        compare("XenonPy", pool_sample.values, pool.labels, xpy_out, sample),
        compare("matminer", stats_sample.values, stats.labels, mm_out, sample),
    ]
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(peers=peers),
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        "timings": [t.as_dict() for t in timings],
        "ratios": ratios(timings),
        "parity": [asdict(p) for p in parity],
    }


def ratios(timings: Sequence[Timing]) -> list[dict[str, Any]]:
    """Peer µs/composition ÷ xenonscale µs/composition (medians): how many times faster.

    The last pair is the public DataFrame API (``transform``) against the batch
    kernel (``featurize_batch``) on the same rows: the goal is a ratio ≥ 1/1.2.
    """
    pairs = [
        ("XenonPy 0.6.7", "xenonscale Compositions", "featurize_batch / XenonPy"),
        ("XenonPy 0.6.7", "xenonscale Compositions.transform", "transform / XenonPy"),
        ("matminer ElementProperty", "xenonscale ElementStatistics", "xenonscale / matminer"),
        ("xenonscale Compositions.transform", "xenonscale Compositions", "batch / transform"),
    ]
    out = []
    for peer, ours, name in pairs:
        mine = [t for t in timings if t.tool == ours]
        for theirs in (t for t in timings if t.tool == peer):
            out.extend(
                {
                    "name": name,
                    "peer": f"{theirs.what}, {theirs.rows} rows",
                    "xenonscale": f"{t.rows} rows",
                    "ratio": theirs.median_us / t.median_us,
                }
                for t in mine
                if not peer.startswith("xenonscale") or t.rows == theirs.rows
            )
    return out


def report(results: dict[str, Any]) -> None:
    m = results["machine"]
    print(f"\n{results['date']}  {m['cpu']}  ({m['cpu_count']} CPUs), Python {m['python']}")
    print("  ".join(f"{k} {v}" for k, v in m["versions"].items()))
    if "peer_versions" in m:
        peers = "  ".join(f"{k} {v}" for k, v in m["peer_versions"].items())
        print(f"peer environment: {peers}")
    header = f"{'tool':<36}{'input':<33}{'rows':>7}{'median µs':>12}{'min µs':>11}{'comps/s':>12}"
    print("\n" + header + "\n" + "-" * len(header))
    for t in results["timings"]:
        print(
            f"{t['tool']:<36}{t['what']:<33}{t['rows']:>7}{t['median_us']:>12.2f}"
            f"{t['min_us']:>11.2f}{t['per_second']:>12,.0f}"
        )
    print("\nmedian µs/composition ratios (peer ÷ xenonscale):")
    for r in results["ratios"]:
        print(
            f"  {r['name']}: {r['ratio']:,.{0 if r['ratio'] >= 10 else 2}f}x   "
            f"(peer {r['peer']}; xenonscale {r['xenonscale']})"
        )
    print(
        f"\nparity on the peers' sample (rel diff = |Δ| / (|peer| + {ATOL_FACTOR:g}·column scale)):"
    )
    for p in results["parity"]:
        worst = p["worst"]
        print(
            f"  vs {p['peer']}: {p['rows']} rows × {p['columns']} columns, "
            f"{p['cells_compared']} cells both finite; max rel diff {p['max_rel_diff']:.3g} "
            f"({p['max_rel_diff_nonzero']:.3g} over cells with |{p['peer']}| > "
            f"{NONZERO_FACTOR:g}·column scale)"
        )
        if worst:
            print(
                f"    worst: {worst['formula']} {worst['column']!r}: xenonscale "
                f"{worst['xenonscale']!r}, {p['peer']} {worst[p['peer']]!r}"
            )
        print(
            f"    cells > {RTOL_REPORT:g}: {p['cells_over_rtol']}; xenonscale NaN where "
            f"{p['peer']} finite: {p['ours_nan_peer_finite']}; xenonscale finite where "
            f"{p['peer']} is NaN: {p['peer_nan_ours_finite']}, inf: {p['peer_inf_ours_finite']}; "
            f"both non-finite: {p['both_nonfinite']}"
        )
        for e in p["examples_over_rtol"]:
            print(f"      differs: {e}")
        if p["peer_nonfinite_by_column"]:
            print(f"    {p['peer']} non-finite, by column: {p['peer_nonfinite_by_column']}")
        for e in p["peer_nonfinite_examples"]:
            print(f"      e.g. {e}")
        if p["missing_labels"]:
            print(f"    labels missing in xenonscale: {p['missing_labels'][:10]}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="matbench_mp_e_form", help="registered dataset")
    parser.add_argument("--column", default=None, help="formula column (default: the input column)")
    parser.add_argument("--rows", type=int, default=20000, help="xenonscale rows")
    parser.add_argument("--peer-rows", type=int, default=500, help="rows for XenonPy/matminer")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per measurement")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument("--json", default=None, help="write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.rows < 1 or args.peer_rows < 1 or args.repeats < 1:
        parser.error("--rows, --peer-rows and --repeats must be positive")

    with PeerEnvironment() as peers:
        results = run(args, peers)
    report(results)
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=2, default=str) + "\n")
        print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
