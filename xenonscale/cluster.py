"""One function returns a Dask client: explicit address > env > embedded cluster.

``get_client(scheduler)`` connects to ``scheduler`` (e.g. ``tcp://10.0.0.5:8786``,
the Kubernetes service of the Helm chart), else to ``$DASK_SCHEDULER_ADDRESS``,
else starts an embedded :class:`distributed.LocalCluster` of worker
*processes* bound to 127.0.0.1. The dashboard link is printed.

Examples
--------
Not run by the tests (it starts worker processes); ``get_client`` prints
``dask: embedded LocalCluster, dashboard: http://127.0.0.1:8787/status`` on stderr:

>>> from xenonscale.cluster import get_client
>>> client = get_client(workers=2)  # doctest: +SKIP
>>> close_client(client)  # doctest: +SKIP
"""

from __future__ import annotations

import os
import sys

from xenonscale.errors import ConfigError

__all__ = ["SCHEDULER_ENV", "close_client", "get_client", "single_threaded"]

SCHEDULER_ENV = "DASK_SCHEDULER_ADDRESS"

#: Dask settings for the embedded cluster. Distributed starts workers with
#: ``MALLOC_TRIM_THRESHOLD_=65536``: glibc then hands freed memory back to the
#: OS after every batch and takes it again for the next, ~6 minor page faults
#: per featurized row, almost half of a worker's CPU (bench/README.md). ``None``
#: leaves glibc's own adaptive threshold. A ``MALLOC_TRIM_THRESHOLD_`` set in
#: the environment still wins, as in Dask.
_EMBEDDED_CONFIG = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}


def get_client(
    scheduler: str | None = None,
    *,
    workers: int | None = None,
    threads_per_worker: int = 1,
    memory_limit: str | float = "auto",
    quiet: bool = False,
    timeout: float = 30,
):
    """Return a connected :class:`distributed.Client` (see the module docstring).

    ``workers`` applies to the embedded cluster only (default: the number of
    cores, at most 8). Close with :func:`close_client`, which also stops an
    embedded cluster.
    """
    from distributed import Client, LocalCluster

    address = scheduler or os.environ.get(SCHEDULER_ENV)
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers {workers!r}: use a positive number of worker processes")
    if address:
        try:
            client = Client(address, timeout=timeout)
        except OSError as exc:
            raise ConfigError(
                f"cannot reach the Dask scheduler at {address!r} ({exc}); check --scheduler "
                f"or ${SCHEDULER_ENV}, or leave both unset for an embedded cluster"
            ) from None
    else:
        import dask

        n = workers or max(1, min(os.cpu_count() or 1, 8))
        with dask.config.set(_EMBEDDED_CONFIG):
            cluster = LocalCluster(
                n_workers=n,
                threads_per_worker=threads_per_worker,
                processes=True,
                host="127.0.0.1",
                dashboard_address="127.0.0.1:0",
                memory_limit=memory_limit,
            )
        client = Client(cluster, timeout=timeout)
    if not quiet:
        link = client.dashboard_link or "(dashboard unavailable: pip install bokeh)"
        kind = "embedded LocalCluster" if not address else f"scheduler {address}"
        print(f"dask: {kind}, dashboard: {link}", file=sys.stderr)
    return client


def close_client(client) -> None:
    """Close ``client`` and the embedded cluster it started, if any."""
    cluster = getattr(client, "cluster", None)
    client.close()
    if cluster is not None:
        cluster.close()


def single_threaded():
    """One BLAS/OpenMP thread (and one torch thread, when torch is loaded) inside a Dask task.

    Each Dask worker thread already is one unit of parallelism; a task whose
    BLAS (or torch) spreads over every core oversubscribes them, which made
    tasks several times slower on a 2-core machine. Returns threadpoolctl's
    context manager (BLAS limits restored on exit; the torch setting stays).

    Examples
    --------
    >>> with single_threaded():
    ...     pass
    """
    from threadpoolctl import threadpool_limits

    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)
    return threadpool_limits(1)
