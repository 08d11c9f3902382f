"""The source-model library: documented sets of models trained from public datasets.

``xenonscale zoo build --preset NAME`` featurizes each dataset into a store
(reused when it is already there), trains one model per target, registers it
and promotes it. These are the models transfer learning draws on.

=========  ==============================================================
preset     models (dataset → target, descriptors)
=========  ==============================================================
``mp``     ``mp-e-form`` (Matbench mp_e_form, eV/atom), ``mp-gap``
           (Matbench mp_gap, eV); XenonPy ``classic`` on ``xenonpy58``
``oqmd``   ``oqmd-hf`` (OQMD formation enthalpy, CrabNet's train split,
           eV/atom); ``classic`` on ``xenonpy58``
``qm9``    ``qm9-gap``, ``qm9-homo``, ``qm9-lumo`` (hartree), ``qm9-u0``
           (hartree), ``qm9-cv`` (cal/mol/K), ``qm9-mu`` (debye),
           ``qm9-alpha`` (bohr³); RDKit 2D descriptors + ECFP
``all``    all of the above
=========  ==============================================================

Examples
--------
>>> from xenonscale.workflows.presets import PRESETS
>>> [m.name for m in PRESETS["mp"]]
['mp-e-form', 'mp-gap']
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from xenonscale import datasets
from xenonscale.cluster import close_client, get_client
from xenonscale.engine import featurize_to_store
from xenonscale.errors import ConfigError
from xenonscale.featurize.registry import FeaturizerSpec
from xenonscale.workflows.registration import Figures, train_and_register
from xenonscale.zoo import Zoo

__all__ = ["PRESETS", "SourceModel", "build_preset"]


@dataclass(frozen=True)
class SourceModel:
    """One library model: its zoo name, dataset, descriptors, target column and units."""

    name: str
    dataset: str
    target: str
    units: str
    kind: str = "composition"
    featurizers: str = "classic"
    elements: str | None = "xenonpy58"


_QM9 = [
    ("qm9-gap", "HOMO_LUMO_gap_au", "hartree"),
    ("qm9-homo", "HOMO_au", "hartree"),
    ("qm9-lumo", "LUMO_au", "hartree"),
    ("qm9-u0", "InternalEnergy_0K_au", "hartree"),
    ("qm9-cv", "Heatcapacity_Cv_cal_mol_K", "cal/mol/K"),
    ("qm9-mu", "Dipole_debye", "debye"),
    ("qm9-alpha", "Polarizability_bohr3", "bohr^3"),
]

PRESETS: dict[str, list[SourceModel]] = {
    "mp": [
        SourceModel("mp-e-form", "matbench_mp_e_form", "target", "eV/atom"),
        SourceModel("mp-gap", "matbench_mp_gap", "target", "eV"),
    ],
    "oqmd": [SourceModel("oqmd-hf", "oqmd_formation_enthalpy_train", "target", "eV/atom")],
    "qm9": [
        SourceModel(name, "qm9", column, units, "molecule", "rdkit,ecfp", None)
        for name, column, units in _QM9
    ],
}
PRESETS["all"] = [model for models in PRESETS.values() for model in models]


def build_preset(
    preset: str,
    *,
    zoo=None,
    workdir: str | Path = "zoo-build",
    max_epochs: int = 60,
    rows: int | None = None,
    only: list[str] | None = None,
    client=None,
    workers: int | None = None,
    seed: int = 0,
    progress: bool = True,
    train_options: dict | None = None,
    figures: Figures | None = None,
) -> list[dict]:
    """Featurize, train, register and promote every model of ``preset``; returns a report.

    ``rows`` limits each dataset to its first rows (quick looks, tests);
    ``only`` picks models by name. Stores go to ``workdir`` and are reused.
    ``figures`` draws the files registered with each model (the CLI passes
    :func:`xenonscale.viz.training.training_figures`).
    """
    if preset not in PRESETS:
        raise ConfigError(f"--preset {preset!r} is unknown: use one of {', '.join(PRESETS)}")
    models = [m for m in PRESETS[preset] if not only or m.name in only]
    if only and len(models) != len(set(only)):
        known = ", ".join(m.name for m in PRESETS[preset])
        raise ConfigError(f"--only {only!r}: preset {preset!r} has {known}")
    zoo = zoo if isinstance(zoo, Zoo) else Zoo(zoo)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    own = client is None
    client = client or get_client(workers=workers, quiet=not progress)
    report = []
    try:
        for model in models:
            source = str(datasets.fetch(model.dataset))
            suffix = f"_first{rows}" if rows else ""
            if rows:
                subset = workdir / f"{model.dataset}{suffix}.csv"
                if not subset.exists():
                    datasets.load(model.dataset).iloc[:rows].to_csv(subset, index=False)
                source = str(subset)
            spec = FeaturizerSpec.parse(model.kind, model.featurizers, elements=model.elements)
            tag = model.featurizers.replace(",", "+")
            store = workdir / f"{model.dataset}{suffix}_{tag}.zarr"
            featurize_to_store(
                source, str(store), spec, column=datasets.info(model.dataset).input_column,
                client=client, progress=progress,
            )  # fmt: skip
            result = train_and_register(
                str(store), model.target, name=model.name, zoo=zoo, figures=figures,
                promote=True, max_epochs=max_epochs, output=workdir / "models" / model.name,
                units={model.target: model.units}, seed=seed, progress=progress,
                **(train_options or {}),
            )  # fmt: skip
            report.append({"model": result.ref, "store": str(store),
                           "val": result.metrics.get("val", {})})  # fmt: skip
    finally:
        if own:
            close_client(client)
    return report
