"""``python -m saliency_core serve``: start the engine service (Ray Serve) locally or on a
cluster. Imports Ray only when the command runs."""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
from pathlib import Path

from saliency_core.errors import SaliencyError
from saliency_core.serve.config import EngineConfig

REPO_ROOT = Path(__file__).resolve().parents[2]

_FLAGS = {  # EngineConfig field -> (type, help)
    "num_replicas": (int, "replicas when not autoscaling (default 1)"),
    "min_replicas": (int, "autoscaling: fewest replicas"),
    "max_replicas": (int, "autoscaling: most replicas"),
    "max_ongoing_requests": (int, "requests one replica takes at a time (default 16)"),
    "num_cpus": (float, "CPUs reserved per replica (default 1)"),
    "num_gpus": (str, "GPUs per replica: auto (1 when the cluster has GPUs) or a number (0.5)"),
    "max_batch_size": (int, "requests combined into one pass; 1 turns batching off (8)"),
    "batch_wait_timeout_s": (float, "how long a batch waits to fill (0.01 s)"),
    "torch_threads": (int, "torch CPU threads per replica"),
}


def load_config(path: str | None, args: argparse.Namespace):
    values: dict = {}
    if path:
        text = Path(path).read_text()
        if path.endswith((".yaml", ".yml")):
            import yaml

            values = yaml.safe_load(text) or {}
        else:
            values = json.loads(text)
        if not isinstance(values, dict):
            raise SaliencyError(f"{path}: expected a mapping of engine settings")
    for name in _FLAGS:
        value = getattr(args, name, None)
        if value is not None:
            values[name] = value
    if isinstance(values.get("num_gpus"), str) and values["num_gpus"] != "auto":
        try:
            values["num_gpus"] = float(values["num_gpus"])
        except ValueError:
            raise SaliencyError("--num-gpus takes 'auto' or a number") from None
    return EngineConfig.from_dict(values)


def start(config: EngineConfig, address: str | None = None, host: str = "127.0.0.1",
          port: int = 8000, ray_cpus: int | None = None) -> str:
    """Start (or join) Ray, start Serve's HTTP proxy and deploy the engine; returns its URL."""
    import ray
    from ray import serve

    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        ray.init(address=address, ignore_reinit_error=True)
    else:
        # Workers of a local Ray import this checkout the same way the driver does.
        ray.init(num_cpus=ray_cpus, include_dashboard=False, ignore_reinit_error=True,
                 runtime_env={"env_vars": {"PYTHONPATH": str(REPO_ROOT)}})
    serve.start(http_options={"host": host, "port": port})
    deploy(config)
    return f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}"


def deploy(config: EngineConfig) -> None:
    """Deploy (or redeploy with new settings) the engine application on the connected Ray."""
    import ray
    from ray import serve

    from saliency_core.serve.deployment import APP_NAME, build_app

    gpus = ray.cluster_resources().get("GPU", 0.0)
    serve.run(build_app(config, cluster_gpus=gpus), name=APP_NAME, route_prefix="/")


def stop() -> None:
    import ray
    from ray import serve

    serve.shutdown()
    ray.shutdown()


def run_serve(args: argparse.Namespace) -> int:
    from saliency_core.serve.deployment import config_summary

    config = load_config(args.config, args)
    if args.detach and not (args.address or os.environ.get("RAY_ADDRESS")):
        raise SaliencyError("--detach needs a cluster to leave the service on (--address or "
                            "RAY_ADDRESS); a local Ray ends with this command")
    url = start(config, args.address, args.host, args.port, args.ray_cpus)
    print(f"engine service ready at {url} (settings {config_summary(config)})", flush=True)
    print(f"point the app at it: SALIENCY_ENGINE_URL={url} make run", flush=True)
    if args.detach:
        return 0
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stop()
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "serve", help="run the attribution engine as a Ray Serve service",
        description="Start the engine service: a Ray Serve application with one deployment "
        "that loads models from the model cache and answers attribute/explain requests. "
        "Without --address it starts Ray on this machine.")
    p.add_argument("--address", help="Ray cluster to join (default: $RAY_ADDRESS, else a "
                   "local Ray)")
    p.add_argument("--host", default="127.0.0.1", help="HTTP host (0.0.0.0 in a container)")
    p.add_argument("--port", type=int, default=8000, help="HTTP port (default 8000)")
    p.add_argument("--config", help="JSON or YAML file of engine settings; flags override it")
    p.add_argument("--ray-cpus", type=int, default=None,
                   help="CPUs a local Ray may use (default: all)")
    p.add_argument("--detach", action="store_true",
                   help="with --address: return once deployed (it stays up with the cluster)")
    for name, (kind, text) in _FLAGS.items():
        p.add_argument("--" + name.replace("_", "-"), type=kind, default=None, help=text)
    p.set_defaults(func=run_serve)
