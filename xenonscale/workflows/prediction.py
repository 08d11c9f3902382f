"""Distributed prediction: zoo models over a FeatureStore or any source, a Dask task per partition.

:func:`predict_to_store` is ``xenonscale predict``. The client resolves every
model reference to one version (``NAME`` → the production version, else the
latest), decides what each model reads, plans partitions and submits one task
per unfinished partition (``client.map(..., pure=False)``). Each task loads
its models once per worker process from the zoo (cached by reference and
card sha256; the zoo must be reachable from the workers: a shared folder, or
PostgreSQL + S3 on a cluster), reads its rows, predicts in batches without
gradients, writes its own part of the output and then its done marker. Only
counts travel back to the client.

What a model reads
------------------
* **A FeatureStore** (a folder or URL that :func:`~xenonscale.store.layout.store_state`
  calls a store): the store's own arrays when they are the model's inputs —
  ``features`` when the card's featurizer (kind, names, element table) and
  its element tables' sha256 equal the store's, the composition slots
  (``composition_element`` / ``composition_fraction``) for a composition model
  (``card["inputs"] == "composition"``), the ``graph`` rows for a graph model.
  Rows the store could not featurize are NaN with the store's reason. Any
  other model is refused in one line naming both featurizers and the fix:
  ``refeaturize=True`` (``--refeaturize``) featurizes the store's ``input``
  text on the workers with the model's own featurizer (models whose inputs the
  store holds still read them). Record limits are not compared: they only
  decide which records become error rows. Rows a synced store flags as
  ``withdrawn`` are predicted like the others.
* **Any source** (:func:`~xenonscale.sources.open_source`: CSV, Parquet, JSON,
  CIF folders, ``optimade:`` ...): every model featurizes the partition's
  inputs on the workers with its own featurizer (once per distinct
  featurizer); nothing is written but predictions.

``return_std=None`` adds ``<target>_std`` (the members' std) for ensembles
and nothing for single networks; ``True`` demands it (a single network is a
:class:`~xenonscale.errors.ConfigError`); ``False`` never adds it. A model is
named in the output by its name, or ``name@version`` when one name is given
twice (two versions side by side).

Applicability domain
--------------------
``domain=True`` (``--domain``) adds, for every predicted row, its distance to
the model's training data: ``<model>:domain_distance``, the distance to the
nearest indexed row of the store the card names as its training data
(``card["training_data"]["store"]``: every featurized row of it, validation
and test rows included), in that store's similarity index
(:mod:`xenonscale.store.similarity`: standardized features, Euclidean for an
``l2`` index, ``1 - cos`` for ``cosine``), computed from the very features the
model reads. It is float32, NaN where the row has no features. Only models
that read ``features`` have it (MLPs and ensembles of them); a model that
reads composition slots or graph rows is refused in one line (predict it in
a job without ``--domain``). The training store must be indexed as it is now
(``xenonscale index STORE``; a missing or stale index, or a store changed
since the model was trained, is refused in one line before any work) and
reachable from the workers, which open its index once per process (the
whole index is held in memory: rows × features × 4 bytes). With each model's
distances comes the scale to read them on, ``reference``: quantiles (``"0.5"``
… ``"1.0"``) of the distance from up to 1,000 training rows to their nearest
other training row; a row farther than the ``"0.99"`` quantile is farther from
the training data than 99 % of the training rows are from each other: out of
domain. It is in the model group's ``domain`` attribute (store output), in the
``domain`` entry of the model in the Parquet schema metadata, and in
:attr:`PredictionSummary.domain`.

Outputs
-------
Into the store (store input, ``output=None``)::

    STORE/predictions/                 Zarr group
      <model>/                         attrs: model (name@version), card_sha256, created,
                                       job, targets, units, task, reads, store_fingerprint,
                                       complete, predicted
        <target>      float32 [sample] chunked like the store; NaN where not predicted
        <target>_std  float32 [sample] ensembles (return_std)
        domain_distance float32 [sample] with domain=True (attrs: domain)
        error         str     [sample] "" when predicted, else the reason
    STORE/_xenonscale/predict/<job>/   manifest.json, done/NNNNNN.json

The store keeps one set of predictions per model name: a later job with
another version, input or options replaces that model's arrays (and forgets
the older job's markers). The store's job lock (``_xenonscale/lock.json``)
is held throughout, so no featurize or sync runs on it meanwhile; the root
metadata is consolidated again at the end.

A Parquet dataset (``output`` ending in ``.parquet``; required for a source
input)::

    OUT.parquet/                       a folder: pandas.read_parquet("OUT.parquet")
      part-NNNNNN.parquet              one per partition, written by its worker:
                                       row int64, id str, <model>:<target> float32,
                                       <model>:<target>_std float32,
                                       <model>:domain_distance float32, error str
      _xenonscale/                     manifest.json, done/NNNNNN.json, lock.json,
                                       summary.json (readers skip names starting with _)

``error`` is empty when every model predicted the row, else the reason
(``model: reason; ...`` when the models disagree). Every part file carries the
models' references and card hashes in its schema metadata (``xenonscale``).
A folder holding another job's predictions is refused (remove it or choose
another name).

Resume: a done marker per partition is written after its output; a rerun of
the same job (same model versions, cards, input, options) skips finished
partitions. Rows in = rows predicted + error rows, checked at the end
(:class:`~xenonscale.errors.StoreError` otherwise); ``predicted`` counts the
rows every model predicted.

Examples
--------
An untrained network stands for a trained one; three formulas, one of them wrong:

>>> import tempfile
>>> from pathlib import Path
>>> import zarr
>>> from distributed import Client
>>> from xenonscale.engine import featurize_to_store
>>> from xenonscale.featurize.registry import FeaturizerSpec
>>> from xenonscale.models import PropertyModel
>>> from xenonscale.workflows.prediction import predict_to_store
>>> from xenonscale.zoo import Zoo, featurizer_fields
>>> folder = Path(tempfile.mkdtemp())
>>> _ = (folder / "f.csv").write_text("formula\\nFe2O3\\nNaCl\\nXx2\\n")
>>> spec = FeaturizerSpec.parse("composition", "Counting")
>>> fields = featurizer_fields(spec)
>>> model = PropertyModel.from_config(
...     {"in_features": len(fields["feature_labels"]), "out_features": 1, "hidden": [8]}
... )
>>> zoo = Zoo(folder / "zoo")
>>> _ = zoo.register("demo", model, {**fields, "targets": ["y"]})
>>> with Client(processes=False, n_workers=1, dashboard_address=None) as client:
...     _ = featurize_to_store(str(folder / "f.csv"), str(folder / "f.zarr"), spec,
...                            column="formula", client=client, progress=False)
...     summary = predict_to_store("demo", str(folder / "f.zarr"), zoo=zoo, client=client,
...                                progress=False)
>>> summary.rows, summary.predicted, summary.errors, summary.models
(3, 2, 1, ['demo@1'])
>>> group = zarr.open_group(str(folder / "f.zarr"), mode="r")
>>> group["predictions/demo/error"][:].tolist()
['', '', "unknown element 'Xx'"]
>>> zoo.close()
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from xenonscale.cluster import close_client, get_client, single_threaded
from xenonscale.engine.bookkeeping import JobLock, read_bookkeeping, spec_hash
from xenonscale.errors import ConfigError, StoreError, ZooIntegrityError
from xenonscale.featurize.base import featurize_safely
from xenonscale.featurize.registry import FeaturizerSpec
from xenonscale.models.data import INPUTS
from xenonscale.models.networks import backbone_name
from xenonscale.sources import canonical_url, open_source
from xenonscale.sources.base import Partition, Source
from xenonscale.store.layout import (
    BOOKKEEPING,
    COMPOSITION_ELEMENT,
    FEATURES,
    StoreLocation,
    store_fingerprint,
    store_state,
)
from xenonscale.store.similarity import INDEX_FILE, SimilarityIndex, index_record, open_index
from xenonscale.store.writer import as_text
from xenonscale.zoo.model import ZooModel
from xenonscale.zoo.refs import ModelRef, parse_ref
from xenonscale.zoo.zoo import Zoo

__all__ = ["PREDICTIONS", "PredictionSummary", "card_sha256", "predict_to_store"]

#: The group of a store that holds predictions (``predictions/<model>/<target>``).
PREDICTIONS = "predictions"
#: Input bytes (float32) one task holds by default.
TASK_BYTES = 256 << 20
#: Most rows per task by default.
MAX_PARTITION_ROWS = 50_000
#: Where a store keeps the bookkeeping of prediction jobs (``_xenonscale/predict/<job>/``).
JOBS = "predict"
#: Models a worker process keeps loaded.
CACHED_MODELS = 8
#: Similarity indexes (of training stores, ``domain=True``) a worker process keeps open.
CACHED_INDEXES = 2
#: The array (``predictions/<model>/domain_distance``) and column suffix of the distances.
DOMAIN = "domain_distance"
_ERROR = "error"
_PART = "part-{:06d}.parquet"


@dataclass(frozen=True)
class PredictionSummary:
    """What a prediction job did (``rows == predicted + errors`` always).

    ``predicted`` counts the rows every model predicted, ``errors`` the rows at
    least one model could not; ``models`` are the versions used
    (``name@version``), ``output`` the predictions group or the Parquet folder.
    ``domain`` (``domain=True``): by model name, the training store whose index
    gave ``domain_distance``, the index's metric and its ``reference`` quantiles.
    """

    rows: int
    predicted: int
    errors: int
    models: list[str]
    output: str
    seconds: float
    resumed_partitions: int
    partitions: int = 0
    per_model: dict[str, int] = field(default_factory=dict)
    domain: dict[str, dict] = field(default_factory=dict)

    @property
    def rows_per_second(self) -> float:
        return self.rows / max(self.seconds, 1e-9)


@dataclass(frozen=True)
class _Model:
    """One model of a job as the workers see it (picklable)."""

    label: str  # its name in the output
    ref: str  # name@version
    card_sha256: str
    targets: tuple[str, ...]
    reads: str  # "features" | "composition" | "graph" (store arrays) or "featurize"
    featurizer: dict | None  # the card's, for "featurize"
    std: bool
    domain: dict | None = None  # the training store's index record (domain=True)


@dataclass(frozen=True)
class _ZooAddress:
    """Where the workers open the zoo (catalog URL, artifacts URL, fsspec options)."""

    catalog: str
    artifacts: str
    storage_options: dict | None = None


@dataclass(frozen=True)
class _Input:
    """A store (its location) or a source."""

    store: StoreLocation | None = None
    source: Source | None = None


@dataclass(frozen=True)
class _Output:
    """Where a job writes: into a store's ``predictions/`` group or a Parquet folder."""

    kind: str  # "store" | "parquet"
    location: StoreLocation
    job: str
    metadata: str = ""  # Parquet schema metadata (JSON)

    @property
    def book(self) -> tuple[str, ...]:
        """The job's bookkeeping folder, as path parts under the location."""
        return (BOOKKEEPING, JOBS, self.job) if self.kind == "store" else (BOOKKEEPING,)

    def write_done(self, index: int, record: dict) -> None:
        self.location.write_json(record, *self.book, "done", f"{index:06d}.json")

    def done(self) -> dict[int, dict]:
        fs = self.location.fs
        folder = self.location.path(*self.book, "done")
        fs.invalidate_cache(folder)  # object stores: the workers wrote the markers
        if not fs.exists(folder):
            return {}
        found = {}
        for path in fs.ls(folder, detail=False):
            name = path.rstrip("/").rsplit("/", 1)[-1]
            if name.endswith(".json") and name[:-5].isdigit():
                found[int(name[:-5])] = read_bookkeeping(self.location, path)
        return found


def card_sha256(card: dict) -> str:
    """The sha256 of a model card as canonical JSON (what a worker checks it loaded).

    >>> len(card_sha256({"name": "a", "version": 1}))
    64
    """
    text = json.dumps(card, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


# -- the client ---------------------------------------------------------------------------


def predict_to_store(
    models: str | ModelRef | Sequence[str | ModelRef],
    input: str | os.PathLike | Source,
    output: str | os.PathLike | None = None,
    *,
    zoo: Zoo | str | os.PathLike | None = None,
    client=None,
    refeaturize: bool = False,
    return_std: bool | None = None,
    domain: bool = False,
    partition_rows: int | None = None,
    progress: bool = True,
    storage_options: dict | None = None,
    source_options: dict | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
) -> PredictionSummary:
    """Predict ``input`` with zoo ``models`` as Dask tasks (see the module docstring).

    Parameters
    ----------
    models
        Zoo references (``NAME`` or ``NAME@VERSION``): one, a comma-separated
        string, or a list.
    input
        A FeatureStore (folder or URL), or any source URL or
        :class:`~xenonscale.sources.base.Source`.
    output
        ``None``: the store's ``predictions/`` group (store input only); else
        a Parquet dataset folder ending in ``.parquet``.
    zoo
        A :class:`~xenonscale.zoo.Zoo` or its location (default: the default
        zoo). Workers open it from its catalog URL and artifacts location with
        its ``storage_options``, so it must be reachable from them.
    client, workers, scheduler
        A Dask client; without one, :func:`~xenonscale.cluster.get_client`
        connects to ``scheduler`` or starts ``workers`` local processes (only
        if there is work left), stopped afterwards.
    refeaturize
        Featurize the store's ``input`` text with the model's featurizer when
        the store's features are not the model's inputs.
    return_std
        ``None``: ``<target>_std`` for ensembles only; ``True``: for every
        model (each must be an ensemble); ``False``: never.
    domain
        Add each row's ``domain_distance`` to the model's training store (its
        similarity index, ``xenonscale index STORE``) and that store's
        nearest-neighbour distance quantiles; models that read ``features`` only
        (see the module docstring).
    partition_rows
        Rows per task (a store's are rounded up to whole chunks). Default:
        about 256 MiB of float32 inputs per task, at most 50,000 rows.
    progress
        A progress bar over rows (tqdm).
    storage_options
        fsspec options of the input and the output.
    source_options
        :func:`~xenonscale.sources.open_source` options of a source input
        (``column``, ``format``, ``id_column``, ...).
    """
    started = time.perf_counter()
    if partition_rows is not None and (
        isinstance(partition_rows, bool)
        or not isinstance(partition_rows, int)
        or partition_rows < 1
    ):
        raise ConfigError(f"--partition-rows {partition_rows!r}: use a positive number of rows")
    if return_std not in (None, True, False):
        raise ConfigError(f"return_std={return_std!r}: use True, False or None (ensembles only)")
    if domain not in (True, False):
        raise ConfigError(f"domain={domain!r}: use True or False")
    refs = _parse_refs(models)
    address, cards = _resolve_models(refs, zoo)
    store = _store_input(input, storage_options)
    if store is not None:
        if source_options:
            raise ConfigError(
                f"source options {sorted(source_options)} (--column) apply to source inputs "
                f"only: {store.url!r} is a feature store; leave them out"
            )
        plans, attrs, chunk, width = _store_plans(store, cards, refeaturize, return_std)
        identity = {"store": canonical_url(store.url), "fingerprint": store_fingerprint(attrs)}
        job_input = _Input(store=store)
    else:
        source = _open(input, cards, storage_options, source_options)
        plans = _source_plans(cards, return_std)
        attrs, chunk, width = {}, 1, max(_width(card) for card in cards)
        identity = {"source": source.describe(), "fingerprint": source.fingerprint()}
        job_input = _Input(source=source)
    if domain:
        plans = _with_domain(plans, cards, storage_options)
    rows_per_task = _partition_rows(partition_rows, chunk, width)
    kind, location = _output_location(output, store, storage_options)
    job = spec_hash(
        {
            "models": [asdict(plan) for plan in plans],
            "input": identity,
            "partition_rows": rows_per_task,
            "output": kind,
        }
    )
    metadata = json.dumps(
        {
            "models": {
                p.label: {"ref": p.ref, "card_sha256": p.card_sha256}
                | ({"domain": p.domain} if p.domain else {})
                for p in plans
            },
            "job": job,
            "input": identity,
        },
        default=str,
    )
    out = _Output(kind, location, job, metadata)
    if kind == "parquet":
        _check_parquet_folder(location, job, store)
    with JobLock(location, purpose="job"):
        if kind == "store":
            _prepare_store_output(location, plans, attrs, job)
        manifest = _load_or_plan(out, job_input, rows_per_task, identity, plans)
        partitions = [Partition(**p) for p in manifest["partitions"]]
        done = out.done()
        pending = [p for p in partitions if p.index not in done]
        if pending:
            errors = _store_errors(store, pending) if store is not None else {}
            _run(pending, errors, job_input, plans, address, out, manifest["rows"], done,
                 client, workers, scheduler, progress, storage_options)  # fmt: skip
        return _finish(out, manifest, partitions, plans, len(partitions) - len(pending), started)


def _parse_refs(models) -> list[str]:
    if isinstance(models, str | ModelRef):
        items = [models] if isinstance(models, ModelRef) else models.split(",")
    else:
        items = list(models)
    refs = [str(item).strip() for item in items if str(item).strip()]
    if not refs:
        raise ConfigError(f"models={models!r}: name at least one zoo model, e.g. 'band-gap@1'")
    for ref in refs:
        parse_ref(ref)
    return refs


def _resolve_models(refs: list[str], zoo) -> tuple[_ZooAddress, list[dict]]:
    """The zoo's address for the workers and each reference's card (one version each)."""
    opened = zoo if isinstance(zoo, Zoo) else Zoo(zoo)
    try:
        cards = [opened.show(ref) for ref in refs]
        address = _ZooAddress(
            opened.catalog.url, opened.artifacts.root, dict(opened.storage_options) or None
        )
    finally:
        if opened is not zoo:
            opened.close()
    seen = [f"{card['name']}@{card['version']}" for card in cards]
    twice = sorted({ref for ref in seen if seen.count(ref) > 1})
    if twice:
        raise ConfigError(f"model {twice[0]!r} is given twice: name each model version once")
    return address, cards


def _labels(cards: list[dict]) -> list[str]:
    """Output names: the model name, or name@version where one name is given twice."""
    names = [card["name"] for card in cards]
    return [
        card["name"] if names.count(card["name"]) == 1 else f"{card['name']}@{card['version']}"
        for card in cards
    ]


def _with_std(card: dict, return_std: bool | None) -> bool:
    ensemble = backbone_name(card["model"]) == "ensemble"
    if return_std and not ensemble:
        raise ConfigError(
            f"--return-std: {card['name']}@{card['version']} is one network, not an ensemble, "
            "and has no std of its own: leave --return-std out (ensembles get <target>_std by "
            "default) or train it with xenonscale train --ensemble N"
        )
    return ensemble if return_std is None else bool(return_std)


def _width(card: dict) -> int:
    return len(card.get("feature_labels") or []) or int(card["model"].get("in_features", 1))


def _store_input(input, storage_options) -> StoreLocation | None:
    """The input's location when it is a feature store, else None (a source)."""
    if isinstance(input, Source):
        return None
    text = os.fspath(input)
    if text.startswith("optimade:"):
        return None
    try:
        location = StoreLocation(text, storage_options)
        state = store_state(location)
    except (ValueError, ImportError, OSError, StoreError):
        return None
    return location if state == "store" else None


def _store_plans(store: StoreLocation, cards, refeaturize, return_std):
    """What each model reads from the store; the store's attrs, chunk rows, widest input."""
    import zarr

    group = None
    if store.exists():  # a crash before any Zarr was written leaves the bookkeeping alone
        group = zarr.open_group(store.zarr_store(), mode="r", use_consolidated=False)
    attrs = dict(group.attrs) if group is not None else {}
    if not attrs.get("complete", False) or "ok" not in group:
        raise StoreError(
            f"feature store {store.url!r} is not complete (job interrupted?): rerun the same "
            "featurize command to finish it, then predict"
        )
    if PREDICTIONS in group and not isinstance(group[PREDICTIONS], zarr.Group):
        raise StoreError(
            f"store {store.url!r} has a variable named {PREDICTIONS!r} (a source column) where "
            "predictions go: write them to a Parquet folder instead (-o OUT.parquet)"
        )
    labels = [str(label) for label in group["feature"][:].tolist()] if "feature" in group else []
    slots = int(group[COMPOSITION_ELEMENT].shape[1]) if COMPOSITION_ELEMENT in group else None
    chunk = int(group["ok"].chunks[0])
    plans, widths = [], []
    for card, label in zip(cards, _labels(cards), strict=True):
        reads = _store_reads(card, attrs, labels, slots)
        if reads is None:
            if not refeaturize:
                raise ConfigError(_mismatch(card, attrs, store.url, slots))
            if card.get("featurizer") is None:
                raise ConfigError(_no_featurizer(card))
            reads = "featurize"
        plans.append(_plan(card, label, reads, return_std))
        widths.append(2 * slots if reads == "composition" else _width(card))
    return plans, attrs, chunk, max(widths)


def _store_reads(card: dict, attrs: dict, labels: list[str], slots: int | None) -> str | None:
    """``features`` / ``composition`` / ``graph`` when the store holds the model's inputs."""
    inputs = card.get("inputs", "features")
    if inputs not in INPUTS:
        raise ConfigError(
            f"{card['name']}@{card['version']} reads {inputs!r} inputs: this xenonscale reads "
            f"{', '.join(INPUTS)}; install the version that wrote the card"
        )
    if inputs == "composition":
        wanted = len(card.get("feature_labels") or []) // 2 or slots
        return "composition" if slots is not None and wanted == slots else None
    if card.get("featurizer") is None:  # arbitrary features: the labels must agree
        same = card.get("feature_labels") is not None and card["feature_labels"] == labels
        return inputs if same else None
    ours, theirs = _spec_key(card.get("featurizer")), _spec_key(attrs.get("featurizer"))
    tables = card.get("element_tables")
    if tables is not None and _shas(tables) != _shas(attrs.get("element_tables")):
        return None
    expected = card.get("feature_labels")
    if expected is not None and expected != labels:
        return None
    return inputs if ours == theirs else None


def _spec_key(spec: dict | None) -> tuple:
    """What decides a featurizer's values: kind, names and element table (limits only
    decide which records are errors)."""
    spec = spec or {}
    names = spec.get("names") or ()
    return (spec.get("kind"), (names,) if isinstance(names, str) else tuple(names),
            spec.get("elements"))  # fmt: skip


def _shas(tables) -> list:
    return [t.get("sha256") if isinstance(t, dict) else t for t in tables or []]


def _describe(spec: dict | None) -> str:
    if not spec:
        return "arbitrary features"
    kind, names, elements = _spec_key(spec)
    return f"{kind}:{','.join(names)}" + (f" (elements {elements})" if elements else "")


def _mismatch(card: dict, attrs: dict, url: str, slots: int | None) -> str:
    ref = f"{card['name']}@{card['version']}"
    fix = (
        "pass --refeaturize to featurize the store's inputs with the model's featurizer on the "
        "workers, or predict from a store featurized like the model"
    )
    if card.get("inputs") == "composition":
        held = f"{slots} composition slots" if slots else "no composition slots"
        return f"{ref} reads composition slots; the store {url!r} has {held}: {fix}"
    ours, theirs = card.get("featurizer"), attrs.get("featurizer")
    why = ""
    if _spec_key(ours) == _spec_key(theirs):
        why = " (same featurizer, other element tables or feature labels)"
    return (
        f"{ref} was trained on {_describe(ours)} features; the store {url!r} holds "
        f"{_describe(theirs)}{why}: {fix}"
    )


def _no_featurizer(card: dict) -> str:
    return (
        f"{card['name']}@{card['version']} was trained on arbitrary features (its card has no "
        "featurizer): predict from a store holding exactly those features"
    )


def _plan(card: dict, label: str, reads: str, return_std) -> _Model:
    return _Model(
        label=label,
        ref=f"{card['name']}@{card['version']}",
        card_sha256=card_sha256(card),
        targets=tuple(card["targets"]),
        reads=reads,
        featurizer=card.get("featurizer") if reads == "featurize" else None,
        std=_with_std(card, return_std),
    )


def _with_domain(plans: list[_Model], cards: list[dict], storage_options) -> list[_Model]:
    """Each plan with its training store's index record (checked: indexed, not stale, the
    store the model was trained on, the model's input width)."""
    found = []
    for plan, card in zip(plans, cards, strict=True):
        inputs = card.get("inputs", "features")
        if inputs != "features":
            raise ConfigError(
                f"--domain: {plan.ref} reads {inputs} inputs; the applicability domain is "
                "measured on features (MLPs and their ensembles) and is not supported for it: "
                "predict it in a job without --domain"
            )
        if DOMAIN in plan.targets:
            raise ConfigError(
                f"--domain: {plan.ref} has a target named {DOMAIN!r}, where the distances go: "
                "leave --domain out"
            )
        training = card.get("training_data") or {}
        if not training.get("store"):
            raise ConfigError(
                f"--domain: the card of {plan.ref} names no training store "
                "(training_data.store): leave --domain out for it"
            )
        store = canonical_url(str(training["store"]))
        try:
            meta = index_record(store, storage_options=storage_options)
        except StoreError as exc:
            raise StoreError(f"--domain: {plan.ref} was trained on {store!r}: {exc}") from exc
        trained_on = training.get("store_fingerprint")
        if trained_on and trained_on != meta["store_fingerprint"]:
            raise StoreError(
                f"--domain: {plan.ref} was trained on {store!r} as it was before (fingerprint "
                f"{trained_on}, now {meta['store_fingerprint']}): its index is not the "
                "model's training data; retrain the model or leave --domain out"
            )
        if meta["features"] != _width(card):
            raise StoreError(
                f"--domain: the index of {store!r} has {meta['features']} features, "
                f"{plan.ref} reads {_width(card)}: leave --domain out for it"
            )
        record = {
            "store": store,
            "store_fingerprint": meta["store_fingerprint"],
            "index_sha256": meta["files"][INDEX_FILE]["sha256"],
            "metric": meta["metric"],
            "distance": meta.get("distance"),
            "standardize": meta["standardize"],
            "rows": meta["rows"],
            "k": 1,
            "reference": dict(meta.get("nearest_distance_quantiles") or {}),
        }
        found.append(replace(plan, domain=record))
    return found


def _source_plans(cards: list[dict], return_std) -> list[_Model]:
    for card in cards:
        if card.get("featurizer") is None:
            raise ConfigError(_no_featurizer(card))
    return [
        _plan(card, label, "featurize", return_std)
        for card, label in zip(cards, _labels(cards), strict=True)
    ]


def _open(input, cards, storage_options, source_options) -> Source:
    if isinstance(input, Source):
        return input
    kinds = sorted({card["featurizer"]["kind"] for card in cards if card.get("featurizer")})
    if len(kinds) > 1:
        raise ConfigError(
            f"the models read different kinds of input ({', '.join(kinds)}): predict each kind "
            "in its own job"
        )
    options = dict(source_options or {})
    options.setdefault("kind", kinds[0] if kinds else None)
    return open_source(os.fspath(input), storage_options=storage_options, **options)


def _partition_rows(given: int | None, chunk: int, width: int) -> int:
    rows = given or min(MAX_PARTITION_ROWS, max(1, TASK_BYTES // (4 * max(1, width))))
    return -(-rows // chunk) * chunk


def _output_location(output, store: StoreLocation | None, storage_options):
    if output is None:
        if store is None:
            raise ConfigError(
                "-o is required for a source input: give a Parquet folder, e.g. -o "
                "predictions.parquet (predictions go into a store only when INPUT is one)"
            )
        return "store", store
    text = os.fspath(output).rstrip("/")
    if not text.lower().endswith(".parquet"):
        raise ConfigError(
            f"--output {text!r}: give a Parquet folder name ending in .parquet, or leave -o out "
            "to write into the input store's predictions/ group"
        )
    location = StoreLocation(canonical_url(text), storage_options)
    if store is not None:
        inside = location.root == store.root or location.root.startswith(store.root + "/")
        if inside and type(location.fs) is type(store.fs):
            raise ConfigError(
                f"--output {text!r} lies inside the store {store.url!r}: choose a path outside "
                "it (or leave -o out to write into the store's predictions/ group)"
            )
    return "parquet", location


def _check_parquet_folder(location: StoreLocation, job: str, store) -> None:
    """Refuse a file, a folder of other files, or another job's predictions."""
    fs = location.fs
    if not fs.exists(location.root):
        return
    if fs.isfile(location.root):
        raise StoreError(
            f"the output {location.url!r} is an existing file: give a new or empty folder name "
            "ending in .parquet (nothing was changed)"
        )
    paths = [p.rstrip("/") for p in fs.ls(location.root, detail=False)]
    names = [p.rsplit("/", 1)[-1] for p in paths if p != location.root]
    foreign = [n for n in names if n != BOOKKEEPING and not _part_name(n)]
    manifest = location.path(BOOKKEEPING, "manifest.json")
    parts = [n for n in names if _part_name(n)]
    if foreign or (parts and not fs.exists(manifest)):
        raise StoreError(
            f"refusing to write into {location.url!r}: it holds files that are not predictions "
            f"of xenonscale ({(foreign or parts)[:3]}); give a new or empty folder (nothing "
            "was changed)"
        )
    if fs.exists(manifest) and read_bookkeeping(location, manifest).get("job") != job:
        raise StoreError(
            f"{location.url!r} holds the predictions of another job (other models, versions, "
            "input or options): remove it, or give another -o (nothing was changed)"
        )


def _part_name(name: str) -> bool:
    core = name[1:].split(".tmp-")[0] if name.startswith(".") else name
    return core.startswith("part-") and core.endswith(".parquet")


def _prepare_store_output(location: StoreLocation, plans: list[_Model], attrs, job: str) -> None:
    """Create the job's arrays; replace a model's arrays another job wrote (its markers go)."""
    import zarr

    group = zarr.open_group(location.zarr_store(), mode="r+", use_consolidated=False)
    rows, chunk = int(group["ok"].shape[0]), int(group["ok"].chunks[0])
    compressors = group[FEATURES].compressors if FEATURES in group else "auto"
    if PREDICTIONS not in group:
        root = group.create_group(PREDICTIONS)
        root.attrs.update(
            {
                "title": "xenonscale predictions",
                "layout": "<model>/<target> float32 [sample] (NaN where not predicted), "
                "<target>_std (ensembles), error str [sample] ('' when predicted)",
            }
        )
    root = group[PREDICTIONS]
    fresh, stale = False, set()
    for plan in plans:
        if plan.label in root:
            previous = root[plan.label].attrs.get("job")
            if previous == job:
                continue
            stale.add(previous)
            del root[plan.label]
        _create_model_group(root, plan, rows, chunk, compressors, attrs, job)
        fresh = True
    fs = location.fs
    for old in sorted(j for j in stale if isinstance(j, str) and j and j != job):
        folder = location.path(BOOKKEEPING, JOBS, old)
        if fs.exists(folder):
            fs.rm(folder, recursive=True)
    done = location.path(BOOKKEEPING, JOBS, job, "done")
    if fresh and fs.exists(done):  # arrays made anew: their partitions are not done
        fs.rm(done, recursive=True)


def _create_model_group(root, plan: _Model, rows, chunk, compressors, attrs, job) -> None:
    sub = root.create_group(plan.label)
    names = [*plan.targets, *(f"{t}_std" for t in plan.targets if plan.std)]
    names += [DOMAIN] if plan.domain else []
    bad = [n for n in names if "/" in n or n.startswith("__") or n in (_ERROR, "", ".", "..")]
    if bad or len(set(names)) != len(names):
        raise ConfigError(
            f"{plan.ref}: target {bad[0] if bad else names!r} cannot name an array of "
            "predictions/: write them to a Parquet folder instead (-o OUT.parquet)"
        )
    for name in names:
        sub.create_array(name, shape=(rows,), chunks=(max(1, chunk),), dtype="float32",
                         fill_value=np.nan, compressors=compressors,
                         dimension_names=["sample"])  # fmt: skip
    sub.create_array(_ERROR, shape=(rows,), chunks=(max(1, chunk),), dtype=str, fill_value="",
                     compressors=compressors, dimension_names=["sample"])  # fmt: skip
    sub.attrs.update(
        {
            "model": plan.ref,
            "card_sha256": plan.card_sha256,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "job": job,
            "targets": list(plan.targets),
            "std": plan.std,
            "reads": plan.reads,
            "store_fingerprint": store_fingerprint(attrs),
            "complete": False,
            **({"domain": plan.domain} if plan.domain else {}),
        }
    )


def _load_or_plan(out: _Output, job_input: _Input, rows_per_task: int, identity, plans) -> dict:
    path = (*out.book, "manifest.json")
    if out.location.fs.exists(out.location.path(*path)):
        manifest = read_bookkeeping(out.location, out.location.path(*path))
        if manifest.get("job") == out.job:
            return manifest
        raise StoreError(
            f"{out.location.url!r}: the bookkeeping of job {out.job} is another job's: remove "
            f"{out.location.path(*out.book)!r} and rerun"
        )
    if job_input.store is not None:
        import zarr

        group = zarr.open_group(job_input.store.zarr_store(), mode="r", use_consolidated=False)
        total = int(group["ok"].shape[0])
        partitions = [
            Partition(i, start, min(start + rows_per_task, total))
            for i, start in enumerate(range(0, total, rows_per_task))
        ]
    else:
        total, partitions = job_input.source.plan(rows_per_task)
    manifest = {
        "job": out.job,
        "input": identity,
        "models": [asdict(plan) for plan in plans],
        "rows": int(total),
        "partition_rows": rows_per_task,
        "partitions": [asdict(p) for p in partitions],
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    out.location.write_json(manifest, *path)
    return manifest


def _store_errors(store: StoreLocation, pending: list[Partition]) -> dict[int, dict[int, str]]:
    """The store's error reasons by partition: ``{index: {row: reason}}``."""
    import zarr

    group = zarr.open_group(store.zarr_store(), mode="r", use_consolidated=False)
    if "errors" not in group or group["errors"]["row"].shape[0] == 0:
        return {}
    rows = np.asarray(group["errors"]["row"][:], dtype=np.int64)
    reasons = np.asarray(group["errors"]["error"][:], dtype=object)
    order = np.argsort(rows, kind="stable")
    rows, reasons = rows[order], reasons[order]
    found = {}
    for p in pending:
        lo, hi = np.searchsorted(rows, [p.start, p.stop])
        if hi > lo:
            found[p.index] = dict(zip(rows[lo:hi].tolist(), reasons[lo:hi].tolist(), strict=True))
    return found


def _run(pending, errors, job_input, plans, address, out, total, done, client, workers,
         scheduler, progress, storage_options) -> None:  # fmt: skip
    from distributed import as_completed

    own = client is None
    client = client or get_client(scheduler, workers=workers, quiet=not progress)
    try:
        futures = client.map(
            _predict_partition,
            pending,
            [errors.get(p.index, {}) for p in pending],
            job_input=job_input,
            models=plans,
            zoo=address,
            out=out,
            index_options=storage_options if any(p.domain for p in plans) else None,
            pure=False,  # a rerun in the same session gets fresh tasks
        )
        initial = sum(record["rows"] for record in done.values())
        with tqdm(total=total, initial=initial, unit="rows", unit_scale=True, desc="predict",
                  disable=not progress, smoothing=0.1) as bar:  # fmt: skip
            try:
                for future in as_completed(futures):
                    bar.update(future.result()["rows"])
            except BaseException:
                client.cancel(futures)
                raise
    finally:
        if own:
            close_client(client)


def _finish(out: _Output, manifest, partitions, plans, resumed, started) -> PredictionSummary:
    done = out.done()
    missing = [p.index for p in partitions if p.index not in done]
    if missing:
        raise StoreError(f"partitions {missing[:10]} did not finish: rerun the same job to resume")
    records = [done[p.index] for p in partitions]
    rows = sum(r["rows"] for r in records)
    predicted = sum(r["predicted"] for r in records)
    errors = sum(r["errors"] for r in records)
    if rows != manifest["rows"] or predicted + errors != rows:
        raise StoreError(
            f"counts do not add up: {predicted} predicted + {errors} errors, {rows} rows written, "
            f"{manifest['rows']} rows in {out.location.url!r}: rerun the same job"
        )
    per_model = {p.label: sum(r["models"][p.label] for r in records) for p in plans}
    summary = {"rows": rows, "predicted": predicted, "errors": errors, "per_model": per_model,
               "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}  # fmt: skip
    if out.kind == "store":
        _finish_store(out.location, plans, per_model, summary["finished"])
        where = out.location.url.rstrip("/") + "/" + PREDICTIONS
    else:
        if not partitions:  # no rows: one empty part, so that readers find the columns
            _write_parquet(out, 0, _frame(0, [], np.zeros(0, np.int64), plans, {}, {}))
        out.location.write_json(summary, BOOKKEEPING, "summary.json")
        where = out.location.url
    return PredictionSummary(
        rows=rows,
        predicted=predicted,
        errors=errors,
        models=[p.ref for p in plans],
        output=where,
        seconds=time.perf_counter() - started,
        resumed_partitions=resumed,
        partitions=len(partitions),
        per_model=per_model,
        domain={p.label: p.domain for p in plans if p.domain},
    )


def _finish_store(location: StoreLocation, plans, per_model, finished) -> None:
    import warnings

    import zarr

    group = zarr.open_group(location.zarr_store(), mode="r+", use_consolidated=False)
    for plan in plans:
        group[PREDICTIONS][plan.label].attrs.update(
            {"complete": True, "predicted": per_model[plan.label], "finished": finished}
        )
    with warnings.catch_warnings():  # readers of consolidated metadata must see predictions/
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(location.zarr_store())


# -- the workers ----------------------------------------------------------------------------

_MODELS: OrderedDict[tuple, ZooModel] = OrderedDict()
_MODELS_LOCK = threading.Lock()


def _zoo_model(zoo: _ZooAddress, plan: _Model) -> ZooModel:
    """The model, loaded once per worker process (by zoo, reference and card sha256)."""
    key = (zoo.catalog, zoo.artifacts, plan.ref, plan.card_sha256)
    with _MODELS_LOCK:
        if key in _MODELS:
            _MODELS.move_to_end(key)
            return _MODELS[key]
        with Zoo(zoo.catalog, artifacts=zoo.artifacts, storage_options=zoo.storage_options) as z:
            model = z.load(plan.ref)
        if card_sha256(model.card) != plan.card_sha256:
            raise ZooIntegrityError(
                f"{plan.ref}: the zoo's card changed after the job started (sha256 "
                f"{card_sha256(model.card)[:12]}, expected {plan.card_sha256[:12]}): rerun the job"
            )
        _MODELS[key] = model
        while len(_MODELS) > CACHED_MODELS:
            _MODELS.popitem(last=False)
        return model


_INDEXES: OrderedDict[tuple, SimilarityIndex] = OrderedDict()
_INDEXES_LOCK = threading.Lock()


def _domain_index(domain: dict, storage_options: dict | None) -> SimilarityIndex:
    """A training store's similarity index, opened once per worker process (by store,
    fsspec options and the index file's sha256)."""
    options = json.dumps(storage_options, sort_keys=True, default=str)
    key = (domain["store"], options, domain["index_sha256"])
    with _INDEXES_LOCK:
        if key in _INDEXES:
            _INDEXES.move_to_end(key)
            return _INDEXES[key]
        index = open_index(domain["store"], storage_options=storage_options)
        if index.meta["files"][INDEX_FILE]["sha256"] != domain["index_sha256"]:
            raise StoreError(
                f"the similarity index of {domain['store']!r} was rebuilt after the job "
                "started: rerun the job"
            )
        _INDEXES[key] = index
        while len(_INDEXES) > CACHED_INDEXES:
            _INDEXES.popitem(last=False)
        return index


def _predict_partition(
    partition: Partition,
    store_errors: dict[int, str],
    job_input: _Input,
    models: list[_Model],
    zoo: _ZooAddress,
    out: _Output,
    index_options: dict | None = None,
) -> dict:
    """Worker task: read the rows → predict with every model (and its rows' distances to
    its training data) → write → done marker."""
    n = partition.rows
    rows = np.arange(partition.start, partition.stop, dtype=np.int64)
    reader = _Rows(partition, job_input)
    values: dict[str, np.ndarray] = {}
    stds: dict[str, np.ndarray] = {}
    distances: dict[str, np.ndarray] = {}
    reasons: dict[str, dict[int, str]] = {}
    batches: dict[str, object] = {}
    threads = _torch_threads()
    try:
        with single_threaded():  # each Dask worker thread is one unit of parallelism
            for plan in models:
                model = _zoo_model(zoo, plan)
                if plan.reads == "featurize":
                    key = json.dumps(plan.featurizer, sort_keys=True)
                    if key not in batches:
                        spec = FeaturizerSpec.from_dict(plan.featurizer)
                        batches[key] = featurize_safely(model.featurizer, reader.inputs(),
                                                        spec.limits)  # fmt: skip
                    batch = batches[key]
                    usable = np.asarray(batch.ok, dtype=bool)
                    x = np.asarray(batch.values, dtype=np.float32)[usable]
                    why = {int(e.row): str(e.reason) for e in batch.errors}
                else:
                    usable, x, why = reader.store_inputs(plan.reads, store_errors)
                predicted = np.full((n, len(plan.targets)), np.nan, dtype=np.float32)
                spread = np.full_like(predicted, np.nan) if plan.std else None
                if usable.any():
                    result = model.predict_features(x, return_std=plan.std)
                    if plan.std:
                        predicted[usable], spread[usable] = result
                    else:
                        predicted[usable] = result
                if plan.domain:
                    distance = np.full(n, np.nan, dtype=np.float32)
                    if usable.any():
                        index = _domain_index(plan.domain, index_options)
                        distance[usable] = index.distance_to_training(x, k=plan.domain["k"])
                    distances[plan.label] = distance
                for row in np.flatnonzero(~usable).tolist():
                    why.setdefault(row, "not predicted")
                values[plan.label], reasons[plan.label] = predicted, why
                if spread is not None:
                    stds[plan.label] = spread
    finally:
        _restore_torch_threads(threads)
    failed = np.zeros(n, dtype=bool)
    for why in reasons.values():
        failed[list(why)] = True
    if out.kind == "store":
        _write_store(out, partition, models, values, stds, reasons, distances)
    else:
        frame = _frame(n, reader.ids(), rows, models, values, stds, reasons, distances)
        _write_parquet(out, partition.index, frame)
    record = {
        "index": partition.index,
        "start": partition.start,
        "rows": n,
        "predicted": int((~failed).sum()),
        "errors": int(failed.sum()),
        "models": {plan.label: int(n - len(reasons[plan.label])) for plan in models},
    }
    if record["predicted"] + record["errors"] != n:
        raise StoreError(f"partition {partition.index}: counts do not add up ({record})")
    out.write_done(partition.index, record)
    return {"index": partition.index, "rows": n, "errors": record["errors"]}


class _Rows:
    """A partition's rows, read once: ok flags, ids, inputs, the store's model inputs."""

    def __init__(self, partition: Partition, job_input: _Input):
        self.partition = partition
        self.job_input = job_input
        self._frame = None
        self._group = None
        self._cache: dict[str, object] = {}

    @property
    def group(self):
        import zarr

        if self._group is None:
            store = self.job_input.store
            self._group = zarr.open_group(store.zarr_store(), mode="r", use_consolidated=False)
        return self._group

    @property
    def frame(self) -> pd.DataFrame:
        if self._frame is None:
            source, p = self.job_input.source, self.partition
            frame = source.read(p)
            if len(frame) != p.rows:
                raise StoreError(
                    f"partition {p.index} of {source.url!r} gave {len(frame)} records, planned "
                    f"{p.rows}: the source changed during the job; rerun it"
                )
            self._frame = frame
        return self._frame

    def _region(self, name: str) -> np.ndarray:
        if name not in self._cache:
            p = self.partition
            self._cache[name] = np.asarray(self.group[name][p.start : p.stop])
        return self._cache[name]

    def ids(self) -> np.ndarray:
        if self.job_input.store is not None:
            return as_text(pd.Series(self._region("id"), dtype=object))
        return as_text(self.frame["id"])

    def inputs(self) -> list:
        if self.job_input.store is not None:
            return [value if value != "" else None for value in self._region("input").tolist()]
        return self.frame["input"].tolist()

    def store_inputs(self, reads: str, store_errors: dict[int, str]):
        """``(usable, x of the usable rows, {row offset: reason})`` from the store's arrays."""
        start = self.partition.start
        ok = self._region("ok").astype(bool)
        why = {
            row: store_errors.get(start + row, "not featurized in the store (ok is False)")
            for row in np.flatnonzero(~ok).tolist()
        }
        names = INPUTS[reads]
        if reads == "composition":
            elements = self._region(COMPOSITION_ELEMENT)
            slots = elements.shape[1]
            has = elements[:, 0] > 0
            for row in np.flatnonzero(ok & ~has).tolist():
                why[row] = f"more elements than the store's {slots} composition slots"
            usable = ok & has
        else:
            usable = ok
        parts = [self._region(name)[usable].astype(np.float32, copy=False) for name in names]
        x = parts[0] if len(parts) == 1 else np.hstack(parts)
        return usable, x, why


def _torch_threads() -> int | None:
    import sys

    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else None


def _restore_torch_threads(threads: int | None) -> None:
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and threads is not None:
        torch.set_num_threads(threads)


def _write_store(out: _Output, partition: Partition, models, values, stds, reasons,
                 distances) -> None:  # fmt: skip
    import zarr

    group = zarr.open_group(out.location.zarr_store(), mode="r+", use_consolidated=False)
    root = group[PREDICTIONS]
    region = slice(partition.start, partition.stop)
    try:
        for plan in models:
            sub = root[plan.label]
            for k, target in enumerate(plan.targets):
                sub[target][region] = values[plan.label][:, k]
                if plan.std:
                    sub[f"{target}_std"][region] = stds[plan.label][:, k]
            if plan.domain:
                sub[DOMAIN][region] = distances[plan.label]
            text = np.full(partition.rows, "", dtype=object)
            for row, reason in reasons[plan.label].items():
                text[row] = reason
            sub[_ERROR][region] = text
    except OSError as exc:  # a full disk, a read-only mount, a vanished bucket
        raise StoreError(
            f"cannot write rows {partition.start}..{partition.stop - 1} of "
            f"{out.location.url!r} ({exc.strerror or exc}): free space or fix access, then "
            "rerun the same job to resume"
        ) from exc


def _error_text(models, reasons, row: int) -> str:
    failing = [(plan.label, reasons[plan.label][row]) for plan in models
               if row in reasons[plan.label]]  # fmt: skip
    if not failing:
        return ""
    if len(failing) == len(models) and len({reason for _, reason in failing}) == 1:
        return failing[0][1]
    return "; ".join(f"{label}: {reason}" for label, reason in failing)


def _frame(n, ids, rows, models, values, stds, reasons=None, distances=None) -> pd.DataFrame:
    columns: dict[str, object] = {"row": rows, "id": pd.Series(ids, dtype=object)}
    for plan in models:
        for k, target in enumerate(plan.targets):
            columns[f"{plan.label}:{target}"] = (
                values[plan.label][:, k] if n else np.zeros(0, np.float32)
            )
        if plan.std:
            for k, target in enumerate(plan.targets):
                columns[f"{plan.label}:{target}_std"] = (
                    stds[plan.label][:, k] if n else np.zeros(0, np.float32)
                )
        if plan.domain:
            columns[f"{plan.label}:{DOMAIN}"] = (
                distances[plan.label] if n else np.zeros(0, np.float32)
            )
    reasons = reasons or {}
    columns["error"] = pd.Series([_error_text(models, reasons, row) for row in range(n)],
                                 dtype=object)  # fmt: skip
    return pd.DataFrame(columns)


def _write_parquet(out: _Output, index: int, frame: pd.DataFrame) -> None:
    """One part file, written under a temporary name and renamed (readers skip ``.`` names)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    fields = [pa.field("row", pa.int64()), pa.field("id", pa.string())]
    fields += [pa.field(name, pa.float32()) for name in frame.columns[2:-1]]
    fields.append(pa.field("error", pa.string()))
    schema = pa.schema(fields, metadata={"xenonscale": out.metadata})
    table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    fs = out.location.fs
    fs.makedirs(out.location.root, exist_ok=True)
    final = out.location.path(_PART.format(index))
    local = "file" in np.atleast_1d(fs.protocol)
    target = (
        out.location.path(f".{_PART.format(index)}.tmp-{os.getpid()}-{threading.get_ident()}")
        if local
        else final
    )
    try:
        with fs.open(target, "wb") as handle:
            pq.write_table(table, handle)
        if local:
            fs.mv(target, final)
    except OSError as exc:
        with contextlib.suppress(OSError):
            if local and fs.exists(target):
                fs.rm(target)
        raise StoreError(
            f"cannot write {final!r} ({exc.strerror or exc}): free space or fix access, then "
            "rerun the same job to resume"
        ) from exc
