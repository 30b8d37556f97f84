"""PII redaction at an edge node's ingress: raw customer text never leaves the edge.

The edge node answers a chat turn from the raw text, but everything it publishes (every Kafka
topic, and through them the cloud teacher) carries only the redacted text. Redaction is
rule-based (stdlib ``re`` only, compiled once, no model) so it costs microseconds on the
serving path: e-mail addresses, Luhn-valid payment cards, phone numbers, order and tracking
numbers, street addresses and cue-introduced person names become typed placeholders such as
``<EMAIL>``, which keep the intent signal ("where is my order <ORDER_ID>?") without the value.

Design choices:

* Rules run in a fixed order (e-mail, card, address, order ids, phone, long numbers, names).
  A placeholder holds no digit, ``@`` or lower-case letter, so no rule ever matches one.
* The rules are applied until a pass changes nothing, so replacing one value can never
  uncover another that an earlier rule skipped (a phone number after a long number, say).
  Hence ``redact`` is idempotent: redacting redacted text returns it unchanged.
* Speed: each rule has a cheap gate (a digit count, ``"@" in text``, a cue word among the
  text's words), and cue-based rules are tried only where a cue word starts, instead of at
  every position; PII-free text costs a few microseconds.
* Full-width characters ("０９０－１２３４－５６７８") are matched as their ASCII forms.
* Card-shaped numbers that fail the Luhn check are not cards; like any other bare run of nine
  or more digits not taken as a phone number they are tagged ``<ORDER_ID>`` (an identifier of
  some kind: account, tracking, order or a mistyped card), never left in clear.
* Cue words are kept: "order 48213" becomes "order <ORDER_ID>", "my name is Ann" becomes
  "my name is <NAME>". Names are only taken after a cue and when capitalised, with a stop
  list, so "I'm Looking" or "I am waiting" are left alone; names in other scripts than Latin
  are not recognised.
* Addresses need a house number and a street type, in either order ("221B Baker Street",
  "Baker St 5", "12 rue de Rivoli", "Hauptstraße 5"); postcodes are not recognised alone.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

__all__ = ["KINDS", "Redaction", "Redactor"]

KINDS: tuple[str, ...] = ("EMAIL", "CARD", "PHONE", "ORDER_ID", "ADDRESS", "NAME")

# Passes over the rules at most: one is usual, a second confirms nothing is left. The bound
# only guards against pathological input (a pass that changes the text replaces at least one
# digit, letter or "@" by a placeholder, which has none of them, so the loop ends anyway).
_MAX_PASSES = 6


@dataclass(frozen=True, slots=True)
class Redaction:
    """Redacted text and how many values of each kind were replaced (empty if none)."""

    text: str
    found: dict[str, int]


Span = tuple[int, int]


def _words(*lines: str) -> frozenset[str]:
    return frozenset(w for line in lines for w in line.split())


def _alt(words: Iterable[str]) -> str:
    """A regex alternation of literal words, longest first."""
    return "|".join(re.escape(w) for w in sorted(words, key=lambda w: (-len(w), w)))


# --- vocabulary -------------------------------------------------------------------------------

_EN_TYPES = _words(
    "street st road rd avenue ave av lane ln drive dr boulevard blvd way court ct place pl",
    "square sq terrace crescent highway hwy parkway pkwy circle plaza grove gardens mews",
    "straße strasse str weg gasse platz allee",
)
# Street types safe enough after lower-case street names ("12 baker street").
_STRICT_TYPES = _words("street st road rd avenue ave boulevard blvd lane highway hwy")
_LATIN_TYPES = _words(
    "rue avenue av boulevard bd chemin allée allee impasse quai place calle avenida rua via",
    "viale piazza corso plaza paseo carrer largo travessa",
)
_COMPOUND_SUFFIXES = tuple(
    _words(
        "straße strasse str weg gasse platz allee damm ufer straat laan gracht plein gatan gade vej"
    )
)
_ORDER_CUE_WORDS = _words(
    "order tracking track parcel package shipment consignment delivery reference ref invoice",
    "return refund rma confirmation booking reservation ticket case receipt transaction",
    "account customer membership member claim complaint awb waybill",
)
_ORDER_CUES = _ORDER_CUE_WORDS | {w + "s" for w in _ORDER_CUE_WORDS}
_NAME_CUES = _words(
    "my name i this kind best warm regards sincerely yours",
    "mr mrs ms mx dr prof miss sir madam mme mlle herr frau",
)
# Words before a bare " at " that make "X at shop dot com" a sentence, not an address.
_NOT_EMAIL_USER = _words(
    "look looking looked me us you him her them it is am are was were be been arrive arrived",
    "stay staying stayed live living lived work working worked here there home available",
    "sold buy bought order ordered shop shopping listed found check checked see seen visit",
    "visited find go went log logged sign signed only cheaper price prices deal deals online",
    "purchase purchased registered posted advertised offered",
)
# Lower-case words that are not street names ("2 items on the road").
_STREET_STOP = _words(
    "the a an and or of on in at to my your our his her their its for from by with is are was",
    "were be been this that these those it i you we they me us per each only more less than",
    "item items pair pairs pcs pieces units days weeks hours times off down up",
)
# Capitalised words that follow "I'm", "this is", "Mr" ... without being names.
_NAME_STOP = _words(
    "a an the and or but not no yes so very too also just still only really actually currently",
    "always never already again here there now today tomorrow yesterday soon back out in on at",
    "to from with without for of by about after before into over under up down off away",
    "my your his her our their its this that these those it i you he she we they me him us",
    "them what why how when where who which whom whose is am are was were be been being",
    "have has had do does did done will would can could shall should may might must",
    "sure sorry afraid glad happy unhappy sad angry upset annoyed confused concerned worried",
    "disappointed frustrated furious shocked surprised pleased interested tired sick fed",
    "fine ok okay good great well bad terrible awful horrible ridiculous unacceptable urgent",
    "important serious desperate unable able supposed stuck locked ready available busy",
    "new old late early missing lost wrong right correct free open closed home abroad",
    "calling writing contacting asking trying looking waiting having getting going coming",
    "hoping wondering expecting planning moving travelling traveling leaving paying buying",
    "ordering returning checking following reaching emailing messaging chatting",
    "charged billed scammed subscribed registered signed logged based located married",
    "customer client member user buyer seller owner manager support service team agent",
    "mr mrs ms miss mx dr prof sir madam mme mlle herr frau",
    "monday tuesday wednesday thursday friday saturday sunday january february march april",
    "june july august september october november december",
    "hi hello hey dear thanks thank please regarding re fw fwd urgently kindly",
    "amazon ebay paypal visa mastercard dhl ups fedex usps",
)

# --- regex fragments --------------------------------------------------------------------------

_UP = "A-ZÀ-ÖØ-Þ"
_LO = "a-zß-öø-ÿ"
# A capitalised word with a lower-case letter: "Baker", "McDonald", "O'Connell", not "USB".
_TITLE = rf"[{_UP}](?=[{_UP}'’-]*[{_LO}])[{_LO}'’]*(?:-?[{_UP}][{_LO}'’]*)*"
_ANY_WORD = r"[^\W\d_][\w'’-]*"
_ORDINAL = r"\d{1,3}(?:st|nd|rd|th)"
_HOUSE = r"\d{1,5}[A-Za-z]?(?:[-–/]\d{1,5}[A-Za-z]?)?"
_HOUSE_END = r"(?![\w-])(?![ \t]?\d)"  # not the start of a longer number
_NOT_LETTER = r"(?![^\W\d_])"
_DIRECTION = r"(?:[ \t]+(?:NW|NE|SW|SE|N|S|E|W)\b)?"
_PARTICLE_WORDS = _words("de du des la le les del della di da do dos das van von der den y e")
_PARTICLES = rf"(?:(?i:l['’]|d['’]|{_alt(_PARTICLE_WORDS)})[ \t]*)*"
_LATIN_NAME = rf"{_PARTICLES}{_TITLE}(?:[ \t]+{_TITLE}){{0,3}}"
# Digit-group separators: space, no-break and ideographic space, ASCII and Unicode dashes.
_DASH = r"\-\u2010-\u2015\u2212\uff0d"
_GAP = rf"[ \u00a0\u3000{_DASH}]"  # between card digit groups
_SEP = rf"[ .\u00a0\u3000{_DASH}]"  # between phone digit groups
_CARD_SHAPES = (
    rf"\d{{13,19}}"
    rf"|\d{{4}}{_GAP}\d{{4}}{_GAP}\d{{4}}{_GAP}\d{{4}}(?P<tail>{_GAP}\d{{3}})?"
    rf"|\d{{4}}{_GAP}\d{{6}}{_GAP}\d{{4,5}}"
)
# Not inside a longer number or after a "+"; a digit and a space before is fine ("qty 2 4111 …").
_NUMBER_START = rf"(?<![\w+])(?<!\d[.{_DASH}])"
_NUMBER_END = rf"(?!\w)(?![.{_DASH}]\d)"
_NAME_TOKEN = rf"(?:[OD]['’])?[{_UP}][{_LO}]+(?:[{_UP}][{_LO}]+)?(?:-[{_UP}][{_LO}]+)?(?!\w)"
# "I'm Looking", "this is Unbelievable": participles and adjectives are not first names.
_NAME_NOT_ADJECTIVE = r"(?![A-Za-z]{2,}(?:ing|able|ible|ous|ful|less)\b)(?![A-Za-z]{3,}ive\b)"
_NAME_NOT_STOP = rf"(?!(?i:{_alt(_NAME_STOP)})\b)"
_OBF_AT = r"[ \t]*(?:\(at\)|\[at\]|\{at\})[ \t]*"
_OBF_DOT = r"(?:[ \t]*(?:\(dot\)|\[dot\]|\{dot\})[ \t]*|[ \t]+dot[ \t]+)"
_OBF_TLD = r"(?:com|net|org|edu|gov|io|co|uk|de|fr|es|it|nl|be|ch|at|ie|ca|au|info|biz|me|us|eu)\b"

_I = re.IGNORECASE

_EMAIL = re.compile(r"(?<![\w.%+-])[\w.%+-]+@[\w-]+(?:\.[\w-]+)+")
# Dot-separated parts are bounded ({0,4}) so that "a dot a dot ..." costs linear time.
_EMAIL_OBFUSCATED = re.compile(
    rf"(?<![\w.%+-])(?P<local>[a-z0-9_%+-]+(?:(?:{_OBF_DOT}|\.)[a-z0-9_%+-]+){{0,4}})"
    rf"(?:{_OBF_AT}[a-z0-9-]+(?:(?:{_OBF_DOT}|\.)[a-z0-9-]+){{0,3}}(?:{_OBF_DOT}|\.){_OBF_TLD}"
    rf"|(?P<plain>[ \t]+at[ \t]+)[a-z0-9-]+(?:{_OBF_DOT}[a-z0-9-]+){{0,3}}{_OBF_DOT}{_OBF_TLD})",
    _I,
)
_CARD = re.compile(rf"{_NUMBER_START}(?P<pii>{_CARD_SHAPES}){_NUMBER_END}")
_ADDRESS_NUMBER_FIRST = re.compile(
    rf"(?<![\w.,/<>-])(?<!\d[ \t]){_HOUSE},?[ \t]+(?:"
    rf"(?:(?:{_TITLE}|{_ORDINAL})[ \t]+){{1,4}}(?i:{_alt(_EN_TYPES)}){_NOT_LETTER}{_DIRECTION}"
    rf"|(?P<lower>(?:(?:{_ANY_WORD}|{_ORDINAL})[ \t]+){{1,3}})"
    rf"(?i:{_alt(_STRICT_TYPES)}){_NOT_LETTER}{_DIRECTION}"
    rf"|(?i:{_alt(_LATIN_TYPES)})\.?[ \t]+{_LATIN_NAME}(?!\w))"
)
_ADDRESS_TYPE_THEN_NUMBER = re.compile(
    rf"(?P<type>(?i:{_alt(_EN_TYPES)})){_NOT_LETTER}\.?,?[ \t]*{_HOUSE}{_HOUSE_END}"
)
_ADDRESS_HEAD_TITLE = re.compile(rf"(?<![\w<>'’-])(?:{_TITLE}[ \t]+){{1,4}}\Z")
_ADDRESS_HEAD_ANY = re.compile(rf"(?<![\w<>'’-])(?:{_ANY_WORD}[ \t]+){{1,2}}\Z")
_ADDRESS_LATIN_NUMBER_AFTER = re.compile(
    rf"(?<![\w<>])(?i:{_alt(_LATIN_TYPES)})\.?[ \t]+{_LATIN_NAME},?[ \t]+{_HOUSE}{_HOUSE_END}"
)
_ADDRESS_COMPOUND = re.compile(
    rf"(?<![\w<>])[{_UP}][\w-]*?(?:{_alt(_COMPOUND_SUFFIXES)})\.?,?[ \t]*{_HOUSE}{_HOUSE_END}"
)
_UPS = re.compile(r"(?<!\w)1Z[0-9A-Z]{16}(?!\w)", _I)
_S10 = re.compile(r"(?<!\w)[A-Z]{2}[0-9]{9}[A-Z]{2}(?!\w)")
_ORDER_AFTER_CUE = re.compile(
    rf"(?i:(?:{_alt(_ORDER_CUE_WORDS)})s?\b"
    r"(?:[ \t]*(?:(?:number|num|nbr|nr|no|id|code)\b|n[°º])\.?)?"
    r"(?:[ \t]*(?:is|was|[:=]))?[ \t]*)"
    r"(?P<pii>#?[ \t]?(?=(?:[A-Za-z/-]*[0-9]){3})[A-Za-z0-9]"
    r"(?:[A-Za-z0-9]|[-/](?=[A-Za-z0-9])){3,39})(?![\w-])"
)
_HASH_NUMBER = re.compile(
    r"(?<![\w&#])#[ \t]?(?=(?:[A-Za-z-]*[0-9]){3})[A-Za-z0-9]"
    r"(?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){2,39}(?![\w-])"
)
_PHONE = re.compile(
    rf"(?<![\w+(])(?<!\d[.{_DASH}])(?P<pii>"
    rf"(?P<intl>\(?(?:\+|00){_SEP}?)[1-9]\d{{0,2}}\)?(?:{_SEP}?\(0?\d{{1,4}}\))?"
    rf"{_SEP}?\d{{1,12}}(?:{_SEP}\d{{2,12}}){{0,5}}"
    rf"|(?:1{_SEP}?)?(?:\(\d{{3}}\){_SEP}?|\d{{3}}{_SEP}?)\d{{3}}{_SEP}?\d{{4}}"
    rf"|(?P<nat>0\d{{1,4}}(?:(?:{_SEP}|/)\d{{2,8}}){{1,3}}|0\d{{8,11}})"
    rf"){_NUMBER_END}"
)
_LONG_NUMBER = re.compile(rf"{_NUMBER_START}(?P<pii>\d{{9,}}|{_CARD_SHAPES}){_NUMBER_END}")
_NAME_AFTER_CUE = re.compile(
    r"(?:(?i:(?:my[ \t]+name[ \t]+is|name[ \t]+is|my[ \t]+name['’]s|i[ \t]+am|i['’]m"
    r"|this[ \t]+is|(?:kind[ \t]+|best[ \t]+|warm[ \t]+)?regards[,.!]?|sincerely[,.!]?"
    r"|yours[ \t]+truly[,.!]?)\s+|name[ \t]*[:=][ \t]*|(?:mr|mrs|ms|mx|dr|prof)\b\.?[ \t]+)"
    r"|(?:Miss|Sir|Madam|Mme|Mlle|Herr|Frau)[ \t]+)"
    rf"(?P<pii>{_NAME_NOT_STOP}{_NAME_NOT_ADJECTIVE}{_NAME_TOKEN}"
    rf"(?:[ \t]+{_NAME_NOT_STOP}{_NAME_TOKEN}){{0,2}})"
)

_DIGIT = re.compile(r"\d")
_DIGIT_RUN = re.compile(r"\d+")
_CAPITALISED = re.compile(rf"[{_UP}][{_LO}]")


# --- facts about a text that decide which rules run, and where --------------------------------


def _is_word_char(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


# bytes.translate tables for the ASCII fast path: word characters kept, others to spaces;
# everything but digits deleted.
_ASCII_WORD_CHARS = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789_")
_TO_TOKENS = bytes(c if c in _ASCII_WORD_CHARS else 32 for c in range(256))
_NOT_DIGITS = bytes(c for c in range(256) if not 48 <= c <= 57)
_TOKEN = re.compile(r"\w+")


# Full-width forms ("０９０－１２３４", "ａｎｎ＠…") map one-to-one to ASCII, so the rules
# match on a folded copy and the spans still fit the original text.
_FULL_WIDTH = re.compile("[\uff01-\uff5e\u3000]")
_TO_NARROW = {c: c - 0xFEE0 for c in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}


class _Facts:
    """Cheap facts about one text (its lower-cased words, digit count) that gate the rules.

    ``text`` is what the rules match: the text itself, or its folded copy if it has
    full-width characters (same length, so spans apply to the original).
    """

    __slots__ = ("low", "ndigits", "text", "words")

    def __init__(self, text: str) -> None:
        if not text.isascii() and _FULL_WIDTH.search(text):
            text = text.translate(_TO_NARROW)
        self.text = text
        low = text.lower()
        if text.isascii():
            raw = low.encode("ascii")
            self.words = frozenset(raw.translate(_TO_TOKENS).decode("ascii").split())
            self.ndigits = len(raw.translate(None, _NOT_DIGITS))
        else:
            if len(low) != len(text):  # keep offsets aligned ("İ" lowers to two code points)
                low = "".join(c.lower() if len(c.lower()) == 1 else c for c in text)
            self.words = frozenset(_TOKEN.findall(low))
            self.ndigits = len(_DIGIT.findall(text))
        self.low = low

    def has_word(self, vocab: frozenset[str]) -> bool:
        return not self.words.isdisjoint(vocab)

    def starts_of(self, vocab: frozenset[str]) -> list[int]:
        """Sorted offsets of the whole words of ``vocab`` in the text (case-insensitive)."""
        return self._starts(self.words & vocab)

    def compound_starts(self) -> list[int]:
        """Offsets of words ending in a street suffix ("Hauptstraße", "Bahnhofstr")."""
        return self._starts({w for w in self.words if w.endswith(_COMPOUND_SUFFIXES)})

    def digit_run_starts(self) -> list[int]:
        return [m.start() for m in _DIGIT_RUN.finditer(self.text)]

    def _starts(self, present: Iterable[str]) -> list[int]:
        low = self.low
        n = len(low)
        hits: list[int] = []
        for w in present:
            i = low.find(w)
            while i >= 0:
                j = i + len(w)
                if (i == 0 or not _is_word_char(low[i - 1])) and (
                    j == n or not _is_word_char(low[j])
                ):
                    hits.append(i)
                i = low.find(w, j)
        hits.sort()
        return hits


# --- finders: the spans one rule replaces -----------------------------------------------------

Resolver = Callable[[re.Match[str]], Span | None]
Finder = Callable[[_Facts], list[Span]]


def _pii_span(m: re.Match[str]) -> Span | None:
    """The ``pii`` group where the pattern has one (the cue before it is kept), else all."""
    return m.span("pii") if "pii" in m.re.groupindex else m.span()


def _search(pattern: re.Pattern[str], resolve: Resolver = _pii_span) -> Finder:
    def find(facts: _Facts) -> list[Span]:
        spans = []
        for m in pattern.finditer(facts.text):
            span = resolve(m)
            if span is not None:
                spans.append(span)
        return spans

    return find


def _anchored(
    pattern: re.Pattern[str],
    starts: Callable[[_Facts], list[int]],
    resolve: Resolver = _pii_span,
) -> Finder:
    """Try ``pattern`` only at the candidate offsets ``starts`` gives (cue words, numbers)."""

    def find(facts: _Facts) -> list[Span]:
        spans: list[Span] = []
        last = 0
        for pos in starts(facts):
            if pos < last:
                continue
            m = pattern.match(facts.text, pos)
            if m is None:
                continue
            span = resolve(m)
            if span is not None and span[0] >= last:
                spans.append(span)
                last = span[1]
        return spans

    return find


def _luhn_ok(digits: str) -> bool:
    """The Luhn (mod 10) checksum of payment card numbers."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _digits(s: str) -> str:
    return "".join(ch for ch in s if ch.isdecimal())


def _obfuscated_email_span(m: re.Match[str]) -> Span | None:
    """Reject "look at amazon dot com": with a bare "at", the user part must not be a verb."""
    if m.group("plain") and m.group("local").lower() in _NOT_EMAIL_USER:
        return None
    return m.span()


def _card_span(m: re.Match[str]) -> Span | None:
    if _luhn_ok(_digits(m.group("pii"))):
        return m.span("pii")
    if m.group("tail") and _luhn_ok(_digits(m.string[m.start("pii") : m.start("tail")])):
        return m.start("pii"), m.start("tail")  # a 16-digit card, then a 3-digit group
    return None


def _phone_span(m: re.Match[str]) -> Span | None:
    n = len(_digits(m.group("pii")))
    if m.group("intl") is not None:
        if m.group("intl").lstrip("( ").startswith("00"):
            n -= 2
        ok = 7 <= n <= 15
    elif m.group("nat") is not None:
        ok = 9 <= n <= 12
    else:
        ok = True  # North American shape: the digit count is fixed
    return m.span("pii") if ok else None


def _street_words_ok(m: re.Match[str]) -> Span | None:
    lower = m.group("lower")
    if lower and any(w.lower() in _STREET_STOP for w in lower.split()):
        return None
    return m.span()


def _trailing_street_name(text: str, start: int, end: int) -> int | None:
    """Start of the words in ``text[start:end]`` after its last stop word, if any remain."""
    words = list(re.finditer(r"\S+", text[start:end]))
    keep = len(words)
    while keep > 0 and words[keep - 1].group().lower().rstrip("'’") not in _STREET_STOP:
        keep -= 1
    return start + words[keep].start() if keep < len(words) else None


def _find_name_then_type(facts: _Facts) -> list[Span]:
    """English addresses with the number last: "Baker Street 221B", "baker st 5"."""
    text = facts.text
    spans: list[Span] = []
    last = 0
    for pos in facts.starts_of(_EN_TYPES):
        if pos < last:
            continue
        tail = _ADDRESS_TYPE_THEN_NUMBER.match(text, pos)
        if tail is None:
            continue
        lo = max(last, pos - 160)
        head = _ADDRESS_HEAD_TITLE.search(text, lo, pos)
        if head is None and tail.group("type").lower() in _STRICT_TYPES:
            head = _ADDRESS_HEAD_ANY.search(text, lo, pos)
        if head is None:
            continue
        start = _trailing_street_name(text, head.start(), pos)
        if start is not None:
            spans.append((start, tail.end()))
            last = tail.end()
    return spans


# --- the rules, in order ----------------------------------------------------------------------

Gate = Callable[[_Facts], bool]


@dataclass(frozen=True, slots=True)
class _Rule:
    kind: str
    gate: Gate  # cheap necessary condition; the finder runs only when it holds
    find: Finder


def _at_least(n: int) -> Gate:
    return lambda f: f.ndigits >= n


_RULES: tuple[_Rule, ...] = (
    _Rule("EMAIL", lambda f: "@" in f.text, _search(_EMAIL)),
    _Rule(
        "EMAIL",
        lambda f: "dot" in f.low or "(at)" in f.low or "[at]" in f.low or "{at}" in f.low,
        _search(_EMAIL_OBFUSCATED, _obfuscated_email_span),
    ),
    _Rule("CARD", _at_least(13), _search(_CARD, _card_span)),
    _Rule(
        "ADDRESS",
        lambda f: f.ndigits > 0 and (f.has_word(_EN_TYPES) or f.has_word(_LATIN_TYPES)),
        _anchored(_ADDRESS_NUMBER_FIRST, _Facts.digit_run_starts, _street_words_ok),
    ),
    _Rule(
        "ADDRESS",
        lambda f: f.ndigits > 0 and f.has_word(_EN_TYPES),
        _find_name_then_type,
    ),
    _Rule(
        "ADDRESS",
        lambda f: f.ndigits > 0 and f.has_word(_LATIN_TYPES),
        _anchored(_ADDRESS_LATIN_NUMBER_AFTER, lambda f: f.starts_of(_LATIN_TYPES)),
    ),
    _Rule(
        "ADDRESS",
        lambda f: f.ndigits > 0 and any(w.endswith(_COMPOUND_SUFFIXES) for w in f.words),
        _anchored(_ADDRESS_COMPOUND, _Facts.compound_starts),
    ),
    _Rule("ORDER_ID", lambda f: "1z" in f.low, _search(_UPS)),
    _Rule("ORDER_ID", _at_least(9), _search(_S10)),
    _Rule(
        "ORDER_ID",
        lambda f: f.ndigits >= 3 and f.has_word(_ORDER_CUES),
        _anchored(_ORDER_AFTER_CUE, lambda f: f.starts_of(_ORDER_CUES)),
    ),
    _Rule("ORDER_ID", lambda f: "#" in f.text and f.ndigits >= 3, _search(_HASH_NUMBER)),
    _Rule("PHONE", _at_least(7), _search(_PHONE, _phone_span)),
    _Rule("ORDER_ID", _at_least(9), _search(_LONG_NUMBER)),
    _Rule(
        "NAME",
        lambda f: _CAPITALISED.search(f.text) is not None and f.has_word(_NAME_CUES),
        _anchored(_NAME_AFTER_CUE, lambda f: f.starts_of(_NAME_CUES)),
    ),
)

_PLACEHOLDER = {kind: f"<{kind}>" for kind in KINDS}


def _splice(text: str, spans: list[Span], placeholder: str) -> str:
    pieces: list[str] = []
    last = 0
    for start, end in spans:
        pieces.append(text[last:start])
        pieces.append(placeholder)
        last = end
    pieces.append(text[last:])
    return "".join(pieces)


class Redactor:
    """Replace PII in customer text with typed placeholders (``<EMAIL>``, ``<CARD>`` ...).

    ``kinds`` enables a subset of :data:`KINDS` (case-insensitive); ``None`` enables all.
    Text without PII comes back unchanged, as the same string object.

    >>> Redactor().redact("mail me at ann@example.com").text
    'mail me at <EMAIL>'
    >>> Redactor().redact("where is my order #48213?")
    Redaction(text='where is my order <ORDER_ID>?', found={'ORDER_ID': 1})
    >>> Redactor(kinds=["PHONE"]).redact("ann@example.com, +44 20 7946 0958").text
    'ann@example.com, <PHONE>'
    """

    __slots__ = ("_kinds", "_rules")

    def __init__(self, kinds: Iterable[str] | None = None) -> None:
        if kinds is None:
            chosen = set(KINDS)
        else:
            names = (kinds,) if isinstance(kinds, str) else tuple(kinds)
            chosen = {str(k).upper() for k in names}
            unknown = sorted(chosen - set(KINDS))
            if unknown:
                raise ValueError(
                    f"unknown PII kind(s) {', '.join(unknown)}; valid kinds: {', '.join(KINDS)}"
                )
        self._kinds: tuple[str, ...] = tuple(k for k in KINDS if k in chosen)
        self._rules: tuple[_Rule, ...] = tuple(r for r in _RULES if r.kind in chosen)

    @property
    def kinds(self) -> tuple[str, ...]:
        """The enabled kinds, in :data:`KINDS` order."""
        return self._kinds

    def __repr__(self) -> str:
        return f"Redactor(kinds={list(self._kinds)!r})"

    def redact(self, text: str) -> Redaction:
        """Return ``text`` with every enabled kind of PII replaced by its placeholder."""
        found: dict[str, int] = {}
        current = text
        for _ in range(_MAX_PASSES):
            facts = _Facts(current)
            changed = False
            for rule in self._rules:
                if not rule.gate(facts):
                    continue
                spans = rule.find(facts)
                if spans:
                    current = _splice(current, spans, _PLACEHOLDER[rule.kind])
                    found[rule.kind] = found.get(rule.kind, 0) + len(spans)
                    facts = _Facts(current)
                    changed = True
            if not changed:
                break
        return Redaction(current if found else text, found)
