"""Hypothesis strategies for random well-formed expression trees (shared by tests)."""

from __future__ import annotations

from hypothesis import strategies as st

from afsearch.expr import BINARY, UNARY, Expr

LEAVES = st.one_of(
    st.just(Expr.var()),
    st.just(Expr.var()),
    st.floats(-3, 3, allow_nan=False, allow_infinity=False).map(lambda v: Expr.const(round(v, 3))),
    st.sampled_from(["beta", "alpha", "eps"]).map(lambda n: Expr.param(n, 1.0)),
)


def trees(max_leaves: int = 12) -> st.SearchStrategy[Expr]:
    return st.recursive(
        LEAVES,
        lambda children: st.one_of(
            st.tuples(st.sampled_from(UNARY), children).map(lambda t: Expr.call(t[0], t[1])),
            st.tuples(st.sampled_from(BINARY), children, children).map(
                lambda t: Expr.call(t[0], t[1], t[2])
            ),
        ),
        max_leaves=max_leaves,
    )
