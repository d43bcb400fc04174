"""MLX's Hessians, composed from ``mx.grad``, ``mx.jvp``, ``mx.vjp`` and ``mx.vmap``.

MLX has no ``hessian``; these helpers build one. The backend's variants
(``hessdiff.backends.mlx_backend``) and the relations' probes
(``hessdiff.backends.scenarios.mlx_probes``) both compose them, and an emitted reproducer
carries their source verbatim, so this module imports nothing of hessdiff (and MLX only
inside each function): both can import it without importing each other.
"""

from __future__ import annotations

__all__ = ["hessian_fwdrev", "hessian_fwdrev_vmap", "hessian_revrev", "hessian_revrev_vmap"]


def hessian_fwdrev(f):
    """Forward-over-reverse: H[:, j] is the JVP of ``mx.grad(f)`` along e_j, one per j."""
    import mlx.core as mx

    grad = mx.grad(f)

    def hessian(x):
        basis = mx.eye(x.shape[0], dtype=x.dtype)
        columns = [mx.jvp(grad, [x], [basis[j]])[1][0] for j in range(x.shape[0])]
        return mx.stack(columns, axis=1)

    return hessian


def hessian_fwdrev_vmap(f):
    """Forward-over-reverse: the JVP of ``mx.grad(f)`` vmapped over the basis vectors."""
    import mlx.core as mx

    grad = mx.grad(f)

    def hessian(x):
        def column(v):
            return mx.jvp(grad, [x], [v])[1][0]

        return mx.vmap(column, in_axes=0, out_axes=1)(mx.eye(x.shape[0], dtype=x.dtype))

    return hessian


def hessian_revrev(f):
    """Reverse-over-reverse: H[i, :] is the VJP of ``mx.grad(f)`` with cotangent e_i."""
    import mlx.core as mx

    grad = mx.grad(f)

    def hessian(x):
        basis = mx.eye(x.shape[0], dtype=x.dtype)
        rows = [mx.vjp(grad, [x], [basis[i]])[1][0] for i in range(x.shape[0])]
        return mx.stack(rows, axis=0)

    return hessian


def hessian_revrev_vmap(f):
    """Reverse-over-reverse: the VJP of ``mx.grad(f)`` vmapped over the basis cotangents."""
    import mlx.core as mx

    grad = mx.grad(f)

    def hessian(x):
        def row(v):
            return mx.vjp(grad, [x], [v])[1][0]

        return mx.vmap(row, in_axes=0, out_axes=0)(mx.eye(x.shape[0], dtype=x.dtype))

    return hessian
