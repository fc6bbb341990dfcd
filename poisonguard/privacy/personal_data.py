"""Personal data in texts: e-mail addresses, phone numbers, payment card numbers and IBANs.

A model trained on texts can repeat what they hold (Carlini et al., "Extracting Training Data
from Large Language Models", USENIX Security 2021, recovered names, phone numbers and e-mail
addresses seen once in training). :func:`find_personal_data` finds four kinds of value in one
text and :func:`personal_data_summary` counts them over a dataset, with a few examples whose
value is **masked**: the summary (what the privacy report holds) never carries a found value in
full, only enough to recognise it (``j***@e***.com``, ``**** **** **** 1234``,
``GB** **** **** **** ** 5432``, ``+** ** **** **58``).

The rules aim at few false positives: an item of the checklist that fires on every review
would be ignored.

``email``
    ``local@domain.tld`` with an ASCII local part (letters, digits, ``._%+-``), dot-separated
    domain labels and a top-level domain of 2 to 24 letters.
``payment_card``
    13 to 19 digits, in one run or in groups separated by single spaces or single dashes (one
    kind of separator), that pass the Luhn check (ISO/IEC 7812-1) and start with an issuer
    prefix of a card network at one of its lengths (Visa 4; Mastercard 51-55 and 2221-2720;
    American Express 34, 37; Discover 6011, 644-649, 65; UnionPay 62; JCB 3528-3589; Diners
    300-305, 36, 38, 39; Maestro 50, 56-69; Mir 2200-2204), and are not one digit repeated.
    The Luhn check alone passes one random digit string in ten; the prefixes make a 16-digit
    order number starting with 1, 7, 8, 9 or 0 never a card.
``iban``
    two letters of a country in the IBAN registry (SWIFT, ISO 13616), two check digits and the
    country's exact length of letters and digits, written in one run or in groups of four
    (print format), that pass the ISO 7064 mod-97 check (remainder 1). A random string of the
    right shape passes one time in 97.
``phone``
    8 to 15 digits (E.164 allows 15) with optional separators (space, dash, dot, parentheses),
    accepted when it is written as a phone number is and not otherwise:

    * international: starts with ``+`` (``+44 20 7946 0958``);
    * North American: ``(212) 555-0187``, ``212-555-0187``, ``212.555.0187`` (area code and
      exchange start with 2-9, as NANP numbers do), optionally after ``1`` or ``+1``;
    * national with a trunk ``0``: 10 or 11 digits in groups of 2 to 5 separated by spaces or
      dashes (``020 7946 0958``, ``06 12 34 56 78``, ``0171-2345678``);
    * any 7 to 15 digits right after a word such as *phone*, *tel*, *call*, *mobile*, *fax*,
      *WhatsApp* (``call me on 5550187 2``).

    Never a phone: a value that is part of a card number or an IBAN found above, a date
    (``2021-03-04``, ``04/03/2021``: a slash is no phone separator), a price (after ``$``, ``€``,
    ``£``, ``¥`` or with decimals), a plain number of fewer than 8 digits without a keyword.

Luhn and mod-97 are a few lines each and fixed by their standards; ``python-stdnum`` (well kept,
and it has both) would still leave the extraction rules here, so it is not worth a dependency.
The IBAN lengths come from the SWIFT IBAN registry (release 2023).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "KINDS",
    "IBAN_LENGTHS",
    "PersonalValue",
    "find_personal_data",
    "personal_data_summary",
    "luhn_valid",
    "iban_valid",
    "mask",
]

KINDS = ("email", "phone", "payment_card", "iban")
"""The kinds found, in the order they are reported."""

#: IBAN length per country (SWIFT IBAN registry).
IBAN_LENGTHS = {
    **dict.fromkeys(["NO"], 15),
    **dict.fromkeys(["BE"], 16),
    **dict.fromkeys(["DK", "FI", "FK", "FO", "GL", "NL", "SD"], 18),
    **dict.fromkeys(["MK", "SI"], 19),
    **dict.fromkeys(["AT", "BA", "EE", "KZ", "LT", "LU", "MN", "XK"], 20),
    **dict.fromkeys(["CH", "HR", "LI", "LV"], 21),
    **dict.fromkeys(["BG", "BH", "CR", "DE", "GB", "GE", "IE", "ME", "RS", "VA"], 22),
    **dict.fromkeys(["AE", "GI", "IL", "IQ", "OM", "SO", "TL"], 23),
    **dict.fromkeys(["AD", "CZ", "ES", "MD", "PK", "RO", "SA", "SE", "SK", "TN", "VG"], 24),
    **dict.fromkeys(["LY", "PT", "ST"], 25),
    **dict.fromkeys(["IS", "TR"], 26),
    **dict.fromkeys(["BI", "DJ", "FR", "GR", "IT", "MC", "MR", "SM"], 27),
    **dict.fromkeys(["AL", "AZ", "BY", "CY", "DO", "GT", "HN", "HU", "LB", "NI", "PL", "SV"], 28),
    **dict.fromkeys(["BR", "EG", "PS", "QA", "UA"], 29),
    **dict.fromkeys(["JO", "KW", "MU", "YE"], 30),
    **dict.fromkeys(["MT", "SC"], 31),
    **dict.fromkeys(["LC"], 32),
    **dict.fromkeys(["RU"], 33),
}

#: Card networks: (lowest prefix, highest prefix, lengths); a prefix is compared on as many
#: leading digits as it has.
_CARD_PREFIXES: tuple[tuple[int, int, tuple[int, ...]], ...] = (
    (4, 4, (13, 16, 19)),  # Visa
    (51, 55, (16,)),  # Mastercard
    (2221, 2720, (16,)),  # Mastercard
    (34, 34, (15,)),  # American Express
    (37, 37, (15,)),
    (6011, 6011, (16, 17, 18, 19)),  # Discover
    (644, 649, (16, 17, 18, 19)),
    (65, 65, (16, 17, 18, 19)),
    (62, 62, (16, 17, 18, 19)),  # UnionPay
    (3528, 3589, (16, 17, 18, 19)),  # JCB
    (300, 305, (14, 16, 17, 18, 19)),  # Diners Club
    (36, 36, (14, 16, 17, 18, 19)),
    (38, 39, (16, 17, 18, 19)),
    (50, 50, (13, 14, 15, 16, 17, 18, 19)),  # Maestro
    (56, 69, (13, 14, 15, 16, 17, 18, 19)),
    (2200, 2204, (16, 17, 18, 19)),  # Mir
)

_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])([A-Za-z0-9][A-Za-z0-9._%+-]{0,63})@"
    r"((?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+)([A-Za-z]{2,24})(?![A-Za-z0-9-])"
)
_CARD = re.compile(r"(?<![\d+-])\d(?:[ -]?\d){12,18}(?![\d])")
_IBAN_START = re.compile(r"(?<![A-Za-z0-9])([A-Za-z]{2})(\d{2})")
#: A phone candidate: optional +, then digits with single separators (one parenthesised group).
_PHONE = re.compile(r"(?<![\w+.,/$€£¥])(\+?\(?\d[\d().\- ]{5,24}\d)(?![\w/]|[.,]\d)")
_NANP = re.compile(r"(?:\+?1[ .-]?)?(?:\([2-9]\d\d\) ?|[2-9]\d\d[ .-])[2-9]\d\d[ .-]\d{4}")
_TRUNK = re.compile(r"0\d{1,4}(?:[ -]\d{2,5}){1,4}")
_KEYWORD = re.compile(
    r"(?:phone|tel|telephone|call|calling|mobile|cell|fax|whats ?app|sms|text me|ring|hotline)"
    r"\b\W{0,3}(?:\w+\W{1,3}){0,2}$",
    re.IGNORECASE,
)
_DOUBLE_SEPARATOR = re.compile(r"[ .-]{2}|\([ .-]|[ .-]\)|\)[.)]")
_DATE = re.compile(r"\d{4}[-.]\d{1,2}[-.]\d{1,2}|\d{1,2}[-.]\d{1,2}[-.]\d{2,4}")


@dataclass(frozen=True)
class PersonalValue:
    """One value found: its kind, where it is in the text (``start``, ``end``) and the masked
    form shown in reports. The value itself is ``text[start:end]`` and is never stored here."""

    kind: str
    start: int
    end: int
    masked: str


# --- checks ------------------------------------------------------------------------------------


def luhn_valid(digits: str) -> bool:
    """The Luhn check (ISO/IEC 7812-1) of a string of digits."""
    if not digits.isdigit() or not digits.isascii():
        return False
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def iban_valid(iban: str) -> bool:
    """Country, length (:data:`IBAN_LENGTHS`) and the mod-97 check of an IBAN without spaces."""
    iban = iban.upper()
    if not iban.isascii() or not iban.isalnum() or IBAN_LENGTHS.get(iban[:2]) != len(iban):
        return False
    if not iban[2:4].isdigit():
        return False
    moved = iban[4:] + iban[:4]
    return int("".join(str(int(char, 36)) for char in moved)) % 97 == 1


def _card_network(digits: str) -> bool:
    for low, high, lengths in _CARD_PREFIXES:
        size = len(str(low))
        if low <= int(digits[:size]) <= high and len(digits) in lengths:
            return True
    return False


# --- masking -----------------------------------------------------------------------------------


def mask(kind: str, value: str) -> str:
    """The value as reports show it (see the module docstring): never more than the first
    letter of an e-mail address's parts and its top-level domain, the last four characters of
    a card number or IBAN (with the IBAN's country), the last two digits of a phone number."""
    if kind == "email":
        local, _, domain = value.partition("@")
        *labels, tld = domain.split(".")
        return f"{local[:1]}***@{labels[0][:1] if labels else ''}***.{tld}"
    if kind == "payment_card":
        digits = re.sub(r"\D", "", value)
        return " ".join([*_groups("*" * (len(digits) - 4)), digits[-4:]])
    if kind == "iban":
        compact = value.replace(" ", "").upper()
        return " ".join([compact[:2] + "**", *_groups("*" * (len(compact) - 8)), compact[-4:]])
    if kind == "phone":
        total = sum(char.isdigit() for char in value)
        seen, out = 0, []
        for char in value:
            if char.isdigit():
                seen += 1
                out.append(char if seen > total - 2 else "*")
            else:
                out.append(char)
        return "".join(out)
    raise ValueError(f"unknown kind {kind!r}; expected one of {KINDS}")


def _groups(value: str) -> list[str]:
    return [value[i : i + 4] for i in range(0, len(value), 4)]


# --- finding -----------------------------------------------------------------------------------


def find_personal_data(text: str) -> list[PersonalValue]:
    """Every e-mail address, payment card number, IBAN and phone number in ``text`` (see the
    module docstring for the rules), ordered by position; values do not overlap."""
    found: list[PersonalValue] = []
    taken = bytearray(len(text))  # 1 where a value was found: linear in a hostile long text

    def overlaps(start: int, end: int) -> bool:
        return any(taken[start:end])

    def add(kind: str, start: int, end: int) -> None:
        found.append(PersonalValue(kind, start, end, mask(kind, text[start:end])))
        taken[start:end] = b"\x01" * (end - start)

    for match in _EMAIL.finditer(text):
        add("email", match.start(), match.end())
    for match in _CARD.finditer(text):
        value = match.group()
        if overlaps(*match.span()) or len({c for c in value if not c.isdigit()}) > 1:
            continue
        digits = re.sub(r"\D", "", value)
        if len(set(digits)) > 1 and _card_network(digits) and luhn_valid(digits):
            add("payment_card", *match.span())
    for match in _IBAN_START.finditer(text):
        span = _iban_at(text, match)
        if span is not None and not overlaps(*span):
            add("iban", *span)
    for match in _PHONE.finditer(text):
        start, end = match.span(1)
        value = match.group(1).rstrip(" .-")
        end = start + len(value)
        if not overlaps(start, end) and _is_phone(value, text[max(0, start - 40) : start]):
            add("phone", start, end)
    return sorted(found, key=lambda value: value.start)


def _iban_at(text: str, match: re.Match[str]) -> tuple[int, int] | None:
    """The span of a valid IBAN starting at ``match`` (country and check digits), in one run
    or in groups of four, ending where a word ends; else None."""
    length = IBAN_LENGTHS.get(match.group(1).upper())
    if length is None:
        return None
    start = match.start()
    for grouped in (False, True):
        chars, position = [], start
        while len(chars) < length and position < len(text):
            char = text[position]
            if grouped and char == " " and len(chars) % 4 == 0 and chars:
                position += 1
                continue
            if not (char.isascii() and char.isalnum()):
                break
            chars.append(char)
            position += 1
        after = text[position : position + 1]
        if len(chars) == length and not (after.isascii() and after.isalnum()):
            if iban_valid("".join(chars)):
                return start, position
    return None


def _is_phone(value: str, before: str) -> bool:
    digits = sum(char.isdigit() for char in value)
    if digits > 15 or _DATE.fullmatch(value) or value.count("(") != value.count(")"):
        return False
    if _DOUBLE_SEPARATOR.search(value):
        return False  # two separators in a row: numbers in prose, not one phone number
    if value.startswith("+"):
        return digits >= 8
    if _NANP.fullmatch(value):
        return True
    if _TRUNK.fullmatch(value) and 10 <= digits <= 11:
        return True
    return digits >= 7 and _KEYWORD.search(before) is not None


# --- over a dataset ----------------------------------------------------------------------------


def personal_data_summary(
    texts: Sequence[str], ids: Sequence[str] | None = None, *, max_examples: int = 3
) -> dict[str, Any]:
    """Counts of personal data over ``texts``.

    Returns ``{"n_texts", "texts_affected", "kinds": {kind: {"occurrences", "texts",
    "examples": [{"index", "id", "masked"}]}}}``: per kind the values found, the texts holding
    at least one, and the first ``max_examples`` (in text order) with the value masked.
    """
    if ids is not None and len(ids) != len(texts):
        raise ValueError(f"{len(texts)} texts but {len(ids)} ids")
    kinds: dict[str, dict[str, Any]] = {
        kind: {"occurrences": 0, "texts": 0, "examples": []} for kind in KINDS
    }
    affected = 0
    for index, text in enumerate(texts):
        values = find_personal_data(text)
        if not values:
            continue
        affected += 1
        for kind in {value.kind for value in values}:
            kinds[kind]["texts"] += 1
        for value in values:
            entry = kinds[value.kind]
            entry["occurrences"] += 1
            if len(entry["examples"]) < max_examples:
                sample_id = str(ids[index]) if ids is not None else str(index)
                entry["examples"].append({"index": index, "id": sample_id, "masked": value.masked})
    return {"n_texts": len(texts), "texts_affected": affected, "kinds": kinds}
