"""Fixtures live in tests/fixtures/, one module per real process the suite starts."""

pytest_plugins = [
    "tests.fixtures.worker",
    "tests.fixtures.model_servers",
    "tests.fixtures.chroma",
]
