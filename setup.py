"""Where the packages live: ``corrmom_ref`` under ``src/``, the suite's folder ``conformance/`` as ``corrmom_conformance``.

Everything else (metadata, dependencies, package data) is in pyproject.toml.
The suite's folder keeps its short name in the repository but installs under
a name no other project uses; every subpackage is found, so a new one needs
no edit here.
"""

from setuptools import find_packages, setup

SUITE = "corrmom_conformance"
suite_packages = [
    SUITE + name.removeprefix("conformance") for name in find_packages(".", include=["conformance*"])
]
setup(
    packages=find_packages("src") + suite_packages,
    package_dir={"": "src", SUITE: "conformance"},
)
