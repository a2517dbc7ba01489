"""Agreement with the reference implementations (Captum, pytorch-grad-cam)."""

import numpy as np
import pytest
import torch
from captum.attr import (
    Deconvolution,
    GuidedBackprop,
    GuidedGradCam,
    InputXGradient,
    IntegratedGradients,
    LayerGradCam,
    Saliency,
)
from support.engine_models import (
    FunctionalCNN,
    images,
    make_tiny_text_model,
    max_rel_diff,
    small_cnn,
)


@pytest.fixture(scope="module")
def tiny_text_model(tmp_path_factory):
    return make_tiny_text_model(tmp_path_factory.mktemp("tinybert"))


import saliency_core as sc
from saliency_core.methods.baselines import image_baseline

# Runs guided methods: the native rule settled first (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("native_guided_rule")

TOL = 1e-5
TARGETS = torch.tensor([1, 3])


@pytest.fixture(scope="module")
def model():
    return small_cnn()


@pytest.fixture(scope="module")
def x():
    return images()


def test_gradient_matches_captum(model, x):
    ours = sc.attribute(model, x, "gradient", TARGETS)
    ref = Saliency(model).attribute(x, target=TARGETS, abs=False)
    assert max_rel_diff(ours, ref) < TOL


def test_gradient_x_input_matches_captum(model, x):
    ours = sc.attribute(model, x, "gradient_x_input", TARGETS)
    ref = InputXGradient(model).attribute(x, target=TARGETS)
    assert max_rel_diff(ours, ref) < TOL


CAPTUM_RULE = {
    "gauss_legendre": "gausslegendre",
    "riemann_left": "riemann_left",
    "riemann_right": "riemann_right",
    "riemann_middle": "riemann_middle",
}


@pytest.mark.parametrize("quadrature", list(CAPTUM_RULE))
@pytest.mark.parametrize("baseline", ["zeros", "black", "white", "blur"])
def test_integrated_gradients_matches_captum(model, x, quadrature, baseline):
    norm = ([0.5, 0.4, 0.3], [0.2, 0.25, 0.3])
    b = image_baseline(baseline, x, norm)
    ours = sc.attribute(model, x, "integrated_gradients", TARGETS, steps=12, quadrature=quadrature, baseline=b)
    ref = IntegratedGradients(model).attribute(x, baselines=b, target=TARGETS, n_steps=12, method=CAPTUM_RULE[quadrature])
    assert max_rel_diff(ours, ref) < TOL


def test_integrated_gradients_named_baseline_uses_normalisation(model, x):
    class Loaded:  # the parts of LoadedModel the engine reads
        def __init__(self, m):
            self.model, self.kind, self.default_layer = m, "image", None
            self.normalization = ([0.5, 0.4, 0.3], [0.2, 0.25, 0.3])

    ours = sc.attribute(Loaded(model), x, "integrated_gradients", TARGETS, steps=8, baseline="black")
    black = ((0 - torch.tensor([0.5, 0.4, 0.3])) / torch.tensor([0.2, 0.25, 0.3])).view(1, 3, 1, 1)
    ref = IntegratedGradients(model).attribute(x, baselines=black.expand_as(x), target=TARGETS, n_steps=8)
    assert max_rel_diff(ours, ref) < TOL


def test_trapezoid_differs_from_captum_only_by_its_weight_sum(model, x):
    # Captum's trapezoid weights sum to (n-1)/n; ours sum to 1 so completeness holds.
    n = 10
    ours = sc.attribute(model, x, "integrated_gradients", TARGETS, steps=n, quadrature="riemann_trapezoid", baseline="zeros")
    ref = IntegratedGradients(model).attribute(x, target=TARGETS, n_steps=n, method="riemann_trapezoid")
    assert max_rel_diff(ours, ref * n / (n - 1)) < TOL


def test_guided_backprop_matches_captum(model, x):
    ours = sc.attribute(model, x, "guided_backprop", TARGETS)
    ref = GuidedBackprop(model).attribute(x, target=TARGETS)
    assert max_rel_diff(ours, ref) < TOL


def test_deconvnet_matches_captum(model, x):
    ours = sc.attribute(model, x, "deconvnet", TARGETS)
    ref = Deconvolution(model).attribute(x, target=TARGETS)
    assert max_rel_diff(ours, ref) < TOL


@pytest.mark.parametrize("method", ["guided_backprop", "deconvnet"])
def test_relu_rules_cover_functional_and_inplace_relus(model, x, method):
    functional = FunctionalCNN(model).eval()
    ours = sc.attribute(functional, x, method, TARGETS)
    ref = sc.attribute(model, x, method, TARGETS)
    assert max_rel_diff(ours, ref) < TOL
    inplace = small_cnn(inplace=True)
    assert max_rel_diff(sc.attribute(inplace, x, method, TARGETS), ref) < TOL


def test_gradcam_at_layer_resolution_matches_captum(model, x):
    ours = sc.attribute(model, x, "gradcam", TARGETS, layer="features.5", upsample=False)
    ref = LayerGradCam(model, model.features[5]).attribute(x, target=TARGETS, relu_attributions=True)
    assert ours.shape == (2, 8, 8)
    assert max_rel_diff(ours, ref[:, 0]) < TOL


def test_gradcam_upsampled_to_input(model, x):
    ours = sc.attribute(model, x, "gradcam", TARGETS, layer="features.5")
    low = sc.attribute(model, x, "gradcam", TARGETS, layer="features.5", upsample=False)
    ref = torch.nn.functional.interpolate(low[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    assert ours.shape == (2, 16, 16)
    assert max_rel_diff(ours, ref) < TOL


def test_guided_gradcam_matches_captum(model, x):
    ours = sc.attribute(model, x, "guided_gradcam", TARGETS, layer="features.5")
    ref = GuidedGradCam(model, model.features[5]).attribute(x, target=TARGETS, interpolate_mode="bilinear")
    assert max_rel_diff(ours, ref) < TOL


def _grad_cam_reference(cam_class, model, layer, x, targets):
    """pytorch-grad-cam's layer-resolution map (before its own min-max scaling)."""
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cam = cam_class(model=model, target_layers=[layer])
    tgts = [ClassifierOutputTarget(int(t)) for t in targets]
    cam(input_tensor=x, targets=tgts)
    acts = cam.activations_and_grads.activations[0].cpu().numpy()
    grads = cam.activations_and_grads.gradients[0].cpu().numpy()
    raw = cam.get_cam_image(x, layer, tgts, acts, grads, False)
    cam.activations_and_grads.release()
    return torch.from_numpy(np.maximum(raw, 0))


@pytest.mark.parametrize("method", ["gradcam", "gradcam_plus_plus", "hirescam", "layercam", "xgradcam"])
def test_cam_variants_match_pytorch_grad_cam(model, x, method):
    from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, XGradCAM

    cls = {"gradcam": GradCAM, "gradcam_plus_plus": GradCAMPlusPlus, "hirescam": HiResCAM,
           "layercam": LayerCAM, "xgradcam": XGradCAM}[method]
    ours = sc.attribute(model, x, method, TARGETS, layer="features.5", upsample=False)
    ref = _grad_cam_reference(cls, model, model.features[5], x, TARGETS)
    assert max_rel_diff(ours, ref) < 1e-4


@pytest.mark.parametrize("method", ["layercam", "xgradcam"])
def test_new_cam_variants_match_pytorch_grad_cam_at_an_early_layer(model, x, method):
    """Where LayerCAM differs most from Grad-CAM: an early, high-resolution layer."""
    from pytorch_grad_cam import LayerCAM, XGradCAM

    cls = {"layercam": LayerCAM, "xgradcam": XGradCAM}[method]
    ours = sc.attribute(model, x, method, TARGETS, layer="features.1", upsample=False)
    ref = _grad_cam_reference(cls, model, model.features[1], x, TARGETS)
    assert ours.abs().max() > 0
    assert max_rel_diff(ours, ref) < 1e-4


def test_text_integrated_gradients_matches_captum_on_embeddings(tiny_text_model):
    model, tokenizer = tiny_text_model
    text = "a good movie with a bad ending"
    ours = sc.attribute_text(model, tokenizer, text, "integrated_gradients", target=1, steps=16, baseline="pad")
    enc = tokenizer(text, return_tensors="pt")
    embed = model.get_input_embeddings()
    ids = enc["input_ids"]
    special = torch.tensor([i in tokenizer.all_special_ids for i in ids[0].tolist()])
    base_ids = torch.where(special, ids, torch.full_like(ids, tokenizer.pad_token_id))

    def forward(e):
        m = e.shape[0]
        return model(inputs_embeds=e, attention_mask=enc["attention_mask"].expand(m, -1),
                     token_type_ids=enc["token_type_ids"].expand(m, -1)).logits

    with torch.no_grad():
        emb, base = embed(ids), embed(base_ids)
    ref = IntegratedGradients(forward).attribute(emb, baselines=base, target=1, n_steps=16)
    assert max_rel_diff(ours.attribution, ref[0]) < TOL
    assert np.allclose(ours.scores, ref[0].sum(-1).numpy(), atol=1e-5 * float(ref.abs().sum(-1).max()))
    assert ours.tokens[0] == "[CLS]" and ours.special[0] and not ours.special[1]
