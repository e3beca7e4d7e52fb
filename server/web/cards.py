"""The post card, rendered in Python: the one piece of HTML built outside Jinja.

A feed page shows twenty cards, and the Jinja version of this markup cost about half of the
page's CPU (roughly 500 escapes and 1,000 attribute lookups per page). Every value taken from a
post or a person goes through :func:`markupsafe.escape`; the post's ``content_html`` was
sanitized when it was stored and is inserted as is, exactly as the template did with ``|safe``.
Ids are integers and paths are our own fixed routes.
"""

from __future__ import annotations

import re
from typing import Any

from markupsafe import Markup, escape

from server.domain import Post, Visibility
from server.web.icons import icon

_IsoFormat = Any  # callables turning epoch ms into text, passed in from the app's filters

# A post longer than this (characters of text, or lines) is shown shortened in feeds, with
# "Show more"; its own page shows all of it.
COLLAPSE_CHARS = 500
COLLAPSE_LINES = 8
_HEART = str(icon("heart"))
_BOOST = str(icon("boost"))
_REPLY = str(icon("reply"))
_COMMENT = str(icon("comment"))
_TAG = re.compile(r"<[^>]*>")
_LINE_BREAK = re.compile(r"<(?:p|br|li|tr)\b|\n")


def post_card(
    post: Post,
    pc: dict[str, Any],
    focus_id: int | None,
    iso: _IsoFormat,
    human: _IsoFormat,
) -> Markup:
    me = pc["me"]
    thread_url = f"/posts/{post.id}"
    author = post.author
    author_url = f"/people/{escape(author.handle)}"
    focused = focus_id is not None and focus_id == post.id
    on_thread = bool(pc["on_thread"])
    is_author = me is not None and me.id == author.id
    is_wall_owner = me is not None and post.wall_owner is not None and me.id == post.wall_owner.id
    if on_thread and (focus_id is None or focused or post.in_reply_to_id is None):
        delete_next = escape(pc["home"])
    else:
        delete_next = escape(pc["here"])
    here = escape(pc["here"])
    # Like and boost come back to this card, not to the top of a long page.
    back_here = f"{here}#post-{post.id}"
    # Every card has the same buttons: the screen-reader name says whose post each one acts on.
    whose = f'<span class="sr-only"> post by {escape(author.name)}</span>'
    csrf = escape(pc["csrf"])
    classes = "post card" + (" focused" if focused else "")
    if on_thread and post.in_reply_to_id in pc["shown"]:
        classes += " post-reply"
    out: list[str] = [
        f'<article class="{classes}" id="post-{post.id}" data-post-id="{post.id}"',
        ' aria-current="true">' if focused else ">",
        _boost_note(post),
        '\n  <header class="post-header">\n',
        f'    <a class="post-avatar" href="{author_url}" tabindex="-1" aria-hidden="true">',
    ]
    if author.avatar_file and me is not None:
        out.append(
            f'<img class="avatar" src="/media/avatars/{escape(author.avatar_file)}" alt=""'
            ' width="48" height="48" loading="lazy">'
        )
    else:
        out.append(
            f'<span class="avatar avatar-initials avatar-c{author.id % 6}" aria-hidden="true">'
            f"{escape(author.initials)}</span>"
        )
    out.append(
        '</a>\n    <div class="post-meta">\n      <h3 class="post-author">\n'
        f'        <a href="{author_url}">{escape(author.name)}</a>'
    )
    if post.wall_owner is not None:
        out.append(
            '\n        <span class="wall-note"><span aria-hidden="true">→</span> on '
            f'<a href="/people/{escape(post.wall_owner.handle)}">'
            f"{escape(post.wall_owner.name)}</a>'s wall</span>"
        )
    out.append("\n      </h3>\n      ")
    # The handle is always shown: two people may share a name (and a title), and a look-alike
    # should not pass for the CFO.
    out.append(
        f'<p class="post-title muted"><span class="post-handle">@{escape(author.handle)}</span>'
    )
    if author.job_title:
        out.append(f" · {escape(author.job_title)}")
    out.append("</p>")
    out.append(
        '\n      <p class="post-info muted small">\n'
        f'        <a href="{thread_url}"><time datetime="{escape(iso(post.created_at))}">'
        f"{escape(human(post.created_at))}</time></a>\n"
        f'        <span class="badge badge-vis badge-{post.visibility.value}">'
        f"{_visibility(post.visibility)}</span>"
    )
    if post.version > 1:
        out.append(f'\n        <a class="edited" href="{thread_url}/history">edited</a>')
    out.append("\n      </p>\n    </div>\n  </header>")
    if post.in_reply_to_id is not None and not on_thread:
        out.append(_reply_note(post, thread_url))
    if not on_thread and is_long(post.content_html):
        out.append(_collapsed_content(post))
    else:
        out.append(f'\n  <div class="post-content">{post.content_html}</div>')
    out.append('\n  <footer class="post-actions">\n    ')
    # Counts show as a bare number, none at zero (as in "♥ 2"); screen readers get words.
    likes = _count_spans(post.like_count, "like")
    boosts = _count_spans(post.boost_count, "boost")
    if me is not None:
        liked = post.liked_by_viewer
        # Like and Boost are toggle buttons: one name, the state in aria-pressed.
        out.append(
            f'<a class="action" href="{thread_url}#reply">{_REPLY}'
            '<span class="wide-only">Reply</span>'
            f'<span class="sr-only"> to {escape(author.name)}</span></a>\n'
            f'    <form method="post" action="{thread_url}/like" class="inline-form"'
            " data-like-form>\n"
            f'      <input type="hidden" name="csrf_token" value="{csrf}">\n'
            '      <input type="hidden" name="action"'
            f' value="{"unlike" if liked else "like"}">\n'
            f'      <input type="hidden" name="next" value="{back_here}">\n'
            '      <button type="submit" class="action action-like"'
            f' aria-pressed="{_pressed(liked)}">{_HEART}'
            f'<span class="sr-only">Like</span>{whose}<span class="sr-only">, </span>{likes}'
            "</button>\n    </form>\n    "
        )
        if post.visibility is Visibility.PUBLIC:
            boosted = post.boosted_by_viewer
            out.append(
                f'<form method="post" action="{thread_url}/boost" class="inline-form"'
                " data-boost-form>\n"
                f'      <input type="hidden" name="csrf_token" value="{csrf}">\n'
                '      <input type="hidden" name="action"'
                f' value="{"unboost" if boosted else "boost"}">\n'
                f'      <input type="hidden" name="next" value="{back_here}">\n'
                '      <button type="submit" class="action action-boost"'
                f' aria-pressed="{_pressed(boosted)}">{_BOOST}'
                f'<span class="wide-only">Boost</span>{whose}<span class="sr-only">, </span>'
                f"{boosts}</button>\n    </form>\n    "
            )
    else:
        out.append(f'<span class="action-static">{_HEART}{likes}</span>\n    ')
        if post.visibility is Visibility.PUBLIC:
            out.append(f'<span class="action-static">{_BOOST}{boosts}</span>\n    ')
    out.append(
        f'<a class="action" href="{thread_url}">{_COMMENT}'
        f'<span class="count" aria-hidden="true">{_count(post.reply_count)}</span>'
        f'<span class="sr-only">{_counted(post.reply_count, "reply", "replies")} to the post'
        f" by {escape(author.name)}</span></a>\n    "
    )
    if is_author or is_wall_owner:
        confirm = (
            "Delete this post? This cannot be undone."
            if is_author
            else "Remove this post from your wall?"
        )
        label = (
            f"Delete{whose}"
            if is_author
            else f'Remove{whose}<span class="wide-only"> from my wall</span>'
        )
        out.append('<span class="action-sep" aria-hidden="true"></span>\n    ')
        if is_author:
            out.append(f'<a class="action" href="{thread_url}/edit">Edit{whose}</a>\n    ')
        out.append(
            f'<form method="post" action="{thread_url}/delete" class="inline-form"'
            f' data-confirm="{confirm}">\n'
            f'      <input type="hidden" name="csrf_token" value="{csrf}">\n'
            f'      <input type="hidden" name="next" value="{delete_next}">\n'
            f'      <button type="submit" class="action action-danger">{label}</button>\n'
            "    </form>\n    "
        )
    out.append("\n  </footer>\n</article>")
    return Markup("".join(out))  # noqa: S704 - every interpolated value is escaped above


def _visibility(visibility: Visibility) -> str:
    """The badge's text, "Internal (colleagues only)": on a phone the part in brackets is
    left out (style.css), so the badge fits on the line of the post's time."""
    short = visibility.short_label
    detail = visibility.label[len(short) :]
    if not detail:
        return escape(short)
    return f'{escape(short)}<span class="vis-detail">{escape(detail)}</span>'


def _count(count: int) -> str:
    return str(count) if count else ""


def _counted(count: int, one: str, many: str) -> str:
    """'no likes', '1 like', '2 likes' (app.js words a like count the same way)."""
    if count == 0:
        return f"no {many}"
    return f"{count} {one if count == 1 else many}"


def _count_spans(number: int, kind: str) -> str:
    """A like or boost count: the bare number shown (none at zero), words for screen readers;
    app.js rewrites both by their data attributes (applyToggle)."""
    return (
        f'<span class="count" data-{kind}-count aria-hidden="true">{_count(number)}</span>'
        f'<span class="sr-only" data-{kind}-words>{_counted(number, kind, kind + "s")}</span>'
    )


def _pressed(state: bool) -> str:
    return "true" if state else "false"


def is_long(content_html: str) -> bool:
    """Is the post long enough to be shortened in a feed?"""
    if len(content_html) <= COLLAPSE_CHARS and content_html.count("<") <= COLLAPSE_LINES:
        return False  # the common short post: no regex at all
    lines = len(_LINE_BREAK.findall(content_html))
    return lines > COLLAPSE_LINES or len(_TAG.sub("", content_html)) > COLLAPSE_CHARS


def _collapsed_content(post: Post) -> str:
    """The text cut to a few lines by the style sheet, with "Show more": a link to the post's
    own page, where all of it shows (app.js turns it into a button that opens it in place).
    All of the text stays in the page, so a screen reader reads it all, and a link inside the
    hidden part opens the text when it takes the keyboard focus (style.css)."""
    text_id = f"post-{post.id}-text"
    return (
        f'\n  <div class="post-content is-collapsed" id="{text_id}">'
        f"{post.content_html}</div>\n"
        f'  <p class="show-more"><a href="/posts/{post.id}" data-show-more'
        f' aria-controls="{text_id}">Show more<span class="sr-only"> of the post by'
        f" {escape(post.author.name)}</span></a></p>"
    )


def _reply_note(post: Post, thread_url: str) -> str:
    """'↩ Replying to Alice', linked to the post answered, on a reply shown outside its thread.

    ``reply_to`` is set only when the reader may read that post (see storage/replies.py);
    otherwise the card says no more than that it is part of a conversation, and links to
    its own page."""
    parent = post.reply_to
    if parent is None or post.in_reply_to_id is None:
        link = f'<a href="{thread_url}">Reply in a conversation</a>'
    else:
        link = f'<a href="/posts/{post.in_reply_to_id}">Replying to {escape(parent.name)}</a>'
    return f'\n  <p class="reply-note small">{_REPLY} {link}</p>'


def _boost_note(post: Post) -> str:
    """'↻ Bob boosted' above a post that is in the feed because someone boosted it."""
    booster = post.boosted_by
    if booster is None:
        return ""
    return (
        f'\n  <p class="boost-note small">{_BOOST} '
        f'<a href="/people/{escape(booster.handle)}">{escape(booster.name)}</a> boosted</p>'
    )
