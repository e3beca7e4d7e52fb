"""Tests for server.text: rendering posts and sanitising HTML (SECURITY.md §1.4).

The XSS corpus goes through every entry point; ``assert_safe_html`` checks the output
structurally (every tag, attribute and URL), not by looking for a few bad strings.
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Callable
from typing import cast

import pytest

from server.text import MentionTarget, RenderedPost, TextRenderer

# Copied from the brief on purpose (not imported): the test states the policy independently.
RICH_TAGS = frozenset({"p", "br", "a", "strong", "b", "em", "i", "u", "del", "s", "code"})
RICH_TAGS |= {"pre", "blockquote", "ul", "ol", "li", "h3", "h4"}
REMOTE_TAGS = frozenset({"p", "span", "br", "a", "del", "pre", "code", "em", "strong", "b"})
REMOTE_TAGS |= {"i", "u", "ul", "ol", "li", "blockquote"}
POST_TAGS = frozenset({"p", "br", "a", "span"})
SAFE_CLASSES = frozenset({"mention", "hashtag", "h-card", "u-url"})
REL = "nofollow noopener noreferrer"

_TAG = re.compile(r"<(/?)([^\s/>]+)([^>]*)>")
_ATTRIBUTE = re.compile(r' ([a-z-]+)="([^"<>]*)"')
_SAFE_URL = re.compile(r"(?:https?://[^/\\\s]|mailto:\S)", re.IGNORECASE)
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


def assert_safe_html(
    out: str,
    *,
    tags: frozenset[str],
    classes: frozenset[str] = frozenset(),
    mailto: bool = False,
    target: bool = False,
) -> None:
    """Fail unless ``out`` is well-formed markup within the given policy."""
    assert isinstance(out, str)
    out.encode("utf-8")  # no lone surrogates: the response must be encodable
    assert not _CONTROL.search(out)
    # Outside our tags there is only escaped text.
    assert "<" not in _TAG.sub("", out), out
    for match in _TAG.finditer(out):
        is_end, name, rest = match.groups()
        assert name in tags, (name, out)
        if is_end:
            assert rest == "", out
            continue
        assert _ATTRIBUTE.sub("", rest) == "", (rest, out)  # nothing but name="value"
        for attribute in _ATTRIBUTE.finditer(rest):
            key, value = attribute.group(1), html.unescape(attribute.group(2))
            if key == "href":
                assert name == "a"
                assert _SAFE_URL.match(value), (value, out)
                assert not re.search(r"[\x00-\x20]", value), (value, out)
                if value.lower().startswith("mailto:"):
                    assert mailto, out
            elif key == "class":
                assert set(value.split()) <= classes, (value, out)
            elif key == "rel":
                assert name == "a"
            elif key == "target":
                assert target and value == "_blank", out
                assert "noopener" in rest and "noreferrer" in rest
            else:
                raise AssertionError(f"unexpected attribute {key!r} in {out!r}")
    lowered = html.unescape(out).lower()
    for vector in ("<script", "javascript:", "vbscript:", "data:text", "onerror", "onload"):
        # Text may mention these words only in escaped form, never as markup.
        if vector in lowered:
            assert vector not in "".join(m.group(0).lower() for m in _TAG.finditer(out))


XSS_CORPUS = [
    "<script>alert(1)</script>",
    "<SCRIPT SRC=//evil.example/x.js></SCRIPT>",
    "<scr<script>ipt>alert(1)</scr</script>ipt>",
    "<img src=x onerror=alert(1)>",
    "<img src=x onerror=\"alert('x')\"//",
    '<a href="javascript:alert(1)">x</a>',
    '<a href="JaVaScRiPt:alert(1)">x</a>',
    '<a href="jav&#x09;ascript:alert(1)">x</a>',
    '<a href="jav\tascript:alert(1)">x</a>',
    '<a href="jav&#x0A;ascript:alert(1)">x</a>',
    '<a href="&#106;avascript:alert(1)">x</a>',
    '<a href="&#106avascript:alert(1)">x</a>',
    '<a href="&#x6A;&#x61;&#x76;&#x61;&#x73;&#x63;&#x72;&#x69;&#x70;&#x74;&#x3A;alert(1)">x</a>',
    '<a href="&#0000106&#0000097&#0000118&#0000097script:alert(1)">x</a>',
    '<a href=" &#14; javascript:alert(1)">x</a>',
    '<a href="javascript&colon;alert(1)">x</a>',
    '<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">x</a>',
    '<a href="vbscript:msgbox(1)">x</a>',
    '<a href="//evil.example/">x</a>',
    '<a href="/\\evil.example/">x</a>',
    '<a href="\\\\evil.example/">x</a>',
    '<a href="relative/path">x</a>',
    '<a href="https://ok.example/" onclick="alert(1)" onmouseover=alert(1)>ok</a>',
    '<a href="https://ok.example/" style="position:fixed;top:0">ok</a>',
    '<a href="https://ok.example/" class="invisible ellipsis mention">spoof</a>',
    '<span class="invisible">hidden</span><span class="h-card button">x</span>',
    '<p style="background:url(javascript:alert(1))">styled</p>',
    "<svg onload=alert(1)><circle r=10 /></svg>",
    "<svg><script>alert(1)</script></svg>",
    "<svg/onload=alert(1)>",
    '<svg><a xlink:href="javascript:alert(1)"><text>x</text></a></svg>',
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    "<math><mi xlink:href=javascript:alert(1)>x</mi></math>",
    '<math><maction actiontype="statusline" xlink:href="javascript:alert(1)">x</maction>',
    '<math><mtext></mtext><mglyph><svg><mtext><style><path id="</style>'
    '<img onerror=alert(1) src>">',
    '<noscript><p title="</noscript><img src=x onerror=alert(1)>"></noscript>',
    "<iframe src=javascript:alert(1)></iframe>",
    '<iframe srcdoc="<script>alert(1)</script>"></iframe>',
    "<object data=javascript:alert(1)></object>",
    '<embed src="data:text/html,<script>alert(1)</script>">',
    "<template><script>alert(1)</script></template>",
    "<style>@import 'https://evil.example/x.css';</style>",
    "<xmp><script>alert(1)</script></xmp>",
    "<textarea><script>alert(1)</script></textarea>",
    "<title><script>alert(1)</script></title>",
    '<form action="javascript:alert(1)"><button>x</button></form>',
    "<input onfocus=alert(1) autofocus>",
    "<details open ontoggle=alert(1)>",
    "<body onload=alert(1)>",
    "<meta http-equiv=refresh content='0;url=javascript:alert(1)'>",
    "<base href=javascript:/a/-alert(1)///////><a href=../lol/safari.html>test</a>",
    "<!--<img src=x onerror=alert(1)>-->",
    "<!--><img src=x onerror=alert(1)>-->",
    "<![CDATA[<script>alert(1)</script>]]>",
    "<?xml version='1.0'?><script>alert(1)</script>",
    "<b <script>alert(1)</script>>",
    "<a href='https://ok.example/'<img src=x onerror=alert(1)>",
    "<b>unclosed <i>tags <a href='https://ok.example/'>link",
    "</p></b></a></div></script>",
    "<<script>alert(1);//<</script>",
    '<a href="https://ok.example/" target="_top" rel="opener">x</a>',
    '<a href="https://ok.example/"\x00onclick=alert(1)>x</a>',
    "\x00<scr\x00ipt>alert(1)</script>\x00",
    "lone \ud800 surrogate \udfff in text <b>\ud83d</b>",
    '<a href="https://ok.example/\ud800">x</a>',
    '<div id="x" data-x="y" title="t">div</div>',
    '<a href="https://ok.example/">' * 50,
    "&lt;script&gt;alert(1)&lt;/script&gt;",
    "&#60;script&#62;alert(1)&#60;/script&#62;",
    '<a href="https://ok.example/?a=1&b=2">amp</a>',
    "<b>" + "x " * 1000,
    '"><script>alert(1)</script>',
    "'; alert(1); '",
    "javascript:alert(1)",
    "<a href=https://ok.example/ >unquoted</a>",
    "<h1>big</h1><h3>ok</h3><h4>ok</h4><h6>no</h6>",
]


@pytest.fixture(scope="module")
def renderer() -> TextRenderer:
    return TextRenderer()


def _resolver(handles: dict[str, str]) -> Callable[[str], MentionTarget | None]:
    def resolve(handle: str) -> MentionTarget | None:
        key = handle.lower()
        if key not in handles:
            return None
        return MentionTarget(handle=key, href=handles[key], actor_uri=f"actor:{key}")

    return resolve


def _tag_href(tag: str) -> str:
    return f"https://acme.example/tags/{tag}"


NOBODY = _resolver({})
PEOPLE = _resolver(
    {
        "bob": "https://acme.example/@bob",
        "bob@partner.example": "https://partner.example/@bob",
        "carol.smith": "https://acme.example/@carol.smith",
    }
)


def _render(renderer: TextRenderer, source: str) -> RenderedPost:
    return renderer.render_post(source, resolve_mention=PEOPLE, tag_href=_tag_href)


# -- the XSS corpus through every entry point ----------------------------------------------


@pytest.mark.parametrize("payload", XSS_CORPUS)
def test_sanitize_rich_corpus(renderer: TextRenderer, payload: str) -> None:
    assert_safe_html(renderer.sanitize_rich(payload), tags=RICH_TAGS, mailto=True)


@pytest.mark.parametrize("payload", XSS_CORPUS)
def test_sanitize_remote_corpus(renderer: TextRenderer, payload: str) -> None:
    assert_safe_html(renderer.sanitize_remote(payload), tags=REMOTE_TAGS, classes=SAFE_CLASSES)


@pytest.mark.parametrize("payload", XSS_CORPUS)
def test_render_post_corpus(renderer: TextRenderer, payload: str) -> None:
    rendered = _render(renderer, payload)
    assert_safe_html(rendered.html, tags=POST_TAGS, classes=SAFE_CLASSES, target=True)


@pytest.mark.parametrize("payload", XSS_CORPUS)
def test_rich_from_plain_corpus(renderer: TextRenderer, payload: str) -> None:
    assert_safe_html(renderer.rich_from_plain(payload), tags=RICH_TAGS)


@pytest.mark.parametrize("payload", XSS_CORPUS)
def test_plain_text_corpus(renderer: TextRenderer, payload: str) -> None:
    text = renderer.plain_text(payload)
    assert isinstance(text, str)
    text.encode("utf-8")
    assert not _CONTROL.search(text.replace("\n", ""))
    if payload.startswith("<script>"):
        assert "alert" not in text  # script bodies are dropped, not shown as text


@pytest.mark.parametrize("payload", XSS_CORPUS)
def test_sanitizers_are_stable_on_their_own_output(renderer: TextRenderer, payload: str) -> None:
    once = renderer.sanitize_remote(payload)
    assert renderer.sanitize_remote(once) == once
    rich = renderer.sanitize_rich(payload)
    assert renderer.sanitize_rich(rich) == rich


def test_script_style_and_embedded_content_is_dropped_not_shown(renderer: TextRenderer) -> None:
    payload = (
        "<p>before</p><script>var secret = 1;</script><style>p { color: red }</style>"
        "<iframe>frame text</iframe><object>object text</object><svg><text>svg text</text>"
        "</svg><math><mi>math text</mi></math><template>template text</template>"
        "<noscript>noscript text</noscript><p>after</p>"
    )
    for out in (
        renderer.sanitize_rich(payload),
        renderer.sanitize_remote(payload),
        renderer.plain_text(payload),
    ):
        assert "before" in out and "after" in out
        for hidden in ("secret", "color", "frame", "object", "svg", "math", "template", "noscr"):
            assert hidden not in out, (hidden, out)


def test_self_closing_svg_and_math_do_not_swallow_what_follows(renderer: TextRenderer) -> None:
    out = renderer.sanitize_remote("<p>a<svg/>b<math/>c<svg><g/></svg>d</p>")
    assert out == "<p>abcd</p>"


@pytest.mark.parametrize(
    "href",
    [
        "javascript:alert(1)",
        "jav&#x09;ascript:alert(1)",
        "&#106;avascript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "vbscript:msgbox(1)",
        "//evil.example/",
        "/relative",
        "relative",
        "#fragment",
        "ftp://files.example/",
        "https:evil.example",
        "https://",
        "https:///path-only",
        "http://[::1",
    ],
)
def test_unsafe_links_are_unwrapped(renderer: TextRenderer, href: str) -> None:
    payload = f'<p><a href="{html.escape(href)}">label</a></p>'
    assert renderer.sanitize_rich(payload) == "<p>label</p>"
    assert renderer.sanitize_remote(payload) == "<p>label</p>"


# -- denial of service: never raise, bounded time --------------------------------------------


PATHOLOGICAL = {
    "nested-b": "<b>" * 100_000 + "deep",
    "nested-blockquote": "<blockquote>" * 20_000 + "deep",
    "nested-lists": "<ul><li>" * 20_000 + "deep",
    "nested-svg": "<svg>" * 50_000,
    "misnested": "".join(f"<b><i class=c{k}></b>x" for k in range(5_000)),
    "attribute-flood": "<a " + "".join(f"a{k} " for k in range(30_000)) + ">x</a>",
    "quoted-gt-flood": "<a " + " ".join(f'a{k}=">"' for k in range(20_000)) + ">x</a>",
    "open-angles": "<" * 200_000,
    "tag-soup": "<a<a<a" * 40_000,
    "comments": "<!--" * 50_000,
    "ampersands": "&" * 200_000,
    "entities": "&lt;" * 50_000,
    "nul": "\x00" * 100_000,
    "huge": "<p>" + "word " * 500_000,
}


@pytest.mark.parametrize("name", sorted(PATHOLOGICAL))
def test_pathological_input_is_fast_and_safe(renderer: TextRenderer, name: str) -> None:
    payload = PATHOLOGICAL[name]
    for method, tags, classes in (
        (renderer.sanitize_rich, RICH_TAGS, frozenset[str]()),
        (renderer.sanitize_remote, REMOTE_TAGS, SAFE_CLASSES),
    ):
        started = time.monotonic()
        out = method(payload)
        assert time.monotonic() - started < 5, name
        assert_safe_html(out, tags=tags, classes=classes, mailto=True)
    started = time.monotonic()
    renderer.plain_text(payload, max_len=200)
    _render(renderer, payload)
    assert time.monotonic() - started < 5, name


def test_deeply_nested_input_keeps_its_text(renderer: TextRenderer) -> None:
    assert "deep" in renderer.sanitize_remote("<b>" * 50_000 + "deep")
    assert "deep" in renderer.plain_text("<blockquote>" * 10_000 + "deep")


@pytest.mark.parametrize("value", [None, b"<b>bytes</b>", 42, ["<b>"]])
def test_non_string_input_does_not_raise(renderer: TextRenderer, value: object) -> None:
    as_str = cast(str, value)
    assert renderer.sanitize_rich(as_str) == ""
    assert renderer.sanitize_remote(as_str) == ""
    assert renderer.plain_text(as_str) == ""
    assert renderer.rich_from_plain(as_str) == ""
    assert _render(renderer, as_str).html == ""


def test_nul_bytes_and_surrogates_are_removed(renderer: TextRenderer) -> None:
    payload = "a\x00b \ud800c\udfff <b>d\x00</b> e\x1bf"
    for out in (
        renderer.sanitize_rich(payload),
        renderer.sanitize_remote(payload),
        renderer.plain_text(payload),
        renderer.rich_from_plain(payload),
        _render(renderer, payload).html,
    ):
        out.encode("utf-8")
        assert "\x00" not in out and "\x1b" not in out
        assert "ab" in out


def test_a_crashing_resolver_does_not_break_rendering(renderer: TextRenderer) -> None:
    def explode(handle: str) -> MentionTarget | None:
        raise RuntimeError("database is down")

    rendered = renderer.render_post("hi @bob <b>x</b>", resolve_mention=explode, tag_href=_tag_href)
    assert rendered.html == "<p>hi @bob &lt;b&gt;x&lt;/b&gt;</p>"
    assert rendered.mentions == ()


# -- render_post details ---------------------------------------------------------------------


def test_paragraphs_and_line_breaks(renderer: TextRenderer) -> None:
    rendered = _render(renderer, "first line\nsecond line\n\n\n  \nnew paragraph\r\nend\n")
    assert rendered.html == "<p>first line<br>second line</p><p>new paragraph<br>end</p>"


def test_everything_is_escaped(renderer: TextRenderer) -> None:
    rendered = _render(renderer, "<script>alert('x')</script> & \"quotes\"")
    assert rendered.html == "<p>&lt;script&gt;alert('x')&lt;/script&gt; &amp; \"quotes\"</p>"


def test_empty_source(renderer: TextRenderer) -> None:
    assert _render(renderer, "") == RenderedPost(html="", mentions=(), hashtags=(), links=())
    assert _render(renderer, " \n\n ").html == ""


def test_links(renderer: TextRenderer) -> None:
    rendered = _render(
        renderer,
        "See https://example.com/a_(b)?x=1&y=2. Or (http://example.org/path), "
        "https://example.com/a_(b)?x=1&y=2!",
    )
    link = (
        f'<a href="https://example.com/a_(b)?x=1&amp;y=2" rel="{REL}" target="_blank">'
        "https://example.com/a_(b)?x=1&amp;y=2</a>"
    )
    other = (
        f'<a href="http://example.org/path" rel="{REL}" target="_blank">http://example.org/path</a>'
    )
    assert rendered.html == f"<p>See {link}. Or ({other}), {link}!</p>"
    assert rendered.links == ("https://example.com/a_(b)?x=1&y=2", "http://example.org/path")


@pytest.mark.parametrize(
    ("text", "url"),
    [
        ("end https://ok.example/x.", "https://ok.example/x"),
        ("end https://ok.example/x?", "https://ok.example/x"),
        ("end https://ok.example/x,", "https://ok.example/x"),
        ("end https://ok.example/x!", "https://ok.example/x"),
        ("(https://ok.example/x)", "https://ok.example/x"),
        ("https://ok.example/wiki/Foo_(bar)", "https://ok.example/wiki/Foo_(bar)"),
        ('"https://ok.example/q"', "https://ok.example/q"),
        ("HTTPS://OK.EXAMPLE/", "HTTPS://OK.EXAMPLE/"),
        ("https://ok.example:8443/p#frag", "https://ok.example:8443/p#frag"),
    ],
)
def test_url_boundaries(renderer: TextRenderer, text: str, url: str) -> None:
    assert _render(renderer, text).links == (url,)


@pytest.mark.parametrize(
    "text",
    ["javascript:alert(1)", "ftp://files.example/", "https://", "xhttps://ok.example/", "www.x.y"],
)
def test_non_links_stay_text(renderer: TextRenderer, text: str) -> None:
    rendered = _render(renderer, text)
    assert rendered.links == ()
    assert "<a" not in rendered.html


def test_mentions(renderer: TextRenderer) -> None:
    rendered = _render(
        renderer, "Hi @bob, @bob@partner.example and @carol.smith. Also @Bob and @nobody!"
    )
    local = (
        '<span class="h-card"><a href="https://acme.example/@bob" class="u-url mention">'
        "@bob</a></span>"
    )
    remote = (
        '<span class="h-card"><a href="https://partner.example/@bob" class="u-url mention">'
        "@bob@partner.example</a></span>"
    )
    carol = (
        '<span class="h-card"><a href="https://acme.example/@carol.smith" '
        'class="u-url mention">@carol.smith</a></span>'
    )
    assert rendered.html == (f"<p>Hi {local}, {remote} and {carol}. Also {local} and @nobody!</p>")
    assert [m.actor_uri for m in rendered.mentions] == [
        "actor:bob",
        "actor:bob@partner.example",
        "actor:carol.smith",
    ]


def test_resolver_gets_handles_as_typed_once_each(renderer: TextRenderer) -> None:
    seen: list[str] = []

    def collect(handle: str) -> MentionTarget | None:
        seen.append(handle)
        return None

    rendered = renderer.render_post(
        "@Bob @bob @alice@partner.example:8443 @alice@partner.example. @x_y-z",
        resolve_mention=collect,
        tag_href=_tag_href,
    )
    assert seen == ["Bob", "alice@partner.example:8443", "alice@partner.example", "x_y-z"]
    assert rendered.mentions == ()
    assert "<a" not in rendered.html  # unresolved mentions stay plain text


@pytest.mark.parametrize(
    "text",
    [
        "mail bob@acme.example now",
        "https://acme.example/@bob",
        "see acme.example/@bob",
        "user+@bob",
        "@@bob",
        "@",
        "@.bob",
        "@bob@",
    ],
)
def test_no_mention_in_emails_urls_and_junk(renderer: TextRenderer, text: str) -> None:
    seen: list[str] = []

    def collect(handle: str) -> MentionTarget | None:
        seen.append(handle)
        return PEOPLE(handle)

    rendered = renderer.render_post(text, resolve_mention=collect, tag_href=_tag_href)
    assert seen == [] and rendered.mentions == ()
    assert "mention" not in rendered.html


def test_mention_lookups_are_bounded(renderer: TextRenderer) -> None:
    seen: list[str] = []

    def collect(handle: str) -> MentionTarget | None:
        seen.append(handle)
        return None

    source = " ".join(f"@user{k}" for k in range(500))
    renderer.render_post(source, resolve_mention=collect, tag_href=_tag_href)
    assert 0 < len(seen) <= 50


def test_hashtags(renderer: TextRenderer) -> None:
    rendered = _render(renderer, "#Tender and #tender, #café #1 #2024 #q2_plan (#Ünïcode) #_")
    tag = '<a href="https://acme.example/tags/{}" class="mention hashtag" rel="tag">#{}</a>'
    assert rendered.html == (
        "<p>"
        + tag.format("tender", "Tender")
        + " and "
        + tag.format("tender", "tender")
        + ", "
        + tag.format("café", "café")
        + " #1 #2024 "
        + tag.format("q2_plan", "q2_plan")
        + " ("
        + tag.format("ünïcode", "Ünïcode")
        + ") "
        + tag.format("_", "_")
        + "</p>"
    )
    assert rendered.hashtags == ("tender", "café", "q2_plan", "ünïcode", "_")


@pytest.mark.parametrize(
    "text",
    [
        "#1",
        "issue #42",
        "https://ok.example/page#section",
        "ok.example/#anchor",
        "a#b",
        "&#35;tag",
        "C#",
        "##",
        "#" + "x" * 101,
    ],
)
def test_not_hashtags(renderer: TextRenderer, text: str) -> None:
    rendered = _render(renderer, text)
    assert rendered.hashtags == ()
    assert "hashtag" not in rendered.html


def test_tag_href_receives_normalised_tag(renderer: TextRenderer) -> None:
    seen: list[str] = []

    def href(tag: str) -> str:
        seen.append(tag)
        return f"https://acme.example/tags/{tag}"

    renderer.render_post("#ＦＵＬＬ #Mixed", resolve_mention=NOBODY, tag_href=href)
    assert seen == ["full", "mixed"]


def test_unsafe_hrefs_from_callbacks_are_removed(renderer: TextRenderer) -> None:
    def evil(handle: str) -> MentionTarget:
        return MentionTarget(handle='x"><script>', href="javascript:alert(1)", actor_uri="a:1")

    rendered = renderer.render_post(
        "@bob #tag", resolve_mention=evil, tag_href=lambda tag: "/tags/" + tag
    )
    assert_safe_html(rendered.html, tags=POST_TAGS, classes=SAFE_CLASSES, target=True)
    assert "javascript" not in rendered.html and "<script" not in rendered.html
    assert "#tag" in rendered.html


def test_rich_from_plain(renderer: TextRenderer) -> None:
    out = renderer.rich_from_plain("Hello <b>world</b> https://ok.example/x.\n\n#tag @bob")
    assert out == (
        "<p>Hello &lt;b&gt;world&lt;/b&gt; "
        f'<a href="https://ok.example/x" rel="{REL}">https://ok.example/x</a>.</p>'
        "<p>#tag @bob</p>"
    )


# -- sanitize_rich / sanitize_remote details -------------------------------------------------


def test_rich_keeps_allowed_markup(renderer: TextRenderer) -> None:
    source = (
        "<h3>CV</h3><h4>2020</h4><p><strong>s</strong><b>b</b><em>e</em><i>i</i><u>u</u>"
        "<del>d</del><s>s</s><code>c</code></p><pre>pre</pre><blockquote>q</blockquote>"
        "<ul><li>one</li></ul><ol><li>two</li></ol><p>a<br>b</p>"
    )
    assert renderer.sanitize_rich(source) == source


def test_rich_links_get_rel_and_lose_everything_else(renderer: TextRenderer) -> None:
    out = renderer.sanitize_rich(
        '<a href="https://ok.example/" class="btn" title="t" target="_blank" rel="opener" '
        'id="x">ok</a> <a href="mailto:me@acme.example">mail</a>'
    )
    assert out == (
        f'<a href="https://ok.example/" rel="{REL}">ok</a> '
        f'<a href="mailto:me@acme.example" rel="{REL}">mail</a>'
    )


def test_rich_strips_unknown_tags_but_keeps_their_text(renderer: TextRenderer) -> None:
    out = renderer.sanitize_rich("<h1>Title</h1><div>in a div</div><span>span</span>")
    assert "<h1" not in out and "<div" not in out and "<span" not in out
    assert "Title" in out and "in a div" in out and "span" in out


def test_remote_keeps_mastodon_markup(renderer: TextRenderer) -> None:
    content = (
        '<p>Working on the Q2 tender with <span class="h-card"><a '
        'href="https://partner.example/@bob" class="u-url mention">@<span>bob</span></a>'
        '</span> <a href="https://acme.example/tags/tender" class="mention hashtag" '
        'rel="tag">#<span>tender</span></a></p>'
    )
    assert renderer.sanitize_remote(content) == (
        '<p>Working on the Q2 tender with <span class="h-card"><a '
        f'href="https://partner.example/@bob" class="u-url mention" rel="{REL}">'
        '@<span>bob</span></a></span> <a href="https://acme.example/tags/tender" '
        f'class="mention hashtag" rel="{REL}">#<span>tender</span></a></p>'
    )


def test_remote_drops_spoofing_classes(renderer: TextRenderer) -> None:
    content = (
        '<p><a href="https://example.com/long/path" class="invisible mention x">'
        '<span class="invisible">https://</span><span class="ellipsis">example.com/lo</span>'
        '<span class="invisible">ng/path</span></a></p>'
    )
    assert renderer.sanitize_remote(content) == (
        f'<p><a href="https://example.com/long/path" class="mention" rel="{REL}">'
        "<span>https://</span><span>example.com/lo</span><span>ng/path</span></a></p>"
    )


def test_remote_rejects_mailto_and_rich_only_tags(renderer: TextRenderer) -> None:
    out = renderer.sanitize_remote('<h3>head</h3><p><a href="mailto:x@y.example">m</a></p>')
    assert out == "head<p>m</p>"


def test_query_strings_survive(renderer: TextRenderer) -> None:
    out = renderer.sanitize_remote('<a href="https://ok.example/?a=1&amp;copy=2&para=3">q</a>')
    assert out == f'<a href="https://ok.example/?a=1&amp;copy=2&amp;para=3" rel="{REL}">q</a>'


def test_entities_in_text_are_kept(renderer: TextRenderer) -> None:
    out = renderer.sanitize_remote("<p>a &lt;b&gt; &amp; caf&eacute; &#x1F600;</p>")
    assert out == "<p>a &lt;b&gt; &amp; café 😀</p>"


def test_noscript_mutation_xss(renderer: TextRenderer) -> None:
    payload = '<noscript><p title="</noscript><img src=x onerror=alert(1)>"></noscript>'
    for out in (renderer.sanitize_rich(payload), renderer.sanitize_remote(payload)):
        assert "<img" not in out and "onerror" not in out.replace("&gt;", "")


# -- plain_text ------------------------------------------------------------------------------


def test_plain_text(renderer: TextRenderer) -> None:
    source = (
        "<p>Hello <b>world</b> &amp; caf&eacute;<br>second&nbsp;line</p>"
        "<ul><li>one</li><li>two</li></ul><script>nope()</script>"
    )
    assert renderer.plain_text(source) == "Hello world & café\nsecond line\n\none\n\ntwo"


def test_plain_text_truncates(renderer: TextRenderer) -> None:
    source = "<p>" + "word " * 100 + "</p>"
    short = renderer.plain_text(source, max_len=30)
    assert len(short) <= 30 and short.endswith("…")
    assert short == "word word word word word word…"
    assert renderer.plain_text("<p>short</p>", max_len=30) == "short"
    assert renderer.plain_text("<p>abc</p>", max_len=0) == ""
    assert len(renderer.plain_text("abcdefghijklmnop", max_len=5)) == 5


def test_plain_text_of_plain_text(renderer: TextRenderer) -> None:
    assert renderer.plain_text("a < b and c > d & e") == "a < b and c > d & e"
