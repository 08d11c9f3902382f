"""Named element tables (presets) and :func:`load_table`.

``"xenonscale"`` (default)
    Built offline from mendeleev and pymatgen for Z = 1–103 by
    :func:`xenonscale.elements.builder.build_default_table` (gaps imputed, mask kept).
``"xenonpy58"``
    XenonPy's 58 imputed properties (``elements_completed``) for H–Pu, read
    unchanged from the mirror file ``elements/xenonpy58.csv``.
``"magpie"``
    The 22 Magpie properties of matminer's ``ElementProperty.from_preset("magpie")``,
    NaN where Magpie has no value (matminer's ``impute_nan=False``).
``"magpie_imputed"``
    The same with matminer 0.10's *default* ``impute_nan=True``: every missing
    value replaced by the mean of the property over the elements that have one.
``"mat2vec"``
    The 200-dimensional mat2vec word embeddings of 118 elements (H–Og; Tshitoyan
    et al., Nature 571, 95 (2019)), dimensionless, no value missing.
``"oliynyk"``
    Oliynyk's 44 element properties for 85 elements (H–Bi, Th, U; Oliynyk et al.,
    Chem. Mater. 28, 7324 (2016)), units where the column or the values make them
    known (:data:`OLIYNYK_UNITS`), 14 cells NaN as in the file (not imputed).
``"jarvis"``
    The 438 JARVIS CFID element descriptors of 82 elements (H–U without Xe, Pm, Eu,
    Po–Pa, Np–Am; Choudhary et al., Phys. Rev. Materials 2, 083801 (2018)): treated
    as dimensionless (sums, products, quotients of properties; the source gives no
    units), no value missing.

The last three are the CBFV / CrabNet copies (Wang et al., npj Comput. Mater. 7,
77 (2021); Murdock et al., IMMI 9, 221 (2020)) read unchanged from the mirror
files ``elements/{mat2vec,oliynyk,jarvis}.csv`` (registered datasets, MIT).

Magpie values come from matminer's packaged ``magpie_elementdata/*.table`` files
when matminer is installed (read directly, matminer is never imported), else
from the mirror ``elements/magpie.csv`` (CrabNet/CBFV copy, H–Bk) completed by
the rows Cf–Og shipped in ``elements/data/magpie_cf_og.csv``. The mirror
equals matminer's tables value for value, except that CBFV filled ten missing
cells with column medians; those cells are set back to NaN on reading
(``_CBFV_FILLED``). Both sources give the same table and the same imputed
means, so results do not depend on whether matminer is installed.

Examples
--------
>>> from xenonscale.elements import load_table
>>> sorted(PRESETS)
['jarvis', 'magpie', 'magpie_imputed', 'mat2vec', 'oliynyk', 'xenonpy58', 'xenonscale']
>>> load_table("magpie").value("Fe", "MendeleevNumber")  # doctest: +REQUIRES_DATA
55.0
>>> load_table("oliynyk").units["Melting_point_(K)"]  # doctest: +REQUIRES_DATA
'K'
>>> load_table("mat2vec").values.shape  # doctest: +REQUIRES_DATA
(118, 200)
"""

from __future__ import annotations

import csv
import functools
import importlib.util
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from xenonscale.datasets import fetch
from xenonscale.elements.builder import build_default_table
from xenonscale.elements.table import PERIODIC_SYMBOLS, ElementTable
from xenonscale.errors import ElementTableError

__all__ = [
    "CBFV_TABLES",
    "MAGPIE_PROPERTIES",
    "OLIYNYK_UNITS",
    "PRESETS",
    "XENONPY58_UNITS",
    "clear_cache",
    "load_cbfv",
    "load_magpie",
    "load_table",
    "load_xenonpy58",
    "matminer_magpie_dir",
]

PRESETS: dict[str, str] = {
    "xenonscale": "default: 103 elements (H-Lr), >= 58 properties from mendeleev + pymatgen, "
    "gaps imputed (IterativeImputer), units, sources and imputed mask",
    "xenonpy58": "XenonPy's 58 imputed element features for 94 elements (H-Pu)",
    "magpie": "Magpie element data (22 properties) as matminer's ElementProperty "
    "'magpie' preset, NaN where Magpie has no value",
    "magpie_imputed": "Magpie with matminer's default impute_nan=True "
    "(missing values = property mean over elements with a value), Z = 1-118",
    "mat2vec": "mat2vec word embeddings (200 dimensionless components) for 118 elements "
    "(H-Og), CBFV/CrabNet copy",
    "oliynyk": "Oliynyk's 44 element properties for 85 elements (H-Bi, Th, U), units where "
    "known, 14 missing cells kept NaN, CBFV/CrabNet copy",
    "jarvis": "JARVIS CFID element descriptors (438, dimensionless) for 82 elements (H-U, "
    "gaps), CBFV/CrabNet copy",
}

MAGPIE_PROPERTIES: tuple[str, ...] = (
    *("Number", "MendeleevNumber", "AtomicWeight", "MeltingT", "Column", "Row"),
    *("CovalentRadius", "Electronegativity", "NsValence", "NpValence", "NdValence"),
    *("NfValence", "NValence", "NsUnfilled", "NpUnfilled", "NdUnfilled", "NfUnfilled"),
    *("NUnfilled", "GSvolume_pa", "GSbandgap", "GSmagmom", "SpaceGroupNumber"),
)
_MAGPIE_UNITS = {
    "AtomicWeight": "Da",
    "MeltingT": "K",
    "CovalentRadius": "pm",
    "GSvolume_pa": "angstrom^3/atom",
    "GSbandgap": "eV",
    "GSmagmom": "bohr_magneton/atom",
}
# Magpie's values for Cf-Og (Z = 98-118; Ward et al., npj Comput. Mater. 2, 16028
# (2016), as packaged in matminer 0.10.1's magpie_elementdata .table files; empty =
# "Missing"/"None" there). The CBFV mirror stops at Bk; with these rows the mirror
# gives the same table and the same impute_nan means as matminer's files.
MAGPIE_CF_OG = Path(__file__).with_name("data") / "magpie_cf_og.csv"
# Cells of the CBFV mirror magpie.csv that CBFV filled with the column median over
# H-Bk; matminer's .table files say "Missing" there.
_CBFV_FILLED: dict[str, tuple[str, ...]] = {
    "MeltingT": ("He", "Fr"),
    "CovalentRadius": ("Bk",),
    "Electronegativity": ("He", "Ne", "Ar", "Rn"),
    "SpaceGroupNumber": ("At", "Rn", "Fr"),
}

_PM, _KJ, _EV, _ANG = "pm", "kJ/mol", "eV", "angstrom"
# Units of XenonPy's element features (XenonPy's element feature table, Table S1 of
# its documentation, and Magpie's README for the gs_*/hhi/icsd columns).
XENONPY58_UNITS: dict[str, str] = {
    "atomic_radius": _PM, "atomic_radius_rahm": _PM, "atomic_volume": "cm^3/mol",
    "atomic_weight": "Da", "boiling_point": "K", "bulk_modulus": "GPa",
    "c6_gb": "hartree*bohr^6", "covalent_radius_cordero": _PM, "covalent_radius_pyykko": _PM,
    "covalent_radius_pyykko_double": _PM, "covalent_radius_pyykko_triple": _PM,
    "covalent_radius_slater": _PM, "density": "g/cm^3", "dipole_polarizability": "bohr^3",
    "electron_affinity": _EV, "en_allen": _EV, "first_ion_en": _EV, "fusion_enthalpy": _KJ,
    "gs_bandgap": _EV, "gs_energy": "eV/atom", "gs_est_bcc_latcnt": _ANG,
    "gs_est_fcc_latcnt": _ANG, "gs_mag_moment": "bohr_magneton/atom",
    "gs_volume_per": "angstrom^3/atom", "heat_capacity_mass": "J/(g K)",
    "heat_capacity_molar": "J/(mol K)", "icsd_volume": "angstrom^3/atom",
    "evaporation_heat": _KJ, "heat_of_formation": _KJ, "lattice_constant": _ANG,
    "melting_point": "K", "molar_volume": "cm^3/mol", "specific_heat": "J/(g K)",
    "thermal_conductivity": "W/(m K)", "vdw_radius": _PM, "vdw_radius_alvarez": _PM,
    "vdw_radius_mm3": _PM, "vdw_radius_uff": _PM, "sound_velocity": "m/s",
    "Polarizability": "angstrom^3",
}  # fmt: skip


# Units of Oliynyk's properties: those its column names state, and those the values
# make certain (radii in angstrom: H 0.53 / 0.37; Mulliken electronegativity in eV:
# H 7.18 = (13.60 + 0.75) / 2; cohesive energy in eV/atom: Fe 4.28 as in Kittel).
# Other columns are counts, flags, indices or scales without a stated unit ("").
OLIYNYK_UNITS: dict[str, str] = {
    "Atomic_Weight": "Da", "Atomic_Radius": _ANG, "Miracle_Radius_[pm]": _PM,
    "Covalent_Radius": _ANG, "ionic_radius": _ANG, "crystal_radius": _ANG,
    "Mulliken_EN": _EV, "1st_ionization_potential_(kJ/mol)": _KJ,
    "polarizability(A^3)": "angstrom^3", "Melting_point_(K)": "K", "Boiling_Point_(K)": "K",
    "Density_(g/mL)": "g/mL", "specific_heat_(J/g_K)_": "J/(g K)",
    "heat_of_fusion_(kJ/mol)_": _KJ, "heat_of_vaporization_(kJ/mol)_": _KJ,
    "thermal_conductivity_(W/(m_K))_": "W/(m K)", "heat_atomization(kJ/mol)": _KJ,
    "Cohesive_energy": "eV/atom",
}  # fmt: skip

_CBFV_CITATION = (
    "CBFV/CrabNet copy: Wang, Kauwe, Murdock, Sparks, npj Comput. Mater. 7, 77 (2021); "
    "Murdock et al., Integr. Mater. Manuf. Innov. 9, 221 (2020)"
)
# name -> (original work, what the values are)
CBFV_TABLES: dict[str, tuple[str, str]] = {
    "mat2vec": (
        "mat2vec, Tshitoyan et al., Nature 571, 95 (2019)",
        "200-dimensional word embeddings of the element names learned from 3.3 million "
        "materials-science abstracts; dimensionless",
    ),
    "oliynyk": (
        "Oliynyk et al., Chem. Mater. 28, 7324 (2016)",
        "44 tabulated element properties; units from the column names or the values "
        "(OLIYNYK_UNITS), '' where none is stated",
    ),
    "jarvis": (
        "JARVIS CFID, Choudhary, DeCost, Tavazza, Phys. Rev. Materials 2, 083801 (2018)",
        "438 classical-force-field-inspired descriptors (element properties, their sums, "
        "products and quotients, and 36 components C-0..C-35); treated as dimensionless: "
        "the source gives no units",
    ),
}


# ------------------------------------------------------------------ files
def _mirror_file(dataset: str) -> Path:
    """Local path of a registered dataset file (mirror, cache, else download)."""
    return Path(fetch(dataset))


def _read_exact_csv(path: Path) -> pd.DataFrame:
    """CSV with ``element`` first, values parsed with Python's correctly rounded float()."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    header, body = rows[0], [r for r in rows[1:] if r]
    values = [[float(v) if v.strip() else np.nan for v in r[1:]] for r in body]
    return pd.DataFrame(values, index=[r[0] for r in body], columns=header[1:])


def matminer_magpie_dir() -> Path | None:
    """matminer's ``magpie_elementdata`` folder if matminer is installed (not imported).

    Examples
    --------
    >>> folder = matminer_magpie_dir()
    >>> folder is None or (folder / "Number.table").is_file()
    True
    """
    try:
        spec = importlib.util.find_spec("matminer")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        folder = Path(root) / "utils" / "data_files" / "magpie_elementdata"
        if (folder / "Number.table").is_file():
            return folder
    return None


def _parse_magpie_table(path: Path) -> np.ndarray:
    """Values for Z = 1..118 the way matminer parses them (unparsable line -> NaN)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    values = np.full(len(PERIODIC_SYMBOLS), np.nan)
    for z, line in enumerate(lines[: len(PERIODIC_SYMBOLS)]):
        try:
            values[z] = float(line)
        except ValueError:
            continue
    return values


# ---------------------------------------------------------------- presets
def load_xenonpy58() -> ElementTable:
    """XenonPy's 58 imputed element features (H–Pu), values exactly as in the CSV.

    Raises
    ------
    xenonscale.errors.DatasetUnavailableError
        When ``elements/xenonpy58.csv`` is neither mirrored (``XENONSCALE_DATA_DIR``)
        nor cached and cannot be downloaded.

    Examples
    --------
    >>> load_xenonpy58().value("Fe", "atomic_number")  # doctest: +REQUIRES_DATA
    26.0
    """
    frame = _read_exact_csv(_mirror_file("xenonpy58"))
    source = "XenonPy elements_completed (imputed by XenonPy; elementembeddings 0.8.0 copy)"
    return ElementTable.from_frame(
        frame,
        name="xenonpy58",
        units=XENONPY58_UNITS,
        sources={p: f"{source}: {p}" for p in frame.columns},
        description="XenonPy's 58 element features (elements_completed), H-Pu, "
        "values unchanged from the mirror file elements/xenonpy58.csv (BSD-3/MIT).",
    )


def load_magpie(
    *, impute_nan: bool = False, source: Literal["auto", "matminer", "mirror"] | Path = "auto"
) -> ElementTable:
    """Magpie element data as used by matminer's ``ElementProperty`` "magpie" preset.

    Parameters
    ----------
    impute_nan : bool
        False: keep NaN where Magpie has no value (matminer ``impute_nan=False``).
        True: replace them by the property's mean over the elements with a value,
        rows Z = 1–118 (matminer 0.10's default ``impute_nan=True``); the mask
        marks the replaced cells.
    source : {"auto", "matminer", "mirror"} or Path
        "auto" reads matminer's ``.table`` files when installed, else the mirror;
        a path names a folder of those files (matminer's ``magpie_elementdata``,
        e.g. from another environment).

    Examples
    --------
    >>> table = load_magpie()  # doctest: +REQUIRES_DATA
    >>> bool(np.isnan(table.value("He", "Electronegativity")))
    True
    """
    if isinstance(source, Path):
        if not (source / "Number.table").is_file():
            raise ElementTableError(
                f"no Magpie .table files in {str(source)!r}: give matminer's "
                "utils/data_files/magpie_elementdata folder"
            )
        folder: Path | None = source
    elif source not in ("auto", "matminer", "mirror"):
        raise ElementTableError(
            f"unknown Magpie source {source!r}: use 'auto', 'matminer', 'mirror' or a folder"
        )
    else:
        folder = matminer_magpie_dir() if source != "mirror" else None
    if folder is None and source == "matminer":
        raise ElementTableError(
            "source='matminer' needs matminer's data files: pip install matminer"
        )
    if folder is not None:
        columns = {p: _parse_magpie_table(folder / f"{p}.table") for p in MAGPIE_PROPERTIES}
        frame = pd.DataFrame(columns, index=list(PERIODIC_SYMBOLS))
        origin = f"matminer {_dist_version('matminer')} magpie_elementdata"
        sources = {p: f"Magpie ({origin}/{p}.table)" for p in MAGPIE_PROPERTIES}
    else:
        frame = _read_exact_csv(_mirror_file("magpie"))[list(MAGPIE_PROPERTIES)]
        for prop, symbols in _CBFV_FILLED.items():
            frame.loc[list(symbols), prop] = np.nan
        heavy = _read_exact_csv(MAGPIE_CF_OG)[list(MAGPIE_PROPERTIES)]
        frame = pd.concat([frame, heavy]).reindex(list(PERIODIC_SYMBOLS))
        origin = (
            "mirror elements/magpie.csv (CrabNet copy, CBFV median fills removed) "
            "+ Cf-Og from Magpie's tables (xenonscale/elements/data/magpie_cf_og.csv)"
        )
        sources = {p: f"Magpie ({origin}): {p}" for p in MAGPIE_PROPERTIES}
    mask = None
    if impute_nan:
        means = frame.mean(axis=0, skipna=True)  # = numpy.nanmean, as matminer does
        mask = frame.isna().to_numpy()
        frame = frame.fillna(means)
        note = "missing values replaced by the property mean (matminer impute_nan=True)"
    else:
        frame = frame.dropna(how="all")
        note = "NaN where Magpie has no value (matminer impute_nan=False)"
    return ElementTable.from_frame(
        frame,
        name="magpie_imputed" if impute_nan else "magpie",
        units={p: _MAGPIE_UNITS.get(p, "") for p in MAGPIE_PROPERTIES},
        sources=sources,
        imputed=mask,
        description=f"Magpie element data (Ward et al. 2016) from {origin}; {note}.",
    )


def load_cbfv(name: Literal["mat2vec", "oliynyk", "jarvis"]) -> ElementTable:
    """One of the CBFV / CrabNet element tables, values exactly as in the mirror CSV.

    NaN stays where the file has an empty cell (only ``oliynyk`` has any: 14, in
    ``Miracle_Radius_[pm]`` (10), ``Mulliken_EN`` (2), ``crystal_radius`` and
    ``MB_electonegativity``); nothing is imputed. Rows are ordered by Z.

    Raises
    ------
    ElementTableError
        ``name`` is not one of :data:`CBFV_TABLES`.
    xenonscale.errors.DatasetUnavailableError
        The file is neither mirrored (``XENONSCALE_DATA_DIR``) nor cached and
        cannot be downloaded.

    Examples
    --------
    >>> table = load_cbfv("oliynyk")  # doctest: +REQUIRES_DATA
    >>> table.value("Fe", "Number"), table.units["Atomic_Weight"]
    (26.0, 'Da')
    >>> int(np.isnan(table.values).sum())
    14
    """
    if name not in CBFV_TABLES:
        raise ElementTableError(
            f"unknown CBFV element table {name!r}: use one of {', '.join(map(repr, CBFV_TABLES))}"
        )
    work, what = CBFV_TABLES[name]
    frame = _read_exact_csv(_mirror_file(name))
    units = OLIYNYK_UNITS if name == "oliynyk" else {}
    missing = int(frame.isna().to_numpy().sum())
    return ElementTable.from_frame(
        frame,
        name=name,
        units=units,
        sources={p: f"{work} ({_CBFV_CITATION}): {p}" for p in frame.columns},
        description=f"{work}: {what}. {len(frame)} elements, values unchanged from the "
        f"mirror file elements/{name}.csv ({_CBFV_CITATION}; MIT); {missing} missing "
        "values kept as NaN.",
    )


def _dist_version(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


@functools.cache
def _load_preset(name: str) -> ElementTable:
    if name == "xenonscale":
        return build_default_table()
    if name == "xenonpy58":
        return load_xenonpy58()
    if name == "magpie":
        return load_magpie()
    if name == "magpie_imputed":
        return load_magpie(impute_nan=True)
    if name in CBFV_TABLES:
        return load_cbfv(name)  # type: ignore[arg-type]
    raise ElementTableError(
        f"unknown element table {name!r}: use one of {', '.join(map(repr, PRESETS))}, "
        "an ElementTable, or a DataFrame indexed by element symbol"
    )


def clear_cache() -> None:
    """Forget the tables :func:`load_table` has loaded in this process."""
    _load_preset.cache_clear()


def load_table(name_or_table: str | ElementTable | pd.DataFrame = "xenonscale") -> ElementTable:
    """Return an element table by preset name, or wrap a table given directly.

    Parameters
    ----------
    name_or_table : str, ElementTable or pandas.DataFrame
        A name in :data:`PRESETS` (case-insensitive; loaded once per process),
        an :class:`ElementTable` (returned unchanged) or a DataFrame indexed by
        element symbol (wrapped with ``ElementTable.from_frame``; its
        ``attrs["name"]`` names it, default ``"custom"``).

    Raises
    ------
    ElementTableError
        Unknown name or unsupported type (the message names the value).

    Examples
    --------
    >>> import pandas as pd
    >>> load_table(pd.DataFrame({"mass": [4.0026, 1.008]}, index=["He", "H"])).symbols
    ('H', 'He')
    """
    if isinstance(name_or_table, ElementTable):
        return name_or_table
    if isinstance(name_or_table, pd.DataFrame):
        name = str(name_or_table.attrs.get("name", "custom"))
        return ElementTable.from_frame(name_or_table, name=name)
    if isinstance(name_or_table, str):
        return _load_preset(name_or_table.strip().lower())
    raise ElementTableError(
        f"element table must be a preset name, an ElementTable or a DataFrame, "
        f"got {name_or_table!r}; presets: {', '.join(map(repr, PRESETS))}"
    )
