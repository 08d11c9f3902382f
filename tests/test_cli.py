"""The ``xenonscale`` command line, run as users run it (a subprocess) and in-process."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from xenonscale.cli.main import main
from xenonscale.featurize import Compositions


def test_featurize_a_csv_with_bad_rows(tmp_path, data_dir, capsys):
    source = pd.read_csv(data_dir / "compositions" / "matbench_steels_yield.csv")
    bad = pd.DataFrame({"formula": ["Xx2O", "Fe(O", ""], "target": [1.0, 2.0, 3.0]})
    frame = pd.concat([source, bad], ignore_index=True)
    csv = tmp_path / "steels.csv"
    frame.to_csv(csv, index=False)
    out = tmp_path / "features.parquet"
    status = main(
        ["featurize", str(csv), "-o", str(out), "--elements", "xenonpy58", "--no-progress"]
    )
    assert status == 0
    table = pd.read_parquet(out)
    assert len(table) == len(frame)
    assert table["ok"].sum() == len(source)
    errors = pd.read_csv(out.with_suffix(".errors.csv"))
    assert errors["row"].tolist() == [len(source), len(source) + 1, len(source) + 2]
    assert "unknown element 'Xx'" in errors["error"].iloc[0]
    expected = Compositions(elements="xenonpy58").transform(source.formula.tolist())
    np.testing.assert_allclose(table[expected.columns].iloc[: len(source)], expected)
    assert table["target"].tolist() == frame["target"].tolist()
    printed = capsys.readouterr().out
    assert f"{len(source)} featurized, 3 errors" in printed


def test_featurize_a_dataset_with_the_magpie_preset(tmp_path, data_dir):
    out = tmp_path / "gap.csv"
    assert (
        main(
            [
                "featurize",
                "dataset:matbench_expt_gap",
                "-o",
                str(out),
                "--featurizers",
                "magpie",
                "--no-progress",
            ]
        )
        == 0
    )
    table = pd.read_csv(out)
    assert table.shape == (4604, 2 + 1 + 132)
    assert "MagpieData mean Number" in table.columns


def test_bad_arguments_name_the_value(tmp_path, capsys):
    assert main(["featurize", str(tmp_path / "none.csv"), "-o", str(tmp_path / "x.parquet")]) == 2
    assert "none.csv" in capsys.readouterr().err
    csv = tmp_path / "f.csv"
    pd.DataFrame({"formula": ["NaCl"]}).to_csv(csv, index=False)
    assert main(["featurize", str(csv), "-o", str(tmp_path / "x.xlsx")]) == 2
    assert "x.xlsx" in capsys.readouterr().err
    assert main(["featurize", str(csv), "-o", str(tmp_path / "x.csv"), "--column", "smiles"]) == 2
    assert "'smiles'" in capsys.readouterr().err
    args = ["featurize", str(csv), "-o", str(tmp_path / "x.csv"), "--featurizers", "Mean"]
    assert main(args) == 2
    assert "'Mean'" in capsys.readouterr().err


def test_datasets_and_elements_listings(capsys):
    assert main(["datasets", "list"]) == 0
    listing = capsys.readouterr().out
    assert "matbench_mp_e_form" in listing and "moses_train" in listing
    assert main(["elements", "show", "xenonscale"]) == 0
    shown = capsys.readouterr().out
    assert "H..Lr" in shown and "mendeleev" in shown


@pytest.mark.slow
def test_console_script_demo_runs_end_to_end(tmp_path, data_dir):
    env = {**os.environ, "XENONSCALE_DATA_DIR": str(data_dir)}
    exe = os.path.join(os.path.dirname(sys.executable), "xenonscale")
    result = subprocess.run(
        [exe, "demo", "--limit", "3000", "--max-epochs", "6", "-o", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    # our own lines only: no third-party warning, tip or banner
    for noise in ("Warning", "💡", "GPU available", "Trainer.fit", "deprecated"):
        assert noise not in result.stderr and noise not in result.stdout, noise
    assert "3,000 ok + 0 errors = 3,000 rows" in result.stdout
    import xarray as xr

    ds = xr.open_zarr(tmp_path / "matbench_mp_gap.zarr")
    assert ds.features.shape == (3000, 500) and bool(ds.ok.all())
    assert (tmp_path / "matbench_mp_gap_heatmap.png").stat().st_size > 20_000
    assert "mp-gap@1" in result.stdout and "validation MAE" in result.stdout
    for plot in ("learning_curve.png", "parity.png"):
        assert (tmp_path / "model" / plot).stat().st_size > 10_000
    assert "(1 error: unknown element 'Xx'" in result.stdout
    # transfer: a test MAE against the same learner from scratch, with a parity plot
    transfer = re.search(r"test MAE ([0-9.]+) eV vs from scratch ([0-9.]+) eV", result.stdout)
    assert transfer and 0 < float(transfer[1]) < 1.5 and 0 < float(transfer[2]) < 1.5
    assert (tmp_path / "transfer_parity.png").stat().st_size > 10_000
    # design: every chain step in the parquet, the plots, the quality line
    frame = pd.read_parquet(tmp_path / "design.parquet")
    assert sorted(frame["chain"].unique()) == [0, 1, 2, 3] and frame["step"].max() == 20
    valid = re.search(r"final: (\d+)% valid", result.stdout)
    assert valid and int(valid[1]) >= 90
    for plot in ("design_property_space.png", "design_trajectory.png"):
        assert (tmp_path / plot).stat().st_size > 10_000


def test_table_output_honours_the_kind(tmp_path, data_dir):
    out = tmp_path / "mols.parquet"
    argv = ["featurize", str(data_dir / "molecules" / "esol.csv"), "-o", str(out),
            "--kind", "molecule", "--column", "smiles", "--featurizers", "maccs",
            "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    table = pd.read_parquet(out)
    assert len(table) == 1128 and table["ok"].all() and "maccs:1" in table.columns[-167:]
