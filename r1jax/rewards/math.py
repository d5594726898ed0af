"""Math answer reward: extract the final answer of a completion and test it against the gold answer.

Extraction (`extract_answer`): the text after the last `</think>` (all of it without one: an answer the
thinking wrote and then revised is not the answer); in it the last `<answer>...</answer>` block if
there is one, else that text; inside it the last `\\boxed{...}`/`\\fbox{...}` (nested braces), else the
text after the last "answer is" / "answer:" / "####" marker (the rest of its line, or the next line
with text, without Markdown emphasis), else (for an answer block) the block itself.

Equivalence (`equivalent`): both answers are parsed by a small LaTeX/plain-math parser and compared
by value, not by sympy simplification:
  * numbers compare exactly as rationals (decimals, `\\frac`, `a/b`, thousands separators, `50\\%`
    against 50 or 0.5); values involving `\\sqrt`, `\\pi`, `e`, `i` or functions compare as complex
    doubles within a relative tolerance of 1e-9;
  * expressions with variables compare at a few fixed pseudo-random positive rational points
    (`x^2+2x+1` equals `(x+1)^2`), plus points with negative values when an absolute value is
    involved (`|x|` is not `x`); `\\tan^{-1}` is `\\arctan`; equations and inequalities compare as
    proportional `lhs - rhs`;
  * tuples and intervals compare item by item with their brackets, sets (`\\{...\\}`, `\\cup`,
    top-level comma lists, `\\pm`) ignore order; `x = 3` against `3` compares the assigned value;
  * LaTeX spacing, `\\left`/`\\right`, `$`, degrees and `\\text{...}` units are ignored, as are
    unit words after a space or a few units glued to the number (`5cm`; `2ab` is a product); answers
    that are words (`\\text{Monday}`, `\\text{No}`, `no`) compare as case-folded text; `\\text{A}, \\text{C}`
    is the set of choices A and C; a scale word after a number multiplies it (`5 million`); `1.5e10`
    is scientific notation (`3e - 1` and `3e^2` use Euler's number); `a:b` (a ratio, a time) is the
    pair `(a, b)`, so `6:8` is not `3:4`.

Every check is bounded without signals or subprocesses, so it works from any thread: answers longer
than MAX_ANSWER_CHARS or nested deeper than MAX_NESTING are rejected, exact integers are capped at
MAX_EXACT_BITS (beyond that values become doubles, and overflow fails the check), and evaluation
checks a deadline (`timeout_s` of the thread's CPU time) at every node. A gold answer that cannot be
parsed or evaluated makes the result None, so the trainer can leave the example out of its statistics
instead of paying a free reward.
"""
from __future__ import annotations

import cmath
import functools
import math
import numbers
import random
import re
import time
from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal
from fractions import Fraction

from r1jax.rewards.format import ANSWER_TAG, after_thinking, last_tag_content

DEFAULT_TIMEOUT_S = 0.5
MAX_ANSWER_CHARS = 1000
MAX_NESTING = 64  # parser recursion: two levels per bracket, command argument or exponent
MAX_EXACT_BITS = 16_384
REL_TOL = 1e-9
ABS_TOL = 1e-12
_MAX_FACTORIAL = 1000
_MAX_BINOMIAL = 10_000
_MAX_EXACT_ROOT = 64
_MAX_PLUS_MINUS = 3
_MAX_DECIMAL_EXPONENT = 4000  # 10^4000 needs 13,288 bits, within MAX_EXACT_BITS
_POINTS_WITH_VARIABLES = 3
_POINTS_WITH_SIGNS = 3

Node = tuple  # ("kind", ...): see _Parser for the node kinds.
Value = Fraction | complex


class _Unparseable(Exception):
    """The text is not an answer this module can read."""


class _PointError(Exception):
    """Evaluation failed at one sample point (division by zero, overflow, domain error)."""


class _Unevaluable(Exception):
    """The gold answer has a part that fails at every sample point."""


class _OutOfTime(Exception):
    """The per-check deadline passed."""


class _Deadline:
    """`timeout_s` of this thread's CPU time, so that a check descheduled on a busy machine is not cut short.
    The cheap wall clock is read at every node; the thread's CPU clock (a system call) once that has passed."""

    def __init__(self, timeout_s: float) -> None:
        self._wall = time.monotonic() + timeout_s
        self._cpu = time.thread_time() + timeout_s

    def passed(self) -> bool:
        return time.monotonic() > self._wall and time.thread_time() > self._cpu


# --------------------------------------------------------------------------- extraction

_BOX_COMMANDS = ("\\boxed", "\\fbox")
_ANSWER_MARKERS = ("####", "answer is", "Answer is", "ANSWER IS", "answer:", "Answer:", "ANSWER:")
_NON_SPACE = re.compile("[^ ]")
_EMPHASIS = " \t\r*_"
_BARE_BOX_ARGUMENT = re.compile(r"[^\s$]+")


def extract_answer(text: str) -> str | None:
    """The final answer written in `text` (see the module docstring), stripped; None if there is none."""
    text = after_thinking(text)
    block = last_tag_content(text, ANSWER_TAG)
    source = text if block is None else block
    answer = last_boxed(source)
    if answer is None:
        answer = _after_last_marker(source)
    if answer is None and block is not None:
        answer = block
    if answer is None:
        return None
    return answer.strip() or None


def last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}`/`\\fbox{...}` in `text` (nested braces kept), unstripped; None if none."""
    start, command = max((text.rfind(command), command) for command in _BOX_COMMANDS)
    if start < 0:
        return None
    argument = start + len(command)
    first_non_space = _NON_SPACE.search(text, argument)
    brace = first_non_space.start() if first_non_space else len(text)
    if brace < len(text) and text[brace] == "{":
        return _braced_content(text, brace)
    if brace > argument:  # "\boxed 5": the argument runs to the next space or "$"
        match = _BARE_BOX_ARGUMENT.match(text, brace)
        return match.group() if match else None
    return None


def _braced_content(text: str, open_brace: int) -> str | None:
    """Content of the brace group opening at `open_brace`; None if it does not close in time.

    Only MAX_ANSWER_CHARS characters are scanned: a longer answer would be rejected anyway, and the
    bound keeps a megabyte of unclosed braces cheap.
    """
    depth = 0
    position = open_brace
    end = min(len(text), open_brace + MAX_ANSWER_CHARS + 2)
    while position < end:
        char = text[position]
        if char == "\\":  # \{ and \} are set braces, not grouping
            position += 2
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[open_brace + 1 : position]
        position += 1
    return None


def _after_last_marker(text: str) -> str | None:
    position, marker = max((text.rfind(marker), marker) for marker in _ANSWER_MARKERS)
    if position < 0:
        return None
    # The rest of the marker's line, else the next line with text ("Answer:\n18"); without Markdown
    # emphasis ("**Answer:** 18", "the answer is **18**.").
    for line in text[position + len(marker):].split("\n"):
        sentence_end = line.find(". ")  # "The answer is 3.5. So..." keeps the decimal point
        if sentence_end >= 0:
            line = line[:sentence_end]
        answer = line.lstrip(_EMPHASIS + ":").rstrip(_EMPHASIS + ".")
        if answer:
            return answer
    return None


# --------------------------------------------------------------------------- public API


def equivalent(prediction: str | None, gold: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> bool | None:
    """Whether the answer `prediction` equals `gold`; None if `gold` cannot be read or evaluated.

    A missing, unreadable or too slow prediction is False. Thread-safe; bounded by `timeout_s`.
    """
    gold_node = _parse(gold)
    if gold_node is None:
        return None
    prediction_node = None if prediction is None else _parse(prediction)
    # The clock starts after parsing, so a slow prediction can never make the gold look unevaluable.
    comparison = _Comparison(gold_node, prediction_node, _Deadline(timeout_s))
    try:
        comparison.require_evaluable(gold_node)
    except (_Unevaluable, _OutOfTime):
        return None
    if prediction_node is None:
        return False
    try:
        return comparison.equal(gold_node, prediction_node)
    except (_OutOfTime, ArithmeticError, ValueError):  # e.g. a ratio of 10^400 to a complex value overflows
        return False


def verify(completion: str, gold: str | int | float, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> bool | None:
    """Whether the final answer of `completion` equals `gold`; None if `gold` is unreadable.

    `gold` may be a bare answer (a number from a dataset, a float written out in positional notation)
    or a worked solution ending in `\\boxed{...}` or `#### answer`.
    """
    text = gold_text(gold)
    return equivalent(extract_answer(completion), extract_answer(text) or text, timeout_s=timeout_s)


def gold_text(gold: str | int | float) -> str:
    """A dataset's gold answer as text; a float in positional notation (`str(1e-07)` would read as e - 7)."""
    inexact = isinstance(gold, numbers.Real) and not isinstance(gold, numbers.Rational)  # float, numpy floats
    return _positional(float(gold)) if inexact else str(gold)


def _positional(number: float) -> str:
    """1e-05 as 0.00001 and 1e+16 as 10000000000000000: `str` would write an exponent the parser reads as e."""
    return format(Decimal(repr(number)), "f") if math.isfinite(number) else str(number)


def score(
    completion: str,
    answer: str | int | float,
    *,
    correct_score: float = 1.0,
    wrong_score: float = 0.0,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> float | None:
    """Accuracy reward: `correct_score` if `verify` holds, `wrong_score` if not, None for an unreadable gold."""
    verdict = verify(completion, answer, timeout_s=timeout_s)
    if verdict is None:
        return None
    return correct_score if verdict else wrong_score


# --------------------------------------------------------------------------- normalization

_UNICODE_MATH = str.maketrans(
    {"−": "-", "–": "-", "×": "*", "÷": "/", "·": "*", "≤": "<=", "≥": ">=", "≠": "!=",
     "π": "\\pi ", "∞": "\\infty ", "√": "\\sqrt ", "°": ""}
)
_UNIT_EXPONENT = r"(?:\s*\^\s*(?:\{\s*[0-9]\s*\}|[0-9]))?"  # cm^2
_TEXT_COMMAND = re.compile(r"\\(?:text|textbf|textit|textrm|textnormal|mbox)\s*\{([^{}]*)\}" + _UNIT_EXPONENT)
_ROMAN_UNIT = re.compile(r"\\mathrm\s*\{\s*[A-Za-z]{2,}\s*\}" + _UNIT_EXPONENT)
# "18 dollars" is 18, but "3 or more" is not 3. Words follow a space: "2ab" is a product, only a few
# units are written glued to their number ("5cm").
# Whole words only (the lookahead): otherwise the repetition splits "students students," in
# exponentially many ways before failing.
_GLUED_UNIT = r"(?:mm|cm|km|mg|kg|ml|mL|ft|lbs?|oz|hrs?|mins?|secs?|mph|kph)(?![A-Za-z])\.?"
_NUMBER_THEN_WORDS = re.compile(r"([-+]?[0-9][0-9,]*(?:\.[0-9]+)?)(?:" + _GLUED_UNIT +
                                r")?(?:\s+(?!or\b)[A-Za-z]{2,}(?![A-Za-z])\.?)*\s*")
_FONT_COMMAND = re.compile(r"\\(?:mathrm|mathbf|mathit|boldsymbol|bm|operatorname)(?![A-Za-z])")
_DEGREES = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|\\circ(?![A-Za-z])|\\degree(?![A-Za-z])")
_BARE_AND = re.compile(r"(?<![A-Za-z\\])and(?![A-Za-z])")
_BARE_FUNCTION = re.compile(
    r"(?<![A-Za-z\\])(sqrt|pi|infty|infinity|inf|sin|cos|tan|sec|csc|cot|arcsin|arccos|arctan|ln|log|exp)"
    r"(?![A-Za-z])"
)
_ENVIRONMENT = re.compile(r"\\(?:begin|end)\s*\{[A-Za-z*]*\}")
_WORD = re.compile(r"(?<![A-Za-z\\])[A-Za-z]{3,}")
_NOT_ALPHANUMERIC = re.compile(r"[^a-z0-9]")
_NO = re.compile(r"[Nn]o|NO")  # the one two-letter answer word; other letter pairs are products ("ab")
# A lone capital in \text (or "(C)"), at the start or after a comma or "and", is a multiple-choice letter.
_CHOICE_LETTER = re.compile(r"\(?([A-Z])\)?")
_BEFORE_CHOICE = re.compile(r"(?:^|,|(?<![A-Za-z])and|\\text\s*\{\s*and\s*\})\s*$")
_MATH_DELIMITERS = (("\\(", "\\)"), ("\\[", "\\]"))
_MATH_THOUSANDS = re.compile(r",\\!\s*")


def _parse(answer: str) -> Node | None:
    # Checked before the cache so a huge string is never kept as a cache key.
    if len(answer) > MAX_ANSWER_CHARS:
        return None
    return _parse_bounded(answer)


@functools.lru_cache(maxsize=8192)  # gold answers repeat across a group's completions
def _parse_bounded(answer: str) -> Node | None:
    try:
        text, is_words = _normalize(answer)
        if not text:
            return None
        if is_words:
            return ("text", _NOT_ALPHANUMERIC.sub("", text.lower()))
        return _Parser(_tokenize(text)).answer()
    except (_Unparseable, ValueError):  # ValueError: a number literal Fraction() refuses
        return None


_SCALE_WORDS = {"thousand": 10**3, "million": 10**6, "billion": 10**9, "trillion": 10**12}
# "3:4" (a ratio, a time) is read as the pair (3, 4): equal to "3 : 4", not to "6:8" or 3/4.
_PAIR_WITH_COLON = re.compile(r"([^:{}()\[\]]+):([^:{}()\[\]]+)")


def _scale(words: Sequence[str]) -> str:
    """`*10^k` when the first word after a number is a scale ("5 million"), else nothing."""
    scale = _SCALE_WORDS.get(words[0].rstrip(".").lower()) if words else None
    return f"*{scale}" if scale else ""


def _text_outside_math(match: re.Match[str]) -> str:
    """`\text{...}` inside math holds units ("5\text{ cm}", dropped), a scale ("5\text{ million}"), joins
    answers ("1\text{ and }2") or is one of several choices ("\text{A}, \text{(C)}")."""
    choice = _CHOICE_LETTER.fullmatch(match[1].strip())
    if choice and _BEFORE_CHOICE.search(match.string, 0, match.start()):
        return choice[1]
    words = match[1].split()
    if "or" in words:
        raise _Unparseable("a hedged answer such as 3 \\text{ or } 5")
    return "," if words == ["and"] else _scale(words) + " "


def _normalize(answer: str) -> tuple[str, bool]:
    """The answer as plain math text, and whether it is words (compared as text, not parsed)."""
    text = answer.translate(_UNICODE_MATH).strip()
    for opening, closing in _MATH_DELIMITERS:
        if text.startswith(opening) and text.endswith(closing):
            text = text[len(opening) : -len(closing)]
    text = text.replace("\\$", "").replace("$", "").strip()
    whole_text = _TEXT_COMMAND.fullmatch(text)
    if whole_text:  # \text{Monday}, \text{No}, \text{(C)}: the words are the answer
        text = whole_text[1]
    text = _TEXT_COMMAND.sub(_text_outside_math, text)
    text = _FONT_COMMAND.sub("", _ROMAN_UNIT.sub(" ", text))
    text = _MATH_THOUSANDS.sub(",", _DEGREES.sub("", text).replace("{,}", ","))  # 10{,}000, MATH's 10,\! 000
    text = _BARE_AND.sub(",", text)
    text = _BARE_FUNCTION.sub(lambda match: "\\" + ("infty" if match[1].startswith("inf") else match[1]), text)
    text = text.strip().rstrip(".").strip()
    number_with_unit = _NUMBER_THEN_WORDS.fullmatch(text)
    if number_with_unit:
        return number_with_unit[1] + _scale(text[number_with_unit.end(1):].split()), False
    if _WORD.search(_ENVIRONMENT.sub("", text)) or _NO.fullmatch(text):
        return text, True
    pair = _PAIR_WITH_COLON.fullmatch(text)
    return (f"({pair[1]},{pair[2]})" if pair else text), False


# --------------------------------------------------------------------------- tokens

Token = tuple[str, str]  # (kind, text), kind in {"num", "name", "cmd", "op"}

_TOKEN = re.compile(
    r"""
      (?P<skip>\s+|~|\\(?:left|right|[bB]igg?[lr]?)(?![A-Za-z])\.?
        |\\(?:displaystyle|textstyle|quad|qquad|limits)(?![A-Za-z])|\\[,;:!\ ])
    | (?P<grouped>[1-9][0-9]{0,2}(?:,[0-9]{3})+(?![0-9])(?:\.[0-9]+)?)
    | (?P<scientific>(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+(?![0-9A-Za-z.]))
    | (?P<num>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)
    | (?P<cmd>\\(?:[A-Za-z]+|[{}|%\\]))
    | (?P<name>[A-Za-z])
    | (?P<op>\*\*|<=|>=|!=|[-+*/^_!=<>,|()\[\]{}&%])
    """,
    re.VERBOSE,
)
_COMMAND_ALIASES: dict[str, Token] = {
    "\\dfrac": ("cmd", "\\frac"), "\\tfrac": ("cmd", "\\frac"),
    "\\dbinom": ("cmd", "\\binom"), "\\tbinom": ("cmd", "\\binom"),
    "\\cdot": ("op", "*"), "\\times": ("op", "*"), "\\ast": ("op", "*"), "\\div": ("op", "/"),
    "\\le": ("op", "<="), "\\leq": ("op", "<="), "\\leqslant": ("op", "<="),
    "\\ge": ("op", ">="), "\\geq": ("op", ">="), "\\geqslant": ("op", ">="),
    "\\ne": ("op", "!="), "\\neq": ("op", "!="), "\\lt": ("op", "<"), "\\gt": ("op", ">"),
    "\\langle": ("op", "("), "\\rangle": ("op", ")"), "\\lbrack": ("op", "["), "\\rbrack": ("op", "]"),
    "\\vert": ("op", "|"), "\\lvert": ("op", "|"), "\\rvert": ("op", "|"), "\\mid": ("op", "|"),
    "\\%": ("op", "%"), "\\mp": ("cmd", "\\pm"), "\\varnothing": ("cmd", "\\emptyset"),
}
_OP_ALIASES: dict[str, Token] = {"**": ("op", "^")}
_OPENING = {("op", "("), ("op", "["), ("op", "{"), ("cmd", "\\{")}
_CLOSING = {("op", ")"), ("op", "]"), ("op", "}"), ("cmd", "\\}")}


def _tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    depth = 0
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise _Unparseable(f"unexpected character {text[position]!r}")
        kind, value = match.lastgroup or "", match.group()
        position = match.end()
        if kind == "skip":
            continue
        if kind == "scientific":  # 1.5e10, 3e-1 as programs write them; "3e - 1" and "3e^2" use Euler's e
            if abs(int(re.split("[eE]", value)[1])) > _MAX_DECIMAL_EXPONENT:
                raise _Unparseable("an exponent beyond exact arithmetic")
            kind = "num"
        if kind == "grouped":
            if depth > 0:  # "(1,234)" is a pair: only top-level commas group thousands
                value = value[: value.index(",")]
                position = match.start() + len(value)
            else:
                value = value.replace(",", "")
            kind = "num"
        token = (kind, value)
        token = _COMMAND_ALIASES.get(value, token) if kind == "cmd" else _OP_ALIASES.get(value, token)
        depth += (token in _OPENING) - (token in _CLOSING)
        tokens.append(token)
    return tokens


# --------------------------------------------------------------------------- parser

_GREEK = frozenset(
    "alpha beta gamma delta epsilon varepsilon zeta eta theta vartheta iota kappa lambda mu nu xi "
    "rho sigma tau upsilon phi varphi chi psi omega Gamma Delta Theta Lambda Xi Pi Sigma Phi Psi Omega".split()
)
_MINUS_ONE = ("neg", ("num", Fraction(1)))
_FUNCTION_NAMES = frozenset(
    "sin cos tan sec csc cot arcsin arccos arctan sinh cosh tanh ln log exp".split()
)
_CONSTANT_COMMANDS = {"\\pi": "pi", "\\infty": "inf"}
_CONSTANT_LETTERS = frozenset("ei")  # Euler's number and the imaginary unit
_STRUCTURE_COMMANDS = frozenset({"\\frac", "\\sqrt", "\\binom"})
_RELATIONS = frozenset({"=", "<", ">", "<=", ">=", "!=", "\\in"})
_MATRIX_ENVIRONMENTS = frozenset({"pmatrix", "bmatrix", "matrix", "vmatrix", "Bmatrix", "smallmatrix"})
_TWO = ("num", Fraction(2))


_SIGNS = frozenset({("op", "-"), ("op", "+"), ("cmd", "\\pm")})


def _counts_nesting(method: Callable[[_Parser], Node]) -> Callable[[_Parser], Node]:
    """Bounds the parser's recursion: every recursive path passes through a method decorated with this."""

    @functools.wraps(method)
    def guarded(parser: _Parser) -> Node:
        parser.depth += 1
        try:
            if parser.depth > MAX_NESTING:
                raise _Unparseable("nested too deeply")
            return method(parser)
        finally:
            parser.depth -= 1

    return guarded


class _Parser:
    """Precedence climbing over tokens, producing nested tuples.

    answer   := element ("," element)*             several -> ("set", items)
    element  := union (relation union)?             ("rel", op, lhs, rhs)
              | union relation var relation union   "a < x <= b" -> ("rel", "\\in", x, interval)
    union    := sum ("\\cup" sum)*                   several -> ("set", parts)
    sum      := product (("+" | "-" | "\\pm") product)*        ("add", terms); "-t" -> ("neg", t)
    product  := unary (("*" | "/") unary | implicit power)*    ("mul", factors); "/f" -> ("recip", f)
    unary    := ("-" | "+" | "\\pm") unary | power              "\\pm t" -> ("pm", t)
    power    := postfix ("^" unary)?                           ("pow", base, exponent)
    postfix  := primary ("!" | "%")*                           ("fact", x), ("pct", x)
    primary  := number | letter | constant | (...) | [...] | {...} | \\{...\\} | |x| | \\frac | \\sqrt
              | \\binom | function | matrix
    Leaves: ("num", Fraction), ("var", name), ("const", name); other nodes: ("root", x, n),
    ("abs", x), ("func", name, x), ("log", base, x), ("binom", n, k), ("tuple", open, close, items),
    ("text", words).
    """

    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.position = 0
        self.depth = 0

    def _peek(self) -> Token | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def _take(self) -> Token:
        token = self._peek()
        if token is None:
            raise _Unparseable("unexpected end")
        self.position += 1
        return token

    def _expect(self, token: Token) -> None:
        if self._take() != token:
            raise _Unparseable(f"expected {token[1]!r}")

    def answer(self) -> Node:
        items = [self._element()]
        while self._peek() == ("op", ","):
            self._take()
            items.append(self._element())
        if (leftover := self._peek()) is not None:
            raise _Unparseable(f"unexpected {leftover[1]!r}")
        node = items[0] if len(items) == 1 else ("set", tuple(items))
        return _expand_plus_minus(node)

    def _element(self) -> Node:
        left = self._union()
        token = self._peek()
        if token is None or token[1] not in _RELATIONS:
            return left
        self._take()
        right = self._union()
        following = self._peek()
        if following is None or following[1] not in _RELATIONS:
            return ("rel", token[1], left, right)
        self._take()
        membership = _chain_as_membership(token[1], left, right, following[1], self._union())
        if membership is None:
            raise _Unparseable("unsupported chained relation")
        return membership

    def _union(self) -> Node:
        parts = [self._sum()]
        while self._peek() == ("cmd", "\\cup"):
            self._take()
            parts.append(self._sum())
        return parts[0] if len(parts) == 1 else ("set", tuple(parts))

    def _sum(self) -> Node:
        terms = [self._product()]
        while (token := self._peek()) in (("op", "+"), ("op", "-"), ("cmd", "\\pm")):
            self._take()
            term = self._product()
            terms.append(term if token[1] == "+" else ("neg", term) if token[1] == "-" else ("pm", term))
        return terms[0] if len(terms) == 1 else ("add", tuple(terms))

    def _product(self) -> Node:
        factors = [self._unary()]
        while True:
            token = self._peek()
            if token in (("op", "*"), ("op", "/")):
                self._take()
                factor = self._unary()
                factors.append(factor if token[1] == "*" else ("recip", factor))
            elif _starts_implicit_factor(token):
                factor = self._power()
                mixed = _mixed_number(factors[0], factor) if len(factors) == 1 else None
                if mixed is None:
                    factors.append(factor)
                else:
                    factors[0] = mixed
            else:
                return factors[0] if len(factors) == 1 else ("mul", tuple(factors))

    def _unary(self) -> Node:
        # A loop, not recursion: "------1" must not nest 900 deep. Pairs of minus signs cancel.
        negative, plus_minus = False, 0
        while (token := self._peek()) in _SIGNS:
            self._take()
            negative ^= token == ("op", "-")
            plus_minus += token == ("cmd", "\\pm")
        if plus_minus > _MAX_PLUS_MINUS:
            raise _Unparseable("too many \\pm")
        node = self._power()
        for _ in range(plus_minus):
            node = ("pm", node)
        return ("neg", node) if negative else node

    @_counts_nesting
    def _power(self) -> Node:
        base = self._postfix()
        if self._peek() != ("op", "^"):
            return base
        self._take()
        return ("pow", base, self._unary())

    def _postfix(self) -> Node:
        node = self._primary()
        for _ in range(MAX_NESTING):
            token = self._peek()
            if token == ("op", "!"):
                node = ("fact", node)
            elif token == ("op", "%"):
                node = ("pct", node)
            else:
                return node
            self._take()
        raise _Unparseable("too many postfix operators")

    @_counts_nesting
    def _primary(self) -> Node:
        kind, text = self._take()
        if kind == "num":
            return self._numeral_in_base(text) if self._peek() == ("op", "_") else ("num", Fraction(text))
        if kind == "name":
            return self._letter(text)
        if kind == "op":
            if text in ("(", "["):
                return self._bracketed(text)
            if text == "{":
                return self._braced(("op", "}"))
            if text == "|":
                node = self._sum()
                self._expect(("op", "|"))
                return ("abs", node)
        if kind == "cmd":
            return self._command(text)
        raise _Unparseable(f"unexpected {text!r}")

    def _letter(self, letter: str) -> Node:
        if self._peek() != ("op", "_"):
            return ("const", letter) if letter in _CONSTANT_LETTERS else ("var", letter)
        return ("var", f"{letter}_{self._subscript()}")

    def _numeral_in_base(self, digits: str) -> Node:
        """`4210_{5}`: compared as written (digits and base), not by value; base 10 is a plain number."""
        base = self._subscript()
        if not (digits.isdigit() and base.isdigit() and 2 <= int(base) <= 36
                and all(int(digit) < int(base) for digit in digits)):
            raise _Unparseable("unsupported numeral base")
        if int(base) == 10:
            return ("num", Fraction(digits))
        return ("text", f"{digits.lstrip('0') or '0'}base{int(base)}")

    def _subscript(self) -> str:
        """The text after `_`: one token, or the tokens of a braced group."""
        self._take()
        braced = self._peek() == ("op", "{")
        if braced:
            self._take()
        parts = []
        while (token := self._take()) != ("op", "}"):
            if token[0] not in ("num", "name"):
                raise _Unparseable("unsupported subscript")
            parts.append(token[1])
            if not braced:
                break
        return "".join(parts)

    def _bracketed(self, opening: str) -> Node:
        items = [self._sum()]
        while self._peek() == ("op", ","):
            self._take()
            items.append(self._sum())
        closing = self._take()
        if closing not in (("op", ")"), ("op", "]")):
            raise _Unparseable("unclosed bracket")
        if len(items) == 1:
            if opening + closing[1] not in ("()", "[]"):
                raise _Unparseable("half-open interval with one endpoint")
            return items[0]
        return ("tuple", opening, closing[1], tuple(items))

    def _command(self, command: str) -> Node:
        name = command[1:]
        if command in _CONSTANT_COMMANDS:
            return ("const", _CONSTANT_COMMANDS[command])
        if name in _GREEK:
            return ("var", name)
        if name in _FUNCTION_NAMES:
            return self._function(name)
        if command == "\\frac":
            return ("mul", (self._argument(), ("recip", self._argument())))
        if command == "\\sqrt":
            index = _TWO
            if self._peek() == ("op", "["):
                self._take()
                index = self._sum()
                self._expect(("op", "]"))
            return ("root", self._argument(), index)
        if command == "\\binom":
            return ("binom", self._argument(), self._argument())
        if command == "\\{":
            return self._braced(("cmd", "\\}"))
        if command == "\\emptyset":
            return ("set", ())
        if command == "\\begin":
            return self._matrix()
        raise _Unparseable(f"unsupported command {command}")

    def _argument(self) -> Node:
        """A LaTeX macro argument: a brace group or a single character (`\\frac12` is 1/2)."""
        token = self._peek()
        if token == ("op", "{"):
            self._take()
            node = self._sum()
            self._expect(("op", "}"))
            return node
        if token is not None and token[0] == "num" and len(token[1]) > 1 and token[1][0] != ".":
            self.tokens[self.position] = ("num", token[1][1:])
            return ("num", Fraction(token[1][0]))
        return self._primary()

    def _function(self, name: str) -> Node:
        exponent = None
        if self._peek() == ("op", "^"):  # \sin^2 x
            self._take()
            exponent = self._unary()
            if exponent == _MINUS_ONE and name in ("sin", "cos", "tan"):  # \tan^{-1} x is arctan x
                name, exponent = "arc" + name, None
        base = None
        if name == "log" and self._peek() == ("op", "_"):
            self._take()
            base = self._argument()
        if self._peek() == ("op", "("):
            argument = self._primary()
        else:  # \sin 2x: the argument runs over implicit products, up to the next function
            factors = [self._power()]
            while (
                (token := self._peek()) is not None
                and _starts_implicit_factor(token)
                and token[1][1:] not in _FUNCTION_NAMES
            ):
                factors.append(self._power())
            argument = factors[0] if len(factors) == 1 else ("mul", tuple(factors))
        node = ("func", name, argument) if base is None else ("log", base, argument)
        return node if exponent is None else ("pow", node, exponent)

    def _braced(self, closing: Token) -> Node:
        """`\\{...\\}` is a set; `{...}` groups, unless it holds a comma list (a set typed without backslashes)."""
        items: list[Node] = []
        if self._peek() != closing:
            items.append(self._sum())
            while self._peek() == ("op", ","):
                self._take()
                items.append(self._sum())
        self._expect(closing)
        if closing == ("op", "}") and len(items) == 1:
            return items[0]
        return ("set", tuple(items))

    def _environment(self) -> str:
        self._expect(("op", "{"))
        letters = []
        while (token := self._take()) != ("op", "}"):
            letters.append(token[1])
        return "".join(letters)

    def _matrix(self) -> Node:
        environment = self._environment()
        if environment not in _MATRIX_ENVIRONMENTS:
            raise _Unparseable(f"unsupported environment {environment}")
        rows: list[Node] = []
        row: list[Node] = []
        while True:
            if self._peek() == ("cmd", "\\end") and not row:  # a trailing \\ before \end
                self._take()
                break
            row.append(self._sum())
            token = self._take()
            if token == ("op", "&"):
                continue
            rows.append(("tuple", "row", "row", tuple(row)))
            row = []
            if token == ("cmd", "\\end"):
                break
            if token != ("cmd", "\\\\"):
                raise _Unparseable("bad matrix row")
        if self._environment() != environment:
            raise _Unparseable("mismatched \\end")
        return ("tuple", "matrix", "matrix", tuple(rows))


def _is_integer_literal(node: Node) -> bool:
    return node[0] == "num" and node[1].denominator == 1


def _mixed_number(whole: Node, fraction: Node) -> Node | None:
    """`3\\frac{1}{2}` is 3 + 1/2 when all three are integer literals (and `-3\\frac12` is -(3 + 1/2))."""
    negative = whole[0] == "neg"
    if negative:
        whole = whole[1]
    if not (_is_integer_literal(whole) and fraction[0] == "mul" and len(fraction[1]) == 2):
        return None
    numerator, reciprocal = fraction[1]
    if not (_is_integer_literal(numerator) and reciprocal[0] == "recip" and _is_integer_literal(reciprocal[1])):
        return None
    mixed = ("add", (whole, fraction))
    return ("neg", mixed) if negative else mixed


def _starts_implicit_factor(token: Token | None) -> bool:
    """Juxtaposition multiplies (`2x`, `3\\sqrt{2}`, `(x+1)(x-1)`) unless a number follows: `3 5` is an error."""
    if token is None:
        return False
    kind, text = token
    if kind == "name" or token in (("op", "("), ("op", "{")):
        return True
    if kind != "cmd":
        return False
    return (
        text in _CONSTANT_COMMANDS
        or text in _STRUCTURE_COMMANDS
        or text[1:] in _GREEK
        or text[1:] in _FUNCTION_NAMES
    )


def _is_node(item: object) -> bool:
    return isinstance(item, tuple) and bool(item) and isinstance(item[0], str)


def _children(node: Node) -> Iterator[Node]:
    for item in node[1:]:
        if _is_node(item):
            yield item
        elif isinstance(item, tuple):
            yield from item


def _variables(node: Node) -> set[str]:
    if node[0] == "var":
        return {node[1]}
    return set().union(*(_variables(child) for child in _children(node)))


def _count_plus_minus(node: Node) -> int:
    return (node[0] == "pm") + sum(_count_plus_minus(child) for child in _children(node))


def _choose_signs(node: Node, signs: Iterator[bool]) -> Node:
    """`node` with each ("pm", t), in depth-first order, replaced by t or -t as `signs` says."""
    if node[0] == "pm":
        term = _choose_signs(node[1], signs)
        return term if next(signs) else ("neg", term)
    return tuple(
        _choose_signs(item, signs) if _is_node(item)
        else tuple(_choose_signs(child, signs) for child in item) if isinstance(item, tuple)
        else item
        for item in node
    )


def _expand_plus_minus(node: Node) -> Node:
    """`1 \\pm \\sqrt{2}` means the set {1 + sqrt(2), 1 - sqrt(2)}."""
    count = _count_plus_minus(node)
    if count == 0:
        return node
    if count > _MAX_PLUS_MINUS:
        raise _Unparseable("too many \\pm")
    sign_choices = [[bool(bits >> k & 1) for k in range(count)] for bits in range(2**count)]
    variants = [_choose_signs(node, iter(signs)) for signs in sign_choices]
    flattened = [item for variant in variants for item in (variant[1] if variant[0] == "set" else (variant,))]
    return ("set", tuple(dict.fromkeys(flattened)))


# --------------------------------------------------------------------------- evaluation

_CONSTANTS: dict[str, complex] = {"pi": complex(math.pi), "e": complex(math.e), "i": 1j, "inf": complex(math.inf)}
_FUNCTIONS: dict[str, Callable[[complex], complex]] = {
    "sin": cmath.sin, "cos": cmath.cos, "tan": cmath.tan,
    "sec": lambda z: 1 / cmath.cos(z), "csc": lambda z: 1 / cmath.sin(z), "cot": lambda z: 1 / cmath.tan(z),
    "arcsin": cmath.asin, "arccos": cmath.acos, "arctan": cmath.atan,
    "sinh": cmath.sinh, "cosh": cmath.cosh, "tanh": cmath.tanh,
    "ln": cmath.log, "log": cmath.log, "exp": cmath.exp,
}


def _bounded(value: Value | float) -> Value:
    """Keep exact values below MAX_EXACT_BITS (else fall back to a double) and doubles finite."""
    if isinstance(value, Fraction):
        if max(value.numerator.bit_length(), value.denominator.bit_length()) <= MAX_EXACT_BITS:
            return value
        value = float(value)  # OverflowError beyond the double range
    value = complex(value)
    if not cmath.isfinite(value):
        raise _PointError("overflow")
    return value


def _integer(value: Value, limit: int) -> int:
    if not (isinstance(value, Fraction) and value.denominator == 1 and 0 <= value.numerator <= limit):
        raise _PointError("expected a small non-negative integer")
    return value.numerator


def _integer_root(value: int, degree: int) -> int:
    """floor(value ** (1/degree)) for value >= 0, by integer Newton iteration."""
    if value < 2:
        return value
    estimate = 1 << -(-value.bit_length() // degree)  # an upper bound
    while True:
        better = ((degree - 1) * estimate + value // estimate ** (degree - 1)) // degree
        if better >= estimate:
            return estimate
        estimate = better


def _exact_root(value: Fraction, degree: int) -> Fraction | None:
    """The rational `degree`-th root of `value` if there is one (real root for odd degrees)."""
    if degree > _MAX_EXACT_ROOT or (value < 0 and degree % 2 == 0):
        return None
    sign = -1 if value < 0 else 1
    roots = [_integer_root(abs(part), degree) for part in (value.numerator, value.denominator)]
    if roots[0] ** degree != abs(value.numerator) or roots[1] ** degree != value.denominator:
        return None
    return sign * Fraction(roots[0], roots[1])


def _power(base: Value, exponent: Value) -> Value:
    if isinstance(base, Fraction) and isinstance(exponent, Fraction):
        if exponent.denominator == 1:
            bits = max(base.numerator.bit_length(), base.denominator.bit_length())
            if abs(exponent.numerator) * bits <= MAX_EXACT_BITS:
                return base**exponent.numerator  # ZeroDivisionError for 0 ** -n
        else:
            root = _exact_root(base, exponent.denominator)
            if root is not None:
                return _power(root, Fraction(exponent.numerator))
            if base < 0 and exponent.denominator % 2 == 1:  # real roots: (-8)^(2/3) = 4, not complex
                return (-1) ** (exponent.numerator % 2) * _power(-base, exponent)
    return _bounded(complex(base) ** complex(exponent))


def _evaluate(node: Node, point: dict[str, Fraction], deadline: _Deadline) -> Value:
    if deadline.passed():
        raise _OutOfTime
    kind = node[0]
    if kind == "num":
        return node[1]
    if kind == "var":
        return point[node[1]]
    if kind == "const":
        return _CONSTANTS[node[1]]
    if kind == "neg":
        return -_evaluate(node[1], point, deadline)  # -inf stays allowed for interval endpoints
    if kind == "add":
        total: Value = Fraction(0)
        for term in node[1]:
            total = _bounded(total + _evaluate(term, point, deadline))
        return total
    if kind == "mul":
        product: Value = Fraction(1)
        for factor in node[1]:
            product = _bounded(product * _evaluate(factor, point, deadline))
        return product
    if kind == "recip":
        return _bounded(1 / _evaluate(node[1], point, deadline))
    if kind == "pow":
        return _bounded(_power(_evaluate(node[1], point, deadline), _evaluate(node[2], point, deadline)))
    if kind == "root":
        degree = _evaluate(node[2], point, deadline)
        if degree == 0:
            raise _PointError("zeroth root")
        return _bounded(_power(_evaluate(node[1], point, deadline), 1 / degree))
    if kind == "pct":
        return _bounded(_evaluate(node[1], point, deadline) / 100)
    if kind == "abs":
        value = _evaluate(node[1], point, deadline)
        return abs(value) if isinstance(value, Fraction) else _bounded(abs(value))
    if kind == "fact":
        return Fraction(math.factorial(_integer(_evaluate(node[1], point, deadline), _MAX_FACTORIAL)))
    if kind == "binom":
        n = _integer(_evaluate(node[1], point, deadline), _MAX_BINOMIAL)
        k = _integer(_evaluate(node[2], point, deadline), _MAX_BINOMIAL)
        return Fraction(math.comb(n, k))
    if kind == "func":
        return _bounded(_FUNCTIONS[node[1]](complex(_evaluate(node[2], point, deadline))))
    if kind == "log":
        base = _bounded(_evaluate(node[1], point, deadline))
        return _bounded(cmath.log(_bounded(_evaluate(node[2], point, deadline))) / cmath.log(base))
    raise _PointError(f"{kind} is not a number")  # a tuple, set or relation inside arithmetic


def _is_zero(value: Value) -> bool:
    return value == 0 if isinstance(value, Fraction) else abs(value) <= ABS_TOL


def _close(a: Value, b: Value) -> bool:
    if isinstance(a, Fraction) and isinstance(b, Fraction):
        return a == b
    try:
        a, b = complex(a), complex(b)
    except OverflowError:
        return False
    if not (cmath.isfinite(a) and cmath.isfinite(b)):
        return a == b
    return abs(a - b) <= max(REL_TOL * max(abs(a), abs(b)), ABS_TOL)


@functools.lru_cache(maxsize=1024)
def _sample_value(variable: str, index: int) -> Fraction:
    """A generic positive rational for `variable` at sample point `index`, the same in every process."""
    rng = random.Random(f"{variable}:{index}")
    return Fraction(rng.randint(100, 999), rng.randint(100, 999))


def _negated(position: int, index: int) -> bool:
    """Whether the `position`-th variable is negative at point `index`: every one at the first signed point,
    then alternate ones either way, so that each pair of variables also gets opposite signs."""
    signed = index - _POINTS_WITH_VARIABLES
    return signed == 0 or (signed > 0 and (position + signed) % 2 == 0)


def _without_percent(node: Node) -> Node | None:
    """`node` without its outermost percent sign ("50%" -> 50, "-5%" -> -5); None if it has none."""
    if node[0] == "pct":
        return node[1]
    if node[0] == "neg" and node[1][0] == "pct":
        return ("neg", node[1][1])
    return None


def _has_kind(node: Node, kind: str) -> bool:
    return node[0] == kind or any(_has_kind(child, kind) for child in _children(node))


Vector = tuple[Value | None, ...]  # a scalar's values at the sample points; None where evaluation failed


class _Comparison:
    """Compares a gold and a predicted answer at shared sample points, caching scalar evaluations."""

    def __init__(self, gold: Node, prediction: Node | None, deadline: _Deadline) -> None:
        variables = sorted(_variables(gold) | (_variables(prediction) if prediction else set()))
        count = _POINTS_WITH_VARIABLES if variables else 1
        # Answers are mostly read with positive variables (sqrt(x) sqrt(y) = sqrt(xy)), but an absolute
        # value is there for the sign: |x| is not x.
        if variables and any(_has_kind(node, "abs") for node in (gold, prediction) if node):
            count += _POINTS_WITH_SIGNS
        self.points = [{name: -_sample_value(name, index) if _negated(position, index) else _sample_value(name, index)
                        for position, name in enumerate(variables)} for index in range(count)]
        self.deadline = deadline
        self._vectors: dict[Node, Vector] = {}

    def vector(self, node: Node) -> Vector:
        if node not in self._vectors:
            self._vectors[node] = tuple(self._value_at(node, point) for point in self.points)
        return self._vectors[node]

    def _value_at(self, node: Node, point: dict[str, Fraction]) -> Value | None:
        try:
            return _evaluate(node, point, self.deadline)
        except (_PointError, ArithmeticError, ValueError):  # ValueError: cmath domain errors
            return None

    def require_evaluable(self, node: Node) -> None:
        """Raise _Unevaluable if some scalar part of the gold answer fails at every sample point."""
        kind = node[0]
        if kind == "text":
            return
        if kind == "rel" and node[1] != "\\in":  # checked in the form _same_relation compares
            self.require_evaluable(_as_membership(node) or _as_difference(node)[1])
            return
        if kind in ("tuple", "set", "rel"):
            for child in _children(node):
                self.require_evaluable(child)
            return
        if all(value is None for value in self.vector(node)):
            raise _Unevaluable

    def equal(self, gold: Node, prediction: Node) -> bool:
        gold, prediction = _in_notation_of(gold, prediction), _in_notation_of(prediction, gold)
        gold_kind, prediction_kind = gold[0], prediction[0]
        if gold_kind in _STRUCTURED or prediction_kind in _STRUCTURED:
            if gold_kind != prediction_kind:
                return False
            if gold_kind == "text":
                return gold == prediction
            if gold_kind == "tuple":
                return (
                    gold[1:3] == prediction[1:3]
                    and len(gold[3]) == len(prediction[3])
                    and all(self.equal(g, p) for g, p in zip(gold[3], prediction[3], strict=True))
                )
            if gold_kind == "set":
                return self._same_elements(gold[1], prediction[1])
            return self._same_relation(gold, prediction)
        return self._same_number(gold, prediction)

    def _same_elements(self, gold_items: tuple[Node, ...], prediction_items: tuple[Node, ...]) -> bool:
        if len(gold_items) != len(prediction_items):
            return False
        unmatched = list(prediction_items)
        for gold_item in gold_items:
            match = next((p for p in unmatched if self.equal(gold_item, p)), None)
            if match is None:
                return False
            unmatched.remove(match)
        return True

    def _same_number(self, gold: Node, prediction: Node) -> bool:
        gold_number, prediction_number = _without_percent(gold), _without_percent(prediction)
        if (gold_number is None) != (prediction_number is None):
            # "50%" may be answered as 50 or as 0.5, and 0.5 as "50%" ("-5%" as -5 or -0.05).
            percent, number, plain = ((gold, gold_number, prediction) if gold_number is not None
                                      else (prediction, prediction_number, gold))
            return _same_vector(self.vector(plain), self.vector(percent)) or _same_vector(
                self.vector(plain), self.vector(number)
            )
        return _same_vector(self.vector(gold), self.vector(prediction))

    def _same_relation(self, gold: Node, prediction: Node) -> bool:
        # Inequalities in one variable compare as intervals, which also copes with "x < \\infty".
        gold_membership, prediction_membership = _as_membership(gold), _as_membership(prediction)
        if gold_membership and prediction_membership:
            gold, prediction = gold_membership, prediction_membership
        if "\\in" in (gold[1], prediction[1]):
            return (
                gold[1] == prediction[1]
                and self.equal(gold[2], prediction[2])
                and self.equal(gold[3], prediction[3])
            )
        gold_op, gold_difference = _as_difference(gold)
        prediction_op, prediction_difference = _as_difference(prediction)
        if gold_op != prediction_op:
            return False
        return _proportional(
            self.vector(gold_difference), self.vector(prediction_difference), positive=gold_op in (">", ">=")
        )


_STRUCTURED = frozenset({"text", "tuple", "set", "rel"})
_INFINITY = ("const", "inf")
_MIRRORED = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}


def _in_notation_of(node: Node, other: Node) -> Node:
    """`node` rewritten into the notation of `other` where the two differ only in notation.

    "x > 3" against "(3, \\infty)" or "x \\in (3, \\infty)" becomes that membership; "x = 3" and
    "f(x) = 2x" against "3" and "2x", and "x \\in [1, 2]" against "[1, 2]", become the assigned value;
    "\\{3\\}" against "3" becomes 3.
    """
    if other[0] == "tuple" or (other[0] == "rel" and other[1] == "\\in"):
        node = _as_membership(node) or node
    if node[0] == "rel" and other[0] != "rel" and node[1] in ("=", "\\in") and _names_a_value(node[2]):
        node = node[3]
    if node[0] == "set" and len(node[1]) == 1 and other[0] not in _STRUCTURED:
        node = node[1][0]
    return node


def _names_a_value(node: Node) -> bool:
    """A variable, or a function of variables: "f(x)" (parsed as f times x) and "f(x, y)"."""
    if node[0] == "var":
        return True
    if node[0] != "mul" or len(node[1]) != 2 or node[1][0][0] != "var":
        return False
    argument = node[1][1]
    return argument[0] == "var" or (argument[0] == "tuple" and all(item[0] == "var" for item in argument[3]))


def _as_membership(relation: Node) -> Node | None:
    """"x > a" (or "a < x") as "x \\in (a, \\infty)" when a has no variables; None for other nodes."""
    if relation[0] != "rel" or relation[1] not in ("<", "<=", ">", ">="):
        return None
    op, left, right = relation[1:]
    if right[0] == "var" and left[0] != "var":
        op, left, right = _MIRRORED[op], right, left
    if left[0] != "var" or _variables(right):
        return None
    if op in (">", ">="):
        interval = ("tuple", "(" if op == ">" else "[", ")", (right, _INFINITY))
    else:
        interval = ("tuple", "(", ")" if op == "<" else "]", (("neg", _INFINITY), right))
    return ("rel", "\\in", left, interval)


def _chain_as_membership(low_op: str, low: Node, middle: Node, high_op: str, high: Node) -> Node | None:
    """"a < x <= b" as "x \\in (a, b]" (and "b > x >= a" likewise); None for other chains."""
    if middle[0] != "var":
        return None
    if {low_op, high_op} <= {">", ">="}:
        low_op, low, high_op, high = _MIRRORED[high_op], high, _MIRRORED[low_op], low
    if not {low_op, high_op} <= {"<", "<="}:
        return None
    interval = ("tuple", "(" if low_op == "<" else "[", ")" if high_op == "<" else "]", (low, high))
    return ("rel", "\\in", middle, interval)


def _as_difference(relation: Node) -> tuple[str, Node]:
    """`a < b` -> (">", b - a): one direction per relation, so flipped inequalities compare equal."""
    op, left, right = relation[1:]
    if op in ("<", "<="):
        return op.replace("<", ">"), ("add", (right, ("neg", left)))
    return op, ("add", (left, ("neg", right)))


def _same_vector(gold: Vector, prediction: Vector) -> bool:
    compared = False
    for g, p in zip(gold, prediction, strict=True):
        if g is None or p is None:
            if g is not p:
                return False
            continue
        if not _close(g, p):
            return False
        compared = True
    return compared


def _proportional(gold: Vector, prediction: Vector, *, positive: bool) -> bool:
    """Whether prediction = c * gold at every point for one nonzero constant c (c > 0 if `positive`)."""
    ratio: Value | None = None
    both_zero = False
    for g, p in zip(gold, prediction, strict=True):
        if g is None or p is None:
            if g is not p:
                return False
            continue
        if _is_zero(g) or _is_zero(p):
            if not (_is_zero(g) and _is_zero(p)):
                return False
            both_zero = True
            continue
        current = p / g
        if ratio is None:
            ratio = current
        elif not _close(current, ratio):
            return False
    if ratio is None:
        return both_zero  # e.g. "\\pi \\le \\pi" against itself
    ratio = complex(ratio)
    return not positive or (ratio.real > 0 and abs(ratio.imag) <= ABS_TOL)
