"""Text rendering and HTML sanitisation: the only module that may turn text into HTML.

Role
    * ``TextRenderer.render_post`` turns what a colleague typed (plain text) into the HTML we
      store, show and federate, with links, @mentions and #hashtags.
    * ``TextRenderer.sanitize_rich`` / ``rich_from_plain`` produce the HTML of user-edited rich
      text such as a profile CV / bio.
    * ``TextRenderer.sanitize_remote`` cleans inbound ActivityPub ``content`` to Mastodon's
      allowed set (PROTOCOL.md §5).
    * ``TextRenderer.plain_text`` extracts text for snippets, search and notifications.

Invariants (SECURITY.md §1.4)
    * This is the only module allowed to import bleach (ruff TID251 enforces it elsewhere).
    * No public method raises on hostile input (CVE-2026-50129: a sanitizer exception is a
      persistent DoS). Every path ends in a fallback that degrades to escaped plain text.
    * Links only ever point at absolute ``http``/``https`` URLs (plus ``mailto:`` in rich text):
      no relative or protocol-relative (``//host``) links, no ``javascript:``/``data:``/
      ``vbscript:`` in any entity or whitespace obfuscation.
    * ``class`` values are restricted to ``mention``, ``hashtag``, ``h-card`` and ``u-url``
      (UI spoofing: ``invisible``, ``ellipsis``, fake buttons…); no ``style`` or ``on*``.
    * The content of script/style/iframe/object/embed/svg/math/template/noscript… is dropped
      entirely, not shown as text.
    * Work is bounded. Input is cut at ``MAX_INPUT_CHARS`` and re-tokenized by a linear
      pre-pass (``_canonicalize``) before html5lib sees it, because html5lib is quadratic in
      the attributes of one tag. Markup that would still make html5lib slow (deep nesting,
      misnesting, too many tags or entities) is flattened to escaped text instead.
    * No module-level mutable state. bleach ``Cleaner`` objects hold parser state and are not
      thread-safe, so they live in a ``TextRenderer`` that the app creates once and uses from
      the event-loop thread only (create one per thread if that ever changes).
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from html import escape as _html_escape
from html import unescape as _html_unescape
from html.parser import HTMLParser
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

import bleach.html5lib_shim
from bleach.sanitizer import Cleaner

if TYPE_CHECKING:
    # bleach vendors html5lib; the stubs describe it as the top-level ``html5lib`` package,
    # which is not installed at runtime.
    from html5lib.filters.base import Filter

    _TokenFilter = Filter[dict[str, Any]]
else:
    _TokenFilter = bleach.html5lib_shim.Filter

__all__ = [
    "MAX_INPUT_CHARS",
    "MentionTarget",
    "RenderedPost",
    "TextRenderer",
]

_log = logging.getLogger(__name__)

# Anything longer is cut before parsing. html5lib is pure Python (about 1 s per 200 kB of
# dense markup); a note is a few kB and even long-form remote content rarely reaches 100 kB.
MAX_INPUT_CHARS = 200_000
# html5lib's tree builder is quadratic in nesting depth (scope checks walk the stack of open
# elements) and in the number of formatting elements it reconstructs: 20k nested <li> took
# 49 s in our measurement. Real content nests a handful of levels and uses a few hundred
# tags, so beyond these limits we flatten to text instead of building a tree.
MAX_NESTING = 48
MAX_TAGS = 5_000
# bleach's tokenizer splits text at every "&" (it leaves entities alone), and html5lib's
# tree builder gets slower than linear with the number of text pieces: 100k entities took
# 1.6 s. Canonical markup has one "&" per escaped "&", "<" or ">".
MAX_ENTITIES = 20_000
# Each distinct @handle costs the caller a lookup (a database read or a WebFinger fetch).
MAX_MENTION_LOOKUPS = 50
MAX_URL_CHARS = 4_096
# Longer "#words" stay text (the tag page route accepts at most 100 word characters).
MAX_TAG_CHARS = 100

_REL_EXTERNAL = "nofollow noopener noreferrer"
_SAFE_CLASSES = frozenset({"mention", "hashtag", "h-card", "u-url"})
_REL_TOKENS_POST = frozenset({"nofollow", "noopener", "noreferrer", "tag"})
# The only attributes any of our policies can keep; the pre-pass drops all others.
_KEPT_ATTRIBUTES = frozenset({"href", "rel", "class", "target"})

# Elements whose content html5lib (and browsers) read as raw text. The pre-pass removes
# them with their content, so script bodies never leak out as visible text.
_RAW_TEXT_TAGS = frozenset({"script", "style", "iframe", "noscript", "noembed", "noframes"}) | {
    *("xmp", "title", "textarea")
}
# Elements removed with their whole subtree. The pre-pass hands them to bleach as "allowed"
# so that html5lib builds them as elements (with its own rules for where svg/math end), and
# _FinishFilter then removes each with everything inside it.
_DROP_WITH_CONTENT = _RAW_TEXT_TAGS | {"object", "embed", "applet", "svg", "math", "template"}

_RICH_TAGS = frozenset({"p", "br", "a", "strong", "b", "em", "i", "u", "del", "s", "code"}) | {
    *("pre", "blockquote", "ul", "ol", "li", "h3", "h4")
}
# Mastodon's allowed set (PROTOCOL.md §5).
_REMOTE_TAGS = frozenset({"p", "span", "br", "a", "del", "pre", "code", "em", "strong", "b"}) | {
    *("i", "u", "ul", "ol", "li", "blockquote")
}
# What render_post itself emits; anything else in its output would be a bug.
_POST_TAGS = frozenset({"p", "br", "a", "span"})
# Structure kept when extracting plain text.
_TEXT_BLOCK_TAGS = frozenset({"p", "div", "li", "ul", "ol", "blockquote", "pre"}) | {
    *("h1", "h2", "h3", "h4", "h5", "h6")
}
# Dropped block-level tags become a newline so that words do not run together.
_BLOCK_TAGS = _TEXT_BLOCK_TAGS | {
    *("address", "article", "aside", "dd", "details", "dialog", "dl", "dt", "fieldset"),
    *("figcaption", "figure", "footer", "form", "header", "hgroup", "hr", "main", "nav"),
    *("section", "summary", "table", "tr"),
}
# Start tags that make html5lib close an open <p> (approximation used by _too_complex).
_CLOSES_P = _TEXT_BLOCK_TAGS
# html5lib's "formatting elements", reopened after misnested end tags.
_FORMATTING_TAGS = frozenset({"a", "b", "big", "code", "em", "font", "i", "nobr", "s", "small"}) | {
    *("strike", "strong", "tt", "u")
}
_VOID_TAGS = frozenset({"area", "br", "col", "embed", "hr", "img", "input", "source", "wbr"})

# -- the pre-pass tokenizer (see _canonicalize) --
_WS = "\t\n\f "
_TAG_START_RE = re.compile(rf"<(/?)([A-Za-z][^{_WS}/>]*)")
_TAG_END_RE = re.compile(rf"[{_WS}/]*(?:>|\Z)")
_ATTRIBUTE_RE = re.compile(
    rf"[{_WS}/]*(?P<name>[^{_WS}/>][^{_WS}/=>]*)"
    rf"(?:[{_WS}]*=[{_WS}]*(?P<value>\"[^\"]*\"?|'[^']*'?|[^{_WS}>]*))?"
)
_COMMENT_RE = re.compile(r"<!--(?:>|->|.*?(?:-->|--!>|\Z))", re.DOTALL)
# Numeric references always; named ones only with their ";" (HTML keeps "&copy=" literal in
# attribute values, and URLs are full of such query strings).
_ATTRIBUTE_REFERENCE_RE = re.compile(r"&(?:#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[A-Za-z][A-Za-z0-9]*;)")

# A tag in our canonical markup: "<" or "</" followed by a letter.
_CANONICAL_TAG_RE = re.compile(r"<(?P<end>/?)(?P<name>[a-z][a-z0-9]*)[^>]*>")
# C0/C1 controls except tab and newline (CR is normalised separately), and lone surrogates,
# which would make the UTF-8 encoding of the response fail (a 500 on every view).
_CONTROL_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_SURROGATE_RE = re.compile("[\ud800-\udfff]")
_URL_CONTROL_RE = re.compile("[\x00-\x20\x7f-\x9f]")
# Markup that says where paragraphs and lines go; without any, typed line breaks do.
_LAYOUT_MARKUP_RE = re.compile(r"<\s*/?\s*(?:p|br|div|ul|ol|li|h[1-6]|blockquote|pre|hr)\b", re.I)
_URL_STRIP = "".join(chr(c) for c in range(0x21))

# Mentions and hashtags must not start inside a word, an e-mail address, a path or an entity.
_NOT_AFTER = r"(?<![\w@#/.&+=~-])"
_DOMAIN_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_TOKEN_RE = re.compile(
    r"(?P<url>(?<!\w)https?://[^\s<>\"]+)"
    rf"|(?P<mention>{_NOT_AFTER}@"
    r"(?P<name>[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?)"
    rf"(?:@(?P<host>{_DOMAIN_LABEL}(?:\.{_DOMAIN_LABEL})*(?::[0-9]{{1,5}})?))?"
    r"(?![\w@]))"
    # \w is Unicode-aware; combining marks (U+0300-036F) are not \w but occur in NFD text.
    rf"|(?P<hashtag>{_NOT_AFTER}#(?P<tag>[\w\u0300-\u036f]+))",
    re.IGNORECASE,
)
_URL_TRAILING = ".,:;!?'\"*"
_OPENERS = "([{"
_CLOSERS = ")]}"
_BLANK_LINES_RE = re.compile(r"\n[^\S\n]*(?:\n[^\S\n]*)+")
_SPACES_RE = re.compile(r"[^\S\n]+")
_MANY_NEWLINES_RE = re.compile(r"\n{3,}")
_ROUGH_TAG_RE = re.compile(r"<[^>]*>?")


@dataclass(frozen=True, slots=True)
class MentionTarget:
    """Who an @handle refers to, as answered by the caller's resolver.

    ``href`` is the profile page linked from the post and must be an absolute http(s) URL
    (anything else is removed by the sanitizer). ``handle`` is shown as ``@handle``.
    """

    handle: str
    href: str
    actor_uri: str


@dataclass(frozen=True, slots=True)
class RenderedPost:
    """The output of ``TextRenderer.render_post``.

    ``mentions`` is unique by actor_uri, ``hashtags`` lowercased (NFKC) and unique, ``links``
    unique; all in order of first appearance.
    """

    html: str
    mentions: tuple[MentionTarget, ...]
    hashtags: tuple[str, ...]
    links: tuple[str, ...]


class TextRenderer:
    """Owns the bleach cleaners; create one per application (not thread-safe)."""

    def __init__(self) -> None:
        self._rich = Cleaner(
            tags=_RICH_TAGS | _DROP_WITH_CONTENT,
            attributes=_rich_attribute_allowed,
            protocols=frozenset({"http", "https", "mailto"}),
            strip=True,
            strip_comments=True,
            filters=[_RichFinish],
        )
        self._remote = Cleaner(
            tags=_REMOTE_TAGS | _DROP_WITH_CONTENT,
            attributes=_remote_attribute_allowed,
            protocols=frozenset({"http", "https"}),
            strip=True,
            strip_comments=True,
            filters=[_RemoteFinish],
        )
        self._post = Cleaner(
            tags=_POST_TAGS | _DROP_WITH_CONTENT,
            attributes=_post_attribute_allowed,
            protocols=frozenset({"http", "https"}),
            strip=True,
            strip_comments=True,
            filters=[_PostFinish],
        )
        # Keeps only block structure, used to extract plain text.
        self._structure = Cleaner(
            tags=_TEXT_BLOCK_TAGS | {"br"} | _DROP_WITH_CONTENT,
            attributes={},
            protocols=frozenset(),
            strip=True,
            strip_comments=True,
            filters=[_StructureFinish],
        )

    # -- public API ----------------------------------------------------------------------

    def render_post(
        self,
        source: str,
        *,
        resolve_mention: Callable[[str], MentionTarget | None],
        tag_href: Callable[[str], str],
    ) -> RenderedPost:
        """Render a post typed as plain text into safe HTML.

        ``resolve_mention`` receives the handle as typed, without the ``@`` (``bob`` or
        ``bob@partner.example``), and returns None for unknown people, whose text stays plain.
        It is called at most once per distinct handle (case-insensitively) and for at most
        ``MAX_MENTION_LOOKUPS`` handles. The link text is ``@`` + ``MentionTarget.handle``.
        ``tag_href`` receives the normalised tag (NFKC, lowercased, no ``#``, at most
        ``MAX_TAG_CHARS``) and must return an absolute URL (percent-encoding is its job).
        Links that are not absolute http(s) URLs are removed by the sanitizer pass, leaving
        their text.
        """
        text = _prepare(source)
        try:
            builder = _PostBuilder(resolve_mention, tag_href)
            raw_html = builder.build(text)
            # Second line of defence: our own markup goes through the strict policy too.
            if _too_complex(raw_html):  # only for absurd sizes (posting caps at 5000 chars)
                safe = _paragraphs_from_text(text)
            else:
                safe = self._post.clean(raw_html) if raw_html else ""
            return RenderedPost(
                html=safe,
                mentions=tuple(builder.mentions),
                hashtags=tuple(builder.hashtags),
                links=tuple(builder.links),
            )
        except Exception:
            # Also covers resolver/tag_href failures: the post still renders, unlinked.
            _log.exception("render_post failed; falling back to plain text")
            fallback = _paragraphs_from_text(text)
            return RenderedPost(html=fallback, mentions=(), hashtags=(), links=())

    def sanitize_rich(self, html: str) -> str:
        """Sanitize user-edited rich text (profile CV / bio) to the rich allowlist."""
        return self._sanitize(self._rich, html)

    def rich_from_source(self, text: str) -> str:
        """What a person typed as rich text (profile CV / bio) → sanitized HTML. Plain text
        gets paragraphs, line breaks and links; text with inline tags only (``<b>`` in a
        plain paragraph) keeps its line breaks too, since no paragraph markup says where they
        go; text with block markup (paragraphs, lists) is taken as the HTML it is."""
        if "<" not in text:
            return self.rich_from_plain(text)
        if _LAYOUT_MARKUP_RE.search(text):
            return self.sanitize_rich(text)
        paragraphs = [p.strip("\n") for p in re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n"))]
        html_text = "".join(f"<p>{p.replace(chr(10), '<br>')}</p>" for p in paragraphs if p.strip())
        return self.sanitize_rich(html_text)

    def editable_source(self, html: str) -> str:
        """The stored rich text as it is shown for editing: the plain text it came from when
        plain text makes exactly this HTML again (so people who never typed a tag never see
        one), else the HTML."""
        plain = self.plain_text(html)
        return plain if self.rich_from_plain(plain) == html else html

    def rich_from_plain(self, text: str) -> str:
        """Plain text → rich HTML: paragraphs, line breaks and linked http(s) URLs."""
        prepared = _prepare(text)
        try:
            builder = _PostBuilder(None, None, link_target=False)
            raw_html = builder.build(prepared)
            if _too_complex(raw_html):
                return _paragraphs_from_text(prepared)
            return self._rich.clean(raw_html) if raw_html else ""
        except Exception:
            _log.exception("rich_from_plain failed; falling back to plain text")
            return _paragraphs_from_text(prepared)

    def sanitize_remote(self, html: str) -> str:
        """Sanitize inbound ActivityPub ``content`` to Mastodon's allowed set."""
        return self._sanitize(self._remote, html)

    def plain_text(self, html: str, max_len: int | None = None) -> str:
        """Text content of an HTML fragment (not escaped: let the template escape it).

        Paragraphs become blank lines, ``<br>`` a newline, other whitespace is collapsed.
        With ``max_len`` the result is at most that many characters, ending in "…" when cut.
        """
        prepared = _prepare(html)
        try:
            canonical = _canonicalize(prepared, frozenset(self._structure.tags))
            if _too_complex(canonical):
                text = _flat_text(prepared)
            else:
                text = _text_from_structure(self._structure.clean(canonical))
        except Exception:
            _log.exception("plain_text failed; falling back to a rough tag strip")
            try:
                text = _normalise_text(_html_unescape(_ROUGH_TAG_RE.sub(" ", prepared)))
            except Exception:
                text = ""
        return _truncate(text, max_len)

    # -- internals -----------------------------------------------------------------------

    def _sanitize(self, cleaner: Cleaner, source: str) -> str:
        text = _prepare(source)
        try:
            canonical = _canonicalize(text, frozenset(cleaner.tags))
            if _too_complex(canonical):
                return _flatten(text)
            return cleaner.clean(canonical)
        except Exception:
            _log.exception("sanitizer failed; falling back to plain text")
            return _flatten(text)


# -- input preparation, the pre-pass and limits ------------------------------------------


def _prepare(value: object) -> str:
    """Make any input a bounded, encodable string without control characters."""
    if not isinstance(value, str):
        return ""
    text = value[:MAX_INPUT_CHARS]
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _clean_chars(text)


def _clean_chars(text: str) -> str:
    return _SURROGATE_RE.sub("\ufffd", _CONTROL_RE.sub("", text))


def _canonicalize(text: str, keep: frozenset[str]) -> str:
    """Re-serialise untrusted markup into a canonical form before bleach sees it.

    Why: html5lib's tokenizer is quadratic in the number of attributes of one tag (it scans
    all previous names for duplicates; 20k attributes took 8 s), and html5lib's behaviour on
    such input cannot be bounded from outside. This linear tokenizer follows the HTML
    tokenizer's rules for tags, attributes, comments and raw-text elements, and emits:

    * text with entities decoded and then re-escaped (only ``&amp;``, ``&lt;``, ``&gt;``);
    * only tags named in ``keep``, lowercased, with at most the ``_KEPT_ATTRIBUTES`` (first
      occurrence wins), values decoded and re-escaped inside double quotes;
    * nothing for comments, doctypes, processing instructions and raw-text elements with
      their content (script, style, …); a newline for other dropped block-level tags.

    It is not the security boundary: bleach sanitizes its output. Any disagreement with a
    browser on malformed input only changes what text survives, never what can execute,
    because the canonical form is unambiguous to html5lib and bleach re-serialises it.
    """
    out: list[str] = []
    pos = 0
    length = len(text)
    while pos < length:
        lt = text.find("<", pos)
        if lt < 0:
            out.append(_escape_text(_decode_text(text[pos:])))
            break
        if lt > pos:
            out.append(_escape_text(_decode_text(text[pos:lt])))
        pos = lt
        tag = _TAG_START_RE.match(text, pos)
        if tag is None:
            pos = _skip_markup_declaration(text, pos, out)
            continue
        is_end = bool(tag.group(1))
        name = tag.group(2).lower()
        pos = tag.end()
        attributes: dict[str, str] = {}
        while True:
            finish = _TAG_END_RE.match(text, pos)
            if finish is not None:
                self_closing = finish.group(0).endswith("/>")
                pos = finish.end()
                break
            attribute = _ATTRIBUTE_RE.match(text, pos)
            if attribute is None:  # cannot happen (any other character starts a name)
                pos += 1
                continue
            pos = attribute.end()
            attr_name = attribute.group("name").lower()
            if attr_name in _KEPT_ATTRIBUTES and attr_name not in attributes:
                attributes[attr_name] = _decode_attribute(attribute.group("value") or "")
        if name in _RAW_TEXT_TAGS and not is_end:
            closing = re.compile(rf"</{name}(?=[{_WS}/>]|\Z)", re.IGNORECASE).search(text, pos)
            pos = length if closing is None else closing.start()
            continue
        if name in keep:
            if is_end:
                out.append(f"</{name}>")
            else:
                rendered = "".join(f' {k}="{_escape_attr(v)}"' for k, v in attributes.items())
                # Self-closing only matters for svg/math, which we drop whole.
                slash = "/" if self_closing and name in _DROP_WITH_CONTENT else ""
                out.append(f"<{name}{rendered}{slash}>")
        elif name in _BLOCK_TAGS and not is_end and out:
            out.append("\n")
    return "".join(out)


def _skip_markup_declaration(text: str, pos: int, out: list[str]) -> int:
    """At a "<" that does not start a tag: skip a comment or bogus comment, or keep "<"."""
    following = text[pos + 1 : pos + 2]
    if text.startswith("<!--", pos):
        comment = _COMMENT_RE.match(text, pos)
        return len(text) if comment is None else comment.end()
    if following in ("!", "?", "/"):
        if text.startswith("</>", pos):
            return pos + 3
        end = text.find(">", pos)
        return len(text) if end < 0 else end + 1
    out.append("&lt;")
    return pos + 1


def _decode_text(text: str) -> str:
    return _clean_chars(_html_unescape(text))


def _decode_attribute(raw: str) -> str:
    if raw[:1] in ('"', "'"):
        raw = raw[1:-1] if len(raw) > 1 and raw[-1] == raw[0] else raw[1:]
    decoded = _ATTRIBUTE_REFERENCE_RE.sub(lambda m: _html_unescape(m.group(0)), raw)
    return _clean_chars(decoded)


def _too_complex(canonical: str) -> bool:
    """Would bleach/html5lib be slow on this canonical markup? (Cheap, linear estimate.)

    We count tags and entities, and simulate the stack of open elements with the common
    implicit closes (<p> by blocks, <li> by <li>): misnested formatting elements can make
    html5lib rebuild up to the whole stack at every tag, so depth and count are bounded.
    """
    if canonical.count("&") > MAX_ENTITIES:
        return True
    # Entries are the whole start tag for formatting elements (html5lib compares name and
    # attributes for its "Noah's ark" limit of three), the name otherwise.
    stack: list[str] = []
    for count, match in enumerate(_CANONICAL_TAG_RE.finditer(canonical)):
        if count >= MAX_TAGS:
            return True
        name = match.group("name")
        if name in _VOID_TAGS:
            continue
        if match.group("end"):
            _close(stack, name)
            continue
        if name in _CLOSES_P:
            _close_if_open_on_top(stack, "p")
        if name == "li":
            _close_if_open_on_top(stack, "li")
        stack.append(match.group(0) if name in _FORMATTING_TAGS else name)
        if len(stack) > MAX_NESTING:
            return True
    return False


def _entry_name(entry: str) -> str:
    return entry[1:].split(" ", 1)[0].rstrip(">") if entry.startswith("<") else entry


def _close_if_open_on_top(stack: list[str], name: str) -> None:
    if stack and _entry_name(stack[-1]) == name:
        stack.pop()


def _close(stack: list[str], name: str) -> None:
    """An end tag closes up to its element; html5lib later reopens the formatting elements
    it closed on the way (misnesting such as <b><i></b>), up to three identical ones."""
    if all(_entry_name(entry) != name for entry in stack):
        return
    reopened: list[str] = []
    while stack:
        entry = stack.pop()
        if _entry_name(entry) == name:
            break
        if entry.startswith("<"):
            reopened.append(entry)
    for entry in reversed(reopened):
        if stack.count(entry) < 3:
            stack.append(entry)


def _flat_text(text: str) -> str:
    """Plain text of untrusted markup without building a tree (linear time)."""
    return _normalise_text(_html_unescape(_canonicalize(text, frozenset())))


def _flatten(text: str) -> str:
    """Untrusted markup as escaped text in <p>/<br>; the fallback for every sanitizer."""
    try:
        return _paragraphs_from_text(_flat_text(text))
    except Exception:
        _log.exception("flattening failed; escaping everything")
        return _paragraphs_from_text(text)


# -- URL and attribute policy ----------------------------------------------------------------


def _is_safe_href(value: str, *, allow_mailto: bool) -> bool:
    """True for absolute http(s) URLs with a host (and mailto: if allowed), nothing else.

    bleach leaves entities in attribute values undecoded and the browser decodes them, so we
    decide on the decoded value. Browsers also drop tabs and newlines inside URLs
    (``jav&#x09;ascript:``), so any control or space character inside rejects the value.
    """
    decoded = _html_unescape(value).strip(_URL_STRIP)
    if not decoded or len(decoded) > MAX_URL_CHARS or _URL_CONTROL_RE.search(decoded):
        return False
    lowered = decoded.lower()
    if lowered.startswith("mailto:"):
        return allow_mailto and len(decoded) > len("mailto:")
    if not lowered.startswith(("http://", "https://")):
        return False  # relative, protocol-relative, javascript:, data:, vbscript:, …
    try:
        return bool(urlsplit(decoded).hostname)
    except ValueError:
        return False


def _rich_attribute_allowed(tag: str, name: str, value: str) -> bool:
    return tag == "a" and name == "href" and _is_safe_href(value, allow_mailto=True)


def _remote_attribute_allowed(tag: str, name: str, value: str) -> bool:
    if tag == "a":
        if name == "href":
            return _is_safe_href(value, allow_mailto=False)
        return name in ("rel", "class")  # both rewritten by _RemoteFinish
    return tag == "span" and name == "class"


def _post_attribute_allowed(tag: str, name: str, value: str) -> bool:
    if tag == "a":
        if name == "href":
            return _is_safe_href(value, allow_mailto=False)
        if name == "target":
            return value == "_blank"
        return name in ("rel", "class")
    return tag == "span" and name == "class"


# -- token filters run after bleach's sanitizer ---------------------------------------------

_Token = dict[str, Any]
_HREF = (None, "href")
_REL = (None, "rel")
_CLASS = (None, "class")
_TARGET = (None, "target")
_HTML_NAMESPACE = "http://www.w3.org/1999/xhtml"


class _FinishFilter(_TokenFilter):
    """Drops dangerous elements with their content, unlinked <a>, and unsafe class/rel values.

    The token stream comes from a tree walker, so every StartTag has its EndTag and counting
    depth inside a dropped element is exact. A dropped element's tags are never yielded.
    """

    allowed_classes: ClassVar[frozenset[str]] = frozenset()
    # Set on every kept link; None means "filter the existing rel tokens" (render_post).
    forced_rel: ClassVar[str | None] = _REL_EXTERNAL

    def __iter__(self) -> Iterator[_Token]:
        dropping = 0
        kept_links: list[bool] = []
        for token in self.source:
            kind = token.get("type")
            is_tag = kind in ("StartTag", "EndTag", "EmptyTag")
            if dropping:
                if kind == "StartTag":
                    dropping += 1
                elif kind == "EndTag":
                    dropping -= 1
                continue
            if not is_tag:
                yield token
                continue
            name = token.get("name")
            namespace = token.get("namespace")
            if name in _DROP_WITH_CONTENT or namespace not in (None, _HTML_NAMESPACE):
                if kind == "StartTag":
                    dropping = 1
                continue
            if name == "a" and kind == "StartTag":
                keep = self._fix_link(token)
                kept_links.append(keep)
                if not keep:
                    continue
            elif name == "a" and kind == "EndTag":
                if not (kept_links.pop() if kept_links else False):
                    continue
            elif kind != "EndTag":
                self._fix_classes(token)
            yield token

    def _fix_classes(self, token: _Token) -> None:
        attrs = token.get("data")
        if not isinstance(attrs, dict) or _CLASS not in attrs:
            return
        wanted: list[str] = []
        for value in str(attrs[_CLASS]).split():
            if value in self.allowed_classes and value not in wanted:
                wanted.append(value)
        if wanted:
            attrs[_CLASS] = " ".join(wanted)
        else:
            del attrs[_CLASS]

    def _fix_link(self, token: _Token) -> bool:
        """Normalise an <a>; False if it has no (safe) href left and must be unwrapped."""
        attrs = token.get("data")
        if not isinstance(attrs, dict) or not attrs.get(_HREF):
            return False
        # Browsers ignore surrounding whitespace; other consumers (and URL checks) may not.
        attrs[_HREF] = str(attrs[_HREF]).strip(_URL_STRIP)
        self._fix_classes(token)
        if self.forced_rel is not None:
            attrs[_REL] = self.forced_rel
            return True
        rel: list[str] = []
        for value in str(attrs.get(_REL, "")).lower().split():
            if value in _REL_TOKENS_POST and value not in rel:
                rel.append(value)
        if _TARGET in attrs:
            # A link opening a new window must not hand it window.opener.
            rel.extend(r for r in ("noopener", "noreferrer") if r not in rel)
        if rel:
            attrs[_REL] = " ".join(rel)
        else:
            attrs.pop(_REL, None)
        return True


class _RichFinish(_FinishFilter):
    allowed_classes: ClassVar[frozenset[str]] = frozenset()


class _RemoteFinish(_FinishFilter):
    allowed_classes: ClassVar[frozenset[str]] = _SAFE_CLASSES


class _PostFinish(_FinishFilter):
    allowed_classes: ClassVar[frozenset[str]] = _SAFE_CLASSES
    forced_rel: ClassVar[str | None] = None


class _StructureFinish(_FinishFilter):
    allowed_classes: ClassVar[frozenset[str]] = frozenset()


# -- plain text → HTML ------------------------------------------------------------------


class _PostBuilder:
    """Builds render_post's HTML from escaped text; collects mentions, tags and links.

    With ``resolve_mention``/``tag_href`` None only URLs are linked (rich_from_plain).
    """

    def __init__(
        self,
        resolve_mention: Callable[[str], MentionTarget | None] | None,
        tag_href: Callable[[str], str] | None,
        *,
        link_target: bool = True,
    ) -> None:
        self._resolve = resolve_mention
        self._tag_href = tag_href
        self._link_target = link_target
        self._resolved: dict[str, MentionTarget | None] = {}
        self.mentions: list[MentionTarget] = []
        self.hashtags: list[str] = []
        self.links: list[str] = []

    def build(self, text: str) -> str:
        paragraphs = _BLANK_LINES_RE.split(text.strip("\n"))
        out: list[str] = []
        for paragraph in paragraphs:
            lines = [self._line(line.rstrip()) for line in paragraph.split("\n")]
            if any(lines):
                out.append("<p>" + "<br>".join(lines) + "</p>")
        return "".join(out)

    def _line(self, line: str) -> str:
        out: list[str] = []
        pos = 0
        for match in _TOKEN_RE.finditer(line):
            if match.group("url"):
                rendered, end = self._url(match)
            elif match.group("mention"):
                rendered, end = self._mention(match), match.end()
            else:
                rendered, end = self._hashtag(match), match.end()
            if rendered is None:
                continue
            out.append(_escape_text(line[pos : match.start()]))
            out.append(rendered)
            pos = end
        out.append(_escape_text(line[pos:]))
        return "".join(out)

    def _url(self, match: re.Match[str]) -> tuple[str | None, int]:
        url = _trim_url(match.group("url"))
        if not _is_safe_href(url, allow_mailto=False):
            return None, match.end()
        if url not in self.links:
            self.links.append(url)
        target = ' target="_blank"' if self._link_target else ""
        return (
            f'<a href="{_escape_attr(url)}" rel="{_REL_EXTERNAL}"{target}>{_escape_text(url)}</a>',
            match.start() + len(url),
        )

    def _mention(self, match: re.Match[str]) -> str | None:
        if self._resolve is None:
            return None
        handle = match.group("mention")[1:]
        key = handle.lower()
        if key not in self._resolved:
            if len(self._resolved) >= MAX_MENTION_LOOKUPS:
                return None
            self._resolved[key] = self._resolve(handle)
        target = self._resolved[key]
        if target is None:
            return None
        if all(m.actor_uri != target.actor_uri for m in self.mentions):
            self.mentions.append(target)
        return (
            f'<span class="h-card"><a href="{_escape_attr(target.href)}" class="u-url mention">'
            f"@{_escape_text(target.handle)}</a></span>"
        )

    def _hashtag(self, match: re.Match[str]) -> str | None:
        if self._tag_href is None:
            return None
        raw = match.group("tag")
        if raw.isdigit() or len(raw) > MAX_TAG_CHARS:  # "#1" is a number, not a tag
            return None
        tag = unicodedata.normalize("NFKC", raw).lower()
        if tag not in self.hashtags:
            self.hashtags.append(tag)
        return (
            f'<a href="{_escape_attr(self._tag_href(tag))}" class="mention hashtag" rel="tag">'
            f"#{_escape_text(raw)}</a>"
        )


def _trim_url(url: str) -> str:
    """Drop trailing punctuation that belongs to the sentence, and unbalanced closers."""
    while url:
        last = url[-1]
        closer = _CLOSERS.find(last)
        unbalanced = closer >= 0 and url.count(_OPENERS[closer]) < url.count(last)
        if last not in _URL_TRAILING and not unbalanced:
            break
        url = url[:-1]
    return url


def _escape_text(text: str) -> str:
    return _html_escape(text, quote=False)


def _escape_attr(text: str) -> str:
    return _html_escape(text, quote=True)


def _paragraphs_from_text(text: str) -> str:
    """Escaped plain text as <p>/<br> HTML; the last-resort rendering, cannot fail."""
    paragraphs = _BLANK_LINES_RE.split(text.strip())
    return "".join(
        "<p>" + "<br>".join(_escape_text(line) for line in p.split("\n")) + "</p>"
        for p in paragraphs
        if p.strip()
    )


# -- HTML → plain text ------------------------------------------------------------------


class _TextExtractor(HTMLParser):
    """Reads the output of the structure cleaner: only block tags and <br>, no attributes.

    The stdlib parser is fine here because its input is our own serializer's output.
    """

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.parts.append("\n" if tag == "br" else "\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag != "br":
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def _text_from_structure(structure_html: str) -> str:
    extractor = _TextExtractor()
    extractor.feed(structure_html)
    extractor.close()
    return _normalise_text("".join(extractor.parts))


def _normalise_text(text: str) -> str:
    text = _SPACES_RE.sub(" ", text)
    text = "\n".join(line.strip() for line in text.split("\n"))
    text = _MANY_NEWLINES_RE.sub("\n\n", text)
    return _SURROGATE_RE.sub("\ufffd", _CONTROL_RE.sub("", text)).strip()


def _truncate(text: str, max_len: int | None) -> str:
    if max_len is None or len(text) <= max_len:
        return text
    if max_len <= 1:
        return "…"[: max(max_len, 0)]
    cut = text[: max_len - 1]
    # Prefer a word boundary unless that throws away too much.
    if not text[max_len - 1].isspace():
        space = max(cut.rfind(" "), cut.rfind("\n"))
        if space >= max_len // 2:
            cut = cut[:space]
    return cut.rstrip() + "…"
