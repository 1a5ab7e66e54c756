"""The one compiled part of bertconv, optional kernels for tf2pt's data path (see
bertconv/_kernels.c). Everything else is in pyproject.toml. Without a C compiler the build goes on
and bertconv uses NumPy and google-crc32c instead."""
from setuptools import Extension, setup

setup(ext_modules=[Extension("bertconv._kernels", ["bertconv/_kernels.c"], optional=True)])
