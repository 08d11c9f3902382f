"""Candidate compositions at database scale (issue 17): the space against brute force, random
access by row number, charge balance against pymatgen, partitions, scale, the ``enumerate:``
source through the engine, and ``xenonscale enumerate``."""

from __future__ import annotations

import itertools
import math
import pickle
import time
from functools import reduce

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from pymatgen.core import Composition, Element

import xenonscale
import xenonscale.chem.enumeration as enumeration
from xenonscale.chem.enumeration import CompositionSpace
from xenonscale.chem.neutrality import ChargeNeutrality, oxidation_states
from xenonscale.chem.periodic import PERIODIC_SYMBOLS
from xenonscale.cli.enumerate import enumerate_group
from xenonscale.cli.main import Root
from xenonscale.errors import ConfigError
from xenonscale.sources import EnumeratedSource, open_source

SMALL = [  # (elements, max_atoms, min_elements, max_elements)
    ("Li,Fe,O", 8, 1, 3),
    ("Li,Fe,Mn,P,O", 7, 2, 5),
    ("Na,Cl", 30, 1, 2),
    ("H,C,N,O", 9, 2, 3),
]


@pytest.fixture(params=["table", "walk"])
def regime(request, monkeypatch):
    """Amount vectors from a cached table, or walked to and unranked (large element counts)."""
    if request.param == "walk":
        monkeypatch.setattr(enumeration, "INNER_TABLE_ROWS", 0)
    return request.param


def _naive(space: CompositionSpace) -> set[tuple[int, ...]]:
    """Every reduced amount vector of the space, by itertools."""
    found = set()
    for v in itertools.product(range(space.max_atoms + 1), repeat=len(space.elements)):
        present = sum(1 for a in v if a)
        if (
            0 < sum(v) <= space.max_atoms
            and space.min_elements <= present <= space.max_elements
            and reduce(math.gcd, v) == 1
        ):
            found.add(v)
    return found


def _everything(space: CompositionSpace):
    amounts, formulas = space.slice(0, space.size)
    return amounts, formulas


# -- the space ------------------------------------------------------------------------------


@pytest.mark.parametrize(("elements", "max_atoms", "low", "high"), SMALL)
def test_the_space_is_every_reduced_formula_once(regime, elements, max_atoms, low, high):
    space = CompositionSpace(elements, max_atoms, min_elements=low, max_elements=high)
    amounts, formulas = _everything(space)
    rows = [tuple(row) for row in amounts.tolist()]
    expected = _naive(space)
    assert space.size == len(rows) == len(expected)
    assert len(set(rows)) == len(rows) and set(rows) == expected
    assert len(set(formulas)) == len(formulas)
    step = max(1, len(rows) // 60)
    for row, formula in zip(rows[::step], formulas[::step], strict=True):
        parsed = Composition(formula).get_el_amt_dict()
        assert parsed == {e: a for e, a in zip(space.elements, row, strict=True) if a}


def test_the_order_is_fixed_and_documented():
    space = CompositionSpace("O,Fe,Li,Mn", 9)
    assert space.elements == ("Li", "Mn", "Fe", "O")  # pymatgen's formula order
    assert CompositionSpace(["Li", "Mn", "Fe", "O"], 9).slice(0, 50)[1] == space.slice(0, 50)[1]
    amounts, _ = _everything(space)
    counts = (amounts > 0).sum(axis=1)
    assert (np.diff(counts) >= 0).all()  # by number of elements first
    sets = [tuple(np.flatnonzero(row)) for row in amounts > 0]
    totals = itertools.pairwise(amounts.sum(axis=1))
    for (a, b), (x, y) in zip(itertools.pairwise(sets), totals, strict=True):
        if a == b:
            assert x <= y  # then, within one element set, by total atoms
    assert len({s for s in sets}) == sum(math.comb(4, c) for c in range(2, 5))


def test_both_regimes_give_the_same_rows(monkeypatch):
    space = CompositionSpace("Li,Fe,Mn,P,O", 9, min_elements=1)
    table = _everything(space)
    monkeypatch.setattr(enumeration, "INNER_TABLE_ROWS", 0)
    walked = _everything(CompositionSpace("Li,Fe,Mn,P,O", 9, min_elements=1))
    assert (table[0] == walked[0]).all() and table[1] == walked[1]


def test_random_slices_equal_the_full_enumeration(regime):
    space = CompositionSpace("Li,Fe,Mn,P,O", 10, min_elements=1)
    amounts, formulas = _everything(space)
    rng = np.random.default_rng(17)
    for _ in range(40):
        start = int(rng.integers(0, space.size))
        stop = int(rng.integers(start, min(space.size, start + 500) + 1))
        part, names = space.slice(start, stop)
        assert (part == amounts[start:stop]).all() and names == formulas[start:stop]
    assert space.slice(space.size, space.size)[1] == []
    with pytest.raises(ConfigError, match="size"):
        space.slice(0, space.size + 1)


def test_bad_arguments_are_named():
    with pytest.raises(ConfigError, match="'Xx' is not an element symbol"):
        CompositionSpace("Li,Xx", 4)
    with pytest.raises(ConfigError, match="did you mean 'Fe'"):
        CompositionSpace("Li,fe", 4)
    with pytest.raises(ConfigError, match="'Li' is given twice"):
        CompositionSpace("Li,O,Li", 4)
    with pytest.raises(ConfigError, match="max_atoms=0 is out of range"):
        CompositionSpace("Li,O", 0)
    with pytest.raises(ConfigError, match="max_elements=3 is out of range"):
        CompositionSpace("Li,O", 4, max_elements=3)
    with pytest.raises(ConfigError, match="2\\*\\*62"):
        CompositionSpace(",".join(PERIODIC_SYMBOLS[:90]), 60)
    with pytest.raises(ConfigError, match="oxidation_states='pauling' is unknown"):
        CompositionSpace("Li,O", 4, charge_balanced=True, oxidation_states="pauling")


# -- charge balance -------------------------------------------------------------------------


def _pymatgen_neutral(formula: str, **kwargs) -> bool:
    return len(Composition(formula).oxi_state_guesses(**kwargs)) > 0


@pytest.mark.parametrize(
    ("elements", "max_atoms", "which"),
    [
        ("Li,Fe,O", 8, "icsd"),
        ("Li,Fe,Mn,P,O", 6, "icsd"),
        ("N,Cl,Xe,C,H", 6, "icsd"),
        ("Li,Fe,Mn,P,O", 5, "all"),
        ("Fe,Mn,S,Cl,O", 6, "common"),
    ],
)
def test_charge_balance_agrees_with_pymatgen_on_every_candidate(elements, max_atoms, which):
    space = CompositionSpace(
        elements, max_atoms, min_elements=1, charge_balanced=True, oxidation_states=which
    )
    amounts, formulas = _everything(space)
    mine = space.neutrality.neutral(amounts)
    if which == "common":  # pymatgen searches ICSD states first: give it the common ones
        states = {s: Element(s).common_oxidation_states for s in space.elements}
        kwargs = {"oxi_states_override": states}
    else:
        kwargs = {"all_oxi_states": which == "all"}
    expected = [_pymatgen_neutral(f, **kwargs) for f in formulas]
    assert mine.tolist() == expected
    kept = space.take(space.plan(space.size or 1)[0])
    assert kept.formulas == [f for f, ok in zip(formulas, expected, strict=True) if ok]


def _naive_neutral(amounts, states) -> bool:
    sums = {0}
    for n, choices in zip(amounts, states, strict=True):
        for _ in range(n):
            sums = {s + c for s in sums for c in choices}
    return 0 in sums


def test_charge_balance_of_arbitrary_rows_by_brute_force():
    elements = ["He", "H", "C", "N", "S", "Cl", "Mn", "Os"]
    check = ChargeNeutrality(elements, 9, "all")
    rng = np.random.default_rng(3)
    rows = np.zeros((400, len(elements)), dtype=np.int64)
    for row in rows:  # 1 to 6 elements, totals up to 9
        present = rng.choice(len(elements), size=rng.integers(1, 7), replace=False)
        row[present] = 1
        for _ in range(rng.integers(0, 9 - len(present) + 1)):
            row[rng.choice(present)] += 1
    mine = check.neutral(rows)
    for row, ok in zip(rows.tolist(), mine.tolist(), strict=True):
        alone = sum(1 for a in row if a) == 1
        assert ok == (alone or _naive_neutral(row, check.states)), row
    assert check.neutral(np.zeros((1, len(elements)), dtype=int)).tolist() == [False]
    assert pickle.loads(pickle.dumps(check)).neutral(rows).tolist() == mine.tolist()


def test_oxidation_states_are_pymatgens_and_can_be_replaced():
    assert oxidation_states(["Fe", "Mn"]) == ((2, 3), (2, 3, 4, 7))
    assert oxidation_states(["Os"]) == (Element("Os").common_oxidation_states,)  # no ICSD list
    space = CompositionSpace("Fe,O", 4, charge_balanced=True, oxidation_states={"Fe": [2]})
    assert space.take(space.plan(100)[0]).formulas == ["FeO"]
    with pytest.raises(ConfigError, match="give whole numbers"):
        oxidation_states(["Fe"], {"Fe": "2"})


# -- partitions -----------------------------------------------------------------------------


@pytest.mark.parametrize("charge_balanced", [False, True])
def test_partitions_concatenate_to_the_whole(regime, charge_balanced):
    space = CompositionSpace("Li,Fe,Mn,P,O", 9, charge_balanced=charge_balanced)
    amounts, formulas = _everything(space)
    keep = space.neutrality.neutral(amounts) if charge_balanced else np.ones(len(amounts), bool)
    expected = [f for f, ok in zip(formulas, keep, strict=True) if ok]
    assert space.count() == len(expected) == int(keep.sum())
    index = np.flatnonzero(keep)
    for rows, block in [(1, 5), (7, 64), (100, 1), (333, 1000), (len(expected) + 5, 37)]:
        spans = space.plan(rows, block_rows=block)
        assert spans[0].start == 0 and spans[-1].stop == len(expected)
        assert all(a.stop == b.start for a, b in itertools.pairwise(spans))
        pieces = [space.take(span) for span in spans[:: max(1, len(spans) // 25)]]
        sampled = spans[:: max(1, len(spans) // 25)]
        for span, piece in zip(sampled, pieces, strict=True):
            assert piece.formulas == expected[span.start : span.stop]
            assert (piece.index == index[span.start : span.stop]).all()
        if len(spans) <= 40:
            whole = [f for span in spans for f in space.take(span).formulas]
            assert whole == expected


def test_batches_stream_the_kept_rows_with_a_limit():
    space = CompositionSpace("Li,Fe,Mn,P,O", 9, charge_balanced=True)
    everything = space.take(space.plan(space.count())[0]).formulas
    batches = list(space.batches(batch_rows=50))
    assert [f for b in batches for f in b.formulas] == everything
    assert max(len(b) for b in batches) <= 50
    limited = [f for b in space.batches(batch_rows=50, limit=123) for f in b.formulas]
    assert limited == everything[:123]


def test_a_pickled_space_makes_the_same_rows():
    space = CompositionSpace("Li,Fe,Mn,P,O", 9, charge_balanced=True)
    spans = space.plan(250)
    copy = pickle.loads(pickle.dumps(space))
    assert copy.take(spans[3]).formulas == space.take(spans[3]).formulas


# -- scale ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("elements", "max_atoms", "max_elements", "at_least"),
    [("Li,Fe,Mn,P,O,S,F,Cl", 32, 5, 10_000_000), ("Li,Fe,Mn,P,O,S,F,Cl", 40, 6, 100_000_000)],
    ids=["13.6M-rows", "149M-rows-walked"],
)
def test_a_huge_space_is_sized_and_sliced_anywhere_at_once(
    elements, max_atoms, max_elements, at_least
):
    started = time.perf_counter()
    space = CompositionSpace(elements, max_atoms, max_elements=max_elements)
    assert space.size >= at_least
    starts = [0, space.size // 3, space.size // 2 + 12_345, space.size - 1_000]
    slices = [space.slice(s, s + 1_000) for s in starts]
    elapsed = time.perf_counter() - started
    assert elapsed < 2.0, f"size and 4 far slices took {elapsed:.2f} s"
    for (amounts, formulas), start in zip(slices, starts, strict=True):
        assert len(formulas) == 1_000 == len(set(formulas))
        assert (np.gcd.reduce(amounts, axis=1) == 1).all()
        assert (amounts.sum(axis=1) <= max_atoms).all()
        _, names = space.slice(start + 500, start + 501)  # rows stand alone
        assert names == formulas[500:501]
    print(f"\n{space!r}: size and 4 far slices in {elapsed:.3f} s")


def test_a_million_row_charge_balanced_plan(capsys):
    space = CompositionSpace("Li,Fe,Mn,P,O,S,F,Cl", 20, max_elements=5, charge_balanced=True)
    assert space.size > 1_000_000
    started = time.perf_counter()
    spans = space.plan(100_000)
    elapsed = time.perf_counter() - started
    total = spans[-1].stop
    assert 0 < total < space.size
    middle = spans[len(spans) // 2]
    piece = space.take(middle)
    assert len(piece) == middle.rows
    assert space.neutrality.neutral(piece.amounts).all()
    raw, _ = space.slice(int(piece.index[0]), int(piece.index[-1]) + 1)
    assert int(space.neutrality.neutral(raw).sum()) == middle.rows  # nothing skipped
    started = time.perf_counter()
    slice_rows = 1_000_000
    space.slice(100_000, 100_000 + slice_rows)
    made = time.perf_counter() - started
    with capsys.disabled():
        print(
            f"\ncharge-balanced plan: {space.size:,} rows scanned in {elapsed:.2f} s "
            f"({space.size / elapsed:,.0f} rows/s, tables included), {total:,} kept; "
            f"slice with formulas: {slice_rows / made:,.0f} rows/s"
        )
    assert space.size / elapsed > 100_000


# -- the enumerate: source ------------------------------------------------------------------

URL = "enumerate:compositions?elements=Li,Fe,Mn,P,O&max_atoms=8&charge_balanced=true"


def test_the_source_contract():
    source = open_source(URL)
    assert isinstance(source, EnumeratedSource) and source.kind == "composition"
    total, partitions = source.plan(rows_per_partition=150)
    assert total == source.space.count() and partitions[-1].stop == total
    frames = [source.read(p) for p in partitions]
    frame = pd.concat(frames, ignore_index=True)
    assert frame.columns.tolist() == ["row", "id", "input", "n_atoms", "n_elements"]
    assert frame["row"].tolist() == list(range(total))
    assert (frame["id"] == frame["input"]).all() and frame["id"].is_unique
    assert frame["n_atoms"].max() <= 8 and frame["n_elements"].min() >= 2
    copy = pickle.loads(pickle.dumps(source))
    assert copy.read(partitions[2]).equals(frames[2])
    assert (
        copy.fingerprint()
        == source.fingerprint()
        != open_source(URL + "&max_elements=3").fingerprint()
    )
    described = source.describe()
    assert described["elements"] == ["Li", "Mn", "Fe", "P", "O"] and described["states"]["Fe"] == [
        2,
        3,
    ]
    same = open_source(
        "enumerate:compositions", elements="O,P,Fe,Mn,Li", max_atoms=8, charge_balanced=True
    )
    assert same.fingerprint() == source.fingerprint()


@pytest.mark.parametrize(
    ("url", "options", "message"),
    [
        ("enumerate:compositions?elements=Li,O&max_atoms=4&colour=red", {}, "unknown key"),
        ("enumerate:structures?elements=Li,O", {}, "enumerate:structures is not a space"),
        ("enumerate:compositions?elements=Li,O", {}, "gives no max_atoms"),
        ("enumerate:compositions?elements=Li,O&max_atoms=4&oxidation_states=x", {}, "'x' is"),
        ("enumerate:compositions?elements=Li,O&max_atoms=four", {}, "'four' is not a whole"),
        ("enumerate:compositions?elements=Li,O&max_atoms=4&charge_balanced=maybe", {}, "true or"),
        ("enumerate:compositions?elements=Li,O&max_atoms=4&max_atoms=5", {}, "max_atoms twice"),
        ("enumerate:compositions?elements=Li,O&max_atoms=4", {"max_atoms": 5}, "give it once"),
        ("enumerate:compositions?elements=Li,O&max_atoms=4", {"column": "x"}, "column='x'"),
        ("enumerate:compositions?elements=Li,O&max_atoms=4", {"kind": "molecule"}, "--kind"),
        ("enumerate:compositions?elements=Li,O&max_atoms=4", {"delimiter": ";"}, "delimiter"),
    ],
)
def test_the_source_url_is_parsed_strictly(url, options, message):
    with pytest.raises(ConfigError, match=message) as info:
        open_source(url, **options)
    assert "\n" not in str(info.value)


def test_featurize_names_the_url_keys_not_its_own_flags(tmp_path, monkeypatch):
    from xenonscale.cli.main import cli

    monkeypatch.chdir(tmp_path)
    url = "enumerate:compositions?elements=Li,O&max_atoms=0"
    result = CliRunner().invoke(cli, ["featurize", url, "-o", "x.zarr"])
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "URL's max_atoms 0 is out of range" in line and "--max-atoms" not in line


def test_the_source_through_the_engine(tmp_path):
    from distributed import Client

    from xenonscale.engine import featurize_to_store
    from xenonscale.featurize.registry import FeaturizerSpec

    spec = FeaturizerSpec.parse("composition", "classic", elements="xenonpy58")
    store = tmp_path / "candidates.zarr"
    with Client(
        processes=False, n_workers=1, threads_per_worker=2, dashboard_address=":0"
    ) as client:
        job = featurize_to_store(
            URL, str(store), spec, client=client, chunk_rows=100, partition_rows=200,
            progress=False,
        )  # fmt: skip
    space = open_source(URL).space
    assert job.rows == space.count() == job.featurized and job.errors == 0
    data = xenonscale.open_store(str(store))
    assert data.sizes["sample"] == space.count()
    expected = space.take(space.plan(space.count())[0])
    assert [str(v) for v in data["id"].values] == expected.formulas
    assert data["n_atoms"].values.tolist() == expected.n_atoms.tolist()
    assert bool(data["ok"].all())


# -- the command ----------------------------------------------------------------------------


def _invoke(*args: str):
    root = Root("xenonscale")
    root.add_command(enumerate_group)
    return CliRunner().invoke(root, ["enumerate", "compositions", *args])


def test_the_command_counts_and_writes_parquet(tmp_path):
    space = CompositionSpace("Li,Fe,Mn,P,O", 12)
    balanced = CompositionSpace("Li,Fe,Mn,P,O", 12, charge_balanced=True)
    result = _invoke("Li,Fe,Mn,P,O", "--atoms", "12", "--count")
    assert result.exit_code == 0 and result.stdout == f"{space.size}\n"
    result = _invoke("Li-Fe-Mn-P-O", "--atoms", "12", "--count", "--charge-balanced")
    assert result.exit_code == 0 and result.stdout == f"{balanced.count()}\n"
    assert "rows/s" in result.stderr

    path = tmp_path / "cands.parquet"
    result = _invoke("Li,Fe,Mn,P,O", "--atoms", "12", "--charge-balanced", "-o", str(path))
    assert result.exit_code == 0, result.output
    assert f"{balanced.count():,} compositions" in result.stdout and "rows/s" in result.stdout
    table = pd.read_parquet(path)
    expected = balanced.take(balanced.plan(balanced.count())[0])
    assert table["formula"].tolist() == expected.formulas
    assert table.columns.tolist() == [
        "formula",
        "n_atoms",
        "n_elements",
        "Li",
        "Mn",
        "Fe",
        "P",
        "O",
    ]
    assert (table[["Li", "Mn", "Fe", "P", "O"]].to_numpy() == expected.amounts).all()
    assert (table["n_atoms"] == expected.n_atoms).all()

    result = _invoke("Li,Fe,Mn,P,O", "--atoms", "12", "--limit", "10", "-o", str(path))  # ours
    assert (
        result.exit_code == 0 and pd.read_parquet(path)["formula"].tolist() == space.slice(0, 10)[1]
    )
    assert not list(tmp_path.glob(".*tmp"))


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["Li,Xx", "--atoms", "8", "--count"], "'Xx' is not an element symbol"),
        (["Li,fe", "--atoms", "8", "--count"], "did you mean 'Fe'"),
        (["Li,Fe", "--atoms", "0", "--count"], "0 is not positive"),
        (["Li,Fe", "--atoms", "many", "--count"], "'many' is not a whole number"),
        (["Li,Fe", "--atoms", "5000", "--count"], "--atoms 5000 is out of range"),
        (["Li,Fe", "--atoms", "8", "--max-elements", "3", "--count"], "--max-elements 3"),
        (["Li,Fe", "--atoms", "8"], "give -o PATH.parquet"),
        (["Li,Fe", "--atoms", "8", "-o", "x.csv"], "ending in .parquet"),
        (["Li,Fe", "--atoms", "8", "--oxidation-states", "bogus", "--count"], "use one of"),
    ],
)
def test_bad_values_exit_2_with_one_line(args, says, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = _invoke(*args)
    assert result.exit_code == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_a_foreign_file_is_not_replaced(tmp_path):
    path = tmp_path / "mine.parquet"
    path.write_text("not parquet")
    result = _invoke("Li,O", "--atoms", "4", "-o", str(path))
    assert result.exit_code == 2 and "was not written by xenonscale" in result.stderr
    assert path.read_text() == "not parquet"
