"""How numbers are written on screen: thousands separators, bytes, ratios, probabilities."""

from __future__ import annotations

MINUS = "\u2212"  # a real minus sign, as wide as a plus
TIMES = "\u00d7"


def fmt_int(n: int) -> str:
    """3997696 -> '3,997,696'."""
    return f"{int(n):,}".replace("-", MINUS)


def fmt_bytes(n: float, digits: int = 1) -> str:
    """Bytes in decimal (SI) units: 70272 -> '70.3 KB', 399769600000 -> '399.8 GB'."""
    if abs(n) < 1000:
        return f"{fmt_int(n)} bytes"
    for unit in ("KB", "MB", "GB", "TB", "PB"):
        n /= 1000
        if abs(n) < 1000 or unit == "PB":
            return f"{n:,.{digits}f} {unit}".replace("-", MINUS)
    raise AssertionError("unreachable")


def fmt_ratio(x: float, digits: int = 1) -> str:
    """56.889 -> '56.9×'."""
    return f"{x:,.{digits}f}{TIMES}"


def fmt_percent(p: float, digits: int = 1) -> str:
    """0.4213 -> '42.1%'."""
    return f"{100 * p:.{digits}f}%"


def fmt_float(x: float, digits: int = 2) -> str:
    """-0.1234 -> '−0.12' (with a true minus sign)."""
    return f"{x:.{digits}f}".replace("-", MINUS)


def say_ratio(x: float, digits: int = 1) -> str:
    """A ratio as narration says it: 56.889 -> '56.9 times'."""
    return f"{x:,.{digits}f} times"


def say_token(display_token: str) -> str:
    """A token as narration quotes it: '␣blue' (a drawn token) -> '"blue"'."""
    return f"\u201c{display_token.replace(chr(0x2423), ' ').strip()}\u201d"


def say_sci(x: float, digits: int = 1) -> str:
    """A small or large number as narration says it: 5.7e-14 -> '5.7 times ten to the minus 14'."""
    mantissa, exponent = f"{x:.{digits}e}".split("e")
    power = int(exponent)
    if power == 0:
        return mantissa
    sign = "minus " if power < 0 else ""
    return f"{mantissa} times ten to the {sign}{abs(power)}"
