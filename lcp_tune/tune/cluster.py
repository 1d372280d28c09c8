"""Where the trials run: a local Ray on 127.0.0.1, or a running cluster reached by address
(with its token auth), and how many trials fit at once."""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Optional

from lcp_tune.config import ExperimentConfig
from lcp_tune.errors import LcpTuneError


AUTH_MODE = "RAY_AUTH_MODE"
TOKEN_HINT = ("a cluster with token authentication (Ray 2.60's default for `ray start`) needs its token in "
              "~/.ray/auth_token, in RAY_AUTH_TOKEN, or in the file RAY_AUTH_TOKEN_PATH names "
              "(`ray get-auth-token` on the head node prints it)")


def init_ray(num_cpus: Optional[int] = None, address: Optional[str] = None, dashboard: bool = False,
             log: Callable[[str], None] = print, dashboard_port: int = 8265) -> None:
    """Connect to a cluster at `address`, or start a local Ray on 127.0.0.1.

    Local Ray keeps its dashboard off unless asked; Ray 2.60 turns token authentication on, and
    the dashboard then refuses requests without the token.
    """
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    # the legacy reporter honours verbose=0; the new engine prints wide boxes regardless
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    if address:
        _connect(address)
        log(f"connected to the Ray cluster at {address}: {_describe(ray.cluster_resources())}")
        return
    # the token Ray writes on its first start is a password: created under umask 077 it is never
    # readable by others, not even for the seconds before _private_token narrows an older one
    previous = os.umask(0o077)
    try:
        context = ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=dashboard,
                           dashboard_host="127.0.0.1", dashboard_port=dashboard_port, log_to_driver=False,
                           configure_logging=True, logging_level="ERROR", _node_ip_address="127.0.0.1")
    finally:
        os.umask(previous)
    _private_token()
    if dashboard:
        log(f"Ray dashboard: http://{context.dashboard_url}  (token authentication is on: the token is in "
            f"~/.ray/auth_token, or run `ray get-auth-token`; the browser asks for it)")


@contextmanager
def ray_session(address: Optional[str] = None, dashboard: bool = False,
                log: Callable[[str], None] = print) -> Iterator[None]:
    """Ray for the block: the running one, the cluster at `address`, or a local one started
    here and shut down after (so a script's own Ray is left alone)."""
    import ray

    started_here = not ray.is_initialized()
    auth_mode = os.environ.get(AUTH_MODE)
    init_ray(address=address, dashboard=dashboard, log=log)
    try:
        yield
    finally:
        if started_here:
            ray.shutdown()
            _set_auth_mode(auth_mode)   # a later local Ray in this process starts as it would have


def _private_token() -> None:
    """Ray writes its auth token world-readable; the token is a password, so only its owner reads it."""
    path = token_path()
    try:
        if path.is_file() and path.stat().st_mode & 0o077:
            path.chmod(0o600)
    except OSError:
        pass   # not ours to change (another user's Ray): leave it


def check_reachable(address: str) -> None:
    """Fail in seconds, in one line, when nothing listens at host:port ("auto" is left to Ray)."""
    import socket

    if address == "auto":
        return
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
    except (OSError, ValueError) as exc:
        raise LcpTuneError(f"cannot reach a Ray cluster at --address {address} ({exc}); "
                           f"start one with `ray start --head` or check host and port") from None


def _connect(address: str) -> None:
    """ray.init(address=...) with a fast, one-line failure when the cluster cannot be reached.

    `ray start` in 2.60 turns token authentication on, but Ray's client only sends its token when
    RAY_AUTH_MODE=token is exported; like Ray's own `address="auto"`, a token found where Ray
    looks turns token mode on here, so users need no extra variable."""
    import ray

    check_reachable(address)
    before = os.environ.get(AUTH_MODE)
    if before is None and token_available():
        _set_auth_mode("token")
    try:
        ray.init(address=address, log_to_driver=False, logging_level="ERROR")
    except Exception as exc:
        _set_auth_mode(before)
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = ""
        if "auth" in message.lower() or "token" in message.lower() or not token_available():
            hint = f"; {TOKEN_HINT}"
        raise LcpTuneError(f"cannot connect to the Ray cluster at --address {address}: {message[:200]}{hint}") from None


def token_path() -> Path:
    """The token file Ray reads: RAY_AUTH_TOKEN_PATH, else ~/.ray/auth_token."""
    return Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")


def token_available() -> bool:
    """A Ray auth token where Ray's client looks for one: RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token."""
    if os.environ.get("RAY_AUTH_TOKEN", "").strip():
        return True
    path = token_path()
    try:
        return path.is_file() and path.stat().st_size > 0
    except OSError:
        return False


def _set_auth_mode(mode: Optional[str]) -> None:
    """Set (or clear) RAY_AUTH_MODE and refresh Ray's cached config, which read it at import."""
    if os.environ.get(AUTH_MODE) == mode:
        return
    if mode is None:
        os.environ.pop(AUTH_MODE, None)
    else:
        os.environ[AUTH_MODE] = mode
    from ray._raylet import Config

    Config.initialize("")


def _describe(resources: dict) -> str:
    return ", ".join(f"{v:g} {k}" for k, v in sorted(resources.items()) if k in ("CPU", "GPU"))


def trial_gpus(config: ExperimentConfig, resources: dict, input_side: int) -> float:
    """--gpus-per-trial, or (not given) the default share: none when the cluster has no GPU or
    --device is cpu; else by input size, since small inputs leave a GPU mostly idle for one
    trial: 1/4 of a GPU up to 64 px (CIFAR, digits: four trials share one), 1/2 up to 160 px,
    a whole GPU above (ImageNet at 224)."""
    if config.search.gpus_per_trial is not None:
        return float(config.search.gpus_per_trial)
    if resources.get("GPU", 0) <= 0 or config.device == "cpu":
        return 0.0
    return 0.25 if input_side <= 64 else 0.5 if input_side <= 160 else 1.0


def check_cluster(config: ExperimentConfig) -> None:
    """Refuse resources the cluster does not have, before any trial waits forever for them."""
    import ray

    resources = ray.cluster_resources()
    if (config.search.gpus_per_trial or 0) > 0 and resources.get("GPU", 0) <= 0:
        raise LcpTuneError(f"--gpus-per-trial {config.search.gpus_per_trial:g} asks for GPUs but the Ray "
                           f"cluster has none; use --gpus-per-trial 0")
    from .distributed_finetune import check_finetune_resources

    check_finetune_resources(config, resources)   # the fine-tune's workers: before the search, not after
    if config.search.cpus_per_trial > resources.get("CPU", 0):
        raise LcpTuneError(f"--cpus-per-trial {config.search.cpus_per_trial} is more than the "
                           f"{resources.get('CPU', 0):g} CPUs of the Ray cluster")


def concurrency(config: ExperimentConfig) -> int:
    """Trials at once: what the cluster's CPUs (and GPUs) fit, unless the user capped it."""
    import ray

    if config.search.max_concurrent:
        return config.search.max_concurrent
    resources = ray.cluster_resources()
    fit = int(resources.get("CPU", 1) // max(1, config.search.cpus_per_trial))
    if config.search.gpus_per_trial:
        fit = min(fit, int(resources.get("GPU", 0) / config.search.gpus_per_trial + 1e-9))
    return max(1, fit)
