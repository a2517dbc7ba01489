"""Settings of the engine service (saliency_core/serve/deployment.py), kept free of Ray so that the CLI
and the deploy checks can read them without starting anything."""

from __future__ import annotations

from dataclasses import dataclass, fields

from saliency_core.errors import SaliencyError


@dataclass
class EngineConfig:
    """How the engine deployment scales; every field can come from a JSON/YAML file or a flag."""

    num_replicas: int = 1  # fixed replica count, unless autoscaling bounds are given
    min_replicas: int | None = None
    max_replicas: int | None = None
    target_ongoing_requests: float = 4.0
    max_ongoing_requests: int = 16
    num_cpus: float = 1.0
    # "auto": one GPU per replica when the cluster has GPUs, none otherwise; a number (0.5)
    # shares a GPU between replicas.
    num_gpus: float | str = "auto"
    gpus_when_available: float = 1.0
    max_batch_size: int = 8  # 1 turns cross-request batching off
    batch_wait_timeout_s: float = 0.01
    torch_threads: int | None = None
    model_cache_size: int = 4

    @classmethod
    def from_dict(cls, values: dict) -> EngineConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise SaliencyError(f"unknown engine settings: {', '.join(sorted(unknown))}")
        return cls(**values)

    def gpus(self, cluster_gpus: float) -> float:
        if self.num_gpus == "auto":
            return self.gpus_when_available if cluster_gpus > 0 else 0.0
        return float(self.num_gpus)

    def deployment_options(self, cluster_gpus: float = 0.0) -> dict:
        options: dict = {
            "max_ongoing_requests": self.max_ongoing_requests,
            "ray_actor_options": {"num_cpus": self.num_cpus, "num_gpus": self.gpus(cluster_gpus)},
            "user_config": {"max_batch_size": self.max_batch_size,
                            "batch_wait_timeout_s": self.batch_wait_timeout_s},
        }
        if self.min_replicas is not None or self.max_replicas is not None:
            low = self.min_replicas if self.min_replicas is not None else 1
            options["autoscaling_config"] = {
                "min_replicas": low,
                "max_replicas": self.max_replicas if self.max_replicas is not None else low,
                "target_ongoing_requests": self.target_ongoing_requests,
            }
        else:
            options["num_replicas"] = self.num_replicas
        return options
