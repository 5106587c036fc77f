"""The command line's query syntax: arguments and stdin lines into ``Query`` objects.

- A term is ``[N:]BODY``: an optional positive weight ``N`` (``2:``, ``0.5:``), then ``@ID`` or
  ``@PATH`` (a stored row: its vector is read, nothing is embedded), an image file, or a text.
- A body that exists as a file is an image. One that looks like a file (it holds a path separator
  or ends in an image extension) but does not exist is an error, never a text. Anything else is a
  text (with ``text=True``, every body except ``@...`` is a text).
- Several plain arguments are several queries. When ``+`` or ``-`` stand as arguments of their own,
  all the arguments form one expression. ``-`` as the only argument reads stdin: one query per
  line, each of which may be an expression (``a.jpg + b.jpg``: operators between spaces).
"""

from __future__ import annotations

import os
import re
from typing import Iterable, Sequence

from ..errors import InputError
from ..images import is_image_path
from ._terms import Query, Term, TermKind

__all__ = ["OPERATORS", "STDIN", "parse_arguments", "parse_expression", "parse_line", "parse_term", "like_query"]

OPERATORS = ("+", "-")
STDIN = "-"
# A weight prefix: starts like a number and runs to the first ':' without spaces ("2:", "0.5:", "2x:" -> not a number).
_WEIGHT = re.compile(r"^([+-]?[0-9.][^:\s]*):(.*)$", re.DOTALL)
# An operator standing alone between spaces (or at either end of the line).
_LINE_OPERATOR = re.compile(r"(?<!\S)([+-])(?!\S)")


def _weight(text: str, token: str) -> float:
    try:
        weight = float(text)
    except ValueError:
        raise InputError(f"weight {text!r} in {token!r} is not a number", hint="write a weight as N:term, e.g. 2:red car or 0.5:cat.jpg") from None
    if not weight > 0 or weight == float("inf"):
        raise InputError(f"weight {text!r} in {token!r} must be a positive number", hint="subtract a term with ' - ', e.g. car.jpg - 0.5:night")
    return weight


def _row_term(body: str, token: str, weight: float) -> Term:
    ref = body[1:].strip()
    if not ref:
        raise InputError(f"{token!r} names no stored image", hint="write @ID (a row id from search --json) or @PATH (a path the store holds)")
    value: str | int = int(ref) if ref.isdigit() else os.path.abspath(os.path.expanduser(ref))
    return Term(TermKind.ROW, value, weight)


def parse_term(token: str, *, text: bool = False, sign: int = 1) -> Term:
    """One term of the command line (``[N:]BODY``, see the module's docstring).

    Args:
        token: the term as typed.
        text: every body but ``@...`` is a text (``--text``).
        sign: ``-1`` for a term after ``-``.

    Raises:
        InputError: an empty term, a weight that is not a positive number, a missing file that looks
            like a file, a folder.
    """
    weight, body = 1.0, token
    if not (os.path.isfile(token) and not text):  # a file named "2:x.jpg" is that file, not x.jpg twice
        match = _WEIGHT.match(token)
        if match:
            weight, body = _weight(match.group(1), token), match.group(2)
    if not body.strip():
        raise InputError(f"empty query {token!r}" if token.strip() else "empty query", hint="give an image path, @ID, or a text")
    if body.startswith("@"):
        return _row_term(body, token, sign * weight)
    if text:
        return Term(TermKind.TEXT, body, sign * weight)
    if os.path.isfile(body):
        return Term(TermKind.IMAGE, body, sign * weight)
    if os.path.exists(body):
        raise InputError(f"query {body} is not a file")
    if os.sep in body or "/" in body or is_image_path(body):
        raise InputError(f"query image {body} does not exist", hint="a text that looks like a file name needs --text")
    return Term(TermKind.TEXT, body, sign * weight)


def parse_expression(tokens: Sequence[str], *, text: bool = False, source: str | None = None) -> Query:
    """One query from terms and the operators ``+`` / ``-`` standing between them.

    Raises:
        InputError: two operators in a row, an operator at the end, two terms without one between
            them, no term to add, or a bad term.
    """
    terms: list[Term] = []
    pending: str | None = None
    for token in tokens:
        if token in OPERATORS:
            if pending is not None:
                raise InputError(f"two operators in a row ('{pending} {token}')")
            pending = token
            continue
        if terms and pending is None:
            raise InputError(
                f"terms {terms[-1].describe()!r} and {token!r} need + or - between them",
                hint="several queries: give them without operators, or one per line on stdin",
            )
        terms.append(parse_term(token, text=text, sign=-1 if pending == "-" else 1))
        pending = None
    if pending is not None:
        raise InputError(f"'{pending}' at the end of the query needs a term after it")
    return Query.of(terms, " ".join(tokens) if source is None else source)


def parse_line(line: str, *, text: bool = False) -> Query:
    """One stdin line: a path or text, or an expression with ``+`` / ``-`` between spaces.

    A line that names an existing file is that file, spaces, pluses and minuses included.

    Raises:
        InputError: as ``parse_expression``.
    """
    line = line.rstrip("\r\n")
    if not text and os.path.isfile(line):
        return Query.of([Term(TermKind.IMAGE, line)], line)
    pieces = [p.strip() for p in _LINE_OPERATOR.split(line)]
    tokens = [p for p in pieces if p]
    if len(tokens) == 1:
        return Query.of([parse_term(line.strip(), text=text)], line.strip())
    return parse_expression(tokens, text=text, source=line.strip())


def like_query(ref: str | int) -> Query:
    """``--like X``: the one term ``@X`` (X a row id or a path the store holds)."""
    text = str(ref)
    return Query.of([parse_term(text if text.startswith("@") else f"@{text}")], text if text.startswith("@") else f"@{text}")


def parse_arguments(arguments: Sequence[str], *, text: bool = False, stdin: Iterable[str] | None = None, like: str | None = None) -> list[Query]:
    """The queries of ``vecmetric search``'s arguments.

    Args:
        arguments: the positional arguments as given.
        text: ``--text``: every plain term is a text.
        stdin: lines to read when the only argument is ``-`` (blank lines are skipped).
        like: ``--like``'s value: its query comes first.

    Returns:
        The queries, in order.

    Raises:
        InputError: no queries at all, or any syntax error (see ``parse_expression``).
    """
    queries = [like_query(like)] if like is not None else []
    arguments = list(arguments)
    if arguments == [STDIN]:
        if stdin is None:
            raise InputError("'-' reads queries from stdin, but no stdin was given")
        queries += [parse_line(line, text=text) for line in stdin if line.strip()]
    elif any(a in OPERATORS for a in arguments):
        queries.append(parse_expression(arguments, text=text))
    else:
        queries += [Query.of([parse_term(a, text=text)], a) for a in arguments]
    if not queries:
        raise InputError("no queries given", hint="give image paths, @ID, texts, or '-' to read them from stdin")
    return queries
