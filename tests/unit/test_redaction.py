"""PII redaction at the edge: what is replaced, what is left alone, and that it is stable."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.redaction import KINDS, Redaction, Redactor

REDACTOR = Redactor()

# (message, kind, raw PII value that must disappear)
PII_CORPUS: list[tuple[str, str, str]] = [
    # EMAIL
    ("mail me at ann@example.com", "EMAIL", "ann@example.com"),
    ("my email is John.Doe+shop@mail.co.uk thanks", "EMAIL", "John.Doe+shop@mail.co.uk"),
    ("contact: maria_garcia99@gmail.com.", "EMAIL", "maria_garcia99@gmail.com"),
    ("send the invoice to billing@my-company.de please", "EMAIL", "billing@my-company.de"),
    ("it's john dot doe at gmail dot com", "EMAIL", "john dot doe at gmail dot com"),
    ("write to ann(at)example.com", "EMAIL", "ann(at)example.com"),
    ("address is peter [at] shop [dot] fr", "EMAIL", "peter [at] shop [dot] fr"),
    ("ａｎｎ＠ｅｘａｍｐｌｅ．ｃｏｍ です", "EMAIL", "ａｎｎ＠ｅｘａｍｐｌｅ．ｃｏｍ"),
    # CARD (all Luhn-valid)
    ("my card 4111 1111 1111 1111 was charged twice", "CARD", "4111 1111 1111 1111"),
    ("card number 4111-1111-1111-1111", "CARD", "4111-1111-1111-1111"),
    ("paid with 5555555555554444 yesterday", "CARD", "5555555555554444"),
    ("amex 3782 822463 10005 got declined", "CARD", "3782 822463 10005"),
    ("card 4111\u00a01111\u00a01111\u00a01111", "CARD", "4111\u00a01111\u00a01111\u00a01111"),
    ("visa 4012888888881881, exp 12/27", "CARD", "4012888888881881"),
    ("discover 6011 1111 1111 1117 please refund", "CARD", "6011 1111 1111 1117"),
    ("card 4111 1111 1111 1111 123 is mine", "CARD", "4111 1111 1111 1111"),
    ("qty 2 4111111111111111 please", "CARD", "4111111111111111"),
    # PHONE
    ("call me on +44 20 7946 0958", "PHONE", "+44 20 7946 0958"),
    ("my number is (555) 123-4567", "PHONE", "(555) 123-4567"),
    ("reach me at 555-123-4567 after 5", "PHONE", "555-123-4567"),
    ("phone: +1 555 123 4567", "PHONE", "+1 555 123 4567"),
    ("mobile 07911 123456", "PHONE", "07911 123456"),
    ("ring 0049 30 1234567 tomorrow", "PHONE", "0049 30 1234567"),
    ("call 555.123.4567", "PHONE", "555.123.4567"),
    ("my cell is +447911123456", "PHONE", "+447911123456"),
    ("tel 030/1234567", "PHONE", "030/1234567"),
    ("whatsapp +33 6 12 34 56 78", "PHONE", "+33 6 12 34 56 78"),
    ("landline 020 7946 0958", "PHONE", "020 7946 0958"),
    ("call +44\u00a020\u00a07946\u00a00958 (copied)", "PHONE", "7946\u00a00958"),
    ("ＴＥＬ ０９０－１２３４－５６７８", "PHONE", "１２３４－５６７８"),
    # ORDER_ID
    ("where is my order #48213?", "ORDER_ID", "48213"),
    ("order 48213 never arrived", "ORDER_ID", "48213"),
    ("order no. 123-4567890 is late", "ORDER_ID", "123-4567890"),
    ("order number AB12345 is wrong", "ORDER_ID", "AB12345"),
    ("tracking 1Z999AA10123456784 shows nothing", "ORDER_ID", "1Z999AA10123456784"),
    ("tracking number 9400111899223197428490 stuck", "ORDER_ID", "9400111899223197428490"),
    ("parcel RR123456785GB is lost", "ORDER_ID", "RR123456785GB"),
    ("invoice INV-2024-00123 is wrong", "ORDER_ID", "INV-2024-00123"),
    ("return reference: RMA77812", "ORDER_ID", "RMA77812"),
    ("shipment id 88231940 delayed", "ORDER_ID", "88231940"),
    ("ref # 55-1234", "ORDER_ID", "55-1234"),
    ("the code on the box is 123456789012", "ORDER_ID", "123456789012"),
    # ADDRESS
    ("please ship to 221B Baker Street, London", "ADDRESS", "221B Baker Street"),
    ("I live at 1600 Pennsylvania Ave NW", "ADDRESS", "1600 Pennsylvania Ave NW"),
    ("deliver to 12 rue de Rivoli please", "ADDRESS", "12 rue de Rivoli"),
    ("meine Adresse: Hauptstraße 5, Berlin", "ADDRESS", "Hauptstraße 5"),
    ("new address 42 baker street", "ADDRESS", "42 baker street"),
    ("send it to 10 Downing St", "ADDRESS", "10 Downing St"),
    ("I moved to Baker Street 221", "ADDRESS", "Baker Street 221"),
    ("the flat at 725 5th Avenue", "ADDRESS", "725 5th Avenue"),
    ("Via Roma 10, Milano", "ADDRESS", "Via Roma 10"),
    ("Bahnhofstr. 12 bitte", "ADDRESS", "Bahnhofstr. 12"),
    # NAME
    ("my name is John Smith", "NAME", "John Smith"),
    ("Hi, this is Maria from the Leeds store", "NAME", "Maria"),
    ("I'm Ann Lee and my parcel is late", "NAME", "Ann Lee"),
    ("name: Peter O'Connell", "NAME", "Peter O'Connell"),
    ("please ask Mrs Johnson to call back", "NAME", "Johnson"),
    ("Dr. Watson ordered this", "NAME", "Watson"),
    ("kind regards,\nSophie Martin", "NAME", "Sophie Martin"),
    ("I am Jean-Luc and I want a refund", "NAME", "Jean-Luc"),
    ("My name's Zoë Müller", "NAME", "Zoë Müller"),
]


@pytest.mark.parametrize(("text", "kind", "raw"), PII_CORPUS)
def test_pii_is_replaced_by_its_placeholder(text: str, kind: str, raw: str) -> None:
    res = REDACTOR.redact(text)
    assert f"<{kind}>" in res.text
    assert raw not in res.text
    assert res.found.get(kind) == 1
    assert sum(res.found.values()) == res.text.count("<") - text.count("<")


def test_corpus_covers_every_kind_generously() -> None:
    assert len(PII_CORPUS) >= 40
    for kind in KINDS:
        assert sum(1 for _, k, _ in PII_CORPUS if k == kind) >= 5, kind


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("where is my order #48213?", "where is my order <ORDER_ID>?"),
        ("order 48213", "order <ORDER_ID>"),
        ("my name is John Smith", "my name is <NAME>"),
        ("call +44 20 7946 0958 now", "call <PHONE> now"),
        ("card 4111 1111 1111 1111 exp 12/25", "card <CARD> exp 12/25"),
        ("Dr. Watson", "Dr. <NAME>"),
        ("I'm John, order AB12345", "I'm <NAME>, order <ORDER_ID>"),
    ],
)
def test_exact_output(text: str, expected: str) -> None:
    assert REDACTOR.redact(text).text == expected


def test_message_with_many_kinds() -> None:
    text = (
        "Hi, my name is Ann Lee, order #48213 to 221B Baker Street never came. "
        "Card 4111 1111 1111 1111 was charged, call +44 20 7946 0958 or mail ann.lee@example.com"
    )
    res = REDACTOR.redact(text)
    assert res.found == {"EMAIL": 1, "CARD": 1, "ADDRESS": 1, "ORDER_ID": 1, "PHONE": 1, "NAME": 1}
    for raw in ("Ann Lee", "48213", "221B", "Baker", "4111", "7946", "ann.lee@example.com"):
        assert raw not in res.text
    assert res.text.startswith("Hi, my name is <NAME>, order <ORDER_ID> to <ADDRESS> never came.")


def test_counts_repeated_values() -> None:
    res = REDACTOR.redact("a@b.com or c@d.org, 555-123-4567 / 555-765-4321")
    assert res.found == {"EMAIL": 2, "PHONE": 2}
    assert res.text == "<EMAIL> or <EMAIL>, <PHONE> / <PHONE>"


PII_FREE = [
    "I want to return size 42 shoes, 2 pairs",
    "cancel my order",
    "where is my order?",
    "I'm Looking for my refund",
    "I am waiting since Monday",
    "I'm still waiting for my parcel",
    "This is Ridiculous, nobody answers",
    "can I change the delivery address?",
    "the jacket costs $129.99 but I paid 150",
    "I ordered 3 items on 12/05/2024 and got 2",
    "my package is on the way since 2023",
    "is the blue dress available in size 10?",
    "how do I reset my password",
    "I have 2 items on the way, when will they arrive?",
    "please call me back tomorrow at 10:30",
    "the order arrived damaged, 1 of 4 cups broken",
    "I'm Very disappointed with the service",
    "this is my 3rd complaint this year",
    "do you ship to Germany?",
    "my email bounced, can you check",
    "Thanks for your help!",
    "return 2 pairs of jeans, size 32",
    "This is Unbelievable, I want my money back",
    "have a look at amazon dot com, it is cheaper there",
    "I want 2 black court shoes and 1 usb drive",
    "my 3 parcels are still on the way",
    "I was charged 2 times for order, see my last 2 statements",
    "Hallo, ich möchte meine Bestellung stornieren, 2 Stück",
    # product codes are not cards, phones or order numbers
    "is the SKU AB-4711-XL still in stock",
    "the KX-TG6821 phone arrived broken",
    "product code 4711-0815 is wrong on the label",
    "voucher SPRING25 did not work",
    "item B07XJ8C8F5 is missing",
]


@pytest.mark.parametrize("text", PII_FREE)
def test_pii_free_text_is_returned_unchanged(text: str) -> None:
    res = REDACTOR.redact(text)
    assert res.text is text
    assert res.found == {}


@pytest.mark.parametrize(
    "number",
    ["4111 1111 1111 1112", "4111111111111112", "5555-5555-5555-4445", "3782 822463 10006"],
)
def test_luhn_failing_numbers_are_not_cards(number: str) -> None:
    res = REDACTOR.redact(f"card {number} please")
    assert "CARD" not in res.found
    # Still an identifier of some kind: tagged as a long reference number, never in clear.
    assert res.found == {"ORDER_ID": 1}
    assert number not in res.text


def test_luhn_failing_number_stays_when_only_cards_are_enabled() -> None:
    text = "card 4111 1111 1111 1112"
    assert Redactor(kinds=["CARD"]).redact(text).text == text


def test_a_barcode_is_not_a_card() -> None:
    """A 13-digit EAN fails the Luhn check: not a card, but (like any long bare number) an
    identifier that is never left in clear."""
    assert REDACTOR.redact("EAN 4006381333931 on the box").found == {"ORDER_ID": 1}


def test_quantities_and_years_are_not_phones() -> None:
    for text in ("order 2 items", "size 42", "in 2023 and 2024", "1000 pcs", "zip 90210"):
        assert "PHONE" not in REDACTOR.redact(text).found, text


def test_kinds_filter() -> None:
    text = "mail ann@example.com or call 555-123-4567, my name is Ann"
    only_phone = Redactor(kinds=["PHONE"])
    assert only_phone.kinds == ("PHONE",)
    res = only_phone.redact(text)
    assert res.text == "mail ann@example.com or call <PHONE>, my name is Ann"
    assert res.found == {"PHONE": 1}
    both = Redactor(kinds=("name", "EMAIL")).redact(text)
    assert both.found == {"EMAIL": 1, "NAME": 1}
    assert Redactor(kinds=[]).redact(text).text is text
    assert Redactor().kinds == KINDS
    assert Redactor(kinds="EMAIL").kinds == ("EMAIL",)


def test_unknown_kind_raises_listing_valid_kinds() -> None:
    with pytest.raises(ValueError, match="SSN") as info:
        Redactor(kinds=["EMAIL", "SSN"])
    for kind in KINDS:
        assert kind in str(info.value)


def test_redaction_is_a_frozen_dataclass() -> None:
    res = REDACTOR.redact("order 48213")
    assert isinstance(res, Redaction)
    assert dataclasses.is_dataclass(res)
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.text = "x"  # type: ignore[misc]


def test_placeholders_are_never_rematched() -> None:
    text = "<EMAIL> <CARD> <PHONE> <ORDER_ID> <ADDRESS> <NAME> my name is <NAME>"
    assert REDACTOR.redact(text).text is text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # "#48213" only stands alone once the phone number glued to it is gone (second pass).
        ("call 555-123-4567#48213", "call <PHONE><ORDER_ID>"),
        ("ref 12345678901234 555-123-4567", "ref <ORDER_ID> <PHONE>"),
        ("Baker Street 5 4111 1111 1111 1111", "<ADDRESS> <CARD>"),
    ],
)
def test_values_uncovered_by_a_replacement_are_redacted_too(text: str, expected: str) -> None:
    assert REDACTOR.redact(text).text == expected


# Hypothesis: mostly PII-shaped fragments glued with arbitrary text, so that the rules fire
# and interact; plus plain arbitrary text.
FRAGMENTS = st.sampled_from(
    [
        "ann@example.com",
        "@",
        ".",
        "-",
        " ",
        "  ",
        "#",
        "+",
        "(",
        ")",
        "0",
        "00",
        "1",
        "4111 1111 1111 1111",
        "4111111111111112",
        "555-123-4567",
        "+44 20 7946 0958",
        "07911 123456",
        "12345678901234",
        "order ",
        "order no. ",
        "tracking number ",
        "1Z999AA10123456784",
        "221B Baker Street",
        "Baker St ",
        "12 rue de Rivoli",
        "Hauptstraße 5",
        "my name is ",
        "I'm ",
        "this is ",
        "Mr ",
        "John",
        "Smith",
        " dot ",
        " at ",
        "gmail",
        "com",
        "(at)",
        "<NAME>",
        "<",
        ">",
        "Street",
        "road",
        "42",
        "123",
        "9",
        "０９０－１２３４－５６７８",
        "\u00a0",
        "–",
        "٣٤٥",
        "İ",
        "Straße ",
    ]
)
TEXTS = st.one_of(
    st.text(max_size=200),
    st.lists(st.one_of(FRAGMENTS, st.text(max_size=4)), max_size=25).map("".join),
)


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(TEXTS)
def test_redact_never_raises_and_is_idempotent(text: str) -> None:
    once = REDACTOR.redact(text)
    assert isinstance(once.text, str)
    assert all(kind in KINDS and n > 0 for kind, n in once.found.items())
    twice = REDACTOR.redact(once.text)
    assert twice.text == once.text
    assert twice.found == {}
    if not once.found:
        assert once.text is text
