"""Models made at run time and put in the registry: uploaded weights for a zoo architecture,
allow-listed Hugging Face folders and zero-shot classifiers over classes a user names.

The one module of the package above the registry: the sources (byo.py, bundled.py, the zoos)
build and check models and never import the registry; this module names, registers and loads
what they build, so the dependency runs one way.
"""

from __future__ import annotations

from pathlib import Path

import torch

from saliency_core.errors import SaliencyError
from saliency_core.models import registry
from saliency_core.models.base import LoadedModel, ModelInfo
from saliency_core.models.byo import (
    ALLOWLIST_ENV,
    FOLDER_PREFIX,
    allowed_folders,
    allowed_roots,
    build_uploaded,
    checked_name,
    checked_upload,
    uploaded_factory,
    uploaded_info,
)


def load_uploaded_weights(
    arch: str,
    data: bytes,
    num_classes: int,
    labels: list[str] | None = None,
    name: str | None = None,
    device: str | torch.device | None = None,
    owner: str | None = None,
) -> LoadedModel:
    """Build ``arch`` with ``num_classes`` outputs from safetensors ``data`` and register it.

    Returns the LoadedModel (what ``load_model(name, device)`` returns from now on). The default
    name is derived from the architecture and the file's hash, so the same upload twice is the
    same model. Preprocessing is the architecture's official ImageNet one. ``owner`` (an app
    session's token) makes the model that owner's alone: listed only by
    ``available_models(owner)``, never replacing another owner's model, subject to the caps
    on resident uploads (registry.register_uploaded).
    """
    data, num_classes, labels, digest = checked_upload(arch, data, num_classes, labels)
    chosen = checked_name(name)
    name = chosen or _free_default_name(f"{arch}-upload-{digest}", owner)
    if name in registry.builtin_names() or name.startswith(FOLDER_PREFIX):
        raise SaliencyError(
            f"{name!r} is taken by a built-in model; choose another name."
        )
    model = build_uploaded(arch, data, num_classes)
    card = {"architecture": arch, "num_classes": num_classes, "sha256_prefix": digest}
    factory = uploaded_factory(name, arch, model, labels, card)
    registry.register_uploaded(uploaded_info(name, arch, num_classes, model), factory, owner)
    return registry.load_model(name, device)


def _free_default_name(base: str, owner: str | None) -> str:
    """The hash-derived name, or with a suffix when another owner already uses it (the same
    file uploaded in two sessions gives two models, neither replacing the other)."""
    listed = {info.name for info in registry.available_models(owner)}
    name, n = base, 2
    while registry.is_registered(name) and name not in listed:
        name, n = f"{base}-{n}", n + 1
    return name


def load_hf_folder(folder: str | Path, device: str | torch.device | None = None):
    """Load an allow-listed Hugging Face text classifier folder; returns its LoadedModel."""
    resolved = Path(folder).expanduser().resolve()
    for name, allowed in allowed_folders().items():
        if allowed == resolved:
            return registry.load_model(name, device)
    roots = allowed_roots()
    if not roots:
        raise SaliencyError(
            f"Loading model folders from the server is switched off; list allowed folders in "
            f"{ALLOWLIST_ENV}."
        )
    raise SaliencyError(
        f"{folder} is not an allowed model folder. Allowed: "
        f"{', '.join(str(p) for p in roots)} (set by {ALLOWLIST_ENV}; a folder must hold "
        "config.json, or be a direct subfolder of a listed folder)."
    )


def load_zero_shot(
    labels: list[str],
    device: str | torch.device | None = None,
    template: str | None = None,
) -> LoadedModel:
    """The MiniLM encoder as a zero-shot classifier over class names the user types.

    The encoder is the one already loaded for minilm-sentiment (shared, never changed); the
    model is registered as ``minilm-zero-shot: a | b | c`` so later calls get the same one.
    """
    from saliency_core.training.minilm import (
        ZERO_SHOT_SCALE,
        ZERO_SHOT_TEMPLATE,
        zero_shot_classifier,
    )

    labels = [str(label).strip() for label in labels]
    if (
        len(labels) < 2
        or any(not label for label in labels)
        or len(set(labels)) != len(labels)
    ):
        raise SaliencyError("Name at least two classes, all different and none empty.")
    if len(labels) > 50:
        raise SaliencyError("Name at most 50 classes.")
    template = template or ZERO_SHOT_TEMPLATE
    if template.count("{}") != 1:
        raise SaliencyError(
            "The template must contain {} exactly once, where a class name goes."
        )
    suffix = "" if template == ZERO_SHOT_TEMPLATE else f" ({template})"
    name = f"minilm-zero-shot: {' | '.join(labels)}{suffix}"

    def factory(target: torch.device) -> LoadedModel:
        base = registry.load_model("minilm-sentiment", target)
        model = zero_shot_classifier(
            base.model.encoder, base.tokenizer, labels, template  # type: ignore[arg-type]
        )
        card = {
            "name": name,
            "task": "text",
            "labels": labels,
            "zero_shot": {
                "template": template,
                "scale": ZERO_SHOT_SCALE,
            },
            "encoder": base.card.get("architecture", {}).get("encoder"),
        }
        return LoadedModel(
            name=name,
            task="text",
            model=model,
            labels=labels,
            tokenizer=base.tokenizer,
            source="bundled",
            card=card,
        )

    if not registry.is_registered(
        name
    ):  # registering again would drop the shared instance
        info = ModelInfo(
            name, "text", "bundled", True, 0, "MiniLM zero-shot over user-named classes"
        )
        registry.register_uploaded(info, factory)
    return registry.load_model(name, device)
