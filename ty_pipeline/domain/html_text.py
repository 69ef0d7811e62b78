"""HTML (and agency HTML/CSS bloat) to clean plain text for descriptions.

Deutsche Bank delivers whole ad HTML; some Jobsuche descriptions carry staffing-agency HTML and CSS.
Downstream (summaries, embeddings) wants readable text with paragraph and bullet structure kept.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

from ty_pipeline.domain.text_clean import strip_unstorable, unescape_entities

_BLOCK_TAGS = {
    "p", "div", "br", "tr", "table", "section", "article", "header", "footer",
    "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "dl", "dt", "dd", "hr", "blockquote",
}
_SKIP_TAGS = {"script", "style", "head", "noscript", "template", "svg"}
_TAG_RE = re.compile(r"<\s*/?\s*[a-zA-Z][^>]*>")
# A CSS rule that leaked into the text: a selector alone at the start of a line, then `{...}`.
_CSS_RULE_RE = re.compile(r"(?m)^[ \t]*[.#@]?[\w\-,.#:>* ]+\{[^{}]*\}")


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS:
            self._skip += 1
        elif tag == "li":
            self.parts.append("\n- ")
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")
        elif tag == "td":
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self._skip = max(0, self._skip - 1)
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def looks_like_html(text: str) -> bool:
    return bool(_TAG_RE.search(text))


def normalize_whitespace(text: str) -> str:
    """Collapse runs of spaces, trim lines, keep at most one blank line between paragraphs.

    Control characters and lone surrogates go too: this is the last step before a description is stored.
    """
    text = strip_unstorable(text).replace("\xa0", " ")
    lines = [re.sub(r"[ \t\f\v]+", " ", line).strip() for line in text.split("\n")]
    out: list[str] = []
    for line in lines:
        if not line and (not out or not out[-1]):
            continue
        out.append(line)
    return "\n".join(out).strip()


def html_to_text(markup: str) -> str:
    """Readable text from HTML: block structure becomes newlines, list items become `- ` bullets.

    The parser decodes character references, and that is the only decoding: a page that shows a
    literal `&lt;` keeps it as `&lt;` text (entities are decoded exactly once, domain/text_clean.py).
    """
    parser = _TextExtractor()
    try:
        parser.feed(markup)
        parser.close()
        text = "".join(parser.parts)
    except Exception:  # noqa: BLE001 - html.parser still raises on some broken declarations
        # Broken markup must not lose the posting's text: drop the tags and decode entities once.
        text = unescape_entities(_TAG_RE.sub("\n", markup))
    text = _CSS_RULE_RE.sub(" ", text)  # inline CSS that leaked out of <style>-less agency markup
    return normalize_whitespace(text)


def clean_description(text: str) -> str:
    """Descriptions may be plain text, markdown-ish, or HTML: return plain text either way."""
    if looks_like_html(text):
        return html_to_text(text)
    return normalize_whitespace(unescape_entities(text))
