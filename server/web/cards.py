"""The post card, rendered in Python: the one piece of HTML built outside Jinja.

A feed page shows twenty cards, and the Jinja version of this markup cost about half of the
page's CPU (roughly 500 escapes and 1,000 attribute lookups per page). Every value taken from a
post or a person goes through :func:`markupsafe.escape`; the post's ``content_html`` was
sanitized when it was stored and is inserted as is, exactly as the template did with ``|safe``.
Ids are integers and paths are our own fixed routes.
"""

from __future__ import annotations

from typing import Any

from markupsafe import Markup, escape

from server.domain import Post, Visibility

_IsoFormat = Any  # callables turning epoch ms into text, passed in from the app's filters


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
    if on_thread and post.in_reply_to_id:
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
        f"{escape(post.visibility.label)}</span>"
    )
    if post.version > 1:
        out.append(f'\n        <a class="edited" href="{thread_url}/history">edited</a>')
    if post.in_reply_to_id and not on_thread:
        out.append(f'\n        <a href="{thread_url}">reply in a conversation</a>')
    out.append(
        "\n      </p>\n    </div>\n  </header>\n"
        f'  <div class="post-content">{post.content_html}</div>\n'
        '  <footer class="post-actions">\n    '
    )
    if me is not None:
        liked = post.liked_by_viewer
        out.append(
            f'<a class="action" href="{thread_url}#reply">Reply'
            f'<span class="sr-only"> to {escape(author.name)}</span></a>\n'
            f'    <form method="post" action="{thread_url}/like" class="inline-form"'
            " data-like-form>\n"
            f'      <input type="hidden" name="csrf_token" value="{csrf}">\n'
            '      <input type="hidden" name="action"'
            f' value="{"unlike" if liked else "like"}">\n'
            f'      <input type="hidden" name="next" value="{back_here}">\n'
            f'      <button type="submit" class="action{" is-liked" if liked else ""}">'
            f"<span data-like-label>{'Unlike' if liked else 'Like'}</span>{whose}"
            f'<span class="sr-only">,</span> <span class="count" data-like-count>'
            f"{post.like_count}</span>"
            f'<span class="sr-only" data-like-noun> {_likes(post.like_count)}</span>'
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
                f'      <button type="submit" class="action{" is-liked" if boosted else ""}">'
                f"<span data-boost-label>{'Unboost' if boosted else 'Boost'}</span>{whose}"
                "</button>\n    </form>\n    "
            )
    else:
        out.append(
            f'<span class="action-static">{post.like_count} {_likes(post.like_count)}</span>\n    '
        )
    replies = "reply" if post.reply_count == 1 else "replies"
    out.append(f'<a class="action" href="{thread_url}">{post.reply_count} {replies}</a>\n    ')
    if is_author or is_wall_owner:
        confirm = (
            "Delete this post? This cannot be undone."
            if is_author
            else "Remove this post from your wall?"
        )
        label = f"Delete{whose}" if is_author else f"Remove{whose} from my wall"
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


def _likes(count: int) -> str:
    return "like" if count == 1 else "likes"


def _boost_note(post: Post) -> str:
    """'↻ Bob boosted' above a post that is in the feed because someone boosted it."""
    booster = post.boosted_by
    if booster is None:
        return ""
    return (
        '\n  <p class="boost-note small"><span aria-hidden="true">↻</span> '
        f'<a href="/people/{escape(booster.handle)}">{escape(booster.name)}</a> boosted</p>'
    )
