"""The catalogue of named public datasets: where each comes from and what it holds.

Every entry is a frozen :class:`Dataset`. ``path`` is the file's place inside a
local mirror laid out like ``../shared/data``; ``sha256`` is the hash of the
file's *decompressed* content, so one hash checks a gzip mirror copy and a plain
download alike. ``url`` is the public origin, or None for a derived file (see
``origin``). The ``structures/cifs/`` folder of the mirror is not registered:
it is a folder of single CIF files, not a table.

Examples
--------
>>> from xenonscale.datasets.registry import get, names
>>> get("matbench_expt_gap").path
'compositions/matbench_expt_gap.csv'
>>> "qm9" in names(kind="molecule")
True
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from xenonscale.errors import ConfigError, DatasetError

__all__ = ["KINDS", "READERS", "Dataset", "get", "names", "register"]

KINDS = ("composition", "elements", "molecule", "structure")
READERS = ("csv", "json-split", "ase-json", "smi")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Dataset:
    """One public dataset file and how to read it.

    Attributes
    ----------
    name : str
        snake_case key, the file's stem (``"matbench_mp_e_form"``).
    path : str
        Relative path in a mirror (``"compositions/matbench_mp_e_form.csv"``);
        a ``.gz`` suffix means the mirror copy is gzip-compressed.
    url : str or None
        Public download URL of the origin; None when the file is derived.
    sha256 : str
        SHA-256 of the decompressed content.
    kind : str
        One of :data:`KINDS`.
    reader : str
        One of :data:`READERS`: ``"csv"`` (gzip by suffix), ``"json-split"``
        (pandas ``orient='split'``), ``"ase-json"`` (ASE database JSON),
        ``"smi"`` (``SMILES<TAB>name`` lines).
    description, origin, citation, licence : str
        What it holds; where it was taken from (and how it was derived when
        ``url`` is None); whom to cite; its licence.
    rows : int or None
        Expected number of rows of :func:`~xenonscale.datasets.load`.
    input_column : str or None
        Column holding the input (formula, SMILES, CIF, structure, element).
    target_columns : tuple of str
        Property columns, the usual target first.
    index : str or None
        When set, the file's first column is read as the index under this name.

    Thread-safety: immutable; safe to share between threads and Dask workers.

    Examples
    --------
    >>> get("esol").target_column
    'measured log solubility in mols per litre'
    """

    name: str
    path: str
    url: str | None
    sha256: str
    kind: str
    reader: str
    description: str
    origin: str
    citation: str
    licence: str
    rows: int | None = None
    input_column: str | None = None
    target_columns: tuple[str, ...] = ()
    index: str | None = None

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ConfigError(f"dataset name {self.name!r} must be snake_case, like 'my_set'")
        if not _SHA256.match(self.sha256):
            raise ConfigError(f"sha256 {self.sha256!r} of {self.name!r} must be 64 lowercase hex")
        if self.kind not in KINDS:
            raise ConfigError(f"kind {self.kind!r} of {self.name!r} must be one of {KINDS}")
        if self.reader not in READERS:
            raise ConfigError(f"reader {self.reader!r} of {self.name!r} must be one of {READERS}")

    @property
    def target_column(self) -> str | None:
        """The usual target (first of ``target_columns``), or None."""
        return self.target_columns[0] if self.target_columns else None


_GH = "https://raw.githubusercontent.com/"
_CRABNET = _GH + "anthony-wang/CrabNet/master/data/"
_CDVAE = _GH + "txie-93/cdvae/main/data/"
_XENONPY = _GH + "yoshida-lab/XenonPy/master/"
_OQMD = "benchmark_data/OQMD_Formation_Enthalpy/"

MATBENCH = (
    "Dunn, Wang, Ganose, Dopp, Jain, npj Comput. Mater. 6, 138 (2020) (Matbench); "
    "Wang, Kauwe, Murdock, Sparks, npj Comput. Mater. 7, 77 (2021) (CrabNet)"
)
MP = "; Jain et al., APL Mater. 1, 011002 (2013) (Materials Project)"
OQMD = (
    "Saal et al., JOM 65, 1501 (2013); Kirklin et al., npj Comput. Mater. 1, 15010 (2015); "
    "Wang et al., npj Comput. Mater. 7, 77 (2021) (CrabNet)"
)
CBFV = "; Murdock et al., Integr. Mater. Manuf. Innov. 9, 221 (2020) (CBFV)"
CDVAE = "; Xie, Fu, Ganea, Barzilay, Jaakkola, ICLR (2022) (CDVAE)"
XENONPY = "Yamada et al., ACS Cent. Sci. 5, 1717 (2019) (XenonPy)"

_DATASETS: dict[str, Dataset] = {}


def _composition(
    name: str, src: str, sha: str, rows: int, what: str, citation: str = MATBENCH
) -> Dataset:
    """A CrabNet-hosted ``formula,target`` table."""
    return Dataset(
        name, f"compositions/{name}.csv", _CRABNET + src, sha, "composition", "csv",
        what, f"anthony-wang/CrabNet data/{src} (also in PyPI crabnet 2.0.8)",
        citation, "MIT", rows, "formula", ("target",),
    )  # fmt: skip


def _element_table(name: str, url: str, sha: str, rows: int, what: str, cite: str) -> Dataset:
    return Dataset(
        name, f"elements/{name}.csv", url, sha, "elements", "csv", what,
        url.removeprefix(_GH), cite, "MIT", rows, "element",
    )  # fmt: skip


_ENTRIES = (
    _composition("matbench_expt_gap", "matbench/expt_gap.csv",
        "3de82c37f1db3ab9bbd92366c96633f131913ded5db0969eb36216bdd11cef2f", 4604,
        "Matbench v0.1 experimental band gap (eV) of inorganic compounds",
        MATBENCH + "; Zhuo, Mansouri Tehrani, Brgoch, J. Phys. Chem. Lett. 9, 1668 (2018)"),
    _composition("matbench_expt_is_metal", "matbench/expt_is_metal.csv",
        "5b0828561a6c925d96cd0215f78eb1e8d1ca7c05e9e12fcdbdfbcaeaddd73f13", 4921,
        "Matbench v0.1 experimental metallicity: metal (1) or not (0)"),
    _composition("matbench_glass", "matbench/glass.csv",
        "2c76eaaad9c1d92959e99a8a5c77bf1dce605279ee83af0ba3ed18833dcf9a33", 5680,
        "Matbench v0.1 metallic-glass formation (1/0) of alloys"),
    _composition("matbench_steels_yield", "matbench/steels_yield.csv",
        "a4232b4d83185f8c65c02dca6a013b85e220227d212e703d12586a4b5b9e9cf0", 312,
        "Matbench v0.1 yield strength (MPa) of steels"),
    _composition("matbench_mp_e_form", "matbench/mp_e_form.csv",
        "90e895635c96447c5be4e9070d26f26e1b4d17925102a6597ae3c4d79c32555b", 132752,
        "Matbench v0.1 DFT formation energy (eV/atom), Materials Project", MATBENCH + MP),
    _composition("matbench_mp_gap", "matbench/mp_gap.csv",
        "4084e584467e6f81ec8bf12c438eeb2c049ae39e11401bae694ef6a9983b9d9f", 106113,
        "Matbench v0.1 DFT (PBE) band gap (eV), Materials Project", MATBENCH + MP),
    _composition("oqmd_formation_enthalpy_train", _OQMD + "train.csv",
        "0b69cfcbffc31145790e48af13efed4f191e5687e01a19cda5ed7cee43deaf6d", 239190,
        "OQMD formation enthalpy (eV/atom), CrabNet training split; real extreme outliers "
        "(-198.7 ... 43.5) included", OQMD),
    _composition("oqmd_formation_enthalpy_val", _OQMD + "val.csv",
        "af138c2bfed3a8eb8fc2e202690fae94190e0e64258625ce1612df45298193d4", 51255,
        "OQMD formation enthalpy (eV/atom), CrabNet validation split", OQMD),
    Dataset(
        name="xenonpy_quasicrystal", path="compositions/xenonpy_quasicrystal.csv",
        url=_XENONPY + "samples/predict_hypermaterials/training_data.csv",
        sha256="dd849f6b4a814dfbd6d7e0f3479485193737057b34083fc7dab43d8704ac3a82",
        kind="composition", reader="csv", rows=10158, index="id",
        input_column="composition", target_columns=("label",),
        description="compositions (a dict written as a string) labelled OTHERS / QC "
        "(quasicrystal) / AC (approximant), with a for_test flag",
        origin="yoshida-lab/XenonPy @4b62835 samples/predict_hypermaterials/training_data.csv",
        citation="Liu et al., Adv. Mater. 33, 2102507 (2021)", licence="BSD-3-Clause",
    ),
    _element_table("xenonpy58", _GH + "WMD-group/ElementEmbeddings/main/src/elementembeddings/"
        "data/element_representations/xenonpy_element_features.csv",
        "4bb9e660fe1ee6123fac014d77056ec6aad1b917c7c4ac6a5af006c3721983f7", 94,
        "XenonPy's imputed 58-property element table (elements_completed), H-Pu",
        XENONPY + "; Onwuli et al., Digital Discovery 2, 1558 (2023) (ElementEmbeddings)"),
    _element_table("magpie", _CRABNET + "element_properties/magpie.csv",
        "402782379c950c10865b07c4e3044fe6a20c841aef6ffe81bcb912e0bf8de41d", 97,
        "Magpie element properties (CBFV/CrabNet copy)",
        "Ward, Agrawal, Choudhary, Wolverton, npj Comput. Mater. 2, 16028 (2016)" + CBFV),
    _element_table("oliynyk", _CRABNET + "element_properties/oliynyk.csv",
        "2067d5c613452eaf8897a353f1821dd10cefd086ea6f9aced3d07fa3d510744c", 85,
        "Oliynyk element properties (CBFV/CrabNet copy)",
        "Oliynyk et al., Chem. Mater. 28, 7324 (2016)" + CBFV),
    _element_table("mat2vec", _CRABNET + "element_properties/mat2vec.csv",
        "5dcde1a0fe13040af99dbcb7b3d73eb022ffd085e7f598dce70844d0af83b137", 118,
        "mat2vec 200-dimensional element word embeddings (CBFV/CrabNet copy)",
        "Tshitoyan et al., Nature 571, 95 (2019)" + CBFV),
    _element_table("jarvis", _CRABNET + "element_properties/jarvis.csv",
        "194a90da50520787d7bf6a89e8d9a39790b6bd218428f83e4874b224bb105527", 82,
        "JARVIS CFID element descriptors (CBFV/CrabNet copy)",
        "Choudhary, DeCost, Tavazza, Phys. Rev. Mater. 2, 083801 (2018)" + CBFV),
    Dataset(
        name="matbench_phonons", path="structures/matbench_phonons.json.gz",
        url=_GH + "CompRhys/aviary/main/tests/data/matbench_phonons.json.gz",
        sha256="16779cab14c01a56d6d4c65e3680b9cab378fb21a4f2cada51c2c40a240d429d",
        kind="structure", reader="json-split", rows=1265,
        input_column="structure", target_columns=("last phdos peak",),
        description="Matbench phonons: pymatgen structure dicts, last phonon DOS peak (cm^-1)",
        origin="CompRhys/aviary @a021eb7 tests/data/matbench_phonons.json.gz",
        citation=MATBENCH + "; Petretto et al., Sci. Data 5, 180065 (2018)", licence="MIT",
    ),
    Dataset(
        name="perov5_val", path="structures/perov5_val.csv.gz", url=_CDVAE + "perov_5/val.csv",
        sha256="326f401219901270374b71e2faff63df3a29a99fd26f469993b9f476b693daf2",
        kind="structure", reader="csv", rows=3787, index="index",
        input_column="cif", target_columns=("heat_ref", "heat_all", "dir_gap", "ind_gap"),
        description="Perov-5 validation split: ABX3 perovskite CIFs, heats of formation, gaps",
        origin="txie-93/cdvae @f857f59 data/perov_5/val.csv",
        citation="Castelli et al., Energy Environ. Sci. 5, 9034 (2012)" + CDVAE, licence="MIT",
    ),
    Dataset(
        name="carbon24_val", path="structures/carbon24_val.csv.gz",
        url=_CDVAE + "carbon_24/val.csv",
        sha256="36c00689cd63073c954a58bc6ed6e2adb7aeed5a630c994970959a1babffd50e",
        kind="structure", reader="csv", rows=2032, index="index",
        input_column="cif", target_columns=("energy_per_atom",),
        description="Carbon-24 validation split: carbon allotrope CIFs (AIRSS, 10 GPa), "
        "energy per atom",
        origin="txie-93/cdvae @f857f59 data/carbon_24/val.csv",
        citation="Pickard, AIRSS data for carbon at 10 GPa, Materials Cloud (2020)" + CDVAE,
        licence="MIT",
    ),
    Dataset(
        name="ase_dcdft", path="structures/ase_dcdft.json",
        url="https://gitlab.com/ase/ase/-/raw/master/ase/collections/dcdft.json",
        sha256="150e0700f334871e82aa6b73379748e854d1a419f49588966c3125156dedb6de",
        kind="structure", reader="ase-json", rows=71,
        input_column="name", target_columns=("wien2k_volume", "wien2k_B", "wien2k_Bp"),
        description="elemental crystals of the Delta (DCDFT) test, WIEN2k volume and bulk modulus",
        origin="PyPI ase 3.29.0 ase/collections/dcdft.json (gitlab.com/ase/ase)",
        citation="Lejaeghere et al., Science 351, aad3000 (2016); Larsen et al., J. Phys.: "
        "Condens. Matter 29, 273002 (2017) (ASE)", licence="LGPL-2.1-or-later",
    ),
    Dataset(
        name="iqspr_pubchemqc", path="molecules/iqspr_pubchemqc.csv", url=None,
        sha256="14275ebc4e46c63e2391e4ecd0a0d20d08a20eae411531081709ca84da00f828",
        kind="molecule", reader="csv", rows=13336,
        input_column="SMILES", target_columns=("E", "HOMO-LUMO gap"),
        description="PubChemQC B3LYP/6-31G(d) internal energy E (kJ/mol) and HOMO-LUMO gap "
        "(eV): the iQSPR tutorial data (a subset)",
        origin="derived, no single download: converted from the R data file data/qspr.data "
        "of GitHub cran/iqspr @c4720c9 (a subset; the rest is kept for evaluation)",
        citation="Ikebata et al., J. Comput. Aided Mol. Des. 31, 379 (2017); Nakata, Shimazaki, "
        "J. Chem. Inf. Model. 57, 1300 (2017) (PubChemQC)", licence="MIT",
    ),
    Dataset(
        name="qm9", path="molecules/qm9.csv.gz", url=None,
        sha256="f5bc7ad4f137de83c98cab60d5c9213fac1ee5cb0d42c2e6411822d4c1e02de2",
        kind="molecule", reader="csv", rows=130831, input_column="SMILES",
        target_columns=("HOMO_LUMO_gap_au", "HOMO_au", "LUMO_au", "InternalEnergy_0K_au",
                        "Heatcapacity_Cv_cal_mol_K", "Dipole_debye", "Polarizability_bohr3"),
        description="QM9 scalar properties with SMILES (HOMO/LUMO/gap in hartree, U0, Cv, ...)",
        origin="derived, no single download: the three parts of PyPI qm9pack 1.0.3 joined, "
        "heavy columns dropped, no values changed",
        citation="Ramakrishnan, Dral, Rupp, von Lilienfeld, Sci. Data 1, 140022 (2014)",
        licence="MIT",
    ),
    Dataset(
        name="moses_train", path="molecules/moses_train.csv.gz",
        url=_GH + "molecularsets/moses/master/moses/dataset/data/train.csv.gz",
        sha256="cc9d6e8e9534e25a7a36361529ae739ddda8036e9072b2fc5cea6930a0592144",
        kind="molecule", reader="csv", rows=1584663, input_column="SMILES",
        description="MOSES training set: 1.58 M drug-like SMILES from ZINC (no properties)",
        origin="PyPI molsets 0.3.1 moses/dataset/data/train.csv.gz (molecularsets/moses)",
        citation="Polykovskiy et al., Front. Pharmacol. 11, 565644 (2020)", licence="MIT",
    ),
    Dataset(
        name="esol", path="molecules/esol.csv",
        url=_GH + "deepchem/deepchem/master/datasets/delaney-processed.csv",
        sha256="8c06a76f0c6487d29ab0f903e6a7a7139f189ab3c1178f159c8be8964602f189",
        kind="molecule", reader="csv", rows=1128, input_column="smiles",
        target_columns=("measured log solubility in mols per litre",),
        description="ESOL (Delaney) measured aqueous solubility, log(mol/L)",
        origin="deepchem/deepchem datasets/delaney-processed.csv",
        citation="Delaney, J. Chem. Inf. Comput. Sci. 44, 1000 (2004); Wu et al., Chem. Sci. "
        "9, 513 (2018) (MoleculeNet)", licence="MIT",
    ),
    Dataset(
        name="polymer_genome_500", path="molecules/polymer_genome_500.csv",
        url=_XENONPY + "tests/inverse/polymer_test_data.csv",
        sha256="31b2bfd9c156d08f07f16b7cb36c40e8084dfd9284e989d883e90b26ea439543",
        kind="molecule", reader="csv", rows=500, index="index", input_column="smiles",
        target_columns=("bandgap", "refractive_index", "density", "glass_transition_temperature"),
        description="polymer repeat units ([*] ends): band gap, refractive index, density, Tg",
        origin="yoshida-lab/XenonPy tests/inverse/polymer_test_data.csv",
        citation=XENONPY, licence="BSD-3-Clause",
    ),
    Dataset(
        name="polymer_tg", path="molecules/polymer_tg.csv",
        url=_GH + "lamalab-org/PolyMetriX/main/data/Polymer_Tg.csv",
        sha256="89c500a8df1381c855e691c75849ee6c6e7a19f20a62efc35f7d57e85fc8184a",
        kind="molecule", reader="csv", rows=7252, input_column="PSMILES",
        target_columns=("Exp_Tg(K)",),
        description="polymers (PSMILES with * ends), experimental glass transition temperature (K)",
        origin="lamalab-org/PolyMetriX @c69867d data/Polymer_Tg.csv",
        citation="PolyMetriX, lamalab-org, https://github.com/lamalab-org/PolyMetriX",
        licence="MIT",
    ),
    Dataset(
        name="nci_first_5k", path="molecules/nci_first_5k.smi",
        url=_GH + "rdkit/rdkit/master/Data/NCI/first_5K.smi",
        sha256="91e71c015f14939837f2943dcc904f7c87e5a3a0124d82b05c28ad2f23004def",
        kind="molecule", reader="smi", rows=4999, input_column="smiles",
        description="NCI open-database SMILES with their NCI numbers (no properties)",
        origin="PyPI rdkit rdkit/Data/NCI/first_5K.smi (rdkit/rdkit on GitHub)",
        citation="NCI/CADD open database; RDKit, https://www.rdkit.org", licence="BSD-3-Clause",
    ),
)  # fmt: skip


def register(dataset: Dataset, *, overwrite: bool = False) -> Dataset:
    """Add ``dataset`` to the catalogue (for in-house mirrors); returns it.

    Raises :class:`~xenonscale.errors.ConfigError` when the name is taken and
    ``overwrite`` is False. Not thread-safe: register at import time.

    Examples
    --------
    >>> from dataclasses import replace
    >>> register(replace(get("esol"), description="ESOL, our copy"))
    Traceback (most recent call last):
    ...
    xenonscale.errors.ConfigError: dataset 'esol' is already registered; pass overwrite=True ...
    >>> mine = replace(get("esol"), name="my_esol")
    >>> register(mine).name  # doctest: +SKIP
    'my_esol'

    (The last example is not run by the tests: it changes the process-wide catalogue.)
    """
    if dataset.name in _DATASETS and not overwrite:
        raise ConfigError(
            f"dataset {dataset.name!r} is already registered; pass overwrite=True to replace it"
        )
    _DATASETS[dataset.name] = dataset
    return dataset


def names(kind: str | None = None) -> list[str]:
    """Sorted names of the registered datasets, optionally of one ``kind``.

    Examples
    --------
    >>> names(kind="elements")
    ['jarvis', 'magpie', 'mat2vec', 'oliynyk', 'xenonpy58']
    """
    if kind is not None and kind not in KINDS:
        raise ConfigError(f"kind {kind!r} is not one of {KINDS}")
    return sorted(n for n, d in _DATASETS.items() if kind is None or d.kind == kind)


def get(name: str) -> Dataset:
    """The :class:`Dataset` called ``name``; unknown names raise :class:`DatasetError`.

    Examples
    --------
    >>> get("qm9").url is None
    True
    """
    try:
        return _DATASETS[name]
    except (KeyError, TypeError):
        close = difflib.get_close_matches(str(name), list(_DATASETS), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise DatasetError(
            f"unknown dataset {name!r}.{hint} See xenonscale.datasets.names() for all "
            f"{len(_DATASETS)} names."
        ) from None


for _entry in _ENTRIES:
    register(_entry)
