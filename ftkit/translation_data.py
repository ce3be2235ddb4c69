"""An English-to-French translation set that ftkit builds offline: numbers, dates and times.

No parallel corpus ships in an installed package, so the translation task falls back to this set when
there is no network. It is real language, but narrow: every phrase is written by a maintained
localisation library, not by ftkit's own templates.

* numbers, by ``num2words`` (0 to 999,999): "three hundred and twenty-one" -> "trois cent vingt et un";
* dates, by Babel's CLDR formats (1900 to 2099): "Saturday, May 9, 1998" -> "samedi 9 mai 1998";
* times of day, by Babel's CLDR patterns: "3:45 PM" -> "15 h 45" (English's 12-hour clock, French's 24-hour
  clock with its "h").

Held out: the values are drawn without repeats and split, seeded, 80/10/10 by value, so no validation or
test phrase occurs in training; the set checks this (``check_held_out``). What a model must learn is the
phrases' grammar (French number words, gender-free month names, the 24-hour clock), not a lookup table.

French has accents ("février", "août", "décembre"). An uncased BERT-style vocabulary, such as MiniLM's,
strips them; the seq2seq task compares its output with the references in the tokenizer's own normal form,
and says so (ftkit.tasks.seq2seq).
"""
import datetime as dt

import numpy as np

from .data import Split
from .errors import ConfigError, DataError

KINDS = ("number", "date", "time")
LOCALES = ("fr", "de")
FRACTIONS = (0.8, 0.1, 0.1)


def phrase(kind, value, locale):
    """``value`` (an int, a ``datetime.date`` or a ``datetime.time``) written in ``locale``'s words."""
    if kind == "number":
        from num2words import num2words
        return num2words(int(value), lang=locale)
    from babel.dates import format_date, format_time
    if kind == "date":
        return format_date(value, "full", locale=locale)
    if kind == "time":   # CLDR's own short pattern for English; French and German write "15 h 45" and "15:45 Uhr"
        return format_time(value, {"en": "h:mm a", "fr": "H 'h' mm", "de": "H:mm 'Uhr'"}[locale], locale=locale)
    raise ConfigError(f"kind={kind!r} is not one of {list(KINDS)}")


def _values(kind, n, rng):
    """``n`` distinct values of ``kind``, drawn with ``rng``."""
    if kind == "number":   # small numbers are the building blocks: every number below 100 is in the pool
        pool = np.unique(np.concatenate([np.arange(100), np.round(10 ** rng.uniform(2, 6, 4 * n)).astype(np.int64)]))
        return [int(v) for v in rng.permutation(pool)[:n]]
    if kind == "date":
        first, days = dt.date(1900, 1, 1).toordinal(), (dt.date(2099, 12, 31) - dt.date(1900, 1, 1)).days + 1
        return [dt.date.fromordinal(first + int(d)) for d in rng.choice(days, n, replace=False)]
    minutes = rng.choice(24 * 60, min(n, 24 * 60), replace=False)
    return [dt.time(int(m) // 60, int(m) % 60) for m in minutes]


def phrase_pairs(n_per_kind=1000, *, target="fr", seed=0, kinds=KINDS):
    """Seeded ``{"train", "val", "test"}`` splits of (English phrase, its ``target`` translation) pairs, with
    ``n_per_kind`` distinct values of each kind (times: at most the 1,440 minutes of a day), split 80/10/10 by
    value; each Split's ``x`` and ``y`` are lists of strings. Also returns each split's kinds."""
    if target not in LOCALES:
        raise ConfigError(f"target={target!r} is not one of {list(LOCALES)}")
    if not isinstance(n_per_kind, (int, np.integer)) or n_per_kind < 10:
        raise ConfigError(f"n_per_kind={n_per_kind!r}: give an int of at least 10 (each split needs examples)")
    for k in kinds:
        if k not in KINDS:
            raise ConfigError(f"kinds: {k!r} is not one of {list(KINDS)}")
    rng = np.random.default_rng(seed)
    rows = {"train": [], "val": [], "test": []}
    for kind in kinds:
        values = _values(kind, int(n_per_kind), rng)
        cut1 = int(len(values) * FRACTIONS[0])
        cut2 = cut1 + int(len(values) * FRACTIONS[1])
        for which, part in (("train", values[:cut1]), ("val", values[cut1:cut2]), ("test", values[cut2:])):
            rows[which] += [(phrase(kind, v, "en"), phrase(kind, v, target), kind) for v in part]
    splits, kinds_of = {}, {}
    for which, r in rows.items():
        order = rng.permutation(len(r))
        splits[which] = Split([r[i][0] for i in order], [r[i][1] for i in order])
        kinds_of[which] = [r[i][2] for i in order]
    check_held_out(splits)
    return splits, kinds_of


def check_held_out(splits):
    """Refuse splits where a validation or test source phrase also occurs in training."""
    seen = set(splits["train"].x)
    for which in ("val", "test"):
        both = [s for s in splits[which].x if s in seen]
        if both:
            raise DataError(f"{which} phrase {both[0]!r} also occurs in train ({len(both)} such phrases); held-out "
                            "phrases must be new")
