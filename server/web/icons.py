"""The UI's few icons, as inline SVG (no icon font, no request, nothing for the CSP to allow).

Icons are decoration: each sits next to text that says the same (visible, or ``sr-only``), so
they are hidden from assistive technology. Stroke, size and colour come from ``.icon`` in
style.css, so an icon takes the colour of the text around it (forced-colours mode included).
"""

from __future__ import annotations

from markupsafe import Markup

# 24x24 outlines, drawn for this project; Markup.format escapes them like any value.
_PATHS = {
    "home": "M3 10.5 12 3l9 7.5V20a1 1 0 0 1-1 1h-5v-6h-6v6H4a1 1 0 0 1-1-1z",
    "people": "M9 11.5a3.5 3.5 0 1 0 0-7 3.5 3.5 0 0 0 0 7M2.5 20c0-3.6 2.9-6 6.5-6s6.5 2.4"
    " 6.5 6M16 4.6a3.5 3.5 0 0 1 0 6.8M18 14.3c2 .8 3.5 2.8 3.5 5.7",
    "bell": "M6 16v-5a6 6 0 0 1 12 0v5l2 2H4zM10 21h4",
    "user": "M12 12a4 4 0 1 0 0-8 4 4 0 0 0 0 8M4 21c0-4.4 3.6-7 8-7s8 2.6 8 7",
    "settings": "M4 6h9M17 6h3M4 12h3M11 12h9M4 18h11M19 18h1M15 4v4M9 10v4M17 16v4",
    "shield": "M12 3 4 6v6c0 4.5 3.4 8 8 9 4.6-1 8-4.5 8-9V6z",
    "sign-out": "M15 4h3a2 2 0 0 1 2 2v12a2 2 0 0 1-2 2h-3M10 17l5-5-5-5M15 12H3",
    "heart": "M12 20.5s-7.5-4.6-9.3-9.2C1.5 8.2 3.4 4.5 7 4.5c2.1 0 3.6 1.2 5 3 1.4-1.8 2.9-3"
    " 5-3 3.6 0 5.5 3.7 4.3 6.8-1.8 4.6-9.3 9.2-9.3 9.2z",
    "boost": "M17 2l4 4-4 4M3 11v-1a4 4 0 0 1 4-4h14M7 22l-4-4 4-4M21 13v1a4 4 0 0 1-4 4H3",
    "reply": "M9 14 4 9l5-5M4 9h10.5a5.5 5.5 0 0 1 5.5 5.5V20",
    "comment": "M21 12a8 8 0 0 1-11.6 7.1L4 20.5l1.4-4.6A8 8 0 1 1 21 12z",
    "user-plus": "M10 12a4 4 0 1 0 0-8 4 4 0 0 0 0 8M3 21c0-4.4 3.1-7 7-7 1.6 0 3 .4 4.2 1.2"
    "M19 14v6M16 17h6",
    "at": "M16 12a4 4 0 1 1-8 0 4 4 0 0 1 8 0zM16 12v1.5a2.5 2.5 0 0 0 5 0V12a9 9 0 1 0-3.5 7.1",
    "pencil": "M4 20h4L19 9l-4-4L4 16zM13.5 6.5l4 4",
}

ICONS: dict[str, Markup] = {
    name: Markup(
        '<svg class="icon icon-{}" viewBox="0 0 24 24" aria-hidden="true" focusable="false">'
        '<path d="{}"/></svg>'
    ).format(name, path)
    for name, path in _PATHS.items()
}


def icon(name: str) -> Markup:
    """The icon *name* (a ``KeyError`` for a name that is not drawn: a typo fails loudly)."""
    return ICONS[name]
