"""A safe parser for the formula language. It never calls eval/exec: text is tokenised by a
regular expression and parsed by recursive descent with an explicit nesting limit.

Grammar (``^`` and ``**`` are both powers, right-associative)::

    expr   := term (("+" | "-") term)*
    term   := unary (("*" | "/") unary)*
    unary  := "-" unary | power
    power  := atom (("^" | "**") unary)?
    atom   := NUMBER | "x" | PARAM ("[" ["-"] NUMBER "]")? | NAME "(" expr ("," expr)* ")"
            | "(" expr ")"

A PARAM is a trainable constant: a Greek letter name (``alpha`` ... ``omega``, ``lam`` for
lambda, ``eps``), optionally followed by digits or ``_suffix``. It starts at 1.0 unless an
initial value is given in brackets: ``eps[0.01]``. Repeated names are one shared parameter.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from afsearch.errors import ExpressionError
from afsearch.expr.primitives import PARAMETER_BASE_NAMES, PRIMITIVES
from afsearch.expr.tree import CONST, MAX_DEPTH, MAX_SIZE, PARAM, Expr, X

MAX_LENGTH = 4000

_TOKEN = re.compile(
    r"\s*(?:(?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op>\*\*|[-+*/^(),\[\]]))"
)
_PARAM_NAME = re.compile("^(?:" + "|".join(PARAMETER_BASE_NAMES) + r")(?:\d+|_[A-Za-z0-9]+)?$")


def is_parameter_name(name: str) -> bool:
    return bool(_PARAM_NAME.match(name))


def allowed_names_hint() -> str:
    return (
        "allowed: the variable x; functions "
        + ", ".join(sorted(PRIMITIVES))
        + "; trainable constants named alpha, beta, gamma, ... omega, eps, lam"
        " (optionally with digits or _suffix; initial value as beta[0.5])"
    )


@dataclass(frozen=True)
class _Token:
    kind: str  # "number" | "name" | "op" | "end"
    text: str
    pos: int


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            bad = text[pos:].lstrip()[:1]
            where = pos + (len(text[pos:]) - len(text[pos:].lstrip()))
            raise ExpressionError(
                f"position {where}: unexpected character {bad!r}; formulas use numbers, names,"
                " + - * / ^ ( ) , and [init] after a trainable constant"
            )
        kind = match.lastgroup or "op"
        tokens.append(_Token(kind, match.group(kind), match.start(kind)))
        pos = match.end()
    tokens.append(_Token("end", "", len(text)))
    return tokens


class _Parser:
    def __init__(self, text: str, max_depth: int, max_size: int) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0
        self.nesting = 0
        self.max_depth = max_depth
        self.max_size = max_size
        self.param_inits: dict[str, list[tuple[float, int]]] = {}

    # -- helpers -------------------------------------------------------------------------------
    @property
    def tok(self) -> _Token:
        return self.tokens[self.i]

    def advance(self) -> _Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def expect(self, text: str) -> _Token:
        if self.tok.text != text or self.tok.kind == "end":
            found = "end of formula" if self.tok.kind == "end" else repr(self.tok.text)
            raise ExpressionError(f"position {self.tok.pos}: expected {text!r}, found {found}")
        return self.advance()

    def node(self, expr_or_op: Expr | str, *args: Expr, pos: int) -> Expr:
        try:
            expr = expr_or_op if isinstance(expr_or_op, Expr) else Expr(expr_or_op, tuple(args))
        except ExpressionError as exc:
            raise ExpressionError(f"position {pos}: {exc}") from None
        # The depth limit is on nesting (parentheses, calls, unary minus, powers; see `enter`),
        # not on the tree: a flat sum of 48 terms is a left-deep tree of depth 48 but nests
        # one level. The size limit bounds such chains, and with them every later walk
        # (printers, sympy, fingerprint, compile), to a depth of MAX_SIZE / 2.
        if expr.size > self.max_size:
            raise ExpressionError(
                f"position {pos}: formula has more than the limit of {self.max_size} nodes"
            )
        return expr

    def enter(self, pos: int) -> None:
        self.nesting += 1
        if self.nesting > self.max_depth:
            raise ExpressionError(
                f"position {pos}: formula nests deeper than the limit of {self.max_depth} levels"
            )

    # -- grammar -------------------------------------------------------------------------------
    def parse(self) -> Expr:
        if self.tok.kind == "end":
            raise ExpressionError("empty formula; write an expression in x, e.g. 'x * sigmoid(x)'")
        expr = self.expr()
        if self.tok.kind != "end":
            raise ExpressionError(
                f"position {self.tok.pos}: unexpected {self.tok.text!r} after a complete expression"
            )
        return self.resolve_params(expr)

    def expr(self) -> Expr:
        self.enter(self.tok.pos)
        left = self.term()
        while self.tok.kind == "op" and self.tok.text in "+-":
            op = self.advance()
            right = self.term()
            left = self.node("add" if op.text == "+" else "sub", left, right, pos=op.pos)
        self.nesting -= 1
        return left

    def term(self) -> Expr:
        left = self.unary()
        while self.tok.kind == "op" and self.tok.text in ("*", "/"):
            op = self.advance()
            right = self.unary()
            left = self.node("mul" if op.text == "*" else "div", left, right, pos=op.pos)
        return left

    def unary(self) -> Expr:
        if self.tok.kind == "op" and self.tok.text == "-":
            op = self.advance()
            self.enter(op.pos)
            operand = self.unary()
            self.nesting -= 1
            if operand.op == CONST:
                return self.node(Expr.const(-operand.value), pos=op.pos)  # type: ignore[operator]
            return self.node("neg", operand, pos=op.pos)
        return self.power()

    def power(self) -> Expr:
        base = self.atom()
        if self.tok.kind == "op" and self.tok.text in ("^", "**"):
            op = self.advance()
            self.enter(op.pos)
            exponent = self.unary()
            self.nesting -= 1
            if exponent.op == CONST and exponent.value == 2.0:
                return self.node("square", base, pos=op.pos)
            if exponent.op == CONST and exponent.value == 3.0:
                return self.node("cube", base, pos=op.pos)
            return self.node("pow", base, exponent, pos=op.pos)
        return base

    def number(self, tok: _Token) -> float:
        value = float(tok.text)
        if not math.isfinite(value):
            raise ExpressionError(f"position {tok.pos}: number {tok.text!r} is not finite")
        return value

    def atom(self) -> Expr:
        tok = self.advance()
        if tok.kind == "number":
            return self.node(Expr.const(self.number(tok)), pos=tok.pos)
        if tok.kind == "op" and tok.text == "(":
            inner = self.expr()
            self.expect(")")
            return inner
        if tok.kind == "name":
            return self.named(tok)
        if tok.kind == "end":
            raise ExpressionError(f"position {tok.pos}: formula ends where an operand is expected")
        raise ExpressionError(f"position {tok.pos}: unexpected {tok.text!r} where an operand is expected")

    def named(self, tok: _Token) -> Expr:
        name = tok.text
        is_call = self.tok.kind == "op" and self.tok.text == "("
        if is_call:
            prim = PRIMITIVES.get(name)
            if prim is None:
                raise ExpressionError(f"position {tok.pos}: unknown function {name!r}; {allowed_names_hint()}")
            self.advance()
            args = [self.expr()]
            while self.tok.kind == "op" and self.tok.text == ",":
                self.advance()
                args.append(self.expr())
            self.expect(")")
            if len(args) != prim.arity:
                raise ExpressionError(
                    f"position {tok.pos}: {name} takes {prim.arity} argument(s), got {len(args)}"
                )
            return self.node(name, *args, pos=tok.pos)
        if name == X:
            return Expr.var()
        if name in PRIMITIVES:
            raise ExpressionError(f"position {tok.pos}: function {name!r} needs arguments, e.g. {name}(x)")
        if not is_parameter_name(name):
            raise ExpressionError(f"position {tok.pos}: unknown name {name!r}; {allowed_names_hint()}")
        init = math.nan  # "not given": resolved after parsing
        if self.tok.kind == "op" and self.tok.text == "[":
            self.advance()
            sign = 1.0
            if self.tok.kind == "op" and self.tok.text == "-":
                self.advance()
                sign = -1.0
            num = self.advance()
            if num.kind != "number":
                raise ExpressionError(
                    f"position {num.pos}: expected a number as initial value of {name!r}, e.g. {name}[0.5]"
                )
            init = sign * self.number(num)
            self.expect("]")
            self.param_inits.setdefault(name, []).append((init, tok.pos))
        # placeholder value 0.0; replaced in resolve_params
        self.param_inits.setdefault(name, [])
        return Expr(PARAM, value=0.0, name=name)

    def resolve_params(self, expr: Expr) -> Expr:
        resolved: dict[str, float] = {}
        for name, inits in self.param_inits.items():
            values = {v for v, _ in inits}
            if len(values) > 1:
                pos = inits[1][1]
                raise ExpressionError(
                    f"position {pos}: trainable constant {name!r} is given different initial values "
                    f"{sorted(values)}; give it once"
                )
            resolved[name] = values.pop() if values else 1.0
        if not resolved:
            return expr
        return substitute_params(expr, resolved)


def substitute_params(expr: Expr, values: dict[str, float]) -> Expr:
    """A copy of ``expr`` whose trainable constants start at ``values[name]``."""
    if expr.op == PARAM:
        return Expr.param(expr.name, values.get(expr.name, expr.value))  # type: ignore[arg-type]
    if expr.is_leaf:
        return expr
    return Expr(expr.op, tuple(substitute_params(a, values) for a in expr.args))


def parse(text: str, *, max_depth: int = MAX_DEPTH, max_size: int = MAX_SIZE) -> Expr:
    """Parse a formula in x. Raises ExpressionError with the position on any problem."""
    if not isinstance(text, str):
        raise ExpressionError(f"a formula must be a string, got {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"formula is {len(text)} characters long; the limit is {MAX_LENGTH}")
    return _Parser(text, max_depth, max_size).parse()


__all__ = ["parse", "substitute_params", "is_parameter_name", "CONST", "PARAM", "X"]
