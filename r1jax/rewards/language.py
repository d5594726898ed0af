"""Language-consistency reward (DeepSeek-R1): the share of the chain of thought in the target language.

Languages are told apart by Unicode script, so "en" means "written in Latin script". The think
block is cut into units: a word (a run of letters, with the combining marks inside it: Devanagari's
vowel signs and virama, Arabic and Hebrew vowel points, decomposed Latin accents) for scripts that
separate words with spaces, a single character for scripts that do not (Han, kana, Thai). The reward
is the share of units in a script of the target language. LaTeX commands and math (`$...$`,
`$$...$$`, `\\(...\\)`, `\\[...\\]`) are left out, so formulas count for no language; a think block
with no letters at all scores 0. Only the first MAX_CHARS characters are read: a long think block's
share is well measured on them, and it bounds the cost of adversarial megabyte inputs.
"""
from __future__ import annotations

import dataclasses
import re

from r1jax.rewards.format import think_content

# Code point ranges of the scripts told apart (letters only; digits and punctuation never count).
SCRIPT_RANGES: dict[str, str] = {
    "latin": "A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f\u1e00-\u1eff",
    "greek": "\u0370-\u03ff\u1f00-\u1fff",
    "cyrillic": "\u0400-\u04ff",
    "hebrew": "\u05d0-\u05ea",
    "arabic": "\u0620-\u064a\u066e-\u06d3",
    "devanagari": "\u0904-\u0939\u0958-\u0961",
    "thai": "\u0e01-\u0e30\u0e32\u0e33\u0e40-\u0e46",
    "hangul": "\u1100-\u11ff\u3130-\u318f\uac00-\ud7af",
    "hiragana": "\u3041-\u309f",
    "katakana": "\u30a0-\u30ff\u31f0-\u31ff",
    "han": "\u3005-\u3007\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f",  # with 々 〆 〇
}
# Combining marks that belong to the word they sit in (Unicode category M, which is neither a letter nor \w):
# generic and Cyrillic diacritics, Hebrew points, Arabic vowel marks, Devanagari vowel signs and virama.
COMBINING_MARKS = ("\u0300-\u036f\u0483-\u0489\u0591-\u05bd\u05bf\u05c1\u05c2\u05c4\u05c5\u05c7"
                   "\u0610-\u061a\u064b-\u065f\u0670\u06d6-\u06dc\u06df-\u06e4\u06e7\u06e8\u06ea-\u06ed"
                   "\u0900-\u0903\u093a-\u093c\u093e-\u094f\u0951-\u0957\u0962\u0963")
# Scripts written without spaces between words: every character is a unit.
CHARACTER_SCRIPTS = frozenset({"han", "hiragana", "katakana", "thai"})
LANGUAGE_SCRIPTS: dict[str, frozenset[str]] = {
    **{code: frozenset({"latin"}) for code in ("en", "fr", "de", "es", "it", "pt", "nl", "vi", "id", "tr")},
    "zh": frozenset({"han"}),
    "ja": frozenset({"han", "hiragana", "katakana"}),
    "ko": frozenset({"hangul"}),
    "ru": frozenset({"cyrillic"}),
    "uk": frozenset({"cyrillic"}),
    "el": frozenset({"greek"}),
    "ar": frozenset({"arabic"}),
    "he": frozenset({"hebrew"}),
    "hi": frozenset({"devanagari"}),
    "th": frozenset({"thai"}),
}

MAX_CHARS = 300_000  # about a 64K-token think block (some 4 characters a token)

_LATEX_COMMAND = re.compile(r"\\[A-Za-z]+")
_MATH_OPENING = re.compile(r"\$\$|\$|\\\[|\\\(")
_MATH_CLOSING = {"$$": "$$", "$": "$", "\\[": "\\]", "\\(": "\\)"}
_CHARACTER_CLASS = "".join(SCRIPT_RANGES[script] for script in sorted(CHARACTER_SCRIPTS))
_LETTER = r"[^\W\d_]"
_MARK = f"[{COMBINING_MARKS}]"


@dataclasses.dataclass(frozen=True)
class _Units:
    """Counts the units of some scripts: each character of a run of `characters`, each match of `words` once."""
    characters: re.Pattern[str] | None
    words: re.Pattern[str] | None

    def count(self, prose: str, words_only: str) -> int:
        """`words_only` is `prose` with its character-script runs made spaces (they end words as spaces do)."""
        # A run is one match however long, and subn counts matches in C without building a list: fast on
        # megabytes of text.
        runs = sum(map(len, self.characters.findall(prose))) if self.characters else 0
        return runs + (self.words.subn("", words_only)[1] if self.words else 0)


def _units(scripts: frozenset[str]) -> _Units:
    character_class = "".join(SCRIPT_RANGES[s] for s in sorted(scripts & CHARACTER_SCRIPTS))
    word_class = "".join(SCRIPT_RANGES[s] for s in sorted(scripts - CHARACTER_SCRIPTS))
    # A whole word in the script: "Python" in "用Python写" counts, "abc" in "abcабв" does not.
    word = rf"(?<!{_LETTER})(?<!{_MARK})[{word_class}][{word_class}{COMBINING_MARKS}]*(?!{_LETTER})(?!{_MARK})"
    return _Units(re.compile(f"[{character_class}]+") if character_class else None,
                  re.compile(word) if word_class else None)


# Any unit of any language: a character of a character script, or a run of other letters and their marks.
_ANY_UNIT = _Units(re.compile(f"[{_CHARACTER_CLASS}]+"), re.compile(f"{_LETTER}(?:{_LETTER}|{_MARK})*"))
_LANGUAGE_UNITS = {language: _units(scripts) for language, scripts in LANGUAGE_SCRIPTS.items()}


def _without_math(text: str) -> str:
    """`text` with its math spans made spaces; an opening without a closing stays. Linear: once a closing
    is missing after some point, it is missing after every later one too."""
    kept, position, unclosed = [], 0, set()
    for opening in _MATH_OPENING.finditer(text):
        delimiter = opening[0]
        if opening.start() < position or delimiter in unclosed:
            continue
        close = text.find(_MATH_CLOSING[delimiter], opening.end())
        if close < 0:
            unclosed.add(delimiter)
            continue
        kept.append(text[position:opening.start()])
        position = close + len(_MATH_CLOSING[delimiter])
    kept.append(text[position:])
    return " ".join(kept)


def script_share(text: str, language: str) -> float:
    """Share in [0, 1] of the units of `text` (its first MAX_CHARS characters) in a script of `language`.

    0 for a text without letters.
    """
    if language not in _LANGUAGE_UNITS:
        raise ValueError(f"unknown language {language!r}; known: {sorted(_LANGUAGE_UNITS)}")
    prose = _LATEX_COMMAND.sub(" ", _without_math(text[:MAX_CHARS]))
    words_only = _ANY_UNIT.characters.sub(" ", prose)
    total = _ANY_UNIT.count(prose, words_only)
    if total == 0:
        return 0.0
    return _LANGUAGE_UNITS[language].count(prose, words_only) / total


def consistency(completion: str, *, language: str = "en", prefill: str = "") -> float:
    """Language-consistency reward: `script_share` of the think block; 0 without a think block."""
    thought = think_content(completion, prefill=prefill)
    return 0.0 if thought is None else script_share(thought, language)
