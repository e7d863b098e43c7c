# All metadata lives in setup.cfg; pip needs this file to build without a pyproject.toml.
from setuptools import setup
setup()
