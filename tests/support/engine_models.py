"""Small deterministic models shared by the engine tests."""

import torch
import torch.nn.functional as F
from torch import nn


class SmallCNN(nn.Module):
    """ReLU modules (not in place) so Captum's module hooks see every activation."""

    def __init__(self, classes=5, inplace=False):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(inplace=inplace),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(inplace=inplace),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(inplace=inplace),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, classes)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).flatten(1))


class FunctionalCNN(nn.Module):
    """The same network with ReLUs called as functions, one of them in place."""

    def __init__(self, twin: SmallCNN):
        super().__init__()
        f = twin.features
        self.c1, self.c2, self.c3, self.fc = f[0], f[2], f[5], twin.fc

    def forward(self, x):
        x = torch.relu(self.c1(x))
        x = F.relu(self.c2(x), inplace=True)
        x = F.max_pool2d(x, 2)
        x = self.c3(x).relu()
        return self.fc(x.mean((2, 3)))


def small_cnn(seed=0, **kw):
    torch.manual_seed(seed)
    return SmallCNN(**kw).eval()


def images(n=2, size=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=g)


def tiny_vit():
    from torchvision.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    return VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2,
                             hidden_dim=16, mlp_dim=32, num_classes=5).eval()


def tiny_hf_vit(num_labels=5, image_size=16, patch_size=4):
    """A Hugging Face ViT with eager attention (its probabilities can be read)."""
    import transformers

    torch.manual_seed(0)
    config = transformers.ViTConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                    intermediate_size=32, image_size=image_size,
                                    patch_size=patch_size, num_labels=num_labels)
    return transformers.AutoModelForImageClassification.from_config(
        config, attn_implementation="eager").eval()


def tiny_swin():
    from torchvision.models.swin_transformer import SwinTransformer

    torch.manual_seed(0)
    return SwinTransformer(patch_size=[4, 4], embed_dim=16, depths=[1, 1], num_heads=[1, 2],
                           window_size=[2, 2], num_classes=5).eval()


def max_rel_diff(a, b):
    """Largest absolute difference relative to the reference's largest magnitude."""
    a, b = torch.as_tensor(a).detach().double(), torch.as_tensor(b).detach().double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


TINY_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "good", "bad", "movie", "with",
              "ending", "the", "film", "was", "great", "awful", "and", "plot"]


def make_tiny_text_model(folder):
    """A 2-layer BERT classifier and its WordPiece tokenizer, written to ``folder``."""
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        BertTokenizerFast,
    )

    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(TINY_VOCAB)})
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(TINY_VOCAB), hidden_size=16, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=32, num_labels=2,
                        max_position_embeddings=64)
    return BertForSequenceClassification(config).eval(), tokenizer

