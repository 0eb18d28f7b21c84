"""Secrets out of what tvmq prints and writes: URLs lose their password, user and query string.

A model URL may carry credentials (``http://user:pw@host/m.tflite``) or a token
(``?token=…``); a database URL carries its password. Every message, report and file name that
names a URL goes through :func:`redact_url` (one URL) or :func:`redact_text` (free text that may
hold URLs, such as a driver's error message).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

MASK = "***"

# scheme://[userinfo@]rest — the rest runs to the next whitespace or quote
_URL = re.compile(r"""(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*)://(?P<rest>[^\s'"<>]+)""")


def redact_url(url: str) -> str:
    """``url`` with its userinfo replaced by ``***`` and its query string and fragment masked.

    The fragment ``#sha256=…`` (a checksum, not a secret) is kept. Text that does not parse as a
    URL is returned with any ``user:password@`` part and query string masked all the same.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return re.sub(r"\?[^#\s]*", f"?{MASK}", re.sub(r"//[^/@\s]*@", f"//{MASK}@", url))
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@" + netloc.rsplit("@", 1)[1]
    query = MASK if parts.query else ""
    fragment = parts.fragment if parts.fragment.startswith("sha256=") or not parts.fragment else MASK
    return urlunsplit((parts.scheme, netloc, parts.path, query, fragment))


def redact_text(text: str) -> str:
    """Every ``scheme://…`` URL in ``text`` passed through :func:`redact_url`."""
    return _URL.sub(lambda m: redact_url(m.group(0)), text)
