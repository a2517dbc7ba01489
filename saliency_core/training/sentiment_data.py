"""Hand-written English review sentences for the bundled sentiment head.

Training sentences are built from templates (subjects x verdicts, and first-person reactions);
the held-out sentences are written separately with other words and structures, so their
accuracy says whether the head learned sentiment rather than the templates' phrases.
Labels: 0 = negative, 1 = positive.
"""

from __future__ import annotations

LABELS = ["negative", "positive"]

SUBJECTS = [
    "The movie", "This film", "The plot", "The acting", "The soundtrack", "The ending",
    "This book", "The restaurant", "The food", "The service", "This phone", "The battery",
    "The hotel room", "The staff", "This game", "The show", "The album", "The product",
    "The delivery", "The app",
]  # fmt: skip

POSITIVE_VERDICTS = [
    "was wonderful", "was fantastic", "is excellent", "was a delight",
    "exceeded my expectations", "was really good", "is amazing", "was beautifully done",
    "made me smile", "is worth every penny", "was superb", "was great fun",
    "is highly recommended", "felt fresh and exciting", "was brilliant", "works perfectly",
    "left me impressed", "was pleasant", "is the best I have tried", "was lovely",
    "was not bad at all", "did not disappoint", "never let me down",
]  # fmt: skip

NEGATIVE_VERDICTS = [
    "was terrible", "was awful", "is a waste of money", "was boring", "disappointed me",
    "was really bad", "is broken", "was poorly made", "made me angry",
    "felt dull and lifeless", "was a mess", "is the worst I have tried", "was painfully slow",
    "left me frustrated", "was horrible", "stopped working", "was not worth it",
    "was unpleasant", "is overpriced junk", "was a total letdown", "was not good",
    "did not work", "was not enjoyable at all",
]  # fmt: skip

OBJECTS = [
    "this movie", "the book", "this restaurant", "the hotel", "this phone", "the service",
    "this album", "the game", "this product", "the show",
]  # fmt: skip

POSITIVE_REACTIONS = [
    "I loved {}.", "I really enjoyed {}.", "I would happily recommend {}.",
    "I am so glad I tried {}.", "I adore {}.", "Everyone should experience {}.",
]  # fmt: skip

NEGATIVE_REACTIONS = [
    "I hated {}.", "I regret paying for {}.", "I would never recommend {}.",
    "I could not stand {}.", "I want my money back for {}.", "Nobody should waste time on {}.",
]  # fmt: skip

# Written apart from the templates: other vocabulary, longer and plainer review sentences.
HELD_OUT = [
    ("An absolute joy from start to finish.", 1),
    ("The chef clearly knows what she is doing; every dish was delicious.", 1),
    ("I laughed the whole way through and left the cinema grinning.", 1),
    ("Setup took two minutes and it has run flawlessly ever since.", 1),
    ("A touching story with characters you will care about.", 1),
    ("Our waiter was friendly and the desserts were heavenly.", 1),
    ("Crisp screen, fast charging and a camera that takes gorgeous photos.", 1),
    ("One of the finest novels I have read in years.", 1),
    ("The performances are moving and the direction is confident.", 1),
    ("Comfortable bed, spotless bathroom and a stunning view.", 1),
    ("Great value for the price, I will definitely buy again.", 1),
    ("The songs are catchy and the production sounds rich.", 1),
    ("A clever, funny and heartfelt series.", 1),
    ("Customer support solved my problem quickly and politely.", 1),
    ("It arrived early and was packed with care.", 1),
    ("Gripping, smart and beautifully shot.", 1),
    ("The kids adored it and so did we.", 1),
    ("Every level is inventive and a pleasure to play.", 1),
    ("Solid build quality and it feels premium in the hand.", 1),
    ("A charming little cafe with the best coffee in town.", 1),
    ("The lecture was inspiring and easy to follow.", 1),
    ("I was pleasantly surprised by how good it was.", 1),
    ("Five stars, would stay here again.", 1),
    ("This is a masterpiece of modern cinema.", 1),
    ("Fresh ingredients, generous portions and fair prices.", 1),
    ("The update made everything faster and smoother.", 1),
    ("A warm, uplifting film that stayed with me for days.", 1),
    ("Highly enjoyable and well worth the wait.", 1),
    ("The guide was knowledgeable and the tour was fascinating.", 1),
    ("My new headphones sound incredible.", 1),
    ("The movie dragged on forever and I nearly fell asleep.", 0),
    ("The soup was cold and the bread was stale.", 0),
    ("It broke after a week and the company ignored my emails.", 0),
    ("The characters are flat and the dialogue is clumsy.", 0),
    ("We waited an hour for a table and the waiter was rude.", 0),
    ("The screen cracked on the first day.", 0),
    ("A tedious, predictable story with no surprises.", 0),
    ("The room smelled of smoke and the sheets were dirty.", 0),
    ("Cheap plastic that feels flimsy and creaks.", 0),
    ("The jokes fall flat and the pacing is sluggish.", 0),
    ("Support kept me on hold and never fixed anything.", 0),
    ("The package arrived damaged and half the parts were missing.", 0),
    ("A confusing mess of a plot.", 0),
    ("The app crashes every time I open it.", 0),
    ("Overcooked pasta and a bland sauce.", 0),
    ("I want those two hours of my life back.", 0),
    ("The sequel is a pale copy of the original.", 0),
    ("The controls are clunky and the levels are repetitive.", 0),
    ("Far too expensive for what you get.", 0),
    ("The battery dies before lunch.", 0),
    ("Noisy neighbours, thin walls and a broken heater.", 0),
    ("The lecture was dull and hard to follow.", 0),
    ("One star, avoid this place.", 0),
    ("The singer is off key on almost every track.", 0),
    ("The instructions were useless and assembly was a nightmare.", 0),
    ("I was bitterly disappointed by the ending.", 0),
    ("The staff were unhelpful and seemed annoyed by our questions.", 0),
    ("My order was wrong and the refund took weeks.", 0),
    ("It looks nothing like the pictures.", 0),
    ("The acting is wooden and the effects look cheap.", 0),
]


def training_sentences() -> list[tuple[str, int]]:
    """Every template combination, labelled; deterministic order."""
    sentences: list[tuple[str, int]] = []
    for subject in SUBJECTS:
        sentences += [(f"{subject} {verdict}.", 1) for verdict in POSITIVE_VERDICTS]
        sentences += [(f"{subject} {verdict}.", 0) for verdict in NEGATIVE_VERDICTS]
    for obj in OBJECTS:
        sentences += [(template.format(obj), 1) for template in POSITIVE_REACTIONS]
        sentences += [(template.format(obj), 0) for template in NEGATIVE_REACTIONS]
    return sentences


def held_out_sentences() -> list[tuple[str, int]]:
    return list(HELD_OUT)
