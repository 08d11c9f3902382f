"""Deep ensembles: N members trained as parallel Dask tasks, assembled into one model.

:func:`train_ensemble` is ``xenonscale train --ensemble N``. Each member is a
:func:`~xenonscale.models.training.train_model` run of its own Dask task with
its own seed (weights' initialization, batch order, dropout) and **one shared
split**: the split seed (``split_seed``, default the base ``seed``) is the same
for every member, so all of them train and validate on the same rows, which
are the rows of a single model trained with that seed. Member ``k`` writes its
weights, card and history into ``OUTPUT/member-k/``; the task returns them to
the client too (workers need not share a disk with it). The client assembles
an :class:`~xenonscale.models.ensemble.EnsembleModel` (one safetensors file,
``OUTPUT/weights.safetensors``), evaluates it and its members on the shared
validation (and test) rows, and writes ``OUTPUT/card.json``:

* ``metrics``: the ensemble's (mean prediction) metrics per split, as a single
  model's card, plus ``within_2sigma`` (fraction of rows with
  ``|y − mean| ≤ 2σ``, σ the members' spread; 0.954 for a calibrated Gaussian),
  ``within_2sigma_total`` (the same with the total std below; on the test split
  with the noise std of the validation rows) and ``mean_std``;
* ``ensemble``: size, seeds, split seed, every member's metrics, the members'
  mean of each metric (``member_mean``: ``mae`` is the figure to compare with
  the ensemble's) and ``noise_std`` per target: ``sqrt(max(MSE − mean σ², 0))``
  on the validation rows, the part of the error the members' spread does not
  explain (the members share the data's noise, so their spread misses it).
  The design likelihood's predictive std is ``sqrt(σ² + noise_std²)``: on the
  validation rows its mean square equals the ensemble's MSE.

The result is a :class:`~xenonscale.models.training.TrainResult` (``model`` is
the ensemble; ``history`` is member 0's learning curve; ``predictions`` the
ensemble's), registered as one zoo entry like any other
(:func:`xenonscale.workflows.registration.train_and_register` with
``ensemble=N``).

Examples
--------
Three members of a small network on 64 iron oxides, on an in-process Dask
client (the test suite uses worker processes):

>>> import tempfile
>>> from pathlib import Path
>>> from distributed import Client
>>> from xenonscale.engine import featurize_to_store
>>> from xenonscale.featurize.registry import FeaturizerSpec
>>> from xenonscale.workflows.ensembles import train_ensemble
>>> folder = Path(tempfile.mkdtemp())
>>> rows = [f"Fe{a}O{b},{a / (a + b):.3f}" for a in range(1, 9) for b in range(1, 9)]
>>> _ = (folder / "oxides.csv").write_text("formula,target\\n" + "\\n".join(rows))
>>> with Client(processes=False, n_workers=1, dashboard_address=":0") as client:
...     _ = featurize_to_store(
...         str(folder / "oxides.csv"), str(folder / "oxides.zarr"),
...         FeaturizerSpec.parse("composition", "classic"),
...         column="formula", client=client, progress=False,
...     )
...     result = train_ensemble(
...         str(folder / "oxides.zarr"), "target", members=3, client=client,
...         name="fe-o", output=folder / "fe-o", hidden=(16,), max_epochs=3,
...         batch_size=16, accelerator="cpu",
...     )
>>> result.card["ensemble"]["size"], result.card["ensemble"]["seeds"]
(3, [0, 1, 2])
>>> sorted(path.name for path in result.output.iterdir())[:4]
['card.json', 'member-0', 'member-1', 'member-2']
>>> 0.0 <= result.metrics["val"]["within_2sigma"] <= 1.0
True
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from xenonscale.cluster import close_client, get_client, single_threaded
from xenonscale.errors import ConfigError
from xenonscale.models.backbones import predict_array
from xenonscale.models.data import StoreDataModule
from xenonscale.models.ensemble import EnsembleModel, predict_array_with_std
from xenonscale.models.metrics import classification_metrics, regression_metrics
from xenonscale.models.networks import build_model
from xenonscale.models.training import WEIGHTS, TrainResult, train_model

__all__ = ["GAUSSIAN_2SIGMA", "calibration", "member_folder", "train_ensemble"]

#: P(|z| ≤ 2) for a standard normal z: the ±2σ coverage of a calibrated Gaussian.
GAUSSIAN_2SIGMA = 0.9544997361036416


def member_folder(output: str | Path, k: int) -> Path:
    """Where member ``k`` of an ensemble trained into ``output`` keeps its files."""
    return Path(output) / f"member-{k}"


def calibration(
    y: np.ndarray, mean: np.ndarray, std: np.ndarray, noise_std: float | None = None
) -> dict[str, float]:
    """How well ``std`` describes the errors of ``mean`` (1-D arrays of one target).

    ``within_2sigma``: fraction of rows with ``|y − mean| ≤ 2·std``; ``mean_std``;
    ``noise_std``: ``sqrt(max(MSE − mean(std²), 0))``, the error ``std`` leaves
    unexplained (or the ``noise_std`` given, estimated on other rows);
    ``within_2sigma_total``: the coverage of ``sqrt(std² + noise_std²)``.

    >>> c = calibration(np.array([0.0, 1.0, 2.0]), np.array([0.0, 1.5, 2.0]), np.full(3, 0.2))
    >>> round(c["within_2sigma"], 4), round(c["noise_std"], 4)
    (0.6667, 0.2082)
    """
    y, mean, std = (np.asarray(a, np.float64).ravel() for a in (y, mean, std))
    error = np.abs(y - mean)
    if noise_std is not None:
        noise = float(noise_std)
    elif len(y):
        noise = float(np.sqrt(max(np.mean(error**2) - np.mean(std**2), 0.0)))
    else:
        noise = np.nan
    total = np.sqrt(std**2 + noise**2)
    return {
        "within_2sigma": float(np.mean(error <= 2 * std)) if len(y) else np.nan,
        "within_2sigma_total": float(np.mean(error <= 2 * total)) if len(y) else np.nan,
        "mean_std": float(np.mean(std)) if len(y) else np.nan,
        "noise_std": noise,
    }


def train_ensemble(
    store: str,
    targets: str | list[str] = "target",
    *,
    members: int = 5,
    client=None,
    dask_scheduler: str | None = None,
    workers: int | None = None,
    seeds: Sequence[int] | None = None,
    split_seed: int | None = None,
    name: str | None = None,
    output: str | Path | None = None,
    progress: bool = True,
    **train_options,
) -> TrainResult:
    """Train ``members`` networks in parallel on Dask and assemble one ensemble (module docstring).

    ``seeds`` (default ``seed + k`` for member ``k``, ``seed`` from
    ``train_options``, default 0) seed each member; ``split_seed`` (default
    ``seed``) seeds the one split they share. ``client`` is a Dask client;
    without one, :func:`~xenonscale.cluster.get_client` connects to
    ``dask_scheduler`` (an address; ``scheduler`` is train_model's learning-rate
    schedule) or starts ``workers`` local worker processes (and stops them
    afterwards). Other options are :func:`~xenonscale.models.training.train_model`'s.
    """
    from distributed import as_completed
    from tqdm.auto import tqdm

    if isinstance(members, bool) or not isinstance(members, int) or members < 2:
        raise ConfigError(f"--ensemble {members!r}: an ensemble needs at least 2 members, e.g. 5")
    for key in ("data", "callbacks"):
        if train_options.get(key) is not None:
            raise ConfigError(f"train_ensemble({key}=...): members build their own; leave it out")
    strategy, devices = train_options.get("strategy", "auto"), train_options.get("devices", 1)
    if strategy != "auto" or str(devices) != "1":
        raise ConfigError(
            f"strategy={strategy!r}, devices={devices!r}: ensemble members train on one device "
            "each, as Dask tasks; leave both at their defaults (use more Dask workers instead)"
        )
    base_seed = int(train_options.pop("seed", 0))
    seeds = [base_seed + k for k in range(members)] if seeds is None else [int(s) for s in seeds]
    if len(seeds) != members or len(set(seeds)) != members:
        raise ConfigError(
            f"seeds={seeds}: give {members} different seeds, one per member (or leave it out)"
        )
    split_seed = base_seed if split_seed is None else int(split_seed)
    data_options = dict(train_options.pop("data_options", None) or {})
    if "seed" in data_options or "split_seed" in data_options:
        raise ConfigError("data_options seed/split_seed: pass seeds= and split_seed= instead")
    data_options["split_seed"] = split_seed
    targets = [targets] if isinstance(targets, str) else list(targets)
    name = name or "model"
    output = Path(output or Path("models") / name)
    output.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    own = client is None
    client = client or get_client(dask_scheduler, workers=workers, quiet=not progress)
    try:
        futures = [
            client.submit(
                _train_member,
                store,
                targets,
                k,
                seed,
                str(member_folder(output, k)),
                name,
                data_options,
                train_options,
                pure=False,
            )
            for k, seed in enumerate(seeds)
        ]
        with tqdm(total=members, desc="ensemble", unit="member", disable=not progress) as bar:
            for _ in as_completed(futures):
                bar.update(1)
        trained = client.gather(futures)
    finally:
        if own:
            close_client(client)
    nets = []
    for member in trained:
        net = build_model(member["config"])
        net.load_state_dict({k: torch.from_numpy(v) for k, v in member["state"].items()})
        nets.append(net.eval())
    ensemble = EnsembleModel.from_members(nets).eval()
    first = trained[0]["card"]
    data = StoreDataModule(
        store,
        targets,
        seed=split_seed,
        storage_options=train_options.get("storage_options"),
        inputs=first.get("inputs", "features"),
        **data_options,
    )
    data.setup("fit")
    metrics, predictions, report = _evaluate(ensemble, nets, data, targets)
    state = {k: v.detach().cpu().contiguous() for k, v in ensemble.state_dict().items()}
    save_file(state, str(output / WEIGHTS))
    card = _card(first, ensemble, metrics, report, trained, seeds, split_seed, data)
    card["training"]["seconds"] = round(time.perf_counter() - started, 2)
    (output / "card.json").write_text(json.dumps(card, indent=1, default=str))
    return TrainResult(
        model=ensemble, card=card, metrics=metrics, output=output, data=data, name=name,
        history=trained[0]["history"], predictions=predictions,
        units=dict(train_options.get("units") or {}),
    )  # fmt: skip


def _train_member(store, targets, k, seed, output, name, data_options, train_options) -> dict:
    """One member, in a Dask task: train it and return its config, weights, card and history.

    One torch/BLAS thread per task (each Dask worker thread is one unit of
    parallelism); the process's torch threads are restored afterwards (an
    in-process client shares them with the caller).
    """
    threads = torch.get_num_threads()
    try:
        with single_threaded():
            result = train_model(
                store, targets, name=f"{name}/member-{k}", output=output, seed=seed,
                data_options=data_options, **{**train_options, "progress": False},
            )  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    state = {key: v.detach().cpu().numpy() for key, v in result.model.state_dict().items()}
    return {"config": result.model.config, "state": state, "card": result.card,
            "history": result.history}  # fmt: skip


def _evaluate(ensemble, nets, data, targets) -> tuple[dict, dict, dict]:
    """The ensemble's and members' metrics per split, and the calibration of its std."""
    classify = ensemble.task == "classification"
    score = classification_metrics if classify else regression_metrics
    metrics, predictions = {}, {}
    report: dict = {"members": [{} for _ in nets], "member_mean": {}, "noise_std": {}}
    for split in ("val", "test"):
        if not data.counts.get(split):
            continue
        x, y = data.arrays(split)
        mean, std = predict_array_with_std(ensemble, x)
        predictions[split] = (y, mean)
        per_target = {}
        for i, target in enumerate(targets):
            block = score(y[:, i], mean[:, i])
            if not classify:
                noise = report["noise_std"].get(target)  # the test split uses val's
                block |= calibration(y[:, i], mean[:, i], std[:, i], noise)
                if split == "val":
                    report["noise_std"][target] = block["noise_std"]
            per_target[target] = block
        metrics[split] = per_target[targets[0]] if len(targets) == 1 else per_target
        member_blocks = []
        for k, net in enumerate(nets):
            pred = predict_array(net, x)
            blocks = {t: score(y[:, i], pred[:, i]) for i, t in enumerate(targets)}
            member = blocks[targets[0]] if len(targets) == 1 else blocks
            report["members"][k][split] = member
            member_blocks.append(blocks)
        mean_blocks = {
            t: {key: float(np.mean([b[t][key] for b in member_blocks]))
                for key in member_blocks[0][t]}
            for t in targets
        }  # fmt: skip
        report["member_mean"][split] = mean_blocks[targets[0]] if len(targets) == 1 else mean_blocks
    return metrics, predictions, report


def _card(first, ensemble, metrics, report, trained, seeds, split_seed, data) -> dict:
    card = {key: value for key, value in first.items() if key not in ("metrics", "model")}
    card["model"] = ensemble.config
    card["metrics"] = metrics
    card["split"] = dict(first["split"]) | {"seed": split_seed, "counts": data.counts}
    card["training"] = dict(first["training"]) | {
        "seed": seeds[0],
        "epochs": [m["card"]["training"]["epochs"] for m in trained],
        "best_epoch": [m["card"]["training"]["best_epoch"] for m in trained],
        "best_val_mae": [m["card"]["training"].get("best_val_mae") for m in trained],
    }
    card["ensemble"] = {
        "size": ensemble.size,
        "seeds": list(seeds),
        "split_seed": split_seed,
        "members": report["members"],
        "member_mean": report["member_mean"],
        "noise_std": report["noise_std"],
        "std": "population std (ddof=0) of the members' predictions",
        "gaussian_within_2sigma": GAUSSIAN_2SIGMA,
    }
    return card
