"""Ray for robolearn's commands: one cluster connection per command, clear errors.

``robolearn collect``, ``evaluate``, ``train trainer=ray`` and ``pipeline`` take a ``ray``
config section (:class:`RayConfig`). Without ``ray.address`` a private local instance starts:
bound to 127.0.0.1, no dashboard, its object store sized for the machine, Ray's token
authentication as Ray sets it up (on for local instances since Ray 2.59: never switched off
here). With ``ray.address=HOST:PORT`` the command joins a running cluster (``ray start --head
--port=PORT`` on one machine, ``ray start --address=HOST:PORT`` on the others).

The instance is started once per command (:func:`ray_session`) and shared by its stages; when
Ray is already initialised in this process (a notebook, a test fixture, the pipeline) it is
reused and left running.

Errors name what went wrong and what to do: an address nobody listens on
(:class:`ClusterError`), a Ray/Python version different from the cluster's, a request for
more CPUs/GPUs than the cluster has (:class:`ResourceError`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from robolearn.errors import ClusterError, ResourceError

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'robolearn[ray]' (or: pip install 'ray[train]>=2.52')"


@dataclass
class RayConfig:
    """Where and how wide commands run on Ray (``ray.*`` of collect, evaluate, pipeline)."""

    address: str = ""  # HOST:PORT of a running cluster (`ray start --head`); "": a local instance
    num_workers: int | None = None  # rollout actors; null: one per cluster CPU; 0: no Ray at all
    cpus_per_worker: float = 1.0  # CPUs each rollout actor reserves
    object_store_mb: int = 0  # local instance's object store (0: 10% of RAM, 256..2048 MB)
    dashboard: bool = False  # local instance: start Ray's dashboard (on 127.0.0.1)
    connect_timeout_s: float = 10.0  # how long to wait for ray.address to answer


@dataclass
class RayTrainConfig(RayConfig):
    """``ray.*`` of ``robolearn train trainer=ray``: Ray Train's scaling and failure handling."""

    num_workers: int | None = None  # training workers (DDP); null: one per GPU, else 1
    cpus_per_worker: float = 0.0  # CPUs per training worker (0: the cluster's CPUs / workers)
    use_gpu: bool | None = None  # null: use GPUs when the cluster has any
    gpus_per_worker: float = 1.0  # GPUs per worker when use_gpu
    max_failures: int = 3  # worker failures survived per run (restarts from the last checkpoint)
    storage_path: str = ""  # Ray Train's checkpoint storage (default <out>/ray); shared on clusters




def cfg_get(cfg: Any, key: str, default: Any = None) -> Any:
    """``cfg.key`` for a DictConfig, a dict or a dataclass; ``default`` when absent/None."""
    if cfg is None:
        return default
    value = cfg.get(key, default) if hasattr(cfg, "get") else getattr(cfg, key, default)
    return default if value is None else value


def import_ray() -> Any:
    try:
        import ray
    except ImportError as e:
        raise ImportError(
            f"this command runs on Ray, which is not installed ({e}): {INSTALL_HINT}; or run it "
            "in this process with ray.num_workers=0"
        ) from e
    return ray


def uses_ray(cfg: Any) -> bool:
    """Whether a ``ray`` section asks for Ray (``num_workers=0`` means in this process)."""
    return cfg is not None and cfg_get(cfg, "num_workers") != 0


def default_object_store_bytes() -> int:
    """10% of RAM, clamped to 256 MB .. 2 GB: episodes and policies are small objects."""
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        ram = 8 << 30
    return int(min(max(ram // 10, 256 << 20), 2 << 30))


def parse_address(address: str) -> tuple[str, int]:
    """``HOST:PORT`` (optionally ``ray://`` is refused: Ray Client is not supported)."""
    addr = address.strip()
    if addr.startswith("ray://"):
        raise ClusterError(
            f"Got ray.address={address!r}: Ray Client (ray://) is not supported; give the GCS "
            "address HOST:PORT that `ray start --head` printed (default port 6379) and run "
            "the command on a machine of the cluster"
        )
    host, sep, port = addr.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ClusterError(
            f"Got ray.address={address!r}, expected HOST:PORT of a running cluster's head "
            "(e.g. 127.0.0.1:6379, as printed by `ray start --head`)"
        )
    return host, int(port)


def _is_loopback(host: str) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
    except (OSError, ValueError):
        return False


# An HTTP/2 client preface and an empty SETTINGS frame: a gRPC server (Ray's GCS) answers with
# a SETTINGS frame of its own; anything else (an HTTP/1 server, a database, ssh) does not.
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
_H2_SETTINGS = 0x04


def check_reachable(address: str, timeout: float = 10.0) -> None:
    """Fails fast, with the fix, when no Ray head answers at ``address``.

    Ray's own ``ray.init`` retries for minutes against a closed port and hangs for longer
    against a listener that is not Ray, so this checks first, within ``timeout``: that the port
    accepts a connection and that what answers speaks gRPC (Ray's GCS protocol). With TLS
    (``RAY_USE_TLS=1``) only the connection is checked.
    """
    host, port = parse_address(address)
    fix = (f"Start one there with `ray start --head --port={port}` (and `ray start "
           f"--address={address}` on the other machines), check the host and port that "
           "`ray start --head` printed, or drop ray.address= to start a local instance")
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            if os.environ.get("RAY_USE_TLS", "0") in ("1", "true", "True"):
                return
            sock.settimeout(timeout)
            sock.sendall(_H2_PREFACE)
            head = b""
            while len(head) < 9:
                more = sock.recv(9 - len(head))
                if not more:
                    break
                head += more
    except TimeoutError:
        raise ClusterError(
            f"something listens at ray.address={address} but did not answer as a Ray cluster "
            f"within {timeout:g} s (ray.connect_timeout_s). {fix}"
        ) from None
    except OSError as e:
        raise ClusterError(
            f"no Ray cluster answers at ray.address={address} ({e.strerror or e}). {fix}"
        ) from None
    if len(head) < 9 or head[3] != _H2_SETTINGS:
        seen = head[:16].decode("latin-1", errors="replace").strip() or "nothing"
        raise ClusterError(
            f"the server at ray.address={address} is not a Ray cluster (it answered "
            f"{seen!r}, not Ray's gRPC). {fix}"
        )


def version_error(message: str, address: str) -> ClusterError:
    """Ray's version-mismatch message, with what to install."""
    import ray

    return ClusterError(
        f"the Ray cluster at {address} runs another Ray or Python version than this process "
        f"(here: Ray {ray.__version__}, Python {platform.python_version()}). Ray says: "
        f"{' '.join(message.split())} Install the cluster's versions in this environment "
        "(pip install 'ray[train]==<cluster version>', same Python) or join a matching cluster"
    )


def _start_local(cfg: Any) -> None:
    ray = import_ray()
    # Ray binds a local instance to the machine's routable IP unless told it is a single-machine
    # setup; this keeps every port it opens on 127.0.0.1 (env for the processes it spawns).
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False
    object_store = (int(cfg_get(cfg, "object_store_mb")) << 20) if cfg_get(
        cfg, "object_store_mb") else default_object_store_bytes()
    ray.init(
        address="local",  # never attach to a cluster found via RAY_ADDRESS or /tmp/ray by accident
        include_dashboard=bool(cfg_get(cfg, "dashboard", False)),
        dashboard_host="127.0.0.1",
        object_store_memory=object_store,
        logging_level=logging.WARNING,
        log_to_driver=True,
    )


def _connect(cfg: Any) -> None:
    ray = import_ray()
    from ray._private import ray_constants

    address = str(cfg_get(cfg, "address"))
    check_reachable(address, float(cfg_get(cfg, "connect_timeout_s", 10.0)))
    # A head on loopback (`ray start --head --node-ip-address=127.0.0.1`) is a one-machine
    # cluster: this driver must call itself 127.0.0.1 too, or it looks for a raylet elsewhere.
    loopback = _is_loopback(parse_address(address)[0])
    ray_constants.ENABLE_RAY_CLUSTER = not loopback
    if loopback:
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    else:
        os.environ.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
    try:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=True)
    except (RuntimeError, ConnectionError) as e:
        # ray.init wraps the reason (version check, auth, node lookup) in a ConnectionError
        cause = e.__cause__ or e
        text = str(e) if cause is e else f"{e}: {cause}"
        if "version mismatch" in text.lower():
            raise version_error(str(cause), address) from None
        raise ClusterError(
            f"cannot join the Ray cluster at ray.address={address}: {text.strip()}. Is it a Ray "
            "head (`ray start --head`), and when the cluster uses token authentication "
            "(RAY_AUTH_MODE=token), does this process have the same RAY_AUTH_MODE and its "
            "token (RAY_AUTH_TOKEN, or ~/.ray/auth_token from `ray get-auth-token`)?"
        ) from None


@contextlib.contextmanager
def ray_session(cfg: Any) -> Iterator[Any]:
    """Ray for the duration of a command; yields the ``ray`` module.

    Reuses an initialised Ray (and leaves it running); otherwise joins ``cfg.address`` or
    starts a local instance, and shuts it down at the end.
    """
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    if cfg_get(cfg, "address"):
        _connect(cfg)
        log.info("joined the Ray cluster at %s: %s", cfg_get(cfg, "address"),
                 describe_resources())
    else:
        _start_local(cfg)
        log.info("started a local Ray instance (127.0.0.1): %s", describe_resources())
    try:
        yield ray
    finally:
        ray.shutdown()


def cluster_resources() -> dict[str, float]:
    import ray

    return {k: float(v) for k, v in ray.cluster_resources().items()}


def describe_resources(resources: dict[str, float] | None = None) -> str:
    r = cluster_resources() if resources is None else resources
    nodes = sum(1 for k in r if k.startswith("node:") and k != "node:__internal_head__")
    return f"{r.get('CPU', 0):g} CPU, {r.get('GPU', 0):g} GPU on {nodes} node(s)"


def check_resources(what: str, workers: int, cpus: float, gpus: float = 0.0) -> None:
    """Raises :class:`ResourceError` when ``workers`` × (cpus, gpus) exceeds the cluster."""
    have = cluster_resources()
    need_cpu, need_gpu = workers * cpus, workers * gpus
    short = []
    if need_cpu > have.get("CPU", 0) + 1e-9:
        short.append(f"{need_cpu:g} CPU")
    if need_gpu > have.get("GPU", 0) + 1e-9:
        short.append(f"{need_gpu:g} GPU")
    if short:
        raise ResourceError(
            f"{what} asked for {workers} worker(s) × ({cpus:g} CPU, {gpus:g} GPU) = "
            f"{' and '.join(short)}, but the cluster has {describe_resources(have)}. Lower "
            "ray.num_workers= / the per-worker resources, or add nodes to the cluster"
        )


def default_rollout_workers(cfg: Any) -> int:
    """``ray.num_workers`` for rollouts: as given, else one actor per cluster CPU."""
    if cfg_get(cfg, "num_workers") is not None:
        n = int(cfg_get(cfg, "num_workers"))
        if n < 0:
            raise ValueError(f"Got ray.num_workers={n}, expected >= 0 (0: no Ray; null: all CPUs)")
        return n
    cpus = cluster_resources().get("CPU", 1.0)
    return max(1, int(cpus // max(float(cfg_get(cfg, "cpus_per_worker", 1.0)), 1e-9)))
