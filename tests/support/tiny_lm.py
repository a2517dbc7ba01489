"""Tiny causal language models of several architectures, built offline from configurations
with seeded random weights, and a tiny GPT-2 checkpoint written as a hub repository would
hold it (config, safetensors, tokenizer files)."""

from __future__ import annotations

from pathlib import Path

import torch

from saliency_core.text.generation import tiny_language_model, tiny_tokenizer

CHAT_TEMPLATE = ("{% for m in messages %}<|endoftext|>{{ m['role'] }}\n{{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<|endoftext|>assistant\n{% endif %}")


def _common(tokenizer) -> dict:
    eos = tokenizer.eos_token_id
    return {"vocab_size": len(tokenizer), "bos_token_id": eos, "eos_token_id": eos,
            "pad_token_id": None, "attn_implementation": "eager"}


def build(architecture: str, seed: int = 0):
    """(model, tokenizer) for "gpt2", "llama", "qwen2", "gemma", "gpt_neox" or "opt"."""
    import transformers as tf

    tokenizer = tiny_tokenizer()
    if architecture == "gpt2":
        return tiny_language_model(seed, tokenizer=tokenizer)
    common = _common(tokenizer)
    small = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
             "intermediate_size": 64, "max_position_embeddings": 128}
    configs = {
        "llama": lambda: tf.LlamaForCausalLM(tf.LlamaConfig(**small, num_key_value_heads=2, **common)),
        "qwen2": lambda: tf.Qwen2ForCausalLM(tf.Qwen2Config(**small, num_key_value_heads=1, **common)),
        "gemma": lambda: tf.GemmaForCausalLM(tf.GemmaConfig(**small, num_key_value_heads=1, head_dim=16,
                                                            **common)),
        "gpt_neox": lambda: tf.GPTNeoXForCausalLM(tf.GPTNeoXConfig(**small, **common)),
        "opt": lambda: tf.OPTForCausalLM(tf.OPTConfig(hidden_size=32, num_hidden_layers=2,
                                                      num_attention_heads=2, ffn_dim=64,
                                                      max_position_embeddings=128,
                                                      word_embed_proj_dim=32, **common)),
    }
    torch.manual_seed(seed)
    model = configs[architecture]()
    return model.eval(), tokenizer


def save_tiny_gpt2(folder: Path, seed: int = 0):
    """A tiny GPT-2 and its tokenizer written with save_pretrained (safetensors)."""
    model, tokenizer = tiny_language_model(seed)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model, tokenizer
