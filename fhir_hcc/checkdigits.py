"""Check digits of SNOMED CT identifiers (Verhoeff) and LOINC codes (mod 10).

Implements Appendix B of cohort-rules.md. The checks catch transcription typos only; a code that
passes may still mean something other than its mapping says.
"""

import re

# Verhoeff tables: multiplication in the dihedral group D5 and the position permutation.
_VERHOEFF_MULTIPLY = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
    (1, 2, 3, 4, 0, 6, 7, 8, 9, 5),
    (2, 3, 4, 0, 1, 7, 8, 9, 5, 6),
    (3, 4, 0, 1, 2, 8, 9, 5, 6, 7),
    (4, 0, 1, 2, 3, 9, 5, 6, 7, 8),
    (5, 9, 8, 7, 6, 0, 4, 3, 2, 1),
    (6, 5, 9, 8, 7, 1, 0, 4, 3, 2),
    (7, 6, 5, 9, 8, 2, 1, 0, 4, 3),
    (8, 7, 6, 5, 9, 3, 2, 1, 0, 4),
    (9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
)
_VERHOEFF_PERMUTE = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
    (1, 5, 7, 6, 2, 8, 3, 0, 9, 4),
    (5, 8, 0, 3, 7, 9, 6, 1, 4, 2),
    (8, 9, 1, 6, 0, 4, 3, 5, 2, 7),
    (9, 4, 5, 3, 1, 2, 6, 8, 7, 0),
    (4, 2, 8, 6, 5, 7, 3, 9, 0, 1),
    (2, 7, 9, 3, 8, 0, 6, 4, 1, 5),
    (7, 0, 4, 6, 9, 1, 3, 2, 5, 8),
)

_LOINC_FORM = re.compile(r"([0-9]+)-([0-9])")


def verhoeff_valid(code: str) -> bool:
    """True if the digit string, check digit included, has a Verhoeff checksum of 0."""
    if not code.isascii() or not code.isdigit():
        return False
    checksum = 0
    for position, digit in enumerate(reversed(code)):
        checksum = _VERHOEFF_MULTIPLY[checksum][_VERHOEFF_PERMUTE[position % 8][int(digit)]]
    return checksum == 0


def loinc_check_digit_valid(code: str) -> bool:
    """True if `code` has the form NNNNN-C and C is its LOINC mod-10 check digit.

    Answer, list and part codes (LA…, LL…, LP…) carry no such check digit and return False.
    """
    match = _LOINC_FORM.fullmatch(code)
    if match is None:
        return False
    body, check = match.groups()
    return _loinc_check_digit(body) == int(check)


def _loinc_check_digit(body: str) -> int:
    from_right = body[::-1]
    # Positions counted from the right; each group keeps its original left-to-right order.
    odd_positions = from_right[0::2][::-1]
    even_positions = from_right[1::2][::-1]
    digits = str(int(odd_positions) * 2) + even_positions
    return (10 - sum(int(digit) for digit in digits) % 10) % 10
