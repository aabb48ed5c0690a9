"""Summarises valgrind memcheck logs: errors by kind, and which of them
have a ferroloop frame (the extension's .so or its Rust symbols).  Exit
status 1 if an invalid read, write or free has one.

Uses of uninitialised values are counted but do not fail the run: this
valgrind (3.19) does not model every syscall that fills memory (CPython
seeds its hash and `random` from getrandom), so such values flow through
the whole interpreter, ferroloop's frames included."""

import pathlib
import re
import sys

KINDS = ('Invalid read', 'Invalid write', 'Invalid free',
         'Conditional jump', 'Use of uninitialised', 'Syscall param',
         'Mismatched free', 'Source and destination overlap')


def errors(text):
    """The error blocks of one log (a header line, then its frames)."""
    block = []
    for line in text.splitlines():
        body = re.sub(r'^==\d+== ?', '', line)
        if not body.strip():
            if block:
                yield block
            block = []
        else:
            block.append(body)
    if block:
        yield block


def main():
    out = pathlib.Path(sys.argv[1])
    total, ours, summary = {}, [], None
    for log in sorted(out.glob('valgrind.*.log')):
        text = log.read_text(errors='replace')
        m = re.search(r'ERROR SUMMARY: (\d+) errors', text)
        if m and summary is None or (m and int(m.group(1))):
            summary = (summary or 0) + int(m.group(1))
        for block in errors(text):
            kind = next((k for k in KINDS if block[0].startswith(k)), None)
            if kind is None:
                continue
            total[kind] = total.get(kind, 0) + 1
            if any('ferroloop' in f for f in block):
                ours.append((log.name, kind, block))
    invalid = [o for o in ours if o[1].startswith('Invalid')]
    by_kind = {}
    for _, kind, _ in ours:
        by_kind[kind] = by_kind.get(kind, 0) + 1
    print(f'memcheck: {sum(total.values())} errors outside suppressions '
          f'{total}')
    print(f'with a ferroloop frame: {by_kind or 0}; invalid reads/writes/'
          f'frees there: {len(invalid)}')
    for name, kind, block in (invalid or ours)[:5]:
        print(f'--- {name}')
        print('\n'.join(block[:15]))
    return 1 if invalid else 0


if __name__ == '__main__':
    sys.exit(main())
