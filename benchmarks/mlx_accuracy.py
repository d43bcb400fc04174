"""How accurate are MLX's elementwise functions and their derivatives, per dtype?

Measures the relative error of ``mx.exp/sin/cos/tanh/log/sigmoid`` (the value, the first
derivative through ``mx.grad`` and the second through ``mx.jvp`` of ``mx.grad``) against
a 50-digit mpmath reference, in float32 and float64, on MLX's CPU stream. The hessdiff
tolerance table for the ``mlx`` backend is justified by these numbers.

Run: ``python benchmarks/mlx_accuracy.py`` (about a second).
"""

from __future__ import annotations

import mlx.core as mx
import mpmath
import numpy as np

mpmath.mp.dps = 50

# name -> (mlx function, [value, 1st, 2nd derivative] as mpmath functions, input range)
FUNCTIONS = {
    "exp": (mx.exp, [mpmath.exp, mpmath.exp, mpmath.exp], (-20.0, 20.0)),
    "sin": (mx.sin, [mpmath.sin, mpmath.cos, lambda x: -mpmath.sin(x)], (-10.0, 10.0)),
    "sin_large": (mx.sin, [mpmath.sin, mpmath.cos, lambda x: -mpmath.sin(x)], (100.0, 1000.0)),
    "cos": (mx.cos, [mpmath.cos, lambda x: -mpmath.sin(x), lambda x: -mpmath.cos(x)], (-10.0, 10.0)),
    "tanh": (
        mx.tanh,
        [mpmath.tanh, lambda x: 1 - mpmath.tanh(x) ** 2,
         lambda x: -2 * mpmath.tanh(x) * (1 - mpmath.tanh(x) ** 2)],
        (-5.0, 5.0),
    ),
    "log": (mx.log, [mpmath.log, lambda x: 1 / x, lambda x: -1 / x**2], (1e-3, 1e3)),
    "sigmoid": (
        mx.sigmoid,
        [lambda x: 1 / (1 + mpmath.exp(-x)),
         lambda x: mpmath.exp(-x) / (1 + mpmath.exp(-x)) ** 2,
         lambda x: (mpmath.exp(-2 * x) - mpmath.exp(-x)) / (1 + mpmath.exp(-x)) ** 3],
        (-10.0, 10.0),
    ),
    "softplus": (
        lambda a: mx.logaddexp(a, 0.0),
        [lambda x: mpmath.log(1 + mpmath.exp(x)), lambda x: 1 / (1 + mpmath.exp(-x)),
         lambda x: mpmath.exp(-x) / (1 + mpmath.exp(-x)) ** 2],
        (-10.0, 10.0),
    ),
}
POINTS = 1001
# Entries with |reference| below this are left out of the relative error (zero crossings).
FLOOR = 1e-3


def derivatives(fn, x: mx.array) -> list[mx.array]:
    """fn(x), fn'(x), fn''(x) elementwise, through MLX's own autodiff."""
    first = mx.grad(lambda v: mx.sum(fn(v)))
    second = mx.jvp(first, [x], [mx.ones_like(x)])[1][0]
    return [fn(x), first(x), second]


def errors(values: np.ndarray, points: np.ndarray, reference) -> tuple[np.ndarray, np.ndarray]:
    """(relative error where |reference| >= FLOOR, error / max(1, |reference|) everywhere)."""
    exact = np.array([float(reference(mpmath.mpf(float(p)))) for p in points])
    err = np.abs(values - exact)
    keep = np.abs(exact) >= FLOOR
    return err[keep] / np.abs(exact[keep]), err / np.maximum(1.0, np.abs(exact))


def measure() -> list[tuple[str, str, str, float, float, float]]:
    rows = []
    with mx.stream(mx.cpu):
        for dtype in ("float32", "float64"):
            for name, (fn, refs, (lo, hi)) in FUNCTIONS.items():
                # Points exactly representable in dtype, so only the function's error counts.
                points = np.linspace(lo, hi, POINTS).astype(dtype).astype(np.float64)
                x = mx.array(points, dtype=getattr(mx, dtype))
                outs = derivatives(fn, x)
                mx.eval(outs)
                for order, (out, ref) in enumerate(zip(outs, refs)):
                    rel, mixed = errors(np.array(out).astype(np.float64), points, ref)
                    order_name = ("f", "f'", "f''")[order]
                    rows.append((dtype, name, order_name, float(np.median(rel)), float(rel.max()), float(mixed.max())))
    return rows


def float32_path_share() -> dict[str, float]:
    """For each function, how often float64 ``fn(x)`` equals ``float64(fn(float32(x)))``."""
    shares = {}
    with mx.stream(mx.cpu):
        for name, (fn, _, (lo, hi)) in FUNCTIONS.items():
            points = np.random.default_rng(0).uniform(lo, hi, POINTS)
            y64 = fn(mx.array(points, dtype=mx.float64))
            y32 = fn(mx.array(points, dtype=mx.float32))
            mx.eval(y64, y32)
            shares[name] = float(np.mean(np.array(y64) == np.array(y32).astype(np.float64)))
    return shares


def main() -> None:
    print(f"MLX {mx.__version__} on {mx.default_device()}; {POINTS} points per range; "
          f"relative error vs mpmath (|ref| >= {FLOOR:g})")
    print("  rel = |mlx - ref| / |ref| (where |ref| >= FLOOR); mixed = |mlx - ref| / max(1, |ref|)")
    print(f"{'dtype':8} {'function':10} {'range':>16} {'order':5} {'median rel':>11} {'max rel':>10} {'max mixed':>10}")
    for dtype, name, order, median, worst, mixed in measure():
        lo, hi = FUNCTIONS[name][2]
        print(
            f"{dtype:8} {name:10} {f'[{lo:g}, {hi:g}]':>16} {order:5} {median:11.2e} {worst:10.2e} {mixed:10.2e}"
        )
    print()
    print("Share of float64 results bit-identical to casting to float32, computing, casting back:")
    for name, share in float32_path_share().items():
        print(f"  {name:10} {share:6.1%}")
    for dtype in ("float32", "float64"):
        print(f"{dtype}: machine epsilon {np.finfo(dtype).eps:.2e}")
    with mx.stream(mx.cpu):
        big = mx.exp(mx.array([88.0, 89.0, 100.0, 700.0], dtype=mx.float64))
        mx.eval(big)
        print("float64 exp([88, 89, 100, 700]) =", np.array(big).tolist(), "(numpy: finite up to 709)")


if __name__ == "__main__":
    main()
