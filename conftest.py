"""Root conftest: the one place Hypothesis profiles are loaded, for tests/ and properties/.

``--hypothesis-profile=NAME`` (Hypothesis' pytest plugin, applied after this file is
imported) overrides the default chosen here. On a nightly leg the header says what the
earlier nights' artifacts gave (``hessdiff.harness.remembered``).
"""

from hypothesis import settings

from hessdiff.harness.profiles import default_profile, register_profiles

_NOTES = register_profiles()
settings.load_profile(default_profile())


def pytest_report_header() -> list[str]:
    return [f"hessdiff: earlier nights' examples: {note}" for note in _NOTES]
