"""Per-framework probes: the code paths the relations of ``hessdiff.harness.relations`` exercise.

Each module holds plain functions, one per probe, written against one framework only and
importing it inside (so ``inspect.getsource`` of a function is a runnable piece of a
reproducer), and a ``PROBES`` table (probe name -> ``Variant``) that its backend returns
from ``Backend.probes()``. A probe turns the program's function ``f`` into a function of
``x`` returning an (n, n) matrix that ``hessdiff.harness.relations`` knows how to check:

- ``hvp-*`` / ``vhp-*``: the Hessian assembled from the framework's own Hessian-vector
  products (one per basis vector);
- ``laplacian-*``: the PINN Laplacian's per-axis second derivatives (nested grad, mapped
  over a batch of points) on the diagonal; the Laplacian is their sum;
- ``vmap-*``: the Hessian mapped over a batch of points;
- ``jit-*``: the Hessian under the framework's compiler;
- ``custom-*``: the Hessian of ``f`` wrapped in a custom differentiation rule;
- ``params-*``: the Hessian of ``f`` as a model's loss in its parameters;
- ``ode-*``: the Hessian of a fixed-step Euler Neural-ODE loss driven by ``f`` (a loop
  written in the framework, or diffrax.Euler with a constant step);
- ``adaptive-ode-*``: the Hessian of the same ODE's loss from an adaptive solver
  (diffrax.Tsit5 with a PID step-size controller), which approximates the exact solution.

The names are a convention for readers; what a probe is, and which relation checks it,
it declares itself (``Variant.relation``, checked when its backend registers). The ODE
the Neural-ODE probes solve is defined once, in ``ode_problem``.
"""
