"""The small vision transformer behind the bundled ``shapes-vit`` model.

A Hugging Face ``ViTForImageClassification`` (so attention rollout, attention relevance and
Grad-CAM's known token-to-grid geometry apply to it as to any HF ViT) with 8-pixel patches on
the 64 x 64 shapes images: an 8 x 8 patch grid behind one class token. A plain transformer
learns the shapes slowly (it has no convolution's sense of neighbourhood); three things get it
to 91 % in 18,000 small steps on two CPU cores: the eight right-angle views of each image, the
sine-cosine start of the position embeddings and the mimetic start of the attention layers.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from saliency_core.training.shapes_cnn import images_to_tensor, predict

NAME = "shapes-vit"
PATCH = 8
HIDDEN = 64
LAYERS = 3
HEADS = 4
# The first norm of the last block: later outputs reach the classifier through the class token
# alone, so their patch tokens get no gradient (the rule of engine.geometry.class_token_layer).
DEFAULT_LAYER = f"vit.layers.{LAYERS - 1}.layernorm_before"


def config_dict(num_labels: int, image_size: int) -> dict:
    """ViTConfig arguments, stored in the card so loading rebuilds the exact module."""
    return {
        "image_size": image_size,
        "patch_size": PATCH,
        "num_channels": 3,
        "hidden_size": HIDDEN,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "intermediate_size": 2 * HIDDEN,
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "num_labels": num_labels,
    }


def build(config: dict, labels: list[str]):
    """The module, with eager attention so the attention methods can read its probabilities."""
    from transformers import ViTConfig, ViTForImageClassification

    vit_config = ViTConfig(
        **config,
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    vit_config._attn_implementation = "eager"
    return ViTForImageClassification(vit_config)


def sine_cosine_positions(model) -> None:
    """Start the position embeddings at the fixed 2-D sine-cosine code (as MAE and MoCo v3
    do; they stay trainable). A learned code starts as noise, so attention cannot tell a
    neighbouring patch from a far one until it has been learned: that plateau took the first
    several hundred steps here, and this start about halves the steps to a given accuracy."""
    embeddings = model.vit.embeddings.position_embeddings  # [1, 1 + rows * cols, hidden]
    hidden = embeddings.shape[-1]
    side = model.config.image_size // model.config.patch_size
    rows, cols = torch.meshgrid(torch.arange(side, dtype=torch.float64),
                                torch.arange(side, dtype=torch.float64), indexing="ij")

    def code(position: torch.Tensor, width: int) -> torch.Tensor:
        frequencies = 1.0 / 10000 ** (torch.arange(width // 2, dtype=torch.float64) / (width / 2))
        angles = position.reshape(-1, 1) * frequencies
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    grid = torch.cat([code(rows, hidden // 2), code(cols, hidden // 2)], dim=1)
    table = torch.cat([torch.zeros(1, hidden, dtype=torch.float64), grid])  # class token: 0
    with torch.no_grad():
        embeddings.copy_(table.to(embeddings.dtype)[None])


def mimetic_attention(model, seed: int, *, query_key: float = 0.7, value_out: float = 0.4,
                      noise: float = 0.7) -> None:
    """Start every attention layer where trained vision transformers end up ("mimetic"
    initialisation, Trockman & Kolter 2023): the product of the query and key maps near
    ``query_key`` times the identity, so each token first attends to the tokens most like it
    (with the sine-cosine positions: its neighbours), and the product of the value and output
    maps near ``-value_out`` times the identity. Random weights start with attention spread
    evenly over the image; here the first several hundred steps of near-chance accuracy went
    (measured: 0.67 after 2,000 steps against 0.47 without it)."""
    generator = torch.Generator().manual_seed(seed)
    hidden = model.config.hidden_size

    def factors(identity: float) -> tuple[torch.Tensor, torch.Tensor]:
        # Two maps whose product is noise plus a multiple of the identity.
        noisy = noise * torch.randn(hidden, hidden, generator=generator) / math.sqrt(hidden)
        u, s, vh = torch.linalg.svd(noisy + identity * torch.eye(hidden))
        return u * s.sqrt(), vh.T * s.sqrt()

    with torch.no_grad():
        for layer in model.vit.layers:
            attention = layer.attention
            left, right = factors(query_key)  # scores: x q k^T x' = x (left right^T) x'
            attention.q_proj.weight.copy_(left.T)
            attention.k_proj.weight.copy_(right.T)
            left, right = factors(-value_out)  # output: x v o = x (left right^T)
            attention.v_proj.weight.copy_(left.T)
            attention.o_proj.weight.copy_(right)


def fit(
    model,
    images: np.ndarray,
    labels: torch.Tensor,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    warmup_fraction: float,
    seed: int,
    log: Callable[[str], None],
    teacher: torch.nn.Module | None = None,
    distill: float = 0.0,
    temperature: float = 2.0,
    probe: tuple[np.ndarray, np.ndarray] | None = None,
    log_every: int = 500,
) -> list[tuple[int, float, float | None]]:
    """Train ``model`` for ``steps`` batches drawn at random from ``images``; returns the
    (step, mean loss, probe accuracy) logged every ``log_every`` steps.

    Each batch is turned by a multiple of 90 degrees and mirrored at random: the shapes are
    drawn at any angle, so these eight views keep the class and give the transformer, which
    has no convolution's built-in invariances, eight times the images. With a ``teacher`` (the
    bundled CNN) a share ``distill`` of the loss is the divergence from its softened outputs,
    as DeiT trains its students: the CNN's graded answers teach faster than the labels alone.
    """
    generator = torch.Generator().manual_seed(seed)
    pixels = images_to_tensor(images)
    warmup = max(1, int(steps * warmup_fraction))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)

    def rate(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, rate)
    history: list[tuple[int, float, float | None]] = []
    model.train()
    running = 0.0
    for step in range(steps):
        index = torch.randint(len(labels), (batch_size,), generator=generator)
        quarter_turns = int(torch.randint(4, (1,), generator=generator))
        x = torch.rot90(pixels[index], quarter_turns, (2, 3))
        mirrored = torch.rand(batch_size, generator=generator) < 0.5
        x = torch.where(mirrored.view(-1, 1, 1, 1), x.flip(3), x)
        logits = model(pixel_values=x).logits
        loss = F.cross_entropy(logits, labels[index])
        if teacher is not None and distill > 0:
            with torch.no_grad():
                soft = F.log_softmax(teacher(x) / temperature, dim=1)
            divergence = F.kl_div(F.log_softmax(logits / temperature, dim=1), soft,
                                  log_target=True, reduction="batchmean")
            loss = (1 - distill) * loss + distill * temperature**2 * divergence
        optimizer.zero_grad()
        loss.backward()
        # Early attention is near uniform; clipping keeps the first large steps in check.
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        running += loss.item()
        if (step + 1) % log_every == 0 or step + 1 == steps:
            done = (step % log_every) + 1
            accuracy = None
            if probe is not None:
                accuracy = float((predict(model, probe[0]) == probe[1]).mean())
                model.train()
            history.append((step + 1, round(running / done, 4),
                            None if accuracy is None else round(accuracy, 4)))
            log(f"  step {step + 1}/{steps}: mean loss {running / done:.3f}"
                + ("" if accuracy is None else f", probe accuracy {accuracy:.3f}"))
            running = 0.0
    model.eval()
    return history
