"""The command line on hostile input and bad arguments (issue 12, "Hardening").

* Hostile files give the same rows, ok mask and error reasons whether written
  as a table (``-o x.parquet``, in-process) or as a store (``-o x.zarr``,
  through the engine on a real cluster): both read through
  :mod:`xenonscale.sources`.
* Every bad argument is one line on stderr naming the value, exit status 2,
  no traceback, and is found before any Dask cluster starts.
* The per-record limit flags reach the featurizers on both paths.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import xenonscale
from xenonscale.cli.main import main


@pytest.fixture(scope="module")
def formulas(data_dir) -> list[str]:
    """Real formulas and band gaps (Matbench expt_gap), as CSV fields."""
    frame = pd.read_csv(data_dir / "compositions" / "matbench_expt_gap.csv")
    return [f"{f},{t}" for f, t in zip(frame.formula[:40], frame.target[:40], strict=True)]


def _lines(formulas, middle: list[bytes]) -> bytes:
    head = [line.encode() for line in formulas[:20]]
    tail = [line.encode() for line in formulas[20:40]]
    return b"formula,target\n" + b"\n".join([*head, *middle, *tail]) + b"\n"


# name → (file bytes from the real formulas, {row: text in its error} or None)
def _hostile(formulas) -> dict[str, tuple[bytes, dict[int, str] | None]]:
    wide = ",".join(["Fe2O3", "1.5", *(["x"] * 49_998)]).encode()
    crlf = ("formula,target\r\n" + "\r\n".join(formulas[:30]) + "\r\n").encode()
    return {
        "nul": (_lines(formulas, [b"Fe2\x00O3,1.0"]), {20: "\\x00"}),
        "whitespace_row": (_lines(formulas, [b"   "]), {20: "empty"}),
        "invalid_utf8": (_lines(formulas, [b"Fe\xff\xfeO3,2.0", b"\xc3(,3.0"]), None),
        "empty": (b"", None),
        "ragged": (_lines(formulas, [b"NaCl,1.0,extra,more", b"KCl", b"MgO,2.0,"]), None),
        "wide_row": (_lines(formulas, [wide]), None),
        "unterminated_quote": (_lines(formulas, [b'"Fe2O3,1.0']), None),
        "crlf_bom": (b"\xef\xbb\xbf" + crlf, None),
    }


HOSTILE = [
    "nul",
    "whitespace_row",
    "invalid_utf8",
    "empty",
    "ragged",
    "wide_row",
    "unterminated_quote",
    "crlf_bom",
]


def _run(argv, capsys) -> tuple[int, str, str]:
    status = main(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def _assert_one_line(status: int, err: str) -> None:
    assert status == 2, err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_files_give_the_same_rows_on_both_paths(case, formulas, tmp_path, dask_client,
                                                        capsys):  # fmt: skip
    data, expected_errors = _hostile(formulas)[case]
    path = tmp_path / f"{case}.csv"
    path.write_bytes(data)
    common = ["--elements", "xenonpy58", "--no-progress"]
    table = tmp_path / "out.parquet"
    store = tmp_path / "out.zarr"
    status_t, out_t, err_t = _run(["featurize", str(path), "-o", str(table), *common], capsys)
    status_s, out_s, err_s = _run(
        ["featurize", str(path), "-o", str(store), "--chunk-rows", "16",
         "--scheduler", dask_client.scheduler.address, *common],
        capsys,
    )  # fmt: skip
    for status, err in ((status_t, err_t), (status_s, err_s)):
        assert "Traceback" not in err
        assert status in (0, 2), err
        if status == 2:
            _assert_one_line(status, err)
    assert status_t == status_s == 0, (err_t, err_s)

    frame = pd.read_parquet(table)
    errors_t = pd.read_csv(tmp_path / "out.errors.csv")
    ds = xenonscale.open_store(str(store))
    errors_s = xenonscale.read_errors(str(store))
    rows = len(frame)
    # counts add up on both paths, and are the same
    assert ds.sizes["sample"] == rows
    assert int(frame["ok"].sum()) + len(errors_t) == rows
    assert int(ds.ok.values.sum()) + len(errors_s) == rows
    np.testing.assert_array_equal(frame["ok"].to_numpy(bool), ds.ok.values)
    assert errors_t["row"].tolist() == errors_s["row"].tolist()
    assert errors_t["error"].tolist() == errors_s["error"].tolist()
    assert f"{rows:,} rows" in out_t and f"{rows:,} rows" in out_s
    # the table keeps the input's columns, then ok, then the features
    labels = list(ds.feature.values)
    assert list(frame.columns[-len(labels) - 1 :]) == ["ok", *labels]
    ok = frame["ok"].to_numpy(bool)
    np.testing.assert_allclose(
        frame[labels].to_numpy()[ok], ds.features.values[ok].astype(np.float64), rtol=1e-6
    )

    if case == "empty":
        assert rows == 0
        return
    assert list(frame.columns[:2]) == ["formula", "target"]
    good = [line.rsplit(",", 1)[0] for line in formulas[:20]]
    assert frame["formula"].tolist()[:20] == good  # real rows before the hostile one
    assert frame["ok"].iloc[:20].all()
    if expected_errors is not None:
        assert errors_t["row"].tolist() == sorted(expected_errors)
        for row, text in expected_errors.items():
            assert text in errors_t.set_index("row").loc[row, "error"]
            assert not frame["ok"].iloc[row]
    if case == "nul":  # not cut at the NUL and featurized as iron
        assert frame["formula"].iloc[20] == "Fe2\x00O3"
    if case == "whitespace_row":  # kept as its own error row, not dropped
        assert rows == 41
    if case == "invalid_utf8":
        assert rows == 42 and errors_t["row"].tolist() == [20, 21]
    if case == "ragged":
        assert rows == 43 and frame["ok"].all()
        assert frame["formula"].iloc[20:23].tolist() == ["NaCl", "KCl", "MgO"]
        assert np.isnan(frame["target"].iloc[21])
    if case == "wide_row":
        assert rows == 41 and frame["ok"].all() and frame.shape[1] == 2 + 1 + len(labels)
        assert frame["formula"].iloc[20] == "Fe2O3"
    if case == "crlf_bom":
        assert rows == 30 and frame["ok"].all()
        assert not any("\r" in f for f in frame["formula"])


def test_a_hostile_file_through_the_console_script(formulas, tmp_path, data_dir):
    """As users run it: a subprocess, no traceback, exit 0."""
    path = tmp_path / "nul.csv"
    path.write_bytes(_hostile(formulas)["nul"][0])
    env = {**os.environ, "XENONSCALE_DATA_DIR": str(data_dir)}
    exe = os.path.join(os.path.dirname(sys.executable), "xenonscale")
    out = tmp_path / "nul.csv.out.csv"
    result = subprocess.run(
        [exe, "featurize", str(path), "-o", str(out), "--no-progress"],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "40 featurized, 1 errors" in result.stdout
    # bad arguments: one line, exit 2
    result = subprocess.run(
        [exe, "featurize", str(path), "-o", str(out), "--chunk-rows", "0"],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "xenonscale featurize: error: argument --chunk-rows: 0 is not positive: give 1 or "
        "more, e.g. 10000 (see xenonscale featurize --help)"
    ]


# -- bad arguments: one line, exit 2, before any cluster ------------------------------------


@pytest.fixture
def no_cluster(monkeypatch):
    """Fails the test if a command tries to start (or reach) a Dask cluster."""
    import xenonscale.cluster

    calls = []

    def refuse(*args, **kwargs):
        calls.append((args, kwargs))
        raise AssertionError("a cluster was started for a command that should have failed")

    monkeypatch.setattr(xenonscale.cluster, "get_client", refuse)
    return calls


@pytest.fixture
def small_csv(tmp_path, formulas):
    path = tmp_path / "small.csv"
    path.write_text("formula,target\n" + "\n".join(formulas[:5]) + "\n")
    return path


BAD_ARGUMENTS = [
    (["--storage-options", "{bad"], "'{bad'"),
    (["--storage-options", "[1,2]"], "'[1,2]'"),
    (["--storage-options", "3"], "'3'"),
    (["--chunk-rows", "0"], "--chunk-rows: 0"),
    (["--chunk-rows", "many"], "'many'"),
    (["--partition-rows", "-5"], "--partition-rows: -5"),
    (["--compression", "bogus"], "'bogus'"),
    (["--column", "nosuch"], "'nosuch'"),
    (["--kind", "bogus"], "'bogus'"),
    (["--featurizers", "bogus"], "'bogus'"),
    (["--on-error", "ignore"], "'ignore'"),
    (["--workers", "0"], "--workers: 0"),
    (["--workers", "100000"], "100000"),
    (["--featurizers", "frozen:x@99999999999999999999"], "99999999999999999999"),
    (["--featurizers", "frozen:x@\u00b2"], "'x@\u00b2'"),
    (["--max-atoms", "-1"], "--max-atoms -1"),
    (["--max-amount", "0"], "--max-amount 0"),
    (["--max-input-chars", "1.5"], "'1.5'"),
    (["--record-seconds", "soon"], "'soon'"),
    (["--record-seconds", "-2"], "--record-seconds -2"),
    (["--min-volume-per-atom", "nan"], "'nan'"),
]


@pytest.mark.parametrize("suffix", [".zarr", ".parquet"])
@pytest.mark.parametrize(("extra", "named"), BAD_ARGUMENTS)
def test_bad_arguments_are_one_line_before_any_cluster(extra, named, suffix, small_csv,
                                                       tmp_path, no_cluster, capsys):  # fmt: skip
    argv = ["featurize", str(small_csv), "-o", str(tmp_path / f"out{suffix}"), *extra]
    status, _, err = _run(argv, capsys)
    _assert_one_line(status, err)
    assert named in err
    assert no_cluster == []
    assert not (tmp_path / f"out{suffix}").exists()


def test_workers_are_capped_with_a_line_saying_so(small_csv, tmp_path, no_cluster, capsys):
    from xenonscale.cli.types import max_workers

    cap = max_workers()
    assert cap == min(512, 4 * (os.cpu_count() or 1))
    argv = ["featurize", str(small_csv), "-o", str(tmp_path / "x.zarr"), "--workers", "100000"]
    status, _, err = _run(argv, capsys)
    _assert_one_line(status, err)
    assert f"use at most {cap}" in err and "--scheduler" in err


def test_outputs_that_cannot_be_written_are_one_line(small_csv, tmp_path, no_cluster, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    folder = tmp_path / "folder.parquet"
    folder.mkdir()
    foreign = tmp_path / "theirs.parquet"
    pd.DataFrame({"a": [1]}).to_parquet(foreign)
    foreign_csv = tmp_path / "theirs.csv"
    foreign_csv.write_text("a\n1\n")
    cases = [
        (str(a_file), "is an existing file"),  # a store over a regular file
        (str(tmp_path / "a_file.zarr"), None),  # (made below: a file named like a store)
        (str(a_file / "x.zarr"), "is a file, not a folder"),
        (str(a_file / "x.parquet"), "is a file, not a folder"),
        (str(folder), "is a folder"),
        (str(foreign), "--overwrite"),
        (str(foreign_csv), "--overwrite"),
        ("s3://bucket/x.parquet", "local path"),
        (str(tmp_path / "x.xlsx"), "x.xlsx"),
    ]
    (tmp_path / "a_file.zarr").write_text("a file named like a store")
    for output, text in cases:
        status, _, err = _run(["featurize", str(small_csv), "-o", output], capsys)
        _assert_one_line(status, err)
        assert repr(output) in err
        assert text is None or text in err, err
    assert no_cluster == []
    assert foreign_csv.read_text() == "a\n1\n"  # untouched
    # --overwrite replaces a foreign table; a table written here is replaced on a rerun
    args = ["featurize", str(small_csv), "--no-progress"]
    assert main([*args, "-o", str(foreign), "--overwrite"]) == 0
    assert main([*args, "-o", str(foreign)]) == 0
    out = tmp_path / "mine.csv"
    assert main([*args, "-o", str(out)]) == 0
    assert main([*args, "-o", str(out)]) == 0
    assert len(pd.read_csv(out)) == 5
    capsys.readouterr()


def test_a_missing_input_is_one_line_before_any_cluster(tmp_path, no_cluster, capsys):
    for suffix in (".zarr", ".parquet"):
        argv = ["featurize", str(tmp_path / "none.csv"), "-o", str(tmp_path / f"x{suffix}")]
        status, _, err = _run(argv, capsys)
        _assert_one_line(status, err)
        assert "none.csv" in err
    status, _, err = _run(["featurize", "dataset:no_such_set", "-o", "x.zarr"], capsys)
    _assert_one_line(status, err)
    assert "no_such_set" in err
    assert no_cluster == []


def test_usage_errors_are_one_line(small_csv, capsys):
    for argv, named in [
        (["featurize", str(small_csv)], "-o/--output"),
        (["bogus"], "'bogus'"),
        (["featurize", "x.csv", "-o", "x.zarr", "--no-such-flag"], "--no-such-flag"),
        (["demo", "--workers", "0"], "--workers"),
        (["zoo", "show"], "ref"),
    ]:
        status, out, err = _run(argv, capsys)
        _assert_one_line(status, err)
        assert named in err and "--help" in err and out == ""


def test_zoo_refs_with_huge_versions_are_one_line(tmp_path, capsys):
    zoo = str(tmp_path / "zoo")
    for action in (["show"], ["promote"], ["remove"], ["export"]):
        argv = ["zoo", *action, "x@99999999999999999999", "--zoo", zoo]
        if action == ["export"]:
            argv.insert(3, str(tmp_path / "x.zip"))
        status, _, err = _run(argv, capsys)
        _assert_one_line(status, err)
        assert "'x@99999999999999999999'" in err and "x@1" in err
    status, _, err = _run(["zoo", "show", "x@\u00b2", "--zoo", zoo], capsys)
    _assert_one_line(status, err)
    assert "positive integer" in err
    argv = ["zoo", "list", "--zoo", zoo, "--storage-options", "[1]"]
    status, _, err = _run(argv, capsys)
    _assert_one_line(status, err)
    assert "'[1]'" in err


def test_os_errors_are_one_line(tmp_path, monkeypatch, capsys):
    import xenonscale.datasets

    def fail(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / "locked"))

    monkeypatch.setattr(xenonscale.datasets, "names", fail)
    status, _, err = _run(["datasets", "list"], capsys)
    _assert_one_line(status, err)
    assert "Permission denied" in err and "locked" in err


# -- per-record limits ---------------------------------------------------------------------


def test_limit_flags_are_in_help(capsys):
    assert main(["featurize", "--help"]) == 0
    text = capsys.readouterr().out
    assert "per-record limits:" in text
    section = text.split("per-record limits:", 1)[1]
    for flag in ("--max-input-chars", "--max-amount", "--max-formula-atoms", "--max-atoms",
                 "--min-volume-per-atom", "--max-neighbors", "--max-smiles-chars",
                 "--max-molecule-atoms", "--record-seconds"):  # fmt: skip
        assert flag in section


def test_limit_flags_map_onto_record_limits(small_csv):
    import math

    from xenonscale.cli.limits import record_limits_from
    from xenonscale.cli.main import cli
    from xenonscale.limits import RecordLimits

    def parse(argv: list[str]) -> dict:
        return cli.commands["featurize"].make_context("featurize", argv).params

    args = parse([str(small_csv), "-o", "x.zarr"])
    assert record_limits_from(args) == RecordLimits()
    args = parse(
        [str(small_csv), "-o", "x.zarr", "--max-atoms", "50", "--record-seconds", "0",
         "--max-amount", "1e3", "--min-volume-per-atom", "0.5"]
    )  # fmt: skip
    limits = record_limits_from(args)
    assert limits.max_atoms == 50 and isinstance(limits.max_atoms, int)
    assert math.isinf(limits.record_seconds)
    assert (limits.max_amount, limits.min_volume_per_atom) == (1000.0, 0.5)
    assert limits.max_smiles_chars == RecordLimits().max_smiles_chars


def test_limit_flags_make_the_same_error_rows_on_both_paths(formulas, tmp_path, dask_client,
                                                            capsys):  # fmt: skip
    path = tmp_path / "gap.csv"
    path.write_text("formula,target\n" + "\n".join([*formulas[:30], "Fe1000O3,1.0"]) + "\n")
    limits = ["--max-input-chars", "12", "--max-amount", "500", "--record-seconds", "0"]
    table = tmp_path / "limited.parquet"
    store = tmp_path / "limited.zarr"
    assert main(["featurize", str(path), "-o", str(table), "--no-progress", *limits]) == 0
    argv = ["featurize", str(path), "-o", str(store), "--no-progress",
            "--scheduler", dask_client.scheduler.address, *limits]  # fmt: skip
    assert main(argv) == 0
    capsys.readouterr()
    errors_t = pd.read_csv(tmp_path / "limited.errors.csv")
    errors_s = xenonscale.read_errors(str(store))
    long_rows = [i for i, line in enumerate(formulas[:30]) if len(line.rsplit(",", 1)[0]) > 12]
    assert long_rows  # the real data has formulas longer than 12 characters
    assert errors_t["row"].tolist() == errors_s["row"].tolist() == [*long_rows, 30]
    assert errors_t["error"].tolist() == errors_s["error"].tolist()
    assert all("--max-input-chars" in e for e in errors_t["error"].iloc[:-1])
    assert "--max-amount" in errors_t["error"].iloc[-1]
    np.testing.assert_array_equal(
        pd.read_parquet(table)["ok"].to_numpy(bool), xenonscale.open_store(str(store)).ok.values
    )
    # the limits are part of the store's spec: another limit is another store
    attrs = xenonscale.open_store(str(store)).attrs["featurizer"]["limits"]
    assert attrs["max_input_chars"] == 12 and attrs["record_seconds"] == 0


def test_table_columns_typed_differently_by_partitions_still_write(tmp_path, capsys):
    """Numbers in one partition, text in another: the Parquet column becomes text."""
    path = tmp_path / "mixed.csv"
    path.write_text(
        "formula,target,flag\nNaCl,1,True\nKCl,2,False\nMgO,3,True\nFeO,high,\nCaO,5,x\n"
    )
    out = tmp_path / "mixed.parquet"
    assert main(["featurize", str(path), "-o", str(out), "--partition-rows", "2",
                 "--no-progress"]) == 0  # fmt: skip
    table = pd.read_parquet(out)
    assert table["target"].tolist() == ["1", "2", "3", "high", "5"]
    assert table["ok"].all() and list(table.columns[:4]) == ["formula", "target", "flag", "ok"]
    # an input column named like an output column is refused, nothing written
    clash = tmp_path / "clash.csv"
    clash.write_text("formula,ok\nNaCl,1\n")
    argv = ["featurize", str(clash), "-o", str(tmp_path / "c.parquet")]
    status, _, err = _run(argv, capsys)  # progress bars on: the clash is found before them
    _assert_one_line(status, err)
    assert "'ok'" in err and not (tmp_path / "c.parquet").exists()
