"""Language mixing: the R1-Zero behaviour where reasoning drifts between languages.

Exact definition (docs/scoring.md repeats it, with examples):
- The text measured is the whole completion, reasoning and answer. Template tags (`<think>`,
  `<answer>`, any `<tag>`) and LaTeX commands (`\\frac`, ...) are removed.
- Math and code are not prose: LaTeX math (`$$…$$`, `\\(…\\)`, `\\[…\\]` and `$…$`, see the dollar
  rule) and code (``` blocks and `inline`) are removed, except for what is prose inside them:
  the words of `\\text{}`, `\\textbf{}`, `\\mbox{}`, `\\operatorname{}` (and their kin) count as words,
  and letters of a non-Latin natural-language script (Han, kana, Hangul, Cyrillic, ...) count
  wherever they stand, code comments included, so nothing can be hidden from the language
  reward there. Latin identifiers inside code and math do not count.
- The dollar rule (pandoc's): `$` opens inline math only when the next character is not a space,
  and the matching `$` closes it only when the character before it is not a space and the one
  after it is not a digit. So `$x + 1$` is math, while money is not: in `She pays $5 and has $10
  left` the second `$` cannot close (a space before it), so nothing there is removed.
- A *word* is a maximal run of letters of one Unicode script (by the `regex` module's script
  property), except that each CJK ideograph, hiragana or katakana character counts as one word.
  Numbers (full-width ones too), punctuation and symbols are not words; neither are a lone Latin
  letter (`x`, `n`: a variable), Greek letters (π, θ: math symbols, unless the target is Greek),
  letterlike and mathematical alphanumeric symbols (ℝ, ℕ, 𝑥), and modifier letters such as
  superscripts (ⁿ).
- A word is *in the target language* when its script is one of the language's scripts
  (`en`: Latin; `zh`: Han; `ja`: Han, hiragana, katakana; `ko`: Hangul; `ru`: Cyrillic; …).
  Where scripts don't tell (a Latin-script target other than English, or `language_id=True`),
  each run of at least `min_id_words` Latin words is identified with the `langdetect` library,
  and a run identified as another language with probability >= 0.9 counts as out of target.
- `consistency` = target words / all words, `None` when there are no words.
- `mixed` is True when at least one word is outside the target language (a single 所以 in
  English reasoning counts).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass

import regex

# Scripts of each supported target language; keys are the valid `language` values.
LANGUAGE_SCRIPTS: dict[str, frozenset[str]] = {
    "en": frozenset({"Latin"}),
    "fr": frozenset({"Latin"}),
    "de": frozenset({"Latin"}),
    "es": frozenset({"Latin"}),
    "pt": frozenset({"Latin"}),
    "it": frozenset({"Latin"}),
    "sw": frozenset({"Latin"}),
    "zh": frozenset({"Han"}),
    "ja": frozenset({"Han", "Hiragana", "Katakana"}),
    "ko": frozenset({"Hangul"}),
    "ru": frozenset({"Cyrillic"}),
    "uk": frozenset({"Cyrillic"}),
    "el": frozenset({"Greek"}),
    "ar": frozenset({"Arabic"}),
    "he": frozenset({"Hebrew"}),
    "hi": frozenset({"Devanagari"}),
    "bn": frozenset({"Bengali"}),
    "te": frozenset({"Telugu"}),
    "th": frozenset({"Thai"}),
}

# Scripts whose characters are words one by one (no spaces between words).
_CHAR_WORD_SCRIPTS = frozenset({"Han", "Hiragana", "Katakana"})

_CODE = re.compile(r"```.*?```|`[^`\n]*`", re.DOTALL)
# Display and inline math; inline `$…$` by the dollar rule of the module docstring.
_MATH = re.compile(r"\$\$.*?\$\$|\\\(.*?\\\)|\\\[.*?\\\]|\$(?=\S)(?:[^$\\]|\\.)*?(?<=\S)\$(?!\d)", re.DOTALL)
_TEXT_COMMAND = re.compile(r"\\(?:text(?:bf|it|rm|sf|tt|normal|up)?|mbox|operatorname)\*?\s*\{([^{}]*)\}")
_TAG_OR_COMMAND = re.compile(r"</?[A-Za-z][A-Za-z0-9_-]*>|\\[A-Za-z]+")
# One alternative per script the languages above use, matched by the `regex` module's Unicode
# script-extension property, so the code-point tables are Unicode's own (ー counts as kana, 々 as Han).
_KNOWN_SCRIPTS = ("Latin", "Han", "Hiragana", "Katakana", "Hangul", "Cyrillic", "Greek", "Arabic", "Hebrew", "Devanagari", "Bengali", "Telugu", "Thai")
_NAMED_SCRIPT = regex.compile(r"[^\p{Script=Common}\p{Script=Inherited}]")  # letterlike symbols are Common
_SCRIPT = regex.compile("|".join(f"(?P<{s}>\\p{{scx={s}}})" for s in _KNOWN_SCRIPTS))


@functools.lru_cache(maxsize=65536)  # a pure function of one character, called once per character of every completion
def script_of(ch: str) -> str | None:
    """Unicode script of a letter; None for non-letters.

    >>> script_of("a"), script_of("所"), script_of("я"), script_of("7"), script_of("ー")
    ('Latin', 'Han', 'Cyrillic', None, 'Hiragana')
    >>> script_of("ℝ"), script_of("𝑥"), script_of("ⁿ"), script_of("θ")
    (None, None, None, 'Greek')
    """
    if not ch.isalpha():
        return None
    m = _SCRIPT.match(ch)
    if unicodedata.category(ch) == "Lm" and not (m and m.lastgroup in _CHAR_WORD_SCRIPTS):
        return None  # a modifier letter such as a superscript (ⁿ); the kana length mark ー stays kana
    if m:
        return m.lastgroup
    if not _NAMED_SCRIPT.match(ch):
        return None  # a letterlike or mathematical symbol (ℝ, 𝑥): Unicode gives it no script
    # Any other letter: name its script by the first word of its Unicode name (e.g. "ARMENIAN").
    return unicodedata.name(ch, "OTHER").split(" ")[0].title()


def _hidden_prose(span: str) -> str:
    """The letters of `span` (code or math) that are prose in any language but Latin-script ones:
    Han, kana, Hangul, Cyrillic, ... (Latin identifiers and Greek symbols are not prose there).

    >>> _hidden_prose("x = 1  # 所以 y").split()
    ['所以']
    """
    return "".join(ch if script_of(ch) not in (None, "Latin", "Greek") else " " for ch in span)


def words(text: str) -> list[tuple[str, str]]:
    """(word, script) pairs of `text` after removing tags, code, LaTeX, numbers and symbols.

    >>> words("<think> First, 3 + 5 = 8。所以 x = 8 </think>")
    [('First', 'Latin'), ('所', 'Han'), ('以', 'Han')]
    >>> words("所以 x-1 = 4，f'(x) = 2x; don't")
    [('所', 'Han'), ('以', 'Han'), ("don't", 'Latin')]
    >>> words("We solve $\\\\text{hence} y = 2$ and pay $5 then $10.")
    [('We', 'Latin'), ('solve', 'Latin'), ('hence', 'Latin'), ('and', 'Latin'), ('pay', 'Latin'), ('then', 'Latin')]
    """
    text = _CODE.sub(lambda m: _hidden_prose(m.group()), text)
    text = _MATH.sub(lambda m: " ".join(_TEXT_COMMAND.findall(m.group())) + " " + _hidden_prose(_TEXT_COMMAND.sub(" ", m.group())), text)
    text = _TEXT_COMMAND.sub(r" \1 ", text)  # outside math too: \text{...} holds words
    text = _TAG_OR_COMMAND.sub(" ", text)
    out: list[tuple[str, str]] = []
    run, run_script = [], None

    def flush():
        word = "".join(run).rstrip("'’-")  # "x-1", "f'(x)": a mark after a letter joins no word
        if word and not (run_script == "Latin" and len(word) == 1):  # a lone Latin letter is a variable
            out.append((word, run_script))
        run.clear()

    for ch in text:
        s = script_of(ch)
        if s in _CHAR_WORD_SCRIPTS:
            if run:
                flush()
            out.append((ch, s))
            run_script = None
        elif s is not None and s == run_script:
            run.append(ch)
        elif s is not None:
            flush()
            run, run_script = [ch], s
        elif ch in "'’-" and run_script == "Latin" and run:  # don't, well-known
            run.append(ch)
        else:
            if run:  # most characters are spaces, digits and symbols: skip the call when there is no run
                flush()
            run_script = None
    flush()
    return out


@dataclass(frozen=True)
class LanguageStats:
    consistency: float | None  # share of words in the target language; None without words
    mixed: bool  # any word outside the target language
    n_words: int
    n_target: int


def _latin_runs_off_target(ws: list[tuple[str, str]], language: str, min_id_words: int) -> set[int]:
    """Indices of Latin words in runs that langdetect identifies as another language."""
    from langdetect import DetectorFactory, detect_langs
    from langdetect.lang_detect_exception import LangDetectException

    DetectorFactory.seed = 0  # langdetect is random unless seeded; this makes it deterministic
    off: set[int] = set()
    i = 0
    while i < len(ws):
        if ws[i][1] != "Latin":
            i += 1
            continue
        j = i
        while j < len(ws) and ws[j][1] == "Latin":
            j += 1
        if j - i >= min_id_words:
            try:
                best = detect_langs(" ".join(w for w, _ in ws[i:j]))[0]
            except LangDetectException:
                best = None
            if best is not None and best.lang.split("-")[0] != language and best.prob >= 0.9:
                off.update(range(i, j))
        i = j
    return off


def language_stats(text: str, language: str = "en", language_id: bool | None = None, min_id_words: int = 8) -> LanguageStats:
    """Language consistency and mixing of `text` for a target `language`.

    `language_id=None` uses language identification only where scripts don't tell (a Latin-script
    target other than English).

    >>> language_stats("<think> 3 + 5 = 8, so the answer is 8 </think> <answer>8</answer>", "en")
    LanguageStats(consistency=1.0, mixed=False, n_words=4, n_target=4)
    >>> language_stats("<think> 3 + 5 = 8 所以 the answer is 8 </think>", "en").mixed
    True
    >>> language_stats("<answer>42</answer>", "zh").consistency is None
    True
    """
    if language not in LANGUAGE_SCRIPTS:
        raise ValueError(f"unknown language {language!r}; valid: {', '.join(sorted(LANGUAGE_SCRIPTS))}")
    scripts = LANGUAGE_SCRIPTS[language]
    ws = [w for w in words(text) if w[1] != "Greek" or "Greek" in scripts]  # π, θ: math symbols, unless Greek is the target
    if not ws:
        return LanguageStats(None, False, 0, 0)
    use_id = language_id if language_id is not None else (scripts == {"Latin"} and language != "en")
    off = _latin_runs_off_target(ws, language, min_id_words) if use_id and "Latin" in scripts else set()
    n_target = sum(1 for i, (_, s) in enumerate(ws) if s in scripts and i not in off)
    return LanguageStats(n_target / len(ws), n_target < len(ws), len(ws), n_target)


def reasoning_language(text: str, language: str = "en") -> str:
    """Which language a completion reasons in, for a target `language`: "target" (only it),
    "other" (no word of it), "switched" (both: code-switching) or "none" (no words).

    >>> [reasoning_language(t) for t in ("so 3 + 5 = 8", "所以 8", "3 + 5 = 8 所以 so 8", "3 + 5 = 8")]
    ['target', 'other', 'switched', 'none']
    """
    stats = language_stats(text, language)
    if stats.n_words == 0:
        return "none"
    if stats.n_target == stats.n_words:
        return "target"
    return "other" if stats.n_target == 0 else "switched"


def language_consistency(text: str, language: str = "en") -> float | None:
    """Share of words of `text` in `language` (see the module docstring); None without words.

    >>> language_consistency("首先 3 + 5 = 8 then 8 * 2 = 16", "zh")  # 首, 先 in zh; then not
    0.6666666666666666
    """
    return language_stats(text, language).consistency


def is_mixed(text: str, language: str = "en") -> bool:
    """True when any word of `text` lies outside `language`.

    >>> is_mixed("The sum is 8, 所以 8.", "en"), is_mixed("和是 8。", "zh")
    (True, False)
    """
    return language_stats(text, language).mixed
