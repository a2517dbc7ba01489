"""Guide page: what each method computes, where it shines and fails, and how to choose a baseline
and a target layer. The tables are generated from the method specs and model registry, so they
always match what the other pages offer."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

import saliency_core
from saliency_core.models import torchvision_zoo
from workbench.ui.navigation import ensure_app_navigation

ensure_app_navigation()

st.title("Guide")
st.caption("Saliency maps answer one narrow question: how does the model's score for one class "
           "respond to each input value? Each method answers it differently, and some answer a "
           "different question than they seem to.")

st.header("The methods at a glance")
rows = []
for spec in saliency_core.methods():
    rows.append({
        "method": spec.label,
        "map": "per input value" if spec.family == "input" else "per layer cell, upsampled",
        "text": "yes" if spec.text else "no",
        "needs ReLU": "yes" if spec.needs_relu else "",
        "settings": ", ".join(p.label or p.name for p in spec.params) or "none",
        "reference": spec.reference,
    })
st.dataframe(rows, hide_index=True, width="stretch")

st.header("Why the Image page opens with Grad-CAM")
st.markdown("""
A first map should be readable and honest. On the default model (EfficientNet-Lite0) and photo
(Chelsea the cat) we compared every method side by side. The pixel methods (vanilla gradient,
gradient × input, SmoothGrad, Integrated Gradients) give grainy maps at the photo's full
resolution, and Integrated Gradients at its default steps shows a large completeness gap there:
its path integral needs far more steps on this network. Grad-CAM gives a smooth map over the
cat's eyes, nose and face from **one model pass**, it is class-discriminative (pick another class
and other regions light up), and it **passes the randomization sanity checks** (below), so it
reads well without misleading. Its limit is resolution: the map has the layer's grid, upsampled.
For pixel-level detail switch to SmoothGrad or Integrated Gradients; the CAM variants (Grad-CAM++,
HiResCAM, LayerCAM, XGrad-CAM) look much the same here.
""")

st.header("What each method computes")
METHOD_NOTES = {
    "gradient": """
**Computes** the derivative of the class score f_c with respect to every input value,
∂f_c/∂x: how much the score would move if that value moved a little. One model pass.

**Strengths.** Honest about the model: it changes whenever the weights change, so it passes the
randomization sanity checks (Adebayo et al., 2018). Cheap.

**Failure modes.** Visually noisy (ReLU networks are piecewise linear, so gradients jump from
pixel to pixel). It measures *sensitivity*, not *contribution*: a feature that already saturates
the score has a near-zero gradient even though it is the reason for the decision.
""",
    "gradient_x_input": """
**Computes** x ⊙ ∂f_c/∂x, a first-order estimate of each value's contribution relative to an
all-zero input. Exact for linear models. One model pass.

**Strengths.** Sharper than the gradient, signed (for and against).

**Failure modes.** Anything that is zero in the model's input space gets zero attribution
whatever its role. Because the input multiplies the map, the result looks like the image's edges
even for a model with random weights: it changes with the weights, but the eye is easily fooled.
Judge it with the Sanity page's rank correlations, not by its looks.
""",
    "integrated_gradients": """
**Computes** (x − x′) ⊙ ∫₀¹ ∂f_c(x′ + α(x − x′))/∂x dα: gradients averaged along the straight
path from a baseline x′ to the input, evaluated at *steps* points with the chosen quadrature.
The attributions add up to f_c(x) − f_c(x′) (**completeness**); the page reports the sum, that
difference and the gap in plain words. Costs *steps* model passes (× baseline samples).

**Strengths.** Axiomatic (completeness, sensitivity, implementation invariance); deals with
saturation, since it sums the gradient over the whole path.

**Failure modes.** Everything depends on the baseline: pixels equal to the baseline get zero
attribution (a black baseline cannot credit black pixels). Too few steps leave a completeness gap;
on ReLU-type networks the path is only piecewise smooth, so no rule is fastest everywhere and
some images need hundreds of steps. Under a large gap the Image page's *Find the steps that
close the gap* measures, on your image, the count that closes it. Like gradient × input, maps
carry the input's edges and can look plausible for a randomized model.
""",
    "smoothgrad": """
**Computes** the average of a base method over *samples* noisy copies of the input, with noise
σ as a fraction of the input's value range. Variants: the mean (SmoothGrad), the mean of squares
(SmoothGrad²) and the variance (VarGrad). Costs samples × the base method's passes.

**Strengths.** Removes the high-frequency speckle of raw gradients; maps become readable. With
the gradient as base it still passes the randomization checks.

**Failure modes.** σ around 10–20% works for images; much more and the noise, not the input, is
explained. Smoothing inherits the base method's weaknesses (SmoothGrad over Guided Backprop is
still insensitive to the weights). Few samples give maps that change from seed to seed.
""",
    "guided_backprop": """
**Computes** the gradient with a modified ReLU backward rule: the signal passes only where both
the forward activation and the backward signal are positive. One model pass.

**Strengths.** Crisp, high-resolution, pleasant maps.

**Failure modes.** **It fails the randomization sanity checks**: randomizing the weights of the
upper layers barely changes the map (Adebayo et al., 2018), and it behaves like partial image
reconstruction (Nie et al., 2018) rather than an explanation of the class. The maps for two
different classes are often nearly identical. Defined for ReLU networks and for activations
that clip like a ReLU (ReLU6, Hardtanh, clamp: MobileNet, EfficientNet-Lite), where the signal
passes only inside the activation's linear range. On a model with an activation that has no such
rule (GELU, SiLU, Hardswish...) the workbench refuses it and names the activation, rather than
silently passing the plain gradient through it.
""",
    "deconvnet": """
**Computes** a backward pass that rectifies the signal at every ReLU without looking at the
forward activations (Zeiler & Fergus, 2014). One model pass.

**Strengths.** Shows which image structures the filters respond to; a historical reference.

**Failure modes.** Largely class-independent and driven by image edges; like Guided Backprop it
does not reflect what the upper layers learned. ReLU-type networks only (ReLU, ReLU6, Hardtanh,
clamp), as Guided Backprop.
""",
    "gradcam": """
**Computes** ReLU(Σₖ αₖ Aₖ) at a target layer: the layer's activation maps Aₖ weighted by their
spatially averaged gradients αₖ, then upsampled to the input size. One model pass.

**Strengths.** Class-discriminative (different classes light up different regions) and passes
the randomization checks. Robust to gradient noise.

**Failure modes.** Coarse: the map has the layer's resolution (7 × 7 for ResNet-50's last block,
8 × 8 for the shapes CNN), so small objects blur. The ReLU hides negative evidence. The
averaged weights can under-credit several instances of the same class. Results depend on the
target layer (below).
""",
    "gradcam_plus_plus": """
**Computes** Grad-CAM with channel weights built from higher-order gradient terms, weighting
positive gradients pixel by pixel (Chattopadhay et al., 2018).

**Strengths.** Covers several instances of a class and whole objects better than Grad-CAM.

**Failure modes.** The same coarseness and layer dependence as Grad-CAM; the higher-order
approximation is heuristic for networks that are not exponential at the output.
""",
    "hirescam": """
**Computes** ReLU(Σₖ Gₖ ⊙ Aₖ): gradient times activation element by element, summed over
channels, with no spatial averaging (Draelos & Carin, 2020).

**Strengths.** For networks that end in global average pooling and a linear layer it is exactly
each cell's contribution to the score, so it never highlights a region the model did not use
(Grad-CAM can).

**Failure modes.** Same resolution limit as Grad-CAM; noisier when gradients are.
""",
    "guided_gradcam": """
**Computes** Guided Backprop multiplied by the upsampled Grad-CAM map: fine detail inside the
class region.

**Strengths.** Looks class-specific and sharp.

**Failure modes.** **It fails the randomization sanity checks** together with Guided Backprop
(Adebayo et al., 2018): the fine detail comes from Guided Backprop, which ignores the weights,
and Grad-CAM only masks it. Prefer Grad-CAM or SmoothGrad when the question is what the model
learned.
""",
    "attention_rollout": """
**Computes** how much the class token draws on each patch through all layers: each layer's
attention averaged over heads, plus the identity for the residual connection, rows renormalised,
and the layers multiplied in order (Abnar & Zuidema, 2020); the class token's row over the
patches is the map. One forward pass, no gradient.

**Strengths.** Cheap; shows where information flows in a vision transformer (ViT, DeiT, BEiT,
DINOv2), which single-layer attention maps do not.

**Failure modes.** **Class-agnostic**: the same map whichever class you pick, since no gradient
enters. It follows attention, not what the MLPs do with it, and tends to spread over the
background in deep models. It needs the attention probabilities: models with windowed attention
(Swin), no class token (LeViT, PVT), or no attention (CNNs) are not offered it; a model running a
fused attention kernel is switched to eager attention for the call.
""",
    "attention_relevance": """
**Computes** gradient-weighted attention relevance (Chefer, Gur & Wolf, 2021, "Generic
Attention-model Explainability"): starting from R = I, each layer adds
mean over heads of (∂score/∂A ⊙ A)⁺ · R; the class token's row over the patches is the map. One
forward and one backward pass.

**Strengths.** Class-specific (pick another class and the map moves) while keeping rollout's
view of the whole attention stack; usually sharper than Grad-CAM on vision transformers.

**Failure modes.** Like rollout, only for transformers whose attention probabilities can be read
(not Swin, not CNNs). torchvision's ViT hands out a copy of its attention weights that no gradient
reaches, so only rollout runs there. Gradients can be tiny for a confident prediction.
""",
}
for spec in saliency_core.methods():
    with st.expander(f"{spec.label} — {spec.reference}", expanded=False):
        st.markdown(METHOD_NOTES.get(spec.name, spec.description))
        if spec.params:
            st.markdown("**Settings**\n\n" + "\n".join(
                f"- *{p.label or p.name}*: {p.help} Default: `{p.default}`." for p in spec.params))

st.header("Sanity checks: which maps depend on the model?")
st.markdown("""
A saliency map should change when the thing it explains changes. Adebayo et al. (2018) test
this by randomizing the model's weights layer by layer from the top (*model randomization*) and
by retraining on shuffled labels (*data randomization*, the bundled `shapes-cnn-random-labels`).
If the map stays the same, it explains the image, not the model.

| Method | Randomization checks |
|---|---|
| Vanilla gradient, SmoothGrad (gradient base), Grad-CAM, Grad-CAM++, HiResCAM | pass: maps change as the weights are randomized |
| Gradient × input, Integrated Gradients | change with the weights, but stay visually similar to the input's edges: measure, don't eyeball |
| Guided Backprop, Guided Grad-CAM, DeconvNet | **largely invariant**: they fail; do not use them to argue what the model learned |

The watermark model (`shapes-cnn-watermark`) is a second kind of check: it learned to read a small
code in the top-left corner instead of the shape. A faithful method points at the corner; one
that still highlights the shape is explaining the image, not the model.
""")
if (Path(__file__).resolve().parent / "sanity.py").exists():
    st.page_link("pages/sanity.py", label="Run the checks on the Sanity page", icon=":material/rule:")

st.header("Choosing a baseline (Integrated Gradients)")
st.markdown("""
The baseline is the input that means "no evidence". Attributions explain the difference
f(x) − f(baseline), so a baseline the model already scores highly leaves little to explain; the
completeness box shows f(baseline) — it should be low for the explained class.

| Baseline | What it is | Good for | Watch out |
|---|---|---|---|
| black | every pixel black (in the model's normalisation) | a common default | black or dark pixels get no credit |
| zeros | all zeros in the model's input space (the mean colour for normalised models) | models trained with mean-centred inputs | a grey image is not always neutral |
| white | every pixel white | dark objects on light backgrounds | the mirror of black's blind spot |
| blur | a heavily blurred copy of the input | natural photographs: removes detail, keeps colour | credits edges and texture, not colour |
| uniform, gaussian | random noise, averaged over *baseline samples* | reducing the bias of any single baseline (expected gradients) | needs several samples; results vary with the seed |

For text, the baseline replaces every ordinary token and keeps [CLS]/[SEP]: **pad** (the usual
choice), **mask** (the token a masked language model treats as unknown content), **unk** or
**zeros** (a zero embedding, which the model never saw in training).

Two practical checks: compare two baselines — evidence that survives both is robust; and raise
*steps* until the completeness gap is below a few percent.
""")

st.header("Choosing a target layer (CAM methods)")
st.markdown("""
CAM methods read one layer's activations. **Late layers** (the default: the last block that
still has a spatial grid) carry the most class-specific features but the coarsest grid. **Earlier
layers** give finer maps that respond to parts and textures and are less class-discriminative;
very early layers mostly show edges. The layer picker lists every layer with a spatial output and
its shape (channels x height x width) so you can trade detail for meaning; try two and compare.

For vision transformers the "grid" is the patch tokens (14 × 14 for ViT-B/16); pick a layer
before the final classification token pooling. The defaults used here:
""")
st.dataframe([{"model": a.name, "default layer": a.default_layer, "description": a.description}
              for a in torchvision_zoo.ARCHITECTURES.values()]
             + [{"model": "shapes-cnn (bundled)", "default layer": "features.block5",
                 "description": "8 x 8 grid for a 64 x 64 input"}],
             hide_index=True, width="stretch")

st.header("Reading the display")
st.markdown("""
- **Sign.** *Magnitude* shows how much each pixel matters either way; *positive* only evidence
  for the class; *negative* only evidence against; *signed* both, red for and blue against.
- **Channel aggregation.** Attributions exist per colour channel; the magnitude view combines
  them (max |value| is a common default; L2 is smoother; |sum| lets opposite channels cancel).
- **Clip at percentile.** The brightest colour is given to this percentile of the map's values
  so that a handful of extreme pixels cannot turn everything else black. 99 is a good default;
  lower it to see faint structure, 100 to see the true maximum.
- **Opacity and colormap** only change the picture. None of these settings runs the model again.
- **Compare** can put all maps on one shared scale, but methods differ in units (a gradient is
  not a contribution), so per-map scales are the default.
""")
