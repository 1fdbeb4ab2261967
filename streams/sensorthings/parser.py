"""A recursive-descent parser of the SensorThings query options (OGC 18-088 section 9.3):
``$filter``, ``$orderby``, ``$select``, ``$expand`` (with nested options), ``$top``,
``$skip`` and ``$count``.

Pure: strings in, ``expr`` trees out. Any input gives either a tree or a ``QueryError`` with a
message a person can act on (the API answers it as a 400); nothing else is raised, which
``tests/unit/test_sta_parser.py`` checks with hypothesis. Inputs are bounded (length, nesting
depth, number of tokens) before anything recursive runs, so a hostile query costs little.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from cityhub.streams.sensorthings.expr import (
    ARITHMETIC,
    COMPARISONS,
    FUNCTIONS,
    Binary,
    Call,
    Expand,
    Expr,
    Literal,
    Negate,
    Not,
    NotSupported,
    OrderBy,
    Path,
    Query,
    QueryError,
)
from cityhub.streams.sensorthings.literals import parse_datetime, parse_wkt

MAX_OPTION_LENGTH = 4096
"""The longest query option accepted (a ``$filter`` longer than this is a 400)."""
MAX_DEPTH = 32
"""Deepest nesting of an expression (parentheses, ``not``, unary minus, function calls, and each
``/`` step of a property path past its first name), and of ``$expand`` (each navigation it
reaches is a level: a ``/`` step and an item in parentheses alike). What is deeper would
exhaust the stack where it is merged, resolved or rendered; no client needs a tenth of it."""
MAX_OPERATORS = 200
"""Most binary operators (``and``, ``or``, ``add`` ... ``mod``) in one expression: a chain of
them is a tree as deep as it is long, which the evaluator and the SQL compiler walk
recursively (a 4 KiB ``a or a or ...`` was 820 levels, near Python's frame limit). A filter on
a hundred ids takes 99."""
MAX_TOP = 1_000_000_000
MAX_INTEGER = (1 << 63) - 1
"""The largest integer literal (ids are at most this)."""

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<geo>(?:geography|geometry)'[^']*')
  | (?P<string>'(?:[^']|'')*')
  | (?P<datetime>[0-9]{4}-[0-9]{2}-[0-9]{2}
        (?:T[0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,9})?)?(?:Z|[+-][0-9]{2}:[0-9]{2})?)?)
  | (?P<number>[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)
  | (?P<name>[A-Za-z_@$][A-Za-z0-9_.@$]*)
  | (?P<punct>[(),/-])
    """,
    re.VERBOSE,
)
_KEYWORD_OPS = COMPARISONS | ARITHMETIC | {"and", "or", "not"}
_UNSUPPORTED = frozenset(
    {"geo.length", "st_touches", "st_overlaps", "st_crosses", "st_relate", "any", "all"}
)


@dataclass(frozen=True, slots=True)
class Token:
    kind: str
    text: str
    at: int


def tokenize(text: str) -> list[Token]:
    """The tokens of an expression; QueryError naming the position of anything unreadable."""
    if len(text) > MAX_OPTION_LENGTH:
        raise QueryError(f"the expression is longer than {MAX_OPTION_LENGTH} characters")
    tokens: list[Token] = []
    at = 0
    while at < len(text):
        match = _TOKEN.match(text, at)
        if match is None:
            raise QueryError(f"cannot read the expression at position {at}: {text[at : at + 20]!r}")
        kind = match.lastgroup or ""
        if kind != "ws":
            tokens.append(Token(kind, match.group(), at))
        at = match.end()
    return tokens


class _ExprParser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.pos = 0
        self.depth = 0
        self.operators = 0

    # --- token helpers -------------------------------------------------------------------
    def peek(self) -> Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def next(self) -> Token:
        token = self.peek()
        if token is None:
            raise QueryError("the expression ends too early")
        self.pos += 1
        return token

    def keyword(self, *words: str) -> str | None:
        token = self.peek()
        if token is not None and token.kind == "name" and token.text in words:
            self.pos += 1
            return token.text
        return None

    def punct(self, char: str) -> bool:
        token = self.peek()
        if token is not None and token.kind == "punct" and token.text == char:
            self.pos += 1
            return True
        return False

    def expect(self, char: str) -> None:
        if not self.punct(char):
            token = self.peek()
            found = "the end" if token is None else f"{token.text!r} at position {token.at}"
            raise QueryError(f"expected {char!r} but found {found}")

    def deeper(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise QueryError(f"the expression nests deeper than {MAX_DEPTH} levels")

    def chained(self, operand: Callable[[], Expr]) -> Expr:
        """The right operand of one more binary operator of a chain (counted)."""
        self.operators += 1
        if self.operators > MAX_OPERATORS:
            raise QueryError(f"the expression has more than {MAX_OPERATORS} operators")
        return operand()

    # --- grammar -------------------------------------------------------------------------
    def parse(self) -> Expr:
        if not self.tokens:
            raise QueryError("the expression is empty")
        expr = self.or_()
        token = self.peek()
        if token is not None:
            raise QueryError(f"unexpected {token.text!r} at position {token.at}")
        return expr

    def or_(self) -> Expr:
        left = self.and_()
        while self.keyword("or"):
            left = Binary("or", left, self.chained(self.and_))
        return left

    def and_(self) -> Expr:
        left = self.not_()
        while self.keyword("and"):
            left = Binary("and", left, self.chained(self.not_))
        return left

    def not_(self) -> Expr:
        if self.keyword("not"):
            self.deeper()
            operand = self.not_()
            self.depth -= 1
            return Not(operand)
        return self.comparison()

    def comparison(self) -> Expr:
        left = self.additive()
        op = self.keyword(*COMPARISONS)
        if op is None:
            return left
        return Binary(op, left, self.additive())

    def additive(self) -> Expr:
        left = self.multiplicative()
        while (op := self.keyword("add", "sub")) is not None:
            left = Binary(op, left, self.chained(self.multiplicative))
        return left

    def multiplicative(self) -> Expr:
        left = self.unary()
        while (op := self.keyword("mul", "div", "mod")) is not None:
            left = Binary(op, left, self.chained(self.unary))
        return left

    def unary(self) -> Expr:
        if self.punct("-"):
            self.deeper()
            operand = self.unary()
            self.depth -= 1
            if isinstance(operand, Literal) and type(operand.value) in (int, float):
                return Literal(-operand.value)  # type: ignore[operator]  # a number, checked
            return Negate(operand)
        return self.primary()

    def primary(self) -> Expr:
        token = self.next()
        if token.kind == "punct":
            if token.text != "(":
                raise QueryError(f"unexpected {token.text!r} at position {token.at}")
            self.deeper()
            inner = self.or_()
            self.expect(")")
            self.depth -= 1
            return inner
        if token.kind == "string":
            return Literal(token.text[1:-1].replace("''", "'"))
        if token.kind == "geo":
            return Literal(parse_wkt(token.text.split("'", 1)[1][:-1]))
        if token.kind == "datetime":
            if "T" not in token.text:
                return Literal(token.text)  # a date: compared as 'YYYY-MM-DD' text
            try:
                return Literal(parse_datetime(token.text))
            except QueryError as exc:
                raise QueryError(f"{exc} (at position {token.at})") from None
        if token.kind == "number":
            return Literal(_number(token.text))
        return self.name(token)

    def name(self, token: Token) -> Expr:
        word = token.text
        if word in _KEYWORD_OPS:
            raise QueryError(f"{word!r} at position {token.at} needs an operand before it")
        if word in ("true", "false"):
            return Literal(word == "true")
        if word == "null":
            return Literal(None)
        if self.punct("("):
            return self.call(word.lower(), token)
        segments = [word]
        depth = self.depth
        while self.punct("/"):
            self.deeper()  # each step is resolved one level deeper
            part = self.next()
            if part.kind != "name":
                raise QueryError(f"a property path continues with a name, not {part.text!r}")
            segments.append(part.text)
        self.depth = depth
        return Path(tuple(segments))

    def call(self, name: str, token: Token) -> Expr:
        if name in _UNSUPPORTED:
            raise NotSupported(f"the function {name} is not supported by this service")
        if name not in FUNCTIONS:
            raise QueryError(f"unknown function {name!r} at position {token.at}")
        self.deeper()
        args: list[Expr] = []
        if not self.punct(")"):
            args.append(self.or_())
            while self.punct(","):
                args.append(self.or_())
            self.expect(")")
        self.depth -= 1
        fewest, most = FUNCTIONS[name]
        if not fewest <= len(args) <= most:
            wanted = str(fewest) if fewest == most else f"{fewest} to {most}"
            raise QueryError(f"{name} takes {wanted} arguments, got {len(args)}")
        return Call(name, tuple(args))


def _number(text: str) -> int | float:
    if re.fullmatch(r"[0-9]+", text):
        if len(text) > 19 or int(text) > MAX_INTEGER:
            raise QueryError(f"{text[:32]!r} is larger than {MAX_INTEGER}")
        return int(text)
    value = float(text)
    if value != value or value in (float("inf"), float("-inf")):
        raise QueryError(f"{text!r} is not a finite number")
    return value


def parse_filter(text: str) -> Expr:
    """The expression tree of a ``$filter`` value; QueryError saying what is wrong."""
    return _ExprParser(text).parse()


def parse_orderby(text: str) -> tuple[OrderBy, ...]:
    """The sort keys of an ``$orderby`` value (``phenomenonTime desc, id``)."""
    keys: list[OrderBy] = []
    for part in split_top_level(text, ","):
        words = part.strip()
        descending = False
        lowered = words.lower()
        if lowered.endswith(" desc"):
            words, descending = words[:-5], True
        elif lowered.endswith(" asc"):
            words = words[:-4]
        if not words.strip():
            raise QueryError("$orderby has an empty sort key")
        keys.append(OrderBy(_ExprParser(words).parse(), descending))
    return tuple(keys)


_SELECT_NAME = re.compile(r"^(?:@iot\.id|[A-Za-z][A-Za-z0-9_]*)$")


def parse_select(text: str) -> tuple[str, ...]:
    """The property names of a ``$select`` value (``id`` and ``@iot.id`` mean the same)."""
    names = []
    for part in text.split(","):
        name = part.strip()
        if not _SELECT_NAME.match(name):
            raise QueryError(f"$select lists property names, got {name[:64]!r}")
        names.append("id" if name == "@iot.id" else name)
    return tuple(names)


def split_top_level(text: str, separator: str) -> list[str]:
    """``text`` split at ``separator`` outside quotes and parentheses; QueryError when the
    parentheses or quotes do not balance."""
    parts: list[str] = []
    depth = 0
    quoted = False
    start = 0
    for at, char in enumerate(text):
        if char == "'":
            quoted = not quoted
        elif quoted:
            continue
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise QueryError(f"a ')' without its '(' at position {at}")
        elif char == separator and depth == 0:
            parts.append(text[start:at])
            start = at + 1
    if quoted:
        raise QueryError("a quoted string is not closed")
    if depth:
        raise QueryError("a '(' is not closed")
    parts.append(text[start:])
    return parts


_NAVIGATION = re.compile(r"^[A-Za-z]+$")


def parse_expand(text: str, depth: int = 0) -> tuple[Expand, ...]:
    """The items of an ``$expand`` value: ``Datastreams($top=3;$expand=Observations)``,
    ``Datastreams/Sensor``. A path expands each step, the options apply to its last one.

    ``depth`` is how many levels of navigation the items are below the request's entities.
    Every step is a level, whether after a ``/`` or inside parentheses: the last of
    ``Datastreams/Observations($expand=FeatureOfInterest)`` is at level 3. Past ``MAX_DEPTH``
    it is a QueryError (a 1000-step path overflowed the stack where it was merged, a 340-step
    one where it was rendered)."""
    items: list[Expand] = []
    for part in split_top_level(text, ","):
        item = part.strip()
        options = ""
        if "(" in item:
            head, _, rest = item.partition("(")
            if not rest.endswith(")"):
                raise QueryError(f"$expand item {item[:64]!r} has text after its options")
            item, options = head.strip(), rest[:-1]
        steps = item.split("/")
        if depth + len(steps) > MAX_DEPTH:
            raise QueryError(
                f"$expand nests deeper than {MAX_DEPTH} levels (each navigation it reaches, after "
                "a '/' or inside parentheses, is one)"
            )
        if not all(_NAVIGATION.match(step) for step in steps):
            raise QueryError(f"$expand names navigation properties, got {item[:64]!r}")
        query = parse_options(_nested_options(options), depth + len(steps)) if options else Query()
        expand = Expand(steps[-1], query)
        for step in reversed(steps[:-1]):
            expand = Expand(step, Query(expand=(expand,)))
        items.append(expand)
    return _merged(items)


def _merged(items: list[Expand]) -> tuple[Expand, ...]:
    """Items that expand the same navigation property made one (``Datastreams/Thing,
    Datastreams/Sensor``): the options of the first that has any, the nested items of all."""
    merged: dict[str, Expand] = {}
    for item in items:
        seen = merged.get(item.navigation)
        if seen is None:
            merged[item.navigation] = item
            continue
        base = seen.query if seen.query != Query(expand=seen.query.expand) else item.query
        nested = _merged([*seen.query.expand, *item.query.expand])
        merged[item.navigation] = Expand(item.navigation, replace(base, expand=nested))
    return tuple(merged.values())


def _nested_options(text: str) -> dict[str, str]:
    options: dict[str, str] = {}
    for part in split_top_level(text, ";"):
        name, sep, value = part.partition("=")
        if not sep:
            raise QueryError(f"an $expand option reads $name=value, got {part[:64]!r}")
        name = name.strip()
        if name in options:
            raise QueryError(f"{name} is given twice")
        options[name] = value
    return options


OPTIONS = frozenset(
    {"$top", "$skip", "$count", "$filter", "$orderby", "$select", "$expand", "$resultFormat"}
)


def _int_option(name: str, value: str) -> int:
    # ASCII digits only: int() would also take other scripts' digits and odd white space.
    digits = value.strip(" ")
    if not re.fullmatch(r"[0-9]+", digits):
        raise QueryError(f"{name} is a non-negative integer, got {value[:32]!r}")
    if len(digits.lstrip("0")) > 10:
        raise QueryError(f"{name} is at most {MAX_TOP}")
    number = int(digits)
    if number > MAX_TOP:
        raise QueryError(f"{name} is at most {MAX_TOP}")
    return number


def parse_options(options: Mapping[str, str], depth: int = 0) -> Query:
    """The ``Query`` of a request's (or an ``$expand`` item's) options. Parameters that do not
    start with ``$`` are left alone (OData allows custom ones); an unknown ``$`` option, or a
    known one given a bad value, is a QueryError."""
    top: int | None = None
    skip = 0
    count = False
    filter_: Expr | None = None
    orderby: tuple[OrderBy, ...] = ()
    select: tuple[str, ...] = ()
    expand: tuple[Expand, ...] = ()
    for name, value in options.items():
        if not name.startswith("$"):
            continue
        if name not in OPTIONS:
            raise QueryError(f"unknown query option {name[:32]!r}")
        if len(value) > MAX_OPTION_LENGTH:
            raise QueryError(f"{name} is longer than {MAX_OPTION_LENGTH} characters")
        if "\x00" in value:
            # No value of the store holds one, and PostgreSQL refuses it in a parameter.
            raise QueryError(f"{name} holds a NUL character")
        if name == "$top":
            top = _int_option(name, value)
        elif name == "$skip":
            skip = _int_option(name, value)
        elif name == "$count":
            if value not in ("true", "false"):
                raise QueryError(f"$count is true or false, got {value[:32]!r}")
            count = value == "true"
        elif name == "$filter":
            filter_ = parse_filter(value)
        elif name == "$orderby":
            orderby = parse_orderby(value)
        elif name == "$select":
            select = parse_select(value)
        elif name == "$expand":
            expand = parse_expand(value, depth)
        else:
            raise NotSupported("$resultFormat (dataArray) is not supported by this service")
    given = tuple((k, v) for k, v in options.items() if k.startswith("$"))
    return Query(top, skip, count, filter_, orderby, select, expand, given)
