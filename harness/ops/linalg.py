"""Linear algebra: products (matmul, dot, outer; bilinear), the trace and diagonal
(linear), and the smooth matrix functions det, inv, solve and cholesky, written with
arithmetic only so the oracle runs them on jets.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hessdiff.harness.ops.kinds import Bilinear, Structural, Vector
from hessdiff.harness.ops.shapes import Attrs, Shape, attr_shape
from hessdiff.harness.ops.spec import OpSpec, register_op

__all__ = ["matrix_recipe", "two_vectors_recipe"]


def _matmul_shape(shapes: tuple[Shape, ...], attrs: Attrs) -> Shape:
    a, b = shapes
    if not (1 <= len(a) <= 2 and 1 <= len(b) <= 2):
        raise ValueError(f"matmul takes vectors or matrices, got {a} and {b}")
    if a[-1] != b[0]:
        raise ValueError(f"matmul inner sizes differ: {a} @ {b}")
    return a[:-1] + b[1:]


def _matmul(xp: Any, a: Any, b: Any, mul: Callable[[Any, Any], Any]) -> Any:
    """``a @ b`` written as broadcast products and a sum, so ``mul`` decides 0 * undefined."""
    a2 = a if a.ndim == 2 else a[None, :]
    b2 = b if b.ndim == 2 else b[:, None]
    out = mul(a2[:, :, None], b2[None, :, :]).sum(axis=1)
    if a.ndim == 1:
        out = out[0]
    if b.ndim == 1:
        out = out[..., 0]
    return out


def _matmul_recipe(kit: Any, name: str, aim: int | None) -> None:
    """A vector through a constant layer, dotted with a constant, or with another vector."""
    import numpy as np

    a = kit.vector(64)
    m = kit.shapes[a][0]
    kind = kit.choice(("layer", "dot", "bilinear"))
    if kind == "layer":
        h = kit.integer(1, 8)
        c = kit.constant(np.reshape(kit.reals(-2, 2, h * m), (h, m)))
        kit.add("matmul", c, a)
    elif kind == "dot":
        kit.add("matmul", a, kit.constant(kit.reals(-2, 2, m)))
    else:
        kit.add("matmul", a, kit.pick([(m,)]))


register_op(
    OpSpec(
        "matmul", 2, "linalg", Bilinear(lambda xp, a, b, mul: _matmul(xp, a, b, mul)),
        shape=_matmul_shape, doc="a @ b for vectors and matrices", recipe=_matmul_recipe,
    )
)


def _square_shape(op: str, max_size: int) -> Callable[[tuple[Shape, ...], Attrs], Shape]:
    def rule(shapes: tuple[Shape, ...], attrs: Attrs) -> Shape:
        (a,) = shapes
        if len(a) != 2 or a[0] != a[1] or not 1 <= a[0] <= max_size:
            raise ValueError(f"{op} takes a square matrix of size 1..{max_size}, got shape {a}.")
        return () if op == "det" else a

    return rule


def _det_of(A: Any) -> Any:
    """The determinant of a 1x1..3x3 object array by cofactors (arithmetic only)."""
    k = A.shape[0]
    if k == 1:
        return A[0, 0]
    if k == 2:
        return A[0, 0] * A[1, 1] - A[0, 1] * A[1, 0]
    return (A[0, 0] * (A[1, 1] * A[2, 2] - A[1, 2] * A[2, 1])
            - A[0, 1] * (A[1, 0] * A[2, 2] - A[1, 2] * A[2, 0])
            + A[0, 2] * (A[1, 0] * A[2, 1] - A[1, 1] * A[2, 0]))


def _det(ns: Any, A: Any) -> Any:
    import numpy as np

    out = np.empty((), dtype=object)
    out[()] = _det_of(A)
    return out


def _inv(ns: Any, A: Any) -> Any:
    import numpy as np

    det = _det_of(A)
    out = np.empty(A.shape, dtype=object)
    if A.shape[0] == 1:
        out[0, 0] = 1 / det
        return out
    out[0, 0], out[0, 1] = A[1, 1] / det, -A[0, 1] / det
    out[1, 0], out[1, 1] = -A[1, 0] / det, A[0, 0] / det
    return out


def _well_conditioned(args: tuple[Any, ...]) -> bool:
    import mpmath

    m = mpmath.matrix(args[0].tolist())
    try:
        det = mpmath.det(m)
    except ZeroDivisionError:
        return False
    scale = 1
    for i in range(m.rows):
        scale *= max(mpmath.sqrt(sum(m[i, j] ** 2 for j in range(m.cols))), mpmath.mpf(1e-300))
    # |det| / (product of row norms) > 1e-2: condition numbers up to about 100. Frameworks
    # solve by LU with pivoting, whose error grows with the condition number by constants
    # the oracle's Cramer's-rule error scale does not model (at 1e-3, JAX's solve Hessian
    # erred by 3x the 64-ulp bound on a matrix of condition 550).
    return abs(det) > 1e-2 * scale


def _square_recipe(kit: Any, name: str, aim: int | None) -> None:
    """A square matrix; for inv, kept well conditioned: M + c I."""
    import numpy as np

    k = kit.integer(1, 3 if name == "det" else 2)
    m = kit.matrix(k)
    if name == "inv":
        m = kit.add("add", m, kit.constant(np.eye(k) * kit.choice((2.0, -2.0, 3.0))))
    kit.add(name, m)


register_op(OpSpec("det", 1, "linalg", Vector(_det), shape=_square_shape("det", 3),
                   doc="determinant of a square matrix (1x1..3x3)", recipe=_square_recipe))
register_op(OpSpec("inv", 1, "linalg", Vector(_inv), shape=_square_shape("inv", 2),
                   domain=_well_conditioned, doc="inverse of a well-conditioned square matrix (1x1, 2x2)",
                   recipe=_square_recipe))


def _solve(ns: Any, A: Any, b: Any) -> Any:
    """x = A^-1 b by Cramer's rule (arithmetic only, so it runs on jets)."""
    import numpy as np

    det = _det_of(A)
    out = np.empty(b.shape, dtype=object)
    for i in range(A.shape[0]):
        Ai = A.copy()
        Ai[:, i] = b
        out[i] = _det_of(Ai) / det
    return out


def _solve_shape(shapes: tuple[Shape, ...], attrs: Attrs) -> Shape:
    a, b = shapes
    if len(a) != 2 or a[0] != a[1] or not 1 <= a[0] <= 3 or b != (a[0],):
        raise ValueError(f"solve takes a square matrix of size 1..3 and a vector of its size, got {a} and {b}.")
    return b


def _cholesky(ns: Any, S: Any) -> Any:
    """The lower Cholesky factor, read from the lower triangle (as LAPACK does)."""
    import numpy as np

    k = S.shape[0]
    L = np.empty((k, k), dtype=object)
    L.fill(0)
    for j in range(k):
        L[j, j] = ns.sqrt(S[j, j] - sum(L[j, m] ** 2 for m in range(j)))
        for i in range(j + 1, k):
            L[i, j] = (S[i, j] - sum(L[i, m] * L[j, m] for m in range(j))) / L[j, j]
    return L


def _positive_definite(args: tuple[Any, ...]) -> bool:
    """Exactly symmetric (the derivative of the lower triangle alone is then every
    framework's) and positive definite with every pivot well above rounding."""
    import mpmath

    S = args[0]
    k = S.shape[0]
    if any(S[i, j] != S[j, i] for i in range(k) for j in range(i)):
        return False
    m = mpmath.matrix(S.tolist())
    for j in range(1, k + 1):
        minor = mpmath.det(m[:j, :j]) if j > 1 else m[0, 0]
        scale = max(abs(m[i, i]) for i in range(j)) ** j
        if not minor > 1e-6 * scale:
            return False
    return True


def _solve_recipe(kit: Any, name: str, aim: int | None) -> None:
    """The matrix, the right-hand side or both traced; the matrix kept well conditioned
    (M + c I)."""
    import numpy as np

    k = kit.integer(1, 3)
    traced = kit.choice(("matrix", "rhs", "both"))
    eye = np.eye(k) * kit.choice((2.0, -2.0, 3.0))
    if traced == "rhs":
        m = kit.constant(np.reshape(kit.reals(-1.0, 1.0, k * k), (k, k)) + eye)
    else:
        m = kit.add("add", kit.matrix(k), kit.constant(eye))
    if traced == "matrix":
        rhs = kit.constant(kit.reals(-2.0, 2.0, k))
    else:
        v = kit.vector(64)
        rhs = kit.add("gather", v, idx=tuple(kit.integer(0, kit.shapes[v][0] - 1) for _ in range(k)))
    kit.add(name, m, rhs)


def _cholesky_recipe(kit: Any, name: str, aim: int | None) -> None:
    """A symmetric positive definite matrix built in the program: M M^T + c I."""
    import numpy as np

    k = kit.integer(1, 3)
    m = kit.matrix(k, kit.integer(1, 3))
    gram = kit.add("matmul", m, kit.add("transpose", m))
    kit.add(name, kit.add("add", gram, kit.constant(np.eye(k) * kit.choice((0.5, 1.0, 2.0)))))


register_op(OpSpec("solve", 2, "linalg", Vector(_solve), shape=_solve_shape, domain=_well_conditioned,
                   doc="x with A x = b, A a well-conditioned square matrix (1x1..3x3), b a vector",
                   recipe=_solve_recipe))
register_op(OpSpec("cholesky", 1, "linalg", Vector(_cholesky, symmetric=True), shape=_square_shape("cholesky", 3),
                   domain=_positive_definite,
                   doc="lower Cholesky factor of a symmetric positive definite matrix (1x1..3x3)",
                   recipe=_cholesky_recipe))


def _diagonal_rule(a: Shape, attrs: Attrs) -> Shape:
    if len(a) != 2:
        raise ValueError(f"diagonal takes a matrix, got shape {a}.")
    return (min(a),)


def _trace_rule(a: Shape, attrs: Attrs) -> Shape:
    if len(a) != 2:
        raise ValueError(f"trace takes a matrix, got shape {a}.")
    return ()


def matrix_recipe(kit: Any, name: str, aim: int | None) -> None:
    """Any matrix: an existing one, or entries of a vector gathered and reshaped."""
    kit.add(name, kit.matrix())


register_op(OpSpec("diagonal", 1, "linalg", Structural(lambda xp, a: xp.diagonal(a).copy()),
                   shape=attr_shape(_diagonal_rule), doc="the main diagonal of a matrix", recipe=matrix_recipe))
register_op(OpSpec("trace", 1, "linalg", Structural(lambda xp, a: xp.trace(a)), shape=attr_shape(_trace_rule),
                   doc="the trace of a matrix", recipe=matrix_recipe))


def _dot_shape(shapes: tuple[Shape, ...], attrs: Attrs) -> Shape:
    a, b = shapes
    if len(a) != 1 or a != b:
        raise ValueError(f"dot takes two vectors of one length, got {a} and {b}.")
    return ()


def _outer_shape(shapes: tuple[Shape, ...], attrs: Attrs) -> Shape:
    a, b = shapes
    if len(a) != 1 or len(b) != 1:
        raise ValueError(f"outer takes two vectors, got {a} and {b}.")
    return (a[0], b[0])


def two_vectors_recipe(kit: Any, name: str, aim: int | None) -> None:
    """Two vectors, each traced or constant: of one length for stack and dot, of any two
    for concatenate and outer (sometimes one)."""
    first = kit.vector_or_const(None)
    if name in ("stack", "dot"):
        kit.add(name, first, kit.vector_or_const(kit.shapes[first][0]))
    else:
        kit.add(name, first, kit.vector_or_const(None if kit.boolean() else kit.shapes[first][0]))


register_op(OpSpec("dot", 2, "linalg", Bilinear(lambda xp, a, b, mul: mul(a, b).sum()), shape=_dot_shape,
                   doc="inner product of two vectors", recipe=two_vectors_recipe))
register_op(OpSpec("outer", 2, "linalg", Bilinear(lambda xp, a, b, mul: mul(a[:, None], b[None, :])),
                   shape=_outer_shape, doc="outer product of two vectors", recipe=two_vectors_recipe))
