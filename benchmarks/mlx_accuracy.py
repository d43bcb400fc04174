"""How accurate are MLX's elementwise functions and their derivatives, per dtype?

Measures the error of ``mx.exp/sin/cos/tanh/log/sigmoid`` and of ``mx.logaddexp(a, 0)``
(the softplus lowering): the value, the first derivative through ``mx.grad`` and the
second through ``mx.jvp`` of ``mx.grad``, against a 50-digit mpmath reference, in float32
and float64, on MLX's CPU stream. The ``mlx`` rows of hessdiff's tolerance table are
justified by these numbers.

Run: ``python benchmarks/mlx_accuracy.py`` (about a second).
"""

from __future__ import annotations

from collections.abc import Callable

import mlx.core as mx
import mpmath
import numpy as np

mpmath.mp.dps = 50

POINTS = 1001
# Entries with |reference| below this are left out of the relative error (zero crossings).
FLOOR = 1e-3
ORDERS = ("f", "f'", "f''")


def _sigmoid(x):
    return 1 / (1 + mpmath.exp(-x))


def _sigmoid_1(x):
    return mpmath.exp(-x) / (1 + mpmath.exp(-x)) ** 2


def _sigmoid_2(x):
    return (mpmath.exp(-2 * x) - mpmath.exp(-x)) / (1 + mpmath.exp(-x)) ** 3


def _tanh_1(x):
    return 1 - mpmath.tanh(x) ** 2


def _tanh_2(x):
    return -2 * mpmath.tanh(x) * (1 - mpmath.tanh(x) ** 2)


def _neg(fn):
    return lambda x: -fn(x)


# name -> (MLX function, [value, 1st, 2nd derivative] in mpmath, input range)
FUNCTIONS: dict[str, tuple[Callable, list[Callable], tuple[float, float]]] = {
    "exp": (mx.exp, [mpmath.exp] * 3, (-20.0, 20.0)),
    "sin": (mx.sin, [mpmath.sin, mpmath.cos, _neg(mpmath.sin)], (-10.0, 10.0)),
    "sin_large": (mx.sin, [mpmath.sin, mpmath.cos, _neg(mpmath.sin)], (100.0, 1000.0)),
    "cos": (mx.cos, [mpmath.cos, _neg(mpmath.sin), _neg(mpmath.cos)], (-10.0, 10.0)),
    "tanh": (mx.tanh, [mpmath.tanh, _tanh_1, _tanh_2], (-5.0, 5.0)),
    "log": (mx.log, [mpmath.log, lambda x: 1 / x, lambda x: -1 / x**2], (1e-3, 1e3)),
    "sigmoid": (mx.sigmoid, [_sigmoid, _sigmoid_1, _sigmoid_2], (-10.0, 10.0)),
    "softplus": (
        lambda a: mx.logaddexp(a, 0.0),
        [lambda x: mpmath.log(1 + mpmath.exp(x)), _sigmoid, _sigmoid_1],
        (-10.0, 10.0),
    ),
}


def derivatives(fn: Callable, x: mx.array) -> list[mx.array]:
    """fn(x), fn'(x), fn''(x) elementwise, through MLX's own autodiff."""
    first = mx.grad(lambda v: mx.sum(fn(v)))
    second = mx.jvp(first, [x], [mx.ones_like(x)])[1][0]
    return [fn(x), first(x), second]


def errors(values: np.ndarray, points: np.ndarray, reference: Callable) -> tuple[np.ndarray, np.ndarray]:
    """(relative error where |reference| >= FLOOR, error / max(1, |reference|) everywhere)."""
    exact = np.array([float(reference(mpmath.mpf(float(p)))) for p in points])
    err = np.abs(values - exact)
    keep = np.abs(exact) >= FLOOR
    return err[keep] / np.abs(exact[keep]), err / np.maximum(1.0, np.abs(exact))


def measure() -> list[tuple[str, str, str, float, float, float]]:
    """Rows of (dtype, function, order, median relative, max relative, max mixed error)."""
    rows = []
    with mx.stream(mx.cpu):
        for dtype in ("float32", "float64"):
            for name, (fn, refs, (lo, hi)) in FUNCTIONS.items():
                # Points exactly representable in dtype, so only the function's error counts.
                points = np.linspace(lo, hi, POINTS).astype(dtype).astype(np.float64)
                outs = derivatives(fn, mx.array(points, dtype=getattr(mx, dtype)))
                mx.eval(outs)
                for order, out, ref in zip(ORDERS, outs, refs):
                    rel, mixed = errors(np.array(out).astype(np.float64), points, ref)
                    rows.append(
                        (dtype, name, order, float(np.median(rel)), float(rel.max()), float(mixed.max()))
                    )
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
    print(
        f"MLX {mx.__version__} on {mx.default_device()}; {POINTS} points per range; "
        "error against mpmath at 50 digits"
    )
    print(f"  rel = |mlx - ref| / |ref| (where |ref| >= {FLOOR:g}); mixed = |mlx - ref| / max(1, |ref|)")
    header = ("dtype", "function", "range", "order", "median rel", "max rel", "max mixed")
    print(f"{header[0]:8} {header[1]:10} {header[2]:>16} {header[3]:5} {header[4]:>11} "
          f"{header[5]:>10} {header[6]:>10}")
    for dtype, name, order, median, worst, mixed in measure():
        lo, hi = FUNCTIONS[name][2]
        interval = f"[{lo:g}, {hi:g}]"
        print(f"{dtype:8} {name:10} {interval:>16} {order:5} {median:11.2e} {worst:10.2e} {mixed:10.2e}")
    print()
    print("Share of float64 results bit-identical to float64(fn(float32(x))):")
    for name, share in float32_path_share().items():
        print(f"  {name:10} {share:6.1%}")
    print()
    for dtype in ("float32", "float64"):
        print(f"{dtype}: machine epsilon {np.finfo(dtype).eps:.2e}")
    with mx.stream(mx.cpu):
        big = mx.exp(mx.array([88.0, 89.0, 100.0, 700.0], dtype=mx.float64))
        mx.eval(big)
    print(f"float64 exp([88, 89, 100, 700]) = {np.array(big).tolist()} (NumPy: finite up to 709.78)")


if __name__ == "__main__":
    main()
