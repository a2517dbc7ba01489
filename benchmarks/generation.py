"""Next-token attribution of a causal language model: ``attribute_generation`` against
Captum's LLMGradientAttribution (one attribution call per generated token) and against the
floor, timed alone.

The work: gradient x input and Integrated Gradients (32 steps by default) for G generated
tokens after a 64-token prompt, teacher-forced, on a GPT-2 with seeded random weights built
from a configuration (distilgpt2's size by default: 6 layers, 768 wide, 50257 tokens; no
download). The floor for G tokens is one forward pass per point of the method (shared by all
G tokens: IG's path is the same for every target) plus one backward pass per token and
point; it is timed as exactly that: one batched forward of the points, then G backward
passes on the kept graph, with nothing else. Captum repeats the forward for every token.

    python -m benchmarks.generation --quick      # a 2-layer, 256-wide model, G = 16 (CPU)
    python -m benchmarks.generation --device cuda

inseq is measured when it can be imported. It is not a dependency of the project: ``make
bench-generation-inseq`` installs it and its own dependencies into ``.bench-inseq/`` (pinned in
``benchmarks/requirements-inseq.txt``, beside the project's packages, no other torch) and runs
this benchmark with it on the path.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from functools import partial

import torch

from benchmarks.measure import interleaved, median
from saliency_core.text.generation import attribute_generation, tiny_tokenizer

CAPTUM_NOTE = ("Captum's LLMGradientAttribution runs one attribution call per generated token "
               "(a forward and a backward per token and point)")


@dataclass(frozen=True)
class Setup:
    layers: int
    width: int
    heads: int
    vocab: int
    prompt: int
    tokens: tuple[int, ...]
    steps: int


FULL = Setup(layers=6, width=768, heads=12, vocab=50257, prompt=64, tokens=(16, 64), steps=32)
QUICK = Setup(layers=2, width=256, heads=4, vocab=50257, prompt=64, tokens=(16,), steps=32)


def build(setup: Setup, device: torch.device):
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = tiny_tokenizer()
    torch.manual_seed(0)
    eager = {"attn_implementation": "eager"}
    config = GPT2Config(vocab_size=setup.vocab, n_positions=256, n_embd=setup.width,
                        n_layer=setup.layers, n_head=setup.heads, bos_token_id=tokenizer.eos_token_id,
                        eos_token_id=tokenizer.eos_token_id, **eager)
    return GPT2LMHeadModel(config).to(device).eval(), tokenizer


def texts(tokenizer, prompt_tokens: int, generated: int) -> tuple[str, str]:
    """A prompt of exactly ``prompt_tokens`` tokens and a continuation of ``generated``."""
    sentence = " the cat sat on the mat . the dog sat on the rug . a bird sang in the tree ."
    ids = tokenizer("the" + sentence * 40, add_special_tokens=False)["input_ids"]
    prompt = tokenizer.decode(ids[:prompt_tokens])
    continuation = tokenizer.decode(ids[prompt_tokens:prompt_tokens + generated])
    assert len(tokenizer(prompt)["input_ids"]) == prompt_tokens
    assert len(tokenizer(continuation, add_special_tokens=False)["input_ids"]) == generated
    return prompt, continuation


def floor(model, tokenizer, prompt: str, continuation: str, steps: int | None) -> torch.Tensor:
    """One forward of every point, then one backward per generated token, nothing else."""
    device = next(model.parameters()).device
    ids = tokenizer(prompt + continuation, return_tensors="pt")["input_ids"].to(device)
    plen = len(tokenizer(prompt)["input_ids"])
    g = ids.shape[1] - plen
    with torch.no_grad():
        x = model.get_input_embeddings()(ids)
    if steps is None:
        points = x
    else:
        alphas = torch.linspace(0, 1, steps, device=device).view(-1, 1, 1)
        base = x.clone()
        with torch.no_grad():
            base[:, :plen] = model.get_input_embeddings()(torch.full_like(ids[:, :plen],
                                                                          tokenizer.eos_token_id))
        points = base + alphas * (x - base)
    points = points.detach().requires_grad_(True)
    logits = model(inputs_embeds=points, logits_to_keep=g + 1).logits[:, :g]
    scores = torch.log_softmax(logits, -1).gather(2, ids[0, plen:].view(1, -1, 1).expand(
        points.shape[0], -1, 1))[..., 0]
    grads = [torch.autograd.grad(scores[:, k].sum(), points, retain_graph=True)[0].sum(0)
             for k in range(g)]
    return torch.stack(grads)


def captum(model, tokenizer, prompt: str, target_ids: list[int], steps: int | None):
    from captum.attr import (
        LayerGradientXActivation,
        LayerIntegratedGradients,
        LLMGradientAttribution,
        TextTokenInput,
    )

    layer = model.get_input_embeddings()
    inp = TextTokenInput(prompt, tokenizer)
    target = torch.tensor(target_ids)
    if steps is None:
        attr = LLMGradientAttribution(LayerGradientXActivation(model, layer), tokenizer)
        return attr.attribute(inp, target=target).token_attr
    ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
    attr = LLMGradientAttribution(LayerIntegratedGradients(model, layer), tokenizer)
    return attr.attribute(inp, target=target, n_steps=steps,
                          baselines=torch.full_like(ids, tokenizer.eos_token_id)).token_attr


def inseq_attribution(model, tokenizer, prompt: str, continuation: str, steps: int | None):
    """inseq's attribution of the same continuation: like Captum it attributes one generated
    token at a time (a forward and a backward per token and point). Returns [G, S + G], the
    per-dimension scores summed over the embedding (the matrix ours gives)."""
    import inseq

    method = "input_x_gradient" if steps is None else "integrated_gradients"
    wrapped = inseq.load_model(model, method, tokenizer=tokenizer)
    extra = {} if steps is None else {"n_steps": steps, "internal_batch_size": steps}
    # inseq has no log-probability score (its cross-entropy fails on this input): it explains
    # the logit, at the same cost; the agreement is checked against ours' logit target.
    out = wrapped.attribute(input_texts=prompt, generated_texts=prompt + continuation,
                            show_progress=False, step_scores=[], attributed_fn="logit",
                            **extra)
    return out.sequence_attributions[0].target_attributions.sum(-1).T


def relative_gap(mine, theirs: torch.Tensor) -> float:
    """The largest difference between our prompt columns and a contender's, relative to the
    contender's largest entry."""
    theirs = theirs.cpu()
    return float((torch.as_tensor(mine) - theirs).abs().max()
                 / theirs.abs().max().clamp_min(1e-12))


def has_inseq() -> bool:
    try:
        import inseq  # noqa: F401
    except ImportError:
        return False
    return True


def run(setup: Setup, device: torch.device, reps: int) -> list[dict]:
    model, tokenizer = build(setup, device)
    rows = []
    for generated in setup.tokens:
        prompt, continuation = texts(tokenizer, setup.prompt, generated)
        for method, steps in (("gradient_x_input", None), ("integrated_gradients", setup.steps)):
            params = {} if steps is None else {"steps": steps, "baseline": "pad",
                                               "quadrature": "gauss_legendre"}
            target_ids = tokenizer(continuation, add_special_tokens=False)["input_ids"]
            contenders = {
                "ours": partial(attribute_generation, model, tokenizer, prompt, method,
                                continuation=continuation, **params),
                "floor": partial(floor, model, tokenizer, prompt, continuation, steps),
                "captum": partial(captum, model, tokenizer, prompt, target_ids, steps),
            }
            if has_inseq():
                contenders["inseq"] = partial(inseq_attribution, model, tokenizer, prompt,
                                              continuation, steps)
            result = interleaved(contenders, device, reps)
            ga = result["ours"]["output"]
            ref = result["captum"]["output"]
            agree = None
            if ga is not None and ref is not None:
                agree = relative_gap(ga.matrix[:, :ga.prompt_length], ref)
            # inseq's IG starts from its own baseline (zeros), so only gradient x input is
            # compared number for number.
            agree_inseq = None
            theirs = result.get("inseq", {}).get("output")
            if ga is not None and theirs is not None and steps is None:
                plen = ga.prompt_length
                logit = attribute_generation(model, tokenizer, prompt, method,
                                             continuation=continuation, target="logit")
                agree_inseq = relative_gap(logit.matrix[:, :plen], theirs[:, :plen])
            row = {"method": method if steps is None else f"{method}({steps})", "G": generated,
                   "agreement": agree, "agreement_inseq": agree_inseq}
            for name in contenders:
                row[f"{name}_s"] = median(result[name]["times"])
                row[f"{name}_mb"] = median([p / 2**20 for p in result[name]["peaks"] if p is not None])
                row[f"{name}_error"] = result[name]["error"]
            row["chunk_size"] = ga.metadata["chunk_size"] if ga is not None else None
            rows.append(row)
            print(table([row], header=not rows[:-1]), flush=True)
    return rows


def _fmt(value, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def table(rows: list[dict], header: bool = True) -> str:
    with_inseq = any("inseq_s" in r for r in rows)
    lines = []
    if header:
        extra = " inseq s | ours / inseq | max rel. diff vs inseq |" if with_inseq else ""
        lines += [("| method | G | ours s | floor s | Captum s | ours / floor | ours / Captum | "
                   "peak MB ours / floor / Captum | max rel. diff vs Captum |" + extra),
                  "|---" * (9 + 3 * with_inseq) + "|"]
    for r in rows:
        ratio_floor = r["ours_s"] / r["floor_s"] if r["ours_s"] and r["floor_s"] else None
        ratio_captum = r["ours_s"] / r["captum_s"] if r["ours_s"] and r["captum_s"] else None
        peaks = " / ".join(_fmt(r[f"{n}_mb"], 0) for n in ("ours", "floor", "captum"))
        line = (f"| {r['method']} | {r['G']} | {_fmt(r['ours_s'])} | {_fmt(r['floor_s'])} | "
                f"{_fmt(r['captum_s'])} | {_fmt(ratio_floor)} | {_fmt(ratio_captum)} | {peaks} | "
                f"{_sci(r['agreement'])} |")
        if with_inseq:
            theirs = r.get("inseq_s")
            ratio = r["ours_s"] / theirs if r["ours_s"] and theirs else None
            line += f" {_fmt(theirs)} | {_fmt(ratio)} | {_sci(r.get('agreement_inseq'))} |"
        lines.append(line)
    return "\n".join(lines)


def _sci(value) -> str:
    return "n/a" if value is None else f"{value:.1e}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a 2-layer model and G = 16 only")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--reps", type=int, default=1, help="timed rounds after the warm-up")
    parser.add_argument("--tokens", type=int, nargs="*", help="generated token counts")
    parser.add_argument("--steps", type=int, default=None, help="IG steps (default 32)")
    args = parser.parse_args(argv)
    setup = QUICK if args.quick else FULL
    if args.tokens:
        setup = Setup(**{**setup.__dict__, "tokens": tuple(args.tokens)})
    if args.steps:
        setup = Setup(**{**setup.__dict__, "steps": args.steps})
    device = torch.device(args.device)
    print(f"# generation benchmark on {device} ({torch.get_num_threads()} threads): GPT-2 "
          f"{setup.layers} layers x {setup.width}, vocab {setup.vocab}, prompt {setup.prompt} "
          f"tokens; {CAPTUM_NOTE}", flush=True)
    rows = run(setup, device, args.reps)
    print()
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
