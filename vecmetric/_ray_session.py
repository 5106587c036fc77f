"""How vecmetric reaches Ray: the one place that imports it, starts a local instance or joins a cluster.

Used by the ray embed engine (``vecmetric.engines.ray``) and the sharded index (building shards
in Ray tasks, holding them in Ray actors). Ray is the optional ``ray`` extra, imported only here
and only when asked for.

Without an address, a local Ray instance is started and stopped afterwards. It is kept on loopback:
every Ray server binds to 127.0.0.1 and no outside address is probed (see ``LOOPBACK_ENV``). An
address on loopback (``127.0.0.1:PORT``) is treated the same way; any other address is a cluster on
a network, which Ray reaches as it normally does. A process already connected to Ray (its own
``ray.init``) has that connection used and left open.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
from typing import Any, Iterator

from .errors import EngineError

__all__ = ["INSTALL_HINT", "LOOPBACK_ENV", "import_ray", "is_loopback_address", "ray_session", "require_ray"]

INSTALL_HINT = "pip install 'vecmetric[ray]'"
LOOPBACK_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    # Ray turns a node address of 127.0.0.1 into "the address other machines reach", found by
    # routing a UDP socket towards 8.8.8.8, and then listens on every interface. With this off
    # (read once, when ray is imported) 127.0.0.1 stays the node address and the servers bind to it.
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
}
# Token authentication on, as Ray 2.60 does by default for a new local instance; said explicitly,
# Ray keeps it without logging a warning about it on every run.
_LOCAL_START_ENV = {"RAY_AUTH_MODE": "token"}
# Ray Data logs a few INFO lines per run on the console (and in its session log file); vecmetric reports itself.
_COMMON_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_DATA_LOG_LEVEL": "WARNING"}


def require_ray() -> None:
    """Check that the optional Ray extra is installed, without importing it.

    Raises:
        EngineError: Ray is missing, with the command that installs it.
    """
    if importlib.util.find_spec("ray") is None:
        raise EngineError("the ray engine needs Ray, which is not installed", hint=f"install it with: {INSTALL_HINT}")


def is_loopback_address(address: str | None) -> bool:
    """Whether a Ray address names this machine's loopback (``127.0.0.1:PORT``, ``localhost:PORT``)."""
    if not address:
        return False
    host = address.split("://", 1)[-1].rsplit(":", 1)[0].strip("[]")
    return host in ("127.0.0.1", "localhost", "::1")


def import_ray(address: str | None = None):
    """``import ray`` (and ``ray.data``) with the settings an address needs, read by Ray at import.

    Raises:
        EngineError: Ray is missing or cannot be imported.
    """
    require_ray()
    settings = dict(_COMMON_ENV)
    if address is None or is_loopback_address(address):
        settings.update(LOOPBACK_ENV)
    if address is None:
        settings.update(_LOCAL_START_ENV)
    for key, value in settings.items():
        os.environ.setdefault(key, value)
    try:
        import ray
        import ray.data  # noqa: F401  (the ray[data] extra: pyarrow, pandas, fsspec)
    except ImportError as exc:
        raise EngineError(f"the ray engine cannot import Ray ({exc})", hint=f"install it with: {INSTALL_HINT}") from None
    progress_logger = logging.getLogger("ray.data._internal.progress")
    if _no_progress_bar_hint not in progress_logger.filters:
        progress_logger.addFilter(_no_progress_bar_hint)
    return ray


def _no_progress_bar_hint(record: logging.LogRecord) -> bool:
    """Drop Ray Data's advice to turn its progress bars back on: they are off because the CLI draws its own."""
    return not str(record.msg).startswith("Progress bars disabled")


@contextlib.contextmanager
def ray_session(address: str | None = None, **init_options: Any) -> Iterator[Any]:
    """Ray, connected for the duration of the ``with`` block: yields the ``ray`` module.

    Args:
        address: a Ray cluster (``auto``, ``HOST:PORT``, ``ray://HOST:PORT``); None starts a local
            instance on loopback only, with every CPU of this machine, and stops it at the end.
        init_options: more ``ray.init`` arguments for a local instance (``num_cpus``, ``_temp_dir``).

    Raises:
        EngineError: Ray is missing, the cluster cannot be reached, or a loopback-only instance cannot
            be promised because Ray was imported before without ``LOOPBACK_ENV``.
    """
    ray = import_ray(address)
    if ray.is_initialized():
        yield ray
        return
    _connect(ray, address, init_options)
    try:
        yield ray
    finally:
        ray.shutdown()


def _connect(ray, address: str | None, init_options: dict[str, Any]) -> None:
    from ray._private import ray_constants

    if (address is None or is_loopback_address(address)) and ray_constants.ENABLE_RAY_CLUSTER:
        raise EngineError(
            "cannot keep Ray on loopback: Ray was imported before vecmetric set it up",
            hint="set RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 before importing ray",
        )
    # Ray's Python loggers go to the application's logging (vecmetric's CLI keeps them quiet unless
    # --verbose) instead of Ray's own console handler, which init clears with configure_logging=False.
    logging.getLogger("ray").propagate = True
    common = {"configure_logging": False, "logging_level": logging.WARNING}
    if address is None:
        ray.init(address="local", include_dashboard=False, _node_ip_address="127.0.0.1", **common, **init_options)
        return
    try:
        ray.init(address=address, **common)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise EngineError(f"cannot connect to the Ray cluster at {address}: {str(exc).strip().splitlines()[0]}") from None
