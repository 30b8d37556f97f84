"""A phrasing drift: the same intent, written the way a new customer segment writes.

A promotion in a new market brings customers who type fast and mix languages: typos, chat
abbreviations (pls, u, thx, wanna), slang and Spanish words. The intent does not change, the
words do, so a model's confidence on the intent falls while its label stays right; that is
the drift the edge nodes must detect and adapt to.
"""

from __future__ import annotations

import random
import re

from scenarios.typos import add_typos

# (pattern, replacements, how likely one occurrence is replaced at full strength).
# Longer phrases first, so "my order" becomes "mi pedido" before "order" is looked at.
_RULES: tuple[tuple[re.Pattern[str], tuple[str, ...], float], ...] = tuple(
    (re.compile(rf"\b{pattern}\b", re.IGNORECASE), replacements, rate)
    for pattern, replacements, rate in (
        ("as soon as possible", ("asap",), 0.9),
        ("thank you", ("gracias", "ty", "thx"), 0.9),
        ("my order", ("mi pedido", "my ordr"), 0.8),
        ("where is", ("wheres", "donde esta"), 0.7),
        ("want to", ("wanna",), 0.9),
        ("going to", ("gonna",), 0.9),
        ("have to", ("gotta",), 0.7),
        ("right now", ("rn", "ahora"), 0.8),
        ("I don't know", ("idk",), 0.9),
        ("good morning", ("buenos dias", "gm"), 0.8),
        ("how do I", ("how do i", "hw do i", "como"), 0.7),
        ("can I", ("cn i", "can i", "puedo"), 0.6),
        ("I want", ("i wanna", "quiero"), 0.7),
        ("I need", ("i need", "necesito", "i ned"), 0.6),
        ("are you", ("r u",), 0.9),
        ("is not", ("isnt", "no es"), 0.7),
        ("I'm", ("im", "i am"), 0.7),
        ("don't", ("dont", "dnt"), 0.8),
        ("can't", ("cant", "cnt"), 0.8),
        ("it's", ("its",), 0.7),
        ("thanks", ("thx", "gracias", "thnx"), 0.9),
        ("please", ("pls", "plz", "por favor"), 0.9),
        ("because", ("cuz", "bc"), 0.9),
        ("your", ("ur",), 0.8),
        ("you", ("u",), 0.8),
        ("are", ("r",), 0.5),
        ("hello", ("hola", "yo"), 0.8),
        ("hi", ("hola", "hey"), 0.8),
        ("today", ("2day", "hoy"), 0.7),
        ("tomorrow", ("tmrw", "manana"), 0.7),
        ("package", ("pkg", "paquete"), 0.6),
        ("money", ("cash", "dinero"), 0.6),
        ("refund", ("reembolso", "refnd"), 0.6),
        ("order", ("pedido", "ordr"), 0.6),
        ("account", ("acct", "cuenta"), 0.6),
        ("password", ("pw", "contrasena"), 0.6),
        ("card", ("tarjeta", "crd"), 0.4),
        ("address", ("addy", "direccion"), 0.6),
        ("delivery", ("delivry", "entrega"), 0.5),
        ("sorry", ("sry", "perdon"), 0.8),
        ("still", ("todavia", "stil"), 0.5),
        ("where", ("donde", "wer"), 0.5),
        ("when", ("cuando", "wen"), 0.5),
        ("help", ("ayuda", "halp"), 0.6),
        ("my", ("mi", "my"), 0.3),
        ("hey", ("oye", "heyy"), 0.6),
        ("message", ("msg",), 0.8),
        ("something", ("smth",), 0.8),
        ("what", ("wat", "wut"), 0.5),
        ("why", ("y", "whyyy"), 0.5),
        ("really", ("rly", "super"), 0.7),
        ("with", ("w/", "con"), 0.5),
        ("for", ("4",), 0.3),
        ("broken", ("busted", "roto"), 0.6),
        ("now", ("ya", "rn"), 0.4),
        ("okay", ("ok", "k"), 0.8),
    )
)
_OPENERS = ("hola", "hola,", "buenas,", "oye", "yo", "hey hey", "ola")
_CLOSERS = ("gracias", "por favor", "porfa", "pls help", "asap", "thx", "gracias!!", "lol", "smh")
_TYPO_RATE = 0.15


def shift_phrasing(text: str, rng: random.Random, strength: float = 1.0) -> str:
    """Rewrite ``text`` in drifted chat style; ``strength`` in [0, 1] scales how much.

    Strength 0 returns the text unchanged; strength 1 always changes it.

    >>> shift_phrasing("Where is my order? Thank you", random.Random(0), 0.0)
    'Where is my order? Thank you'
    >>> shift_phrasing("Where is my order? Thank you", random.Random(0)) != "Where is my order?"
    True
    """
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be in [0, 1], got {strength}")
    if strength == 0.0:
        return text
    out = text
    for pattern, replacements, rate in _RULES:

        def replace(m: re.Match[str], r: tuple[str, ...] = replacements, p: float = rate) -> str:
            return rng.choice(r) if rng.random() < p * strength else m[0]

        out = pattern.sub(replace, out)
    out = add_typos(out, rng, _TYPO_RATE * strength)
    if rng.random() < 0.8 * strength:
        out = out.lower()
    if rng.random() < 0.6 * strength:
        out = out.rstrip(".!? ")
    if rng.random() < 0.4 * strength:
        out = f"{rng.choice(_OPENERS)} {out}"
    if rng.random() < 0.4 * strength:
        out = f"{out} {rng.choice(_CLOSERS)}"
    if out == text and rng.random() < strength:
        out = f"{rng.choice(_OPENERS)} {out}"
    return out if out == text else " ".join(out.split())
