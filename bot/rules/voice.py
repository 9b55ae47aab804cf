"""What a voice message's recognised words say, read as a typed answer would be (pure).

WeChat hands us its speech recognition (the XML's Recognition) as written Chinese: digits
come as "1234", as "一二三四" or "幺二三四" (1 said as 幺 on the phone), 0 as 零, 〇 or 洞,
2 as 两, sometimes read as a number ("一千二百三十四"), mixed with digits, split by spaces
or "、", and nearly always ending in "。". These functions turn such words into the digits
or the yes/no a flow reads; anything else is None (the words are then used as they are).
"""

from __future__ import annotations

import re
import unicodedata

# Digits as people say them. 幺 (yāo) and 洞 (dòng) are how 1 and 0 are read out on the
# phone and by the military; 两 is the everyday 2.
DIGIT_WORDS = {
    "零": "0",
    "〇": "0",
    "○": "0",
    "洞": "0",
    "一": "1",
    "幺": "1",
    "二": "2",
    "两": "2",
    "三": "3",
    "四": "4",
    "五": "5",
    "六": "6",
    "七": "7",
    "八": "8",
    "九": "9",
}
UNITS = {"十": 10, "百": 100, "千": 1000}
# What recognition puts between or after the words: punctuation and spaces, never meaning.
SEPARATORS = re.compile(r"[\s,，、.。!！?？~～;；:：\-—_·…\"'“”‘’]+")
# A menu choice said with a word around it: "第二个", "我选三", "选择1".
CHOICE_AROUND = re.compile(r"^(?:我选|选择|选|第)?(.+?)(?:个|项|条)?$")
# What people say around their phone's last digits: "尾号是一二三四", "后四位1234".
DIGITS_AROUND = re.compile(
    r"(?:我的|手机号码|手机号|手机|电话号码|电话|号码|的|最后四位|后四位|后4位|尾号|是|为)"
)
# Yes and no to "对吗？回复1确认，2重说", said or typed.
YES = frozenset({"对", "对的", "对了", "是", "是的", "确认", "没错", "正确", "好", "好的"})
NO = frozenset({"不对", "不是", "错了", "不对的", "重说", "再说", "重新说"})


def plain(text: str) -> str:
    """NFKC (full-width digits as plain ones) with the separators removed."""
    return SEPARATORS.sub("", unicodedata.normalize("NFKC", text))


def tidy(text: str) -> str:
    """Recognised words as a person would have typed them: no spaces at the ends, inner
    runs of spaces as one, and without the full stop recognition puts at the end."""
    said = " ".join(text.split())
    return said.rstrip("。.")


def spoken_digits(text: str) -> str | None:
    """The digits the whole text says, or None when it says anything else: "一二三四。",
    "幺二三四", "1 2 3 4", "12三四", "洞洞七" and "一千二百三十四" all give digits; "三个"
    and "我想问" give None. A number read with 十/百/千 gives its value ("十五" → "15")."""
    said = plain(text)
    if not said:
        return None
    if any(ch in UNITS for ch in said):
        return _number(said)
    digits = [DIGIT_WORDS.get(ch, ch) for ch in said]
    if not all(d.isascii() and d.isdigit() for d in digits):
        return None
    return "".join(digits)


def spoken_choice(text: str) -> str | None:
    """The number a menu choice says, with the words people put around one: "二", "第二个",
    "我选2"; None for anything else."""
    said = plain(text)
    found = CHOICE_AROUND.match(said)
    if found is None:
        return None
    return spoken_digits(found.group(1))


def digits_in(text: str) -> str | None:
    """The digits of an answer to "the last four digits of your phone": the digits alone,
    or with the words people say around them ("尾号是一二三四", "后四位1234")."""
    return spoken_digits(text) or spoken_digits(DIGITS_AROUND.sub("", plain(text)))


def answer(text: str) -> str | None:
    """The answer to a check-back, typed or said: "1" (yes), "2" (say it again), or None."""
    said = plain(text)
    if said in YES:
        return "1"
    if said in NO:
        return "2"
    digits = spoken_digits(said)
    return digits if digits in ("1", "2") else None


def _number(said: str) -> str | None:
    """A number read out with 十, 百, 千 (up to 9999): "二十" 20, "一百零五" 105, "两千" 2000;
    a last digit right after a unit counts in the next unit down, as people say it
    ("一千二" 1200, "三百五" 350). None when the words are not such a number."""
    total, digit, last_unit, zero = 0, None, 10000, False
    for ch in said:
        value = DIGIT_WORDS.get(ch, ch if ch.isascii() and ch.isdigit() else None)
        if value is not None:
            if digit is not None:  # two digits in a row: not a number read out
                return None
            if value == "0":
                zero = True
                continue
            digit = int(value)
        elif ch in UNITS:
            unit = UNITS[ch]
            if unit >= last_unit or (digit is None and (unit != 10 or total)):
                return None  # units out of order, or 百/千 with no digit before it
            total += (1 if digit is None else digit) * unit
            digit, last_unit, zero = None, unit, False
        else:
            return None
    if digit is not None:
        total += digit if zero or last_unit == 10 or last_unit == 10000 else digit * last_unit // 10
    return str(total)
