"""Where dask runs an analysis: the local threads, a running dask.distributed cluster, or a local one."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

from .errors import TokendynError


@contextlib.contextmanager
def compute_on(scheduler: str | None = None, workers: int | None = None) -> Iterator[object | None]:
    """Within the block, dask computations run on ``scheduler`` (an address such as
    ``tcp://10.0.0.5:8786``) or on a fresh ``LocalCluster`` of ``workers`` processes; with neither,
    on the default local threads. Yields the ``distributed.Client`` or ``None``."""
    if scheduler is None and not workers:
        yield None
        return
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise TokendynError("--scheduler/--workers need dask.distributed: pip install 'tokendyn[distributed]'") from None
    if scheduler is not None:
        try:
            client = Client(scheduler, timeout="10s")
        except (OSError, TimeoutError) as exc:
            raise TokendynError(f"cannot reach the dask scheduler at {scheduler} ({exc})") from None
        with client:
            yield client
        return
    with LocalCluster(n_workers=int(workers), threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        yield client
