pytest_plugins = [
    "tests.support.stack",
    "tests.support.simulator",
    "tests.support.temporal",
    "tests.support.stripe",
    "tests.support.database",
    "tests.support.api",
]
