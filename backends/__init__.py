"""Framework adapters: one module per framework, each registered with ``registry``.

The harness reaches backends only through this package's public names.
"""

from hessdiff.backends.backend_variant import BackendVariant
from hessdiff.backends.base import (
    Availability,
    Backend,
    BackendUnavailable,
    CAMPAIGN_RELATIONS,
    DTYPES,
    PROBE_RELATIONS,
    Unsupported,
    Variant,
)
from hessdiff.backends.lowering import Absent, Namespace
from hessdiff.backends.registry import (
    RegistryError,
    all_backends,
    all_variants,
    campaign_variants,
    get_backend,
    get_variant,
    register,
)

__all__ = [
    "Absent",
    "Availability",
    "Backend",
    "BackendUnavailable",
    "BackendVariant",
    "CAMPAIGN_RELATIONS",
    "DTYPES",
    "Namespace",
    "PROBE_RELATIONS",
    "RegistryError",
    "Unsupported",
    "Variant",
    "all_backends",
    "all_variants",
    "campaign_variants",
    "get_backend",
    "get_variant",
    "register",
]
