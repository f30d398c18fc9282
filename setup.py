# The only reason for setup.py: cffi_modules has no pyproject.toml form yet.
from setuptools import setup

setup(cffi_modules=["csrc/build.py:ffi"])
