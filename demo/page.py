"""The page the demo server serves, shared by the server and the crawler.

The page is deterministic for a given size, so the crawler can check every body it
downloads byte for byte against its own copy instead of trusting the length alone.
"""

_HEAD = (
    b"<!DOCTYPE html>\n"
    b'<html lang="en">\n<head>\n<meta charset="utf-8">\n'
    b"<title>ferroloop crawler demo</title>\n</head>\n<body>\n"
    b"<h1>ferroloop crawler demo</h1>\n"
)
_TAIL = b"</body>\n</html>\n"


def make_page(size: int) -> bytes:
    """Return an HTML page of exactly ``size`` bytes.

    Pages too small to hold the HTML skeleton are cut short (still exactly ``size``
    bytes); the demo's default is 16 KiB, far above the skeleton's ~150 bytes.
    """
    if size < 0:
        raise ValueError(f"page size must be >= 0, got {size}")
    skeleton = len(_HEAD) + len(_TAIL)
    if size < skeleton:
        return (_HEAD + _TAIL)[:size]
    parts = [_HEAD]
    used = skeleton
    line_no = 0
    while True:
        line = (
            b"<p>%d: an asynchronous crawler fetches this page many times at once; "
            b"every byte is checked.</p>\n" % line_no
        )
        if used + len(line) > size:
            break
        parts.append(line)
        used += len(line)
        line_no += 1
    # Pad the remainder with spaces before the closing tags (harmless whitespace).
    parts.append(b" " * (size - used))
    parts.append(_TAIL)
    page = b"".join(parts)
    assert len(page) == size
    return page
