"""Generated word-level text with planted dependencies, for a language model whose right answer
is known (what the shapes images are for the image models).

Every example is one short sequence of one of three kinds, and for each the token that decides
the word explained is known by construction:

- ``copy``: a name introduced early is repeated later
  (``alice went to the market . later , alice``): the second name is decided by the first;
- ``agreement``: the subject's number decides the verb across a distractor noun of random
  number (``the keys to the cabinet are``): ``are`` is decided by ``keys``, not ``cabinet``;
- ``brackets``: a closing bracket matches the outer opening one after a closed inner pair of
  another type (``( a b [ c ] d )``): ``)`` is decided by ``(``.

Apart from the planted source, every word of an example is drawn independently, so nothing
else in the prompt carries the information. Example ``i`` depends only on ``(seed, i)``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

NAMES = [
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
    "mallory", "nina", "oscar", "peggy", "quinn", "rupert", "sybil", "trent", "ursula",
    "victor", "wendy", "xavier", "yvonne", "zack",
]  # fmt: skip
PLACES = ["market", "park", "school", "library", "station", "harbour", "museum", "garden",
          "bakery", "castle"]  # fmt: skip
ITEMS = ["apple", "book", "lamp", "coat", "kite", "map", "cake", "hat", "key", "drum"]
ANIMALS = ["dog", "cat", "horse", "goat", "owl", "fox"]
# (singular, plural) nouns for agreement; subjects and distractors come from the same list.
NOUNS = [
    ("key", "keys"), ("box", "boxes"), ("door", "doors"), ("bird", "birds"),
    ("letter", "letters"), ("chair", "chairs"), ("cup", "cups"), ("window", "windows"),
    ("bottle", "bottles"), ("picture", "pictures"), ("table", "tables"), ("river", "rivers"),
]  # fmt: skip
PREPOSITIONS = ["to", "near", "behind", "on", "under", "beside"]
ADJECTIVES = ["old", "red", "small", "heavy", "broken", "new"]
VERBS = {False: "is", True: "are"}
LETTERS = list("abcdefgh")
BRACKETS = {"(": ")", "[": "]", "{": "}", "<": ">"}

COPY_TEMPLATES = [
    "{name} went to the {place} . later , {name} bought a {item} .",
    "at the {place} , {name} found a {item} . then {name} went home .",
    "{name} and the {animal} walked to the {place} . there {name} sat down .",
]

KINDS = ("copy", "agreement", "brackets")
MAX_POSITIONS = 64
SPECIAL_TOKENS = ["<pad>", "<unk>", "<eos>", "<bos>"]
# The special tokens by role (a tokenizer.json alone does not say which is which).
SPECIAL_ROLES = {
    "unk_token": "<unk>",  # nosec B105 - a token's text
    "pad_token": "<pad>",  # nosec B105 - a token's text
    "eos_token": "<eos>",  # nosec B105 - a token's text
    "bos_token": "<bos>",  # nosec B105 - a token's text
}


@dataclass(frozen=True)
class Example:
    """One sequence and, where its planted dependency is, what a test prompt explains.

    ``tokens[:target_position]`` is the prompt, ``tokens[target_position]`` the word explained,
    ``tokens[source_position]`` the word that decides it. ``candidates`` are the positions of the
    words that could have decided it (the planted source first, then the distractors: the other
    noun for agreement, the inner opening bracket for brackets, the other content words for
    copy), and ``contrast`` the planted alternative: the answer the distractor would have given
    (agreement, brackets), or another name (copy).
    """

    kind: str
    tokens: tuple[str, ...]
    target_position: int
    source_position: int
    candidates: tuple[int, ...]
    contrast: str | None

    @property
    def prompt(self) -> str:
        return " ".join(self.tokens[: self.target_position])

    @property
    def target(self) -> str:
        return self.tokens[self.target_position]

    @property
    def text(self) -> str:
        return " ".join(self.tokens)


def _copy(rng: random.Random) -> Example:
    template = rng.choice(COPY_TEMPLATES)
    words = {"name": rng.choice(NAMES), "place": rng.choice(PLACES),
             "item": rng.choice(ITEMS), "animal": rng.choice(ANIMALS)}  # fmt: skip
    slots = template.split()
    tokens = tuple(words[s[1:-1]] if s.startswith("{") else s for s in slots)
    name_slots = [i for i, s in enumerate(slots) if s == "{name}"]
    content = [
        i for i, s in enumerate(slots) if s.startswith("{") and i < name_slots[1]
    ]
    candidates = (name_slots[0], *[i for i in content if i != name_slots[0]])
    # The alternative answer: another name, which only the copied one rules out. Drawn after
    # the sentence, so the text is the same as without it.
    other = rng.choice([n for n in NAMES if n != words["name"]])
    return Example("copy", tokens, name_slots[1], name_slots[0], candidates, other)


def _agreement(rng: random.Random) -> Example:
    subject_plural, distractor_plural = rng.random() < 0.5, rng.random() < 0.5
    subject, distractor = rng.sample(NOUNS, 2)
    tokens = ["the", subject[subject_plural], rng.choice(PREPOSITIONS), "the"]
    if rng.random() < 0.5:
        tokens.append(rng.choice(ADJECTIVES))
    distractor_position = len(tokens)
    tokens += [distractor[distractor_plural], VERBS[subject_plural],
               rng.choice(ADJECTIVES), "."]  # fmt: skip
    return Example("agreement", tuple(tokens), distractor_position + 1, 1,
                   (1, distractor_position), VERBS[not subject_plural])  # fmt: skip


def _brackets(rng: random.Random) -> Example:
    outer, inner = rng.sample(list(BRACKETS), 2)
    tokens = [outer, *rng.choices(LETTERS, k=rng.randint(1, 3))]
    inner_position = len(tokens)
    tokens += [inner, *rng.choices(LETTERS, k=rng.randint(1, 2)), BRACKETS[inner]]
    # Exactly one letter after the inner pair: the closing bracket's position is certain, so
    # the only open question at the target is its type.
    tokens += [rng.choice(LETTERS)]
    target = len(tokens)
    tokens += [BRACKETS[outer], "."]
    return Example("brackets", tuple(tokens), target, 0, (0, inner_position),
                   BRACKETS[inner])  # fmt: skip


GENERATORS = {"copy": _copy, "agreement": _agreement, "brackets": _brackets}


def example(seed: int, index: int, kind: str | None = None) -> Example:
    """Example ``index`` of the stream ``seed`` (its kind cycles, unless ``kind`` is given)."""
    rng = random.Random(seed * 1_000_003 + index)  # nosec B311 - seeded training text
    return GENERATORS[kind or KINDS[index % len(KINDS)]](rng)


def generate(n: int, seed: int, kind: str | None = None) -> list[Example]:
    """``n`` examples, the three kinds in turn unless ``kind`` picks one."""
    return [example(seed, i, kind) for i in range(n)]


def vocabulary() -> list[str]:
    """Every word the generator can write, special tokens first; ids follow this order."""
    words = [*NAMES, *PLACES, *ITEMS, *ANIMALS, *PREPOSITIONS, *ADJECTIVES, *VERBS.values(),
             *LETTERS, *BRACKETS, *BRACKETS.values()]  # fmt: skip
    words += [word for pair in NOUNS for word in pair]
    for template in COPY_TEMPLATES:
        words += [s for s in template.split() if not s.startswith("{")]
    words += ["the", "."]
    seen: dict[str, None] = dict.fromkeys(SPECIAL_TOKENS)
    seen.update(dict.fromkeys(words))
    return list(seen)


def build_tokenizer():
    """A word-level Hugging Face fast tokenizer over ``vocabulary()``.

    Lower-cases, splits on white space and isolates punctuation, so ``"Alice went home."``
    reads as the corpus does; an unknown word becomes ``<unk>``. Like Llama's, it starts every
    text with ``<bos>`` (a special token, which attribution shows greyed and leaves out of
    the scale): the model's attention can rest there instead of on the first word, whose
    attribution would otherwise stand for "the sentence exists". ``<eos>`` ends every
    training sequence.
    """
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
    )
    from transformers import PreTrainedTokenizerFast

    vocab = {word: i for i, word in enumerate(vocabulary())}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))  # nosec B106 - a token's text
    core.normalizer = normalizers.Sequence(
        [normalizers.NFKC(), normalizers.Lowercase()]
    )
    core.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation("isolated")]
    )
    core.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    core.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", vocab["<bos>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=core, model_max_length=MAX_POSITIONS, **SPECIAL_ROLES
    )
