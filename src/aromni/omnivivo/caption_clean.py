"""LlamaGen's caption cleaning (``language/t5.py``, ``T5Embedder.clean_caption``), on the standard library.

LlamaGen cleans every caption twice before the T5 tokenizer sees it (omnivivo.md §1.3), at training (feature
extraction) and at sampling time; a prompt cleaned differently gives the frozen backbone captions it never
saw. :func:`preprocess_caption` is that entry point; :func:`clean_caption` is one pass.

One pass, in LlamaGen's order (every rule kept, the patterns restated to match the same text):

1. ``urllib.parse.unquote_plus`` (``%20`` and ``+`` become spaces), strip, lower-case; ``<person>`` ->
   ``person``.
2. URLs (``http(s):...``, ``www:...``, and ``name.com|co|ru|net|org|edu|gov|it/...``) removed.
3. HTML: tags removed, their text kept, entities decoded (see *Differences* below).
4. ``@nickname`` removed; CJK strokes, enclosed letters, compatibility forms and ideographs (U+31C0-U+9FFF)
   removed.
5. Every dash (hyphen, en/em dash, minus forms, ...) -> ``-``; ``` ` ´ « » “ ” ¨ ``` -> ``"``;
   ``‘ ’`` -> ``'``; ``&quot``/``&amp`` leftovers removed.
6. IP addresses -> space; trailing ``1:23`` article ids, literal ``\\n``, ``#123`` / ``#12345...`` tags,
   numbers of 6+ digits and file names (``x.png`` ...) removed; runs of quotes -> one ``"``; ``..`` -> space;
   runs of ``#®•©™&@·º½¾¿¡§~()[]{}|\\/*`` -> space; `` . `` -> space; more than three ``-``/``_`` -> spaces.
7. :func:`fix_text` (LlamaGen: ``ftfy.fix_text``), ``html.unescape`` twice, strip.
8. Product codes (``jc6640``, ``jc6640vc``, ``6640vc231``, ``j2d1a2a``), "free shipping", "free download",
   "click for/on X", image extensions (+ "image(s)"), "page N", sizes (``10x20``) removed; `` : `` -> ``: ``;
   a space after ``,``/``.``/``/`` that follows a non-digit; whitespace runs -> one space.
9. Surrounding quotes removed; one leading ``'_,-:;`` and one trailing ``'_,-:+`` removed; a lone ``.word``
   removed; strip. (LlamaGen's ``caption.strip()`` just before this step discards its result, so a leading
   space can still stop the leading-character rules; kept as is, since training used it.)

Differences from LlamaGen (whose code needs ``ftfy`` and ``bs4``):

- **ftfy** is replaced by :func:`fix_text`, the deterministic part of ``ftfy.fix_text``: HTML entities ending
  in ``;`` decoded (when the text holds no ``<``), curly quotes and ``ʼ`` straightened, Latin ligatures split
  (``ﬁ`` -> ``fi``), full/half-width forms made standard (and U+3000 -> space), ANSI terminal escapes and the
  control characters ftfy strips removed, then NFC. **Dropped:**
  mojibake repair (``fix_encoding``, ``decode_inconsistent_utf8``, ``restore_byte_a0``,
  ``replace_lossy_sequences``, C1 controls read as Windows-1252), a statistical heuristic that would need
  ftfy's tables; it matters for scraped web captions, not for typed prompts. ``fix_line_breaks`` is dropped
  because step 8 turns every whitespace run into one space anyway. Unpaired surrogates are refused earlier by
  the conditioners (``InputError``), so ftfy's surrogate repair has nothing to do.
- **BeautifulSoup** (``html.parser`` backend, ``.text``) is replaced by :class:`html.parser.HTMLParser`, the
  parser bs4 itself drives there: character data and CDATA sections are kept; tags, comments, declarations
  and processing instructions are dropped; like bs4 >= 4.10, the contents of ``<script>``, ``<style>`` and
  ``<template>`` are dropped. Entities are decoded by the standard library (``html.unescape`` rules); bs4
  decodes malformed or unknown entities slightly differently (``&foo;`` -> ``&foo``), which only such captions
  can notice.
"""

from __future__ import annotations

import html
import html.entities
import re
import unicodedata
import urllib.parse
from html.parser import HTMLParser

# --------------------------------------------------------------------------------------------- ftfy subset
_ENTITY = re.compile(r"&#?[0-9A-Za-z]{1,24};")
_ANSI_ESCAPE = re.compile("\033\\[[\\d;]*[a-zA-Z]")
_SINGLE_QUOTES = re.compile("[\u02bc\u2018-\u201b]")
_DOUBLE_QUOTES = re.compile("[\u201c-\u201f]")
# Latin ligatures and the digraph letters ftfy splits; each becomes its one-level compatibility decomposition
# (``ﬅ`` -> ``ſt``, not NFKC's ``st``).
_LIGATURES = {c: "".join(chr(int(h, 16)) for h in unicodedata.decomposition(chr(c)).split()[1:])
              for c in (0x132, 0x133, 0x149, *range(0x1C4, 0x1CD), 0xFB00, 0xFB01, 0xFB02, 0xFB03, 0xFB04,
                        0xFB05, 0xFB06)}
_WIDTH = {0x3000: " ", **{c: unicodedata.normalize("NFKC", chr(c)) for c in range(0xFF01, 0xFFF0)
                          if unicodedata.normalize("NFKC", chr(c)) != chr(c)}}
_CONTROL = dict.fromkeys([*range(0x09), 0x0B, *range(0x0E, 0x20), 0x7F, *range(0x206A, 0x2070), 0xFEFF,
                          *range(0xFFF9, 0xFFFD)])
_FIX_TABLE = {**_LIGATURES, **_WIDTH}


def _entity(match: re.Match[str]) -> str:
    s = match.group()
    if s[1] != "#":
        return html.entities.html5.get(s[1:], s)
    decoded = html.unescape(s)
    return s if ";" in decoded else decoded  # a partial decode is no decode


def fix_text(text: str) -> str:
    """The deterministic part of ``ftfy.fix_text`` (module docstring): semicolon-terminated HTML entities
    (only when the text has no ``<``), ligatures, character width, quotes, terminal escapes, control
    characters, NFC; repeated until nothing changes, as ftfy does. (ftfy also decodes upper-cased entities
    such as ``&EACUTE;``; captions are lower-cased before this step, so that case never arises here.)"""
    unescape = "<" not in text
    while True:
        fixed = _ENTITY.sub(_entity, text) if unescape else text
        fixed = fixed.translate(_FIX_TABLE)
        fixed = _SINGLE_QUOTES.sub("'", _DOUBLE_QUOTES.sub('"', fixed))
        fixed = _ANSI_ESCAPE.sub("", fixed).translate(_CONTROL)
        fixed = unicodedata.normalize("NFC", fixed)
        if fixed == text:
            return fixed
        text = fixed


# --------------------------------------------------------------------------------------------- HTML text
class _TextOnly(HTMLParser):
    """Collects character data outside ``<script>``, ``<style>`` and ``<template>`` (bs4's ``.text``)."""

    _HIDDEN = frozenset({"script", "style", "template"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden = 0  # depth of open hidden elements

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.hidden += tag in self._HIDDEN

    def handle_endtag(self, tag: str) -> None:
        if tag in self._HIDDEN and self.hidden:
            self.hidden -= 1

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.parts.append(data)

    def unknown_decl(self, data: str) -> None:
        if data.upper().startswith("CDATA["):  # bs4 keeps a CDATA section's text in ``.text``
            self.handle_data(data[len("CDATA["):])


def html_text(text: str) -> str:
    """The text content of an HTML fragment: tags dropped, entities decoded."""
    parser = _TextOnly()
    parser.feed(text)
    parser.close()  # flushes a trailing incomplete construct ("a <b") as text
    return "".join(parser.parts)


# --------------------------------------------------------------------------------------------- the rules
def _rules(*pairs: tuple[str, str]) -> list[tuple[re.Pattern[str], str]]:
    return [(re.compile(p), r) for p, r in pairs]


_URL_TAIL = r"|[a-zA-Z0-9.\-]+[.](?:com|co|ru|net|org|edu|gov|it)[\w/-]*\b\/?(?!@)))"
_EXTENSIONS = "png|jpg|jpeg|bmp|webp|eps|pdf|apk|mp4"
_DASHES = ("\u002d\u058a\u05be\u1400\u1806\u2010-\u2015\u2e17\u2e1a\u2e3a\u2e3b\u2e40\u301c\u3030\u30a0"
           "\ufe31\ufe32\ufe58\ufe63\uff0d")

#: Step 1-2: before the HTML parse (URLs first, so their ``&`` and ``/`` never reach the later rules).
_BEFORE_HTML = _rules(
    (r"<person>", "person"),
    (r"\b((?:https?:(?:\/{1,3}|[a-zA-Z0-9%])" + _URL_TAIL, ""),
    (r"\b((?:www:(?:\/{1,3}|[a-zA-Z0-9%])" + _URL_TAIL, ""),
)

#: Steps 4-6: between the HTML parse and the text fix.
_AFTER_HTML = _rules(
    (r"@[\w\d]+\b", ""),
    (r"[\u31c0-\u9fff]+", ""),  # LlamaGen's seven CJK ranges, which are contiguous
    (f"[{_DASHES}]+", "-"),
    (r"[`´«»“”¨]", '"'),
    (r"[‘’]", "'"),
    (r"&quot;?", ""),
    (r"&amp", ""),
    (r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}", " "),  # IP addresses
    (r"\d:\d\d\s+$", ""),  # article ids
    (r"\\n", " "),  # a literal backslash-n left by scrapers
    (r"#\d{1,3}\b", ""),
    (r"#\d{5,}\b", ""),
    (r"\b\d{6,}\b", ""),
    (rf"[\S]+\.(?:{_EXTENSIONS})", ""),  # file names
    (r"[\"']{2,}", '"'),
    (r"[\.]{2,}", " "),
    (r"[#®•©™&@·º½¾¿¡§~\)\(\]\[\}\{\|\\\/\*]{1,}", " "),
    (r"\s+\.\s+", " "),
)
_SEPARATORS = re.compile(r"(?:\-|\_)")  # this-is-my-cute-cat: more than three become spaces

#: Step 8: after the text fix.
_AFTER_FIX = _rules(
    (r"\b[a-zA-Z]{1,3}\d{3,15}\b", ""),  # jc6640
    (r"\b[a-zA-Z]+\d+[a-zA-Z]+\b", ""),  # jc6640vc
    (r"\b\d+[a-zA-Z]+\d+\b", ""),  # 6640vc231
    (r"(worldwide\s+)?(free\s+)?shipping", ""),
    (r"(free\s)?download(\sfree)?", ""),
    (r"\bclick\b\s(?:for|on)\s\w+", ""),
    (rf"\b(?:{_EXTENSIONS})(\simage[s]?)?", ""),
    (r"\bpage\s+\d+\b", ""),
    (r"\b\d*[a-zA-Z]+\d+[a-zA-Z]+\d+[a-zA-Z\d]*\b", " "),  # j2d1a2a
    (r"\b\d+\.?\d*[xх×]\d+\.?\d*\b", ""),  # sizes: 10x20, 1.5×2 (Latin x, Cyrillic х, ×)
    (r"\b\s+\:\s+", ": "),
    (r"(\D[,\./])\b", r"\1 "),
    (r"\s+", " "),
)

#: Step 9: the ends.
_ENDS = _rules(
    (r"^[\"']([\w\W]+)[\"']$", r"\1"),
    (r"^['_,\-:;]", ""),
    (r"['_,\-:+]$", ""),
    (r"^\.\S+$", ""),
)


def _apply(rules: list[tuple[re.Pattern[str], str]], text: str) -> str:
    for pattern, repl in rules:
        text = pattern.sub(repl, text)
    return text


def clean_caption(caption: str) -> str:
    """One pass of LlamaGen's caption cleaning (the module docstring lists the steps)."""
    text = urllib.parse.unquote_plus(str(caption)).strip().lower()
    text = html_text(_apply(_BEFORE_HTML, text))
    text = _apply(_AFTER_HTML, text)
    if len(_SEPARATORS.findall(text)) > 3:
        text = _SEPARATORS.sub(" ", text)
    text = html.unescape(html.unescape(fix_text(text))).strip()
    text = _apply(_AFTER_FIX, text)
    return _apply(_ENDS, text).strip()


def preprocess_caption(caption: str, clean: bool = True) -> str:
    """LlamaGen's ``text_preprocessing``: :func:`clean_caption` twice, or with ``clean=False`` only lower-case
    and strip (LlamaGen's ``use_text_preprocessing=False``)."""
    if not clean:
        return caption.lower().strip()
    return clean_caption(clean_caption(caption))
