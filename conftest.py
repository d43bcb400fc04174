"""Root conftest: the one place Hypothesis profiles are loaded, for tests/ and properties/.

``--hypothesis-profile=NAME`` (Hypothesis' pytest plugin, applied after this file is
imported) overrides the default chosen here.
"""

from hypothesis import settings

from hessdiff.harness.profiles import default_profile, register_profiles

register_profiles()
settings.load_profile(default_profile())
