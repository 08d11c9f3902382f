"""Execute every tutorial in ``notebooks/`` with nbclient, on this test run's Python.

The kernel must be the interpreter running the tests (the project's venv), so a
``python3`` kernelspec that points elsewhere is replaced by one installed into a
temporary prefix and put first on ``JUPYTER_PATH``. A probe cell checks, inside
the kernel, that ``sys.prefix`` matches and that ``xenonscale`` imports from this
checkout. The notebooks read real data from ``$XENONSCALE_DATA_DIR``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
# Notebooks whose descriptor heatmap (cells tagged "heatmap") must draw an image.
HEATMAP_NOTEBOOKS = {"01_descriptors.ipynb"}
KERNEL = "python3"
#: Set to "small" for the kernels started here: a notebook may read it to fit
#: fewer rows (the tutorial itself runs its full size).
BUDGET_VARIABLE = "XENONSCALE_NOTEBOOK_BUDGET"
PROBE = "import sys, xenonscale\nprint(sys.prefix)\nprint(xenonscale.__file__)"


def _spec_runs_this_python(spec_argv: list[str]) -> bool:
    """Whether a kernelspec's argv starts this interpreter (jupyter_client maps 'python')."""
    exe = spec_argv[0] if spec_argv else ""
    major, minor = sys.version_info[:2]
    if exe in {"python", f"python{major}", f"python{major}.{minor}"}:
        return True  # KernelManager substitutes sys.executable for these names
    path = Path(exe)
    return path.is_absolute() and path.exists() and path.parent == Path(sys.executable).parent


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory):
    """Make the ``python3`` kernelspec run this interpreter; skip without the data mirror."""
    data = os.environ.get("XENONSCALE_DATA_DIR")
    if not data or not Path(data).expanduser().is_dir():
        pytest.skip(
            f"real-data mirror not available (XENONSCALE_DATA_DIR={data!r}); set it to "
            "../shared/data, as `make test` does"
        )
    pytest.importorskip("ipykernel")
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        argv = KernelSpecManager().get_kernel_spec(KERNEL).argv
    except NoSuchKernel:
        argv = []
    if _spec_runs_this_python(argv):
        yield
        return
    from ipykernel.kernelspec import install

    prefix = tmp_path_factory.mktemp("kernelspec")
    install(user=False, prefix=str(prefix), kernel_name=KERNEL)
    old = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = os.pathsep.join(
        p for p in (str(prefix / "share" / "jupyter"), old) if p
    )
    try:
        assert _spec_runs_this_python(KernelSpecManager().get_kernel_spec(KERNEL).argv)
        yield
    finally:
        if old is None:
            os.environ.pop("JUPYTER_PATH", None)
        else:
            os.environ["JUPYTER_PATH"] = old


def test_there_are_notebooks():
    assert any(p.name in HEATMAP_NOTEBOOKS for p in NOTEBOOKS), NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_saved_without_outputs(path):
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    dirty = [
        i
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)
    ]
    assert not dirty, f"{path.name}: clear the outputs of cells {dirty} before committing"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(kernel_env, path):
    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")

    nb = nbformat.read(path, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell(PROBE))
    # the kernel inherits this: notebooks with a budget switch run their small size
    os.environ[BUDGET_VARIABLE] = "small"
    client = nbclient.NotebookClient(
        nb,
        timeout=300,
        kernel_name=KERNEL,
        resources={"metadata": {"path": str(NOTEBOOK_DIR)}},
    )
    start = time.perf_counter()
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as err:
        pytest.fail(f"{path.name}: a cell failed:\n{err}", pytrace=False)
    elapsed = time.perf_counter() - start

    probe = "".join(o.get("text", "") for o in nb.cells[0].outputs).split()
    assert len(probe) == 2, nb.cells[0].outputs
    kernel_prefix, package_file = probe
    assert Path(kernel_prefix).resolve() == Path(sys.prefix).resolve(), (
        f"kernel ran {kernel_prefix}, tests run {sys.prefix}"
    )
    assert Path(package_file).resolve().is_relative_to(ROOT)

    errors = [
        (i, o.get("ename"))
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code"
        for o in cell.outputs
        if o.output_type == "error"
    ]
    assert not errors, f"{path.name}: error outputs {errors}"

    heatmaps = [c for c in nb.cells if "heatmap" in c.get("metadata", {}).get("tags", [])]
    if path.name in HEATMAP_NOTEBOOKS:
        assert heatmaps, f"{path.name}: no cell tagged 'heatmap'"
    for cell in heatmaps:
        images = [o for o in cell.outputs if "image/png" in o.get("data", {})]
        assert images, f"{path.name}: heatmap cell drew no image:\n{cell.source}"
        assert len(images[0]["data"]["image/png"]) > 20_000  # base64 of a real figure
    for cell in (c for c in nb.cells if "figure" in c.get("metadata", {}).get("tags", [])):
        images = [o for o in cell.outputs if "image/png" in o.get("data", {})]
        assert images and len(images[0]["data"]["image/png"]) > 10_000, cell.source
    print(f"{path.name}: executed in {elapsed:.1f} s")
