"""The Neural-ODE problem every ``neural_ode`` and ``neural_ode_adaptive`` probe solves: defined once.

dy/dt = -f(theta) * y, y(0) = 1, on [0, 1]; the loss is y(1), differentiated twice in theta.

- The fixed-step probes take ``ODE_STEPS`` explicit Euler steps (a loop written in the
  framework, or diffrax.Euler with the constant step ``1 / ODE_STEPS``). Each step
  multiplies y by ``1 - f(theta) / ODE_STEPS``, so y(1) is that factor to the power
  ``ODE_STEPS`` exactly: ``hessdiff.harness.probe_relations.ode_program`` writes it as a program
  for the oracle.
- The adaptive probes solve it with a PID step-size controller at ``rtol =
  ADAPTIVE_ODE_TOLERANCE[dtype]`` (atol 0: y(1) = exp(-f) may be tiny) in at most
  ``ADAPTIVE_ODE_MAX_STEPS`` steps, so y(1) approximates the exact exp(-f(theta))
  (``hessdiff.harness.probe_relations.exact_ode_program``) within rtol; the relation allows that.

The probes read these names as globals of their module, and a probe's reproducer
defines them from here (``BackendVariant.source`` writes the constants a helper reads),
so the probes, their reproducers and the relations judging them use the same numbers.
This module imports nothing: any layer may read it.
"""

from __future__ import annotations

__all__ = ["ADAPTIVE_ODE_MAX_STEPS", "ADAPTIVE_ODE_TOLERANCE", "ODE_STEPS"]

ODE_STEPS = 4

# float32's rtol is well above its rounding (~6e-8 per op), so the step-size controller is
# not steered by rounding noise.
ADAPTIVE_ODE_TOLERANCE = {"float32": 1e-6, "float64": 1e-10}

ADAPTIVE_ODE_MAX_STEPS = 1024
