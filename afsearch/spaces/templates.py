"""Operator templates: small formulas over placeholders, e.g. ``"beta * u"`` or
``"sigmoid(a) * b"``, turned into expression trees and filled in structurally.

A template is parsed by the ordinary safe parser after each placeholder name is renamed to a
reserved trainable-constant name (the parser knows only ``x`` as a variable); the reserved
names are then replaced by the argument trees. Nothing is evaluated. Templates may use the
trainable constant ``beta`` (shared within one use of the op; each use gets its own), numbers
and registry primitives; they may not use ``x`` (an op says nothing about where its input
comes from)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from afsearch.errors import ExpressionError
from afsearch.expr.parser import parse
from afsearch.expr.tree import PARAM, Expr, X
from afsearch.spaces.toml_schema import space_error

BETA = "beta"
_SLOT_PREFIX = "omega_slot"  # reserved: never a name a template author writes
_PLACEHOLDER = re.compile(r"(?<![A-Za-z0-9_.])([A-Za-z_][A-Za-z0-9_]*)(?![A-Za-z0-9_])")


@dataclass(frozen=True)
class Template:
    """A parsed operator template with its placeholders, in order (``("u",)``, ``("a", "b")``)."""

    text: str
    tree: Expr
    placeholders: tuple[str, ...]

    @property
    def uses_beta(self) -> bool:
        return any(n.op == PARAM and n.name == BETA for n in self.tree.walk())

    def fill(self, *args: Expr, beta: str = BETA) -> Expr:
        """The template with placeholder i replaced by args[i] and ``beta`` renamed to `beta`
        (one shared trainable constant within this op, init 1)."""
        slots: dict[str, Expr] = {f"{_SLOT_PREFIX}{i}": a for i, a in enumerate(args)}
        slots[BETA] = Expr.param(beta, 1.0)
        return _substitute(self.tree, slots)


def parse_template(
    text: str, placeholders: tuple[str, ...], file: str | Path, key: str
) -> Template:
    """Parse `text` with the given placeholder names; errors name the file and key."""
    allowed = (
        f"a formula in {', '.join(placeholders)} using registry functions, numbers and the "
        "trainable constant beta (e.g. 'sigmoid(a) * b', 'beta * u')"
    )

    def rename(match: re.Match[str]) -> str:
        name = match.group(1)
        return f"{_SLOT_PREFIX}{placeholders.index(name)}" if name in placeholders else name

    try:
        tree = parse(_PLACEHOLDER.sub(rename, text))
    except ExpressionError as exc:
        raise space_error(file, key, f"invalid formula {text!r}: {exc}", allowed) from None
    for node in tree.walk():
        if node.op == X:
            raise space_error(
                file, key, f"{text!r} uses x; write the op's input as a placeholder", allowed
            )
        if node.op == PARAM and node.name != BETA and not node.name.startswith(_SLOT_PREFIX):  # type: ignore[union-attr]
            raise space_error(file, key, f"{text!r} uses the unknown name {node.name!r}", allowed)
        if node.op == PARAM and node.name == BETA and node.value != 1.0:
            raise space_error(
                file, key, f"{text!r} gives beta an initial value; beta starts at 1", allowed
            )
    return Template(text, tree, placeholders)


def _substitute(e: Expr, slots: dict[str, Expr]) -> Expr:
    if e.op == PARAM and e.name in slots:
        return slots[e.name]  # type: ignore[index]
    if e.is_leaf:
        return e
    return Expr(e.op, tuple(_substitute(a, slots) for a in e.args))


def rename_params(e: Expr, names: dict[str, str]) -> Expr:
    """A copy of `e` with trainable constants renamed by `names` (others unchanged)."""
    if e.op == PARAM and e.name in names:
        return Expr.param(names[e.name], e.value)  # type: ignore[index,arg-type]
    if e.is_leaf:
        return e
    return Expr(e.op, tuple(rename_params(a, names) for a in e.args))


def match(template: Expr, tree: Expr, slots: dict[str, Expr]) -> bool:
    """Structural match of a template tree against `tree`, binding placeholder slots in
    `slots` (a placeholder used twice must bind equal subtrees); a template ``beta`` matches any
    trainable constant."""
    if template.op == PARAM and template.name and template.name.startswith(_SLOT_PREFIX):
        bound = slots.get(template.name)
        if bound is None:
            slots[template.name] = tree
            return True
        return bound == tree
    if template.op == PARAM:
        return tree.op == PARAM
    if (
        template.op != tree.op
        or template.value != tree.value
        or len(template.args) != len(tree.args)
    ):
        return False
    return all(match(t, a, slots) for t, a in zip(template.args, tree.args, strict=True))


def slot(i: int) -> str:
    return f"{_SLOT_PREFIX}{i}"
